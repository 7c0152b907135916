"""What each notice kind says, as plain dataclasses built from recorded events (pure, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

TOKYO = ZoneInfo("Asia/Tokyo")

DIGEST_PATHS = 20          # a collection-error digest lists at most this many paths (art. 17(2))
CURE_PERIOD = timedelta(days=14)  # art. 12: a suspension not cured within 14 days may end the contract


@dataclass(frozen=True)
class ReasonCount:
    reason: str
    count: int


@dataclass(frozen=True)
class ErrorPath:
    path: str
    reason: str


@dataclass(frozen=True)
class CollectionErrorDigest:
    """A run's collection errors (art. 17(2)): counts by reason and the first paths, never all of them."""

    run_key: str
    started_at: datetime
    finished_at: datetime | None
    files_collected: int
    error_count: int
    by_reason: tuple[ReasonCount, ...]
    first_paths: tuple[ErrorPath, ...]

    @property
    def more_paths(self) -> int:
        return self.error_count - len(self.first_paths)


def digest(run_key: str, started_at: datetime, finished_at: datetime | None, files_collected: int,
           errors: list[ErrorPath], limit: int = DIGEST_PATHS) -> CollectionErrorDigest:
    """Digest of a list of errors (the DB path uses SQL aggregates instead of loading every row)."""
    counts: dict[str, int] = {}
    for e in errors:
        counts[e.reason] = counts.get(e.reason, 0) + 1
    by_reason = tuple(ReasonCount(r, n) for r, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    first = tuple(sorted(errors, key=lambda e: e.path)[:limit])
    return CollectionErrorDigest(run_key, started_at, finished_at, files_collected, len(errors), by_reason, first)


@dataclass(frozen=True)
class UsagePoint:
    at: datetime
    stored_bytes: int


@dataclass(frozen=True)
class CapacityNotice:
    """Stored volume reached a threshold of the contract capacity (art. 17(3))."""

    threshold_percent: int
    stored_bytes: int
    contract_capacity_bytes: int
    recorded_at: datetime
    history: tuple[UsagePoint, ...]  # oldest first; the last point is this event

    def __post_init__(self) -> None:
        if self.contract_capacity_bytes <= 0:
            raise ValueError("contract capacity must be positive")

    @property
    def reached_capacity(self) -> bool:
        return self.stored_bytes >= self.contract_capacity_bytes


@dataclass(frozen=True)
class MaintenanceWindow:
    """A declared operational stop (art. 13): collection may stop during [starts_at, ends_at)."""

    id: str                 # the operator's reference, e.g. "2026-12-maint-1"; one notice per customer per id
    starts_at: datetime
    ends_at: datetime
    emergency: bool = False  # art. 13: emergencies need no advance notice; the notice says so
    details_ja: str = ""
    details_en: str = ""

    def __post_init__(self) -> None:
        if self.starts_at.tzinfo is None or self.ends_at.tzinfo is None:
            raise ValueError(f"maintenance {self.id!r}: start and end must be timezone-aware")
        if self.ends_at <= self.starts_at:
            raise ValueError(f"maintenance {self.id!r}: ends_at must be after starts_at")

    def details(self, language: str) -> str:
        return self.details_ja if language == "ja" else self.details_en

    @classmethod
    def declared(cls, window: Any) -> MaintenanceWindow:
        """From a window declared in maintenance.yaml (cloudbackup.maintenance.Window: id, start, end,
        reason, emergency); its one `reason` text serves both languages."""
        reason = str(getattr(window, "reason", "") or "")
        return cls(window.id, window.start, window.end, bool(getattr(window, "emergency", False)), reason, reason)


class SuspensionReason(StrEnum):
    NON_PAYMENT = "non_payment"
    TERMS_VIOLATION = "terms_violation"
    UNAUTHORIZED_ACCESS = "unauthorized_access"
    OTHER = "other"


@dataclass(frozen=True)
class Suspension:
    """A customer's suspension (art. 14(2)); collection stops and is not caught up later (art. 18(3))."""

    customer_id: str
    reason: str              # a SuspensionReason code (worded per language) or the operator's own words
    effective_at: datetime
    emergency: bool = False

    def __post_init__(self) -> None:
        if self.effective_at.tzinfo is None:
            raise ValueError("suspension effective_at must be timezone-aware")

    @property
    def cure_by(self) -> date:
        """Last day (Tokyo calendar) to cure the cause before the operator may terminate (art. 12)."""
        return (self.effective_at.astimezone(TOKYO) + CURE_PERIOD).date()
