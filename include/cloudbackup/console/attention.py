"""What needs an operator's attention: pure rules over plain data (no DB, no Airflow), one flag per reason.

Each rule reads what the fleet page already knows about a customer (its schedule, state, last run, stored
share of its contract, stuck notices, whether its DAG is paused in Airflow, whether its file loads) and says
why it needs a look. The page lists the flags with their reasons and counts them on top.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache

from croniter import croniter  # type: ignore[import-untyped]

from cloudbackup.clock import TOKYO

NEAR_CAPACITY_PERCENT = 80          # at or above this share of the contract
OVERDUE_GRACE = timedelta(hours=1)  # a scheduled run should have started within this of its slot
LONG_RUN_FACTOR = 2                 # running longer than twice the usual duration …
LONG_RUN_MARGIN = timedelta(minutes=10)   # … plus this (so a 1-minute run is not flagged at minute 3)

# The order flags are shown and counted in: what stops backups first, then what they found.
FLAGS = ("broken", "paused", "overdue", "never_run", "long_running", "failed", "with_errors", "stuck_notices",
         "near_capacity")


@dataclass(frozen=True)
class Flag:
    """One reason a customer needs attention; `at`/`number`/`text` fill in the reason's wording."""

    code: str                        # one of FLAGS
    at: datetime | None = None       # overdue: the slot with no run; long_running: when it started
    number: float | None = None      # near_capacity: percent; stuck_notices: how many; long_running: minutes
    text: str = ""                   # broken: what is wrong with the file


@dataclass(frozen=True)
class Facts:
    """What the rules read about one customer, as plain values."""

    state: str                              # active | maintenance | suspended
    schedule: str                           # the customer's cron, read in Asia/Tokyo
    service_start: date | None              # no run is expected before this (Tokyo) day
    paused: bool                            # its DAG is paused in Airflow
    last_status: str | None                 # the last run's status (RunStatus value), None: never ran
    last_started_at: datetime | None
    capacity_percent: float | None
    notices_stuck: int
    usual_run: timedelta | None = None      # the median duration of its recent finished runs
    run_timeout: timedelta | None = None    # the collect task's execution_timeout


def previous_slot(schedule: str, moment: datetime) -> datetime:
    """The latest fire time of `schedule` (Asia/Tokyo) at or before `moment`; ValueError for a bad cron."""
    return _previous(schedule, moment.astimezone(TOKYO).replace(second=0, microsecond=0))


@lru_cache(maxsize=8192)
def _previous(schedule: str, minute: datetime) -> datetime:
    # A page asks at one instant for many customers sharing a schedule: each pair is computed once.
    try:
        it = croniter(schedule, minute + timedelta(seconds=1))
    except (ValueError, KeyError) as exc:
        raise ValueError(f"schedule {schedule!r} is not a valid cron expression: {exc}") from None
    return it.get_prev(datetime)


def flags(f: Facts, now: datetime) -> tuple[Flag, ...]:
    """Every reason this customer needs attention, in FLAGS order; () when all is well."""
    out: list[Flag] = []
    expected: datetime | None = None
    try:
        expected = previous_slot(f.schedule, now - OVERDUE_GRACE)
    except ValueError as exc:
        out.append(Flag("broken", text=str(exc)))
    if f.paused:
        out.append(Flag("paused"))
    runs_expected = f.state == "active" and not f.paused and expected is not None
    if runs_expected and expected is not None and (f.service_start is None
                                                   or expected.astimezone(TOKYO).date() >= f.service_start):
        if f.last_started_at is None:
            out.append(Flag("never_run", at=expected))
        elif f.last_started_at < expected:
            out.append(Flag("overdue", at=expected))
    if f.last_status == "running" and f.last_started_at is not None:
        elapsed = now - f.last_started_at
        limits = [t for t in (f.run_timeout,
                              f.usual_run * LONG_RUN_FACTOR + LONG_RUN_MARGIN if f.usual_run is not None else None)
                  if t is not None]
        if limits and elapsed > min(limits):
            out.append(Flag("long_running", at=f.last_started_at, number=round(elapsed.total_seconds() / 60)))
    if f.last_status == "failed":
        out.append(Flag("failed"))
    elif f.last_status == "succeeded_with_errors":
        out.append(Flag("with_errors"))
    if f.notices_stuck:
        out.append(Flag("stuck_notices", number=f.notices_stuck))
    if (f.capacity_percent or 0) >= NEAR_CAPACITY_PERCENT:
        out.append(Flag("near_capacity", number=round(f.capacity_percent or 0, 1)))
    return tuple(out)


def broken_file(problems: tuple[str, ...]) -> tuple[Flag, ...]:
    """A customer file that does not load: the one flag it gets, naming what is wrong."""
    return (Flag("broken", text="; ".join(problems)),)


def counts(all_flags: list[tuple[Flag, ...]]) -> dict[str, int]:
    """How many customers carry each flag, in FLAGS order (zeros included, so the page's header is stable)."""
    out = dict.fromkeys(FLAGS, 0)
    for row in all_flags:
        for code in {f.code for f in row}:
            out[code] += 1
    return out
