"""Run control, as rules over plain data: who may run a customer's backup now (the lease), which `running` records
belong to a dead worker (the sweeper), whether the contract still allows collection (art. 11, 12, 21(3)), and where
a restore may write on the customer's server (art. 16, 18(1)).

Pure: no database, SFTP or S3 here; `backup.records` and `tasks` apply these decisions at the edges.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum

from cloudbackup.backup.outcomes import SkipReason
from cloudbackup.clock import TOKYO
from cloudbackup.registry.customers import Customer

# Where a restore from the Airflow UI goes on the customer's own server: outside every designated area.
RESTORE_ROOT = "/restore"


@dataclass(frozen=True)
class Lease:
    """The run that may collect a customer now, until `expires_at` unless it renews (the heartbeat)."""

    customer_id: str
    run_key: str
    holder: str            # host and process, for the operator
    acquired_at: datetime
    expires_at: datetime

    def live(self, now: datetime) -> bool:
        return now < self.expires_at

    def describe(self) -> str:
        return (f"run {self.run_key!r} (worker {self.holder}) holds it since {self.acquired_at.isoformat()}, "
                f"lease until {self.expires_at.isoformat()}")


class LeaseDecision(StrEnum):
    TAKE = "take"     # nobody holds it, or the holder's lease lapsed (a dead worker): take it over
    RENEW = "renew"   # this very run holds it already (a resumed attempt with the same run key)
    BUSY = "busy"     # another run holds a live lease: wait, or refuse


def lease_decision(current: Lease | None, run_key: str, now: datetime) -> LeaseDecision:
    """One run per customer at a time (art. 17(1)): whatever starts a run, only the lease's holder collects."""
    if current is None or not current.live(now):
        return LeaseDecision.TAKE
    return LeaseDecision.RENEW if current.run_key == run_key else LeaseDecision.BUSY


@dataclass(frozen=True)
class RunningRecord:
    """A backup_runs row still `running`, with the lease of its customer (if any)."""

    run_id: int
    customer_id: str
    run_key: str
    started_at: datetime
    heartbeat_at: datetime | None


def dead_run_reason(run: RunningRecord, lease: Lease | None, now: datetime, lease_ttl: timedelta,
                    run_timeout: timedelta) -> str | None:
    """Why a `running` record is over though nobody finished it (its worker died, or it outlived every timeout),
    or None while its worker may still be at work. Worded for the operator (`backup_runs.detail`)."""
    last_sign = run.heartbeat_at or run.started_at
    holds_lease = lease is not None and lease.run_key == run.run_key and lease.live(now)
    if not holds_lease and now - last_sign > lease_ttl:
        return (f"worker lost: no heartbeat since {last_sign.isoformat()} and no live lease "
                f"(lease lifetime {int(lease_ttl.total_seconds())} s); marked failed by the sweeper")
    if now - run.started_at > run_timeout + lease_ttl:
        return (f"run outlived its time limit: started {run.started_at.isoformat()}, limit "
                f"{int(run_timeout.total_seconds())} s; marked failed by the sweeper")
    return None


def service_stop(customer: Customer, day: date) -> tuple[SkipReason, str] | None:
    """Why nothing may be collected on `day` (Tokyo calendar) under the contract timeline, with the operator's
    explanation; None while the service runs. After the last day of service (cancellation art. 11, termination
    art. 12, end of service art. 19) and after a cancellation before the start (art. 21(3)) the operator has no
    right to read the customer's server."""
    if customer.cancelled_before_start_on is not None and day >= customer.cancelled_before_start_on:
        return (SkipReason.CANCELLED_BEFORE_START,
                f"contract cancelled before the service start on {customer.cancelled_before_start_on} "
                "(art. 21(3)); nothing is collected")
    end = customer.contract_end
    if end is not None and day > end:
        return (SkipReason.CONTRACT_ENDED,
                f"the service ended on {end} (art. 11, 12, 19); nothing is collected after the last day of service")
    return None


def last_collection_moment(customer: Customer) -> datetime | None:
    """The end of the last day a backup may run (Asia/Tokyo), for the DAG's end_date; None while open-ended."""
    if customer.cancelled_before_start_on is not None:
        # Never started: the DAG ends where it starts (Airflow refuses an end before the start).
        return datetime.combine(customer.service_start_date, time(0, 0), TOKYO)
    end = customer.contract_end
    return datetime.combine(end, time.max, TOKYO) if end is not None else None


def inside_designated_areas(folder: str, designated: list[str]) -> bool:
    """Whether writing under `folder` on the customer's server can touch a designated area (art. 16): the folder is
    the root, or one of the areas, or inside one. A restore writes `<folder>/<path as backed up>`."""
    folder = posixpath.normpath("/" + folder.lstrip("/"))
    if folder == "/":
        return True
    for area in designated:
        area = posixpath.normpath(area)
        if area == "/" or folder == area or folder.startswith(area.rstrip("/") + "/"):
            return True
    return False


def ui_restore_folder(snapshot_id: str) -> str:
    """The folder a restore from the Airflow UI writes to on the customer's server when none is given."""
    return f"{RESTORE_ROOT}/{snapshot_id}"
