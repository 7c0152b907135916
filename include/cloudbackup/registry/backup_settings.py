"""Operator settings for backups (dags/registry/backup.yaml): name policy, capacity basis and thresholds, engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import yaml

from cloudbackup.backup.capacity import DEFAULT_BASIS, DEFAULT_THRESHOLDS, CapacityBasis
from cloudbackup.backup.names import NamePolicy
from cloudbackup.backup.options import EngineOptions


@dataclass(frozen=True)
class BackupSettings:
    name_policy: NamePolicy = field(default_factory=NamePolicy)
    capacity_thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS
    engine: EngineOptions = field(default_factory=EngineOptions)
    capacity_basis: CapacityBasis = DEFAULT_BASIS   # what counts against the contract capacity (art. 6, 17(3))


def sample_fraction(value: object) -> float:
    """`engine.verify_sample_fraction`: a number or a fraction such as `1/30`, from 0 (off) to 1 (all)."""
    try:
        fraction = Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"engine: verify_sample_fraction {value!r} is not a number or a fraction like 1/30") from None
    if not 0 <= fraction <= 1:
        raise ValueError(f"engine: verify_sample_fraction {value!r} must be between 0 and 1 (e.g. 1/30)")
    return float(fraction)


def capacity_basis(value: object) -> CapacityBasis:
    """`capacity_basis`: one of the CapacityBasis words, refused otherwise with the choices named."""
    try:
        return CapacityBasis(str(value))
    except ValueError:
        raise ValueError(f"capacity_basis {value!r} is not one of {[b.value for b in CapacityBasis]}") from None


def load_backup_settings(path: Path) -> BackupSettings:
    """Defaults when the file is absent; unknown keys are refused with the file and key named."""
    if not path.exists():
        return BackupSettings()
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = set(data) - {"name_policy", "capacity_thresholds_percent", "engine", "capacity_basis"}
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}")
    try:
        thresholds = tuple(sorted(int(t) for t in data.get("capacity_thresholds_percent", DEFAULT_THRESHOLDS)))
        if any(t <= 0 for t in thresholds):
            raise ValueError("capacity_thresholds_percent must be positive")
        engine = dict(data.get("engine") or {})
        bad = set(engine) - set(EngineOptions.__dataclass_fields__)
        if bad:
            raise ValueError(f"engine: unknown field(s) {sorted(bad)}")
        if "verify_sample_fraction" in engine:
            engine["verify_sample_fraction"] = sample_fraction(engine["verify_sample_fraction"])
        return BackupSettings(NamePolicy.from_mapping(data.get("name_policy")), thresholds, EngineOptions(**engine),
                              capacity_basis(data.get("capacity_basis", DEFAULT_BASIS)))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
