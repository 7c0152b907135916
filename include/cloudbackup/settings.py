"""Where the service finds its registry and writes its exports (environment, with repo defaults)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def registry_dir() -> Path:
    return Path(os.environ.get("CLOUDBACKUP_REGISTRY_DIR", PROJECT_ROOT / "dags" / "registry"))


def export_dir() -> Path:
    return Path(os.environ.get("CLOUDBACKUP_EXPORT_DIR", PROJECT_ROOT / "var" / "exports"))


def catalog_path() -> Path:
    return registry_dir() / "catalog.yaml"


def restore_dir() -> Path:
    """Where restores triggered from Airflow may write on the worker (the CLI may write anywhere)."""
    return Path(os.environ.get("CLOUDBACKUP_RESTORE_DIR", PROJECT_ROOT / "var" / "restores"))
