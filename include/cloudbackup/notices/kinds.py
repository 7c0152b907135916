"""What the event-driven notice kinds say, as plain dataclasses built from recorded events (pure, no I/O).

Maintenance and suspension notices render the registry's own `Window` and `Suspension`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

DIGEST_PATHS = 20          # a collection-error digest lists at most this many paths (art. 17(2))


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
