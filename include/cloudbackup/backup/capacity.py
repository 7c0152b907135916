"""Capacity (art. 6, 17(3)): which thresholds of the contract capacity a new measurement crossed (pure)."""

from __future__ import annotations

DEFAULT_THRESHOLDS = (80, 90, 100)


def crossings(previous_bytes: int | None, stored_bytes: int, capacity_bytes: int,
              thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS) -> list[int]:
    """Thresholds (percent) reached now that were not reached at the previous measurement.

    Exact integer arithmetic: a threshold is reached when stored × 100 ≥ percent × capacity. Falling
    back below a threshold and rising again is a new crossing.
    """
    def reached(nbytes: int, percent: int) -> bool:
        return nbytes * 100 >= percent * capacity_bytes

    return [t for t in sorted(thresholds)
            if reached(stored_bytes, t) and not (previous_bytes is not None and reached(previous_bytes, t))]
