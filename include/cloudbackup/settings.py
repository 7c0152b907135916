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


def _seconds(name: str, default: float) -> float:
    value = float(os.environ.get(name, default))
    if value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value}")
    return value


def run_timeout_seconds() -> float:
    """The longest a backup run may take: the `collect` task's execution_timeout; the sweeper fails older runs."""
    return _seconds("CLOUDBACKUP_RUN_TIMEOUT_SECONDS", 6 * 3600)


def run_lease_seconds() -> float:
    """How long a run's lease lives without a heartbeat (renewed every third of it): a dead worker blocks no more."""
    return _seconds("CLOUDBACKUP_RUN_LEASE_SECONDS", 300)


def run_wait_seconds() -> float:
    """How long a second run of the same customer waits for the first to end before it is refused."""
    return float(os.environ.get("CLOUDBACKUP_RUN_WAIT_SECONDS", 30))


def sftp_timeout_seconds() -> float:
    """How long an SFTP server may stay silent (connect, handshake, each request) before the run fails."""
    return _seconds("CLOUDBACKUP_SFTP_TIMEOUT_SECONDS", 60)


def prune_grace_hours() -> float:
    """Objects younger than this are never deleted by a prune, whatever references them (S3 LastModified)."""
    value = float(os.environ.get("CLOUDBACKUP_PRUNE_GRACE_HOURS", 24))
    if value < 0:
        raise ValueError(f"CLOUDBACKUP_PRUNE_GRACE_HOURS must be 0 or more hours, got {value}")
    return value


def prune_repack_unused() -> float:
    """A pack with more than this fraction of its bytes used by no kept snapshot is repacked by a prune."""
    value = float(os.environ.get("CLOUDBACKUP_PRUNE_REPACK_UNUSED", 0.5))
    if not 0 <= value < 1:
        raise ValueError(f"CLOUDBACKUP_PRUNE_REPACK_UNUSED must be a fraction in [0, 1), got {value}")
    return value
