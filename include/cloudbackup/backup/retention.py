"""Retention: which snapshots a policy keeps (restic's `forget --keep-*` rules, on the Asia/Tokyo calendar); pure."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from cloudbackup.clock import TOKYO


@dataclass(frozen=True)
class RetentionPolicy:
    """How many snapshots to keep: the last n, and the newest of each of the last n days, ISO weeks and months.

    All zero is no policy: every snapshot is kept. A count of -1 keeps every bucket of that kind (restic's
    "unlimited")."""

    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0

    def empty(self) -> bool:
        return not (self.keep_last or self.keep_daily or self.keep_weekly or self.keep_monthly)

    def describe(self) -> str:
        if self.empty():
            return "keep all snapshots (no retention policy)"
        parts = [f"{'all' if n == -1 else n} {what}" for n, what in (
            (self.keep_last, "last"), (self.keep_daily, "daily"), (self.keep_weekly, "weekly"),
            (self.keep_monthly, "monthly")) if n]
        return "keep " + ", ".join(parts)


@dataclass(frozen=True)
class RetentionDecision:
    keep: dict[str, list[str]] = field(default_factory=dict)   # snapshot id → why it is kept, newest first
    forget: list[str] = field(default_factory=list)            # newest first


def snapshot_time(snapshot_id: str) -> datetime:
    """The start time a snapshot id carries (`YYYYMMDDTHHMMSS.ffffffZ-<hex>`, UTC; docs/storage-format.md)."""
    return datetime.strptime(snapshot_id.split("-", 1)[0], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)


def _buckets(tz: tzinfo) -> list[tuple[str, str, Callable[[datetime, int], object]]]:
    # The bucket functions of restic's internal/data/snapshot_policy.go (ymd, yw, ym, always), on the business
    # calendar: a snapshot at 23:30 UTC counts for the next Tokyo day, week or month.
    return [
        ("keep_last", "last snapshot", lambda _t, nr: nr),
        ("keep_daily", "daily snapshot", lambda t, _nr: t.astimezone(tz).date()),
        ("keep_weekly", "weekly snapshot", lambda t, _nr: t.astimezone(tz).isocalendar()[:2]),
        ("keep_monthly", "monthly snapshot", lambda t, _nr: (t.astimezone(tz).year, t.astimezone(tz).month)),
    ]


def apply_policy(snapshots: Iterable[tuple[str, datetime]], policy: RetentionPolicy,
                 tz: tzinfo = TOKYO) -> RetentionDecision:
    """restic's ApplyPolicy for keep_last/daily/weekly/monthly: newest first, a snapshot is kept by a rule whose
    count is not used up when its bucket differs from the last bucket that rule kept (so the newest of each
    bucket, counting distinct buckets), and the oldest snapshot is kept by every rule with counts left (restic
    0.16+: the longest history the counts allow). No policy keeps everything; otherwise the newest is always kept.
    """
    ordered: Sequence[tuple[str, datetime]] = sorted(snapshots, key=lambda s: s[1], reverse=True)  # stable, as Go's
    if policy.empty():
        return RetentionDecision({sid: ["no retention policy"] for sid, _ in ordered}, [])
    counts = {name: getattr(policy, name) for name, _, _ in _buckets(tz)}
    last: dict[str, object] = {}
    keep: dict[str, list[str]] = {}
    forget: list[str] = []
    for nr, (sid, moment) in enumerate(ordered):
        reasons = []
        for name, reason, bucket in _buckets(tz):
            if counts[name] == 0:
                continue
            value = bucket(moment, nr)
            oldest = nr == len(ordered) - 1
            if name not in last or value != last[name] or oldest:
                reasons.append(f"oldest {reason}" if name in last and value == last[name] else reason)
                last[name] = value
                if counts[name] > 0:
                    counts[name] -= 1
        if reasons:
            keep[sid] = reasons
        else:
            forget.append(sid)
    return RetentionDecision(keep, forget)
