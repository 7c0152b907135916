"""Capacity (art. 6, 17(3), 18(5)): what counts against the contract capacity, and the thresholds crossed (pure)."""

from __future__ import annotations

from enum import StrEnum

DEFAULT_THRESHOLDS = (80, 90, 100)


class CapacityBasis(StrEnum):
    """What counts against the contract capacity (`backup.yaml` `capacity_basis`; `backup_runs.capacity_basis`,
    `capacity_events.capacity_basis`).

    The terms contract for "the data volume to be backed up" (art. 6), notify when "the backup volume" reaches the
    capacity (art. 17(3)) and warn when "the backup data collected" exceeds it (art. 18(5)): all speak of the
    customer's data, not of how the operator stores it. So by default the contract figure is the size of the
    customer's data as of the latest snapshot; operators who read the terms otherwise choose stored bytes.
    """

    SOURCE_BYTES = "source_bytes"   # the latest snapshot's files (manifest total_bytes = the run's bytes_collected)
    STORED_BYTES = "stored_bytes"   # every object under the customer's prefix in S3: history, dedup, garbage

    def counted_bytes(self, source_bytes: int, stored_bytes: int) -> int:
        """The contract figure of one run under this basis."""
        return source_bytes if self is CapacityBasis.SOURCE_BYTES else stored_bytes


DEFAULT_BASIS = CapacityBasis.SOURCE_BYTES


def crossings(previous_bytes: int | None, counted_bytes: int, capacity_bytes: int,
              thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS) -> list[int]:
    """Thresholds (percent) reached now that were not reached at the previous measurement.

    Exact integer arithmetic: a threshold is reached when counted × 100 ≥ percent × capacity. Falling
    back below a threshold and rising again is a new crossing.
    """
    def reached(nbytes: int, percent: int) -> bool:
        return nbytes * 100 >= percent * capacity_bytes

    return [t for t in sorted(thresholds)
            if reached(counted_bytes, t) and not (previous_bytes is not None and reached(previous_bytes, t))]
