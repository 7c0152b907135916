"""What the event-driven notice kinds say, as plain dataclasses built from recorded events (pure, no I/O).

Maintenance and suspension notices render the registry's own `Window` and `Suspension`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from cloudbackup.backup.capacity import DEFAULT_BASIS, CapacityBasis
from cloudbackup.clock import add_months, month_last_day

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

    def has_reason(self, reason: str) -> bool:
        return any(r.reason == reason and r.count for r in self.by_reason)


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
    counted_bytes: int


@dataclass(frozen=True)
class CapacityNotice:
    """The contract figure reached a threshold of the contract capacity (art. 17(3)).

    `counted_bytes` is what counts against the contract on `capacity_basis` (backup.yaml): the customer's data as
    of the latest snapshot by default, or the bytes stored. The notice names which (labels group `capacity_basis`);
    the operator's stored bytes are never the customer's figure unless that is the basis.
    """

    threshold_percent: int
    counted_bytes: int
    contract_capacity_bytes: int
    recorded_at: datetime
    history: tuple[UsagePoint, ...]  # oldest first; the last point is this event
    capacity_basis: CapacityBasis = DEFAULT_BASIS

    def __post_init__(self) -> None:
        if self.contract_capacity_bytes <= 0:
            raise ValueError("contract capacity must be positive")

    @property
    def reached_capacity(self) -> bool:
        return self.counted_bytes >= self.contract_capacity_bytes


def one_month_after(day: date) -> date:
    """The same day a month later, or that month's last day when it has no such day."""
    year, month = add_months(day.year, day.month, 1)
    return date(year, month, min(day.day, month_last_day(year, month).day))


@dataclass(frozen=True)
class ServiceEnd:
    """The operator ends the service, or a part of it (art. 19(1)), announced one month ahead or more (19(2)).

    What becomes of the stored backups (return, deletion) is agreed with each customer (19(3)).
    """

    end_id: str
    last_day: date            # the last day the service is provided (Tokyo calendar)
    announced_on: date        # the day the notice goes out
    scope: str = ""           # customer-facing words for the part that ends; empty: the whole service
    scope_en: str = ""

    def __post_init__(self) -> None:
        earliest = one_month_after(self.announced_on)
        if self.last_day < earliest:
            raise ValueError(f"service end {self.end_id}: {self.last_day} is less than one month after the notice "
                             f"of {self.announced_on}; art. 19(2) needs {earliest} or later")
