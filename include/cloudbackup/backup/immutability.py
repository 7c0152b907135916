"""Object lock as rules over plain data: how long a snapshot's objects stay locked, and which locks to extend.

Pure: no S3 here; `backup.locks` applies these decisions to the bucket (docs/object-lock.md).

A plan with `object_lock_days: N` keeps every object a snapshot uses (its manifest, packs, chunks, and the
customer's key objects) immutable until N days after that snapshot's start. An object a later snapshot reuses
(de-duplication) must then stay locked until N days after the later snapshot: its lock is extended. Extending
costs one request per object, so a lock is extended in steps (`EXTEND_STEP`): once extended, an object is not
touched again by the runs of the next days.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

# S3 retain-until dates are whole seconds; a lock is never shorter than asked, so it is rounded up.
_SECOND = timedelta(seconds=1)
# A lock is extended to (required + EXTEND_STEP) so that the daily runs that follow find it long enough.
EXTEND_STEP = timedelta(days=7)
# Index files are deleted by the run that wrote them once its manifest exists: they are never locked.
UNLOCKED_PARTS = ("index/",)
COMPLIANCE = "COMPLIANCE"     # nobody, not even the bucket's owner, can shorten or remove it
GOVERNANCE = "GOVERNANCE"     # a principal allowed s3:BypassGovernanceRetention can
MODES = (COMPLIANCE, GOVERNANCE)


def retain_until(snapshot_started: datetime, lock_days: int) -> datetime:
    """The moment the objects of a snapshot started at `snapshot_started` may be deleted (UTC, whole second up)."""
    if lock_days <= 0:
        raise ValueError(f"object_lock_days must be positive, not {lock_days}")
    until = snapshot_started.astimezone(UTC) + timedelta(days=lock_days)
    return until.replace(microsecond=0) + (_SECOND if until.microsecond else timedelta(0))


def locked_part(relative_key: str) -> bool:
    """Whether an object (its key relative to the customer's prefix) is locked when written."""
    return not relative_key.startswith(UNLOCKED_PARTS)


def extensions(current: Mapping[str, datetime | None], used: Iterable[str], required: datetime,
               step: timedelta = EXTEND_STEP) -> dict[str, datetime]:
    """The locks to set so that every key in `used` stays locked at least until `required`.

    `current` is each key's present retain-until (None or absent: not locked). A key locked long enough already
    is left alone; any other is extended to `required + step` (rounded up to the second), so the next runs within
    `step` do not extend it again. Never shortens a lock (S3 would refuse a COMPLIANCE one anyway).
    """
    target = required + step
    target = target.replace(microsecond=0) + (_SECOND if target.microsecond else timedelta(0))
    out: dict[str, datetime] = {}
    for key in used:
        now_until = current.get(key)
        if now_until is None or now_until < required:
            out[key] = max(target, now_until) if now_until else target
    return out


def still_locked(locks: Mapping[str, datetime], now: datetime) -> dict[str, datetime]:
    """The locks in force at `now` (a lock whose date has passed no longer protects its object)."""
    return {key: until for key, until in locks.items() if until > now}


def latest(locks: Mapping[str, datetime]) -> datetime | None:
    """When the last of these locks ends: the earliest moment all their objects can be deleted."""
    return max(locks.values()) if locks else None


def days_left(until: datetime, now: datetime) -> int:
    """Whole days (rounded up) until `until`, for the operator."""
    return max(0, math.ceil((until - now).total_seconds() / 86400))
