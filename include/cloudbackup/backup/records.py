"""Backup-run records in the project's database: runs, collection errors, snapshots, capacity events.

Row meanings: a `collection_errors` row is one path of one run that was not collected (its reason a
`CollectionErrorReason`); a `capacity_events` row is one threshold the customer's contract figure
(`counted_bytes`, on the run's `capacity_basis`) crossed upwards in that run. Statuses and reasons are the
enums of `backup.outcomes`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cloudbackup.backup.capacity import DEFAULT_THRESHOLDS, CapacityBasis, crossings
from cloudbackup.backup.outcomes import CollectionError, RunStatus, SkipReason
from cloudbackup.backup.runcontrol import Lease, LeaseDecision, RunningRecord, dead_run_reason, lease_decision
from cloudbackup.clock import utcnow
from cloudbackup.edges.db import from_db_time, insert_returning_id, to_db_time, transaction


def start_run(bind: Engine | Connection, customer_id: str, run_key: str) -> int:
    """Open (or, on an Airflow retry, reopen) the record of one run; returns its id."""
    with transaction(bind) as conn:
        row = conn.execute(sa.text("SELECT id FROM backup_runs WHERE customer_id = :c AND run_key = :k"),
                           {"c": customer_id, "k": run_key}).first()
        if row:
            # A retry starts over: the errors of the failed attempt are not this attempt's.
            conn.execute(sa.text("DELETE FROM collection_errors WHERE backup_run_id = :r"), {"r": row.id})
            conn.execute(sa.text("DELETE FROM capacity_events WHERE backup_run_id = :r"), {"r": row.id})
            conn.execute(sa.text("UPDATE backup_runs SET status = :s, started_at = :t, finished_at = NULL, "
                                 "files_collected = 0, bytes_collected = 0, collection_error_count = 0, "
                                 "stored_bytes = NULL, counted_bytes = NULL, capacity_basis = NULL, "
                                 "skip_reason = NULL, detail = NULL WHERE id = :r"),
                         {"s": RunStatus.RUNNING, "t": to_db_time(utcnow()), "r": row.id})
            return int(row.id)
        return insert_returning_id(
            conn,
            "INSERT INTO backup_runs (customer_id, run_key, status, started_at) VALUES (:c, :k, :s, :t)",
            {"c": customer_id, "k": run_key, "s": RunStatus.RUNNING, "t": to_db_time(utcnow())})


def finish_run(bind: Engine | Connection, run_id: int, customer_id: str, *, files: int, bytes_: int,
               errors: list[CollectionError], stored_bytes: int | None,
               status: RunStatus | None = None, skip_reason: SkipReason | None = None,
               detail: str | None = None, counted_bytes: int | None = None,
               capacity_basis: CapacityBasis | None = None) -> RunStatus:
    """Close the run with its collection errors in one transaction; returns the final status.

    `stored_bytes` is the operator's figure (the customer's objects in S3); `counted_bytes` the contract figure on
    `capacity_basis` (art. 6, 17(3)), which capacity events compare with the contract capacity.

    `detail` is the operator's explanation (why it failed, which window skipped it): never shown to customers.
    """
    final = status or (RunStatus.SUCCEEDED_WITH_ERRORS if errors else RunStatus.SUCCEEDED)
    now = to_db_time(utcnow())
    with transaction(bind) as conn:
        if errors:
            conn.execute(
                sa.text("INSERT INTO collection_errors (backup_run_id, customer_id, path, reason, detail, "
                        "recorded_at) VALUES (:r, :c, :p, :reason, :d, :t)"),
                [{"r": run_id, "c": customer_id, "p": e.path, "reason": e.reason, "d": e.detail, "t": now}
                 for e in errors])
        conn.execute(sa.text("UPDATE backup_runs SET status = :s, finished_at = :t, files_collected = :f, "
                             "bytes_collected = :b, collection_error_count = :n, stored_bytes = :sb, "
                             "counted_bytes = :cb, capacity_basis = :basis, skip_reason = :sr, detail = :d "
                             "WHERE id = :r"),
                     {"s": final, "t": now, "f": files, "b": bytes_, "n": len(errors), "sb": stored_bytes,
                      "cb": counted_bytes, "basis": capacity_basis, "sr": skip_reason, "d": detail, "r": run_id})
    return final


def record_skipped(bind: Engine | Connection, customer_id: str, run_key: str, reason: SkipReason,
                   detail: str = "") -> int:
    """A run not collected (suspension, maintenance): recorded, never caught up later (art. 18(3))."""
    run_id = start_run(bind, customer_id, run_key)
    finish_run(bind, run_id, customer_id, files=0, bytes_=0, errors=[], stored_bytes=None,
               status=RunStatus.SKIPPED, skip_reason=reason, detail=detail or None)
    return run_id


def record_snapshot(bind: Engine | Connection, run_id: int, customer_id: str, snapshot_id: str, manifest_key: str, *,
                    file_count: int, total_bytes: int, files_read: int, bytes_uploaded: int) -> None:
    with transaction(bind) as conn:
        conn.execute(sa.text(
            "INSERT INTO snapshots (customer_id, backup_run_id, snapshot_id, manifest_key, file_count, total_bytes, "
            "files_read, bytes_uploaded, created_at) VALUES (:c, :r, :s, :k, :fc, :tb, :fr, :bu, :t)"),
            {"c": customer_id, "r": run_id, "s": snapshot_id, "k": manifest_key, "fc": file_count,
             "tb": total_bytes, "fr": files_read, "bu": bytes_uploaded, "t": to_db_time(utcnow())})


def previous_counted_bytes(bind: Engine | Connection, customer_id: str, run_id: int) -> int | None:
    """The contract figure of the customer's latest earlier run that recorded one.

    Whatever its basis: after the operator switches `capacity_basis`, the first run compares with the figure the
    customer was last measured (and notified) by, so a switch to a smaller figure repeats no notice, and a switch
    to a larger one notifies the thresholds it now passes.
    """
    with transaction(bind) as conn:
        return conn.execute(sa.text(
            "SELECT counted_bytes FROM backup_runs WHERE customer_id = :c AND id <> :r AND counted_bytes IS NOT NULL "
            "ORDER BY finished_at DESC, id DESC LIMIT 1"), {"c": customer_id, "r": run_id}).scalar()


def record_crossings(bind: Engine | Connection, customer_id: str, run_id: int, counted_bytes: int,
                     capacity_bytes: int, thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS, *,
                     basis: CapacityBasis, stored_bytes: int) -> list[int]:
    """Insert one capacity_events row per threshold the contract figure (`counted_bytes`, on `basis`) crossed in
    this run; the operator's stored bytes are kept beside it. Returns the thresholds."""
    crossed = crossings(previous_counted_bytes(bind, customer_id, run_id), counted_bytes, capacity_bytes, thresholds)
    if crossed:
        now = to_db_time(utcnow())
        with transaction(bind) as conn:
            conn.execute(sa.text(
                "INSERT INTO capacity_events (customer_id, backup_run_id, threshold_percent, counted_bytes, "
                "capacity_basis, stored_bytes, contract_capacity_bytes, recorded_at) "
                "VALUES (:c, :r, :t, :cb, :basis, :s, :cap, :now)"),
                [{"c": customer_id, "r": run_id, "t": t, "cb": counted_bytes, "basis": basis, "s": stored_bytes,
                  "cap": capacity_bytes, "now": now} for t in crossed])
    return crossed


# --- run control: the lease (one run per customer at a time), the heartbeat, the sweeper ---------------------------

def _lease(row: sa.Row | None) -> Lease | None:
    if row is None:
        return None
    return Lease(row.customer_id, row.run_key, row.holder, _time(row.acquired_at), _time(row.expires_at))


def _time(value: str | datetime) -> datetime:
    moment = from_db_time(value)
    assert moment is not None
    return moment


def current_lease(bind: Engine | Connection, customer_id: str) -> Lease | None:
    with transaction(bind) as conn:
        return _lease(conn.execute(sa.text("SELECT * FROM run_leases WHERE customer_id = :c"),
                                   {"c": customer_id}).first())


def acquire_lease(bind: Engine, customer_id: str, run_key: str, holder: str, ttl: timedelta,
                  now: datetime | None = None) -> Lease | None:
    """Take the customer's lease for `run_key`; None when taken, else the live lease of the run that holds it.

    Safe against any number of simultaneous takers on SQLite and PostgreSQL: each step is one write in its own
    transaction (no read-then-write to race on): an insert (the primary key lets one win), else a takeover that
    the database applies only while the rule of `runcontrol.lease_decision` says TAKE or RENEW (a lapsed lease, or
    this very run's), else the holder is read and reported.
    """
    now = now or utcnow()
    params = {"c": customer_id, "k": run_key, "h": holder, "a": to_db_time(now), "e": to_db_time(now + ttl),
              "now": to_db_time(now)}
    for _ in range(5):
        try:
            with bind.begin() as conn:
                conn.execute(sa.text("INSERT INTO run_leases (customer_id, run_key, holder, acquired_at, expires_at) "
                                     "VALUES (:c, :k, :h, :a, :e)"), params)
            return None
        except sa.exc.IntegrityError:
            pass   # someone holds (or held) it
        with bind.begin() as conn:
            if conn.execute(sa.text(
                    "UPDATE run_leases SET run_key = :k, holder = :h, acquired_at = :a, expires_at = :e "
                    "WHERE customer_id = :c AND (expires_at <= :now OR run_key = :k)"), params).rowcount:
                return None
        current = current_lease(bind, customer_id)
        if current is not None and lease_decision(current, run_key, now) is LeaseDecision.BUSY:
            return current
    raise RuntimeError(f"could not take or read the run lease of {customer_id} (it changed hands five times)")


def renew_lease(bind: Engine, customer_id: str, run_key: str, run_id: int | None, ttl: timedelta) -> bool:
    """The heartbeat: extend the lease and stamp the run; False when this run no longer holds the lease."""
    now = utcnow()
    with bind.begin() as conn:
        held = conn.execute(sa.text("UPDATE run_leases SET expires_at = :e WHERE customer_id = :c AND run_key = :k"),
                            {"e": to_db_time(now + ttl), "c": customer_id, "k": run_key}).rowcount
        if run_id is not None:
            conn.execute(sa.text("UPDATE backup_runs SET heartbeat_at = :t WHERE id = :r AND status = :s"),
                         {"t": to_db_time(now), "r": run_id, "s": RunStatus.RUNNING})
    return bool(held)


def release_lease(bind: Engine, customer_id: str, run_key: str) -> None:
    with bind.begin() as conn:
        conn.execute(sa.text("DELETE FROM run_leases WHERE customer_id = :c AND run_key = :k"),
                     {"c": customer_id, "k": run_key})


def fail_run(bind: Engine | Connection, run_id: int, detail: str) -> bool:
    """End a run that is still `running` as failed (its own failure path, or the sweeper); False if it had ended."""
    with transaction(bind) as conn:
        return bool(conn.execute(sa.text(
            "UPDATE backup_runs SET status = :f, finished_at = :t, detail = :d WHERE id = :r AND status = :running"),
            {"f": RunStatus.FAILED, "t": to_db_time(utcnow()), "d": detail[:500], "r": run_id,
             "running": RunStatus.RUNNING}).rowcount)


def sweep_dead_runs(bind: Engine, lease_ttl: timedelta, run_timeout: timedelta, customer_id: str | None = None,
                    now: datetime | None = None) -> list[tuple[int, str, str]]:
    """Mark `running` records whose worker died (or that outlived every timeout) as failed, and drop lapsed
    leases; returns (run id, customer id, why) per run swept."""
    now = now or utcnow()
    where, params = ("AND customer_id = :c", {"c": customer_id}) if customer_id else ("", {})
    with transaction(bind) as conn:
        rows = conn.execute(sa.text(f"SELECT id, customer_id, run_key, started_at, heartbeat_at FROM backup_runs "
                                    f"WHERE status = :s {where}"), {"s": RunStatus.RUNNING, **params}).all()
        leases = {row.customer_id: _lease(row)
                  for row in conn.execute(sa.text(f"SELECT * FROM run_leases WHERE 1 = 1 {where}"), params)}
    swept = []
    for row in rows:
        run = RunningRecord(int(row.id), row.customer_id, row.run_key, _time(row.started_at),
                            from_db_time(row.heartbeat_at))
        why = dead_run_reason(run, leases.get(run.customer_id), now, lease_ttl, run_timeout)
        if why and fail_run(bind, run.run_id, why):
            swept.append((run.run_id, run.customer_id, why))
    with transaction(bind) as conn:
        conn.execute(sa.text(f"DELETE FROM run_leases WHERE expires_at <= :now {where}"),
                     {"now": to_db_time(now), **params})
    return swept


def mark_forgotten(bind: Engine | Connection, customer_id: str, present: set[str]) -> int:
    """Mark every recorded snapshot of the customer not in `present` (the manifests still stored) as forgotten, so
    the console neither lists nor offers what can no longer be restored (prune, purge). Returns how many."""
    now = to_db_time(utcnow())
    with transaction(bind) as conn:
        recorded = conn.execute(sa.text("SELECT snapshot_id FROM snapshots WHERE customer_id = :c "
                                        "AND forgotten_at IS NULL"), {"c": customer_id}).scalars().all()
        gone = [sid for sid in recorded if sid not in present]
        if gone:
            conn.execute(sa.text("UPDATE snapshots SET forgotten_at = :t WHERE customer_id = :c AND snapshot_id = :s"),
                         [{"t": now, "c": customer_id, "s": sid} for sid in gone])
    return len(gone)

