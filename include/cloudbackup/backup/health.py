"""Self-healing records (issue 11): damaged stored objects in the project's DB, from found to healed.

A damaged or missing pack or chunk, found by `cloudbackup backup verify` or by a backup run's rolling sample,
is a `damaged_objects` row. While it is open, the next run reuses nothing stored in it: its files are read
again from the server and stored afresh (`archiver.run_backup(damaged=...)`). The run whose snapshot no
longer depends on the object closes the row. Ops see it in the run's `detail`, the task log and the table.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cloudbackup.backup.checker import DamagedObject
from cloudbackup.clock import utcnow
from cloudbackup.edges.db import to_db_time, transaction

if TYPE_CHECKING:
    from cloudbackup.backup.archiver import BackupResult

log = logging.getLogger(__name__)

VERIFY = "verify"
SAMPLE = "sample"


def open_damage(bind: Engine | Connection, customer_id: str) -> set[str]:
    """Keys (relative to the customer's prefix) of the objects known damaged and not yet healed."""
    with transaction(bind) as conn:
        return set(conn.execute(sa.text("SELECT object_key FROM damaged_objects WHERE customer_id = :c "
                                        "AND healed_at IS NULL"), {"c": customer_id}).scalars())


def record_damage(bind: Engine | Connection, customer_id: str, damaged: Iterable[DamagedObject], found_by: str,
                  run_id: int | None = None) -> int:
    """One open row per damaged object (an object already open is not recorded twice); returns the new rows."""
    damaged = list(damaged)
    if not damaged:
        return 0
    now = to_db_time(utcnow())
    with transaction(bind) as conn:
        known = set(conn.execute(sa.text("SELECT object_key FROM damaged_objects WHERE customer_id = :c "
                                         "AND healed_at IS NULL"), {"c": customer_id}).scalars())
        new = [d for d in damaged if d.key not in known]
        if new:
            conn.execute(sa.text(
                "INSERT INTO damaged_objects (customer_id, object_key, reason, detail, found_by, found_at, "
                "found_by_run_id) VALUES (:c, :k, :r, :d, :b, :t, :run)"),
                [{"c": customer_id, "k": d.key, "r": d.reason, "d": d.detail[:500], "b": found_by, "t": now,
                  "run": run_id} for d in new])
    for d in new:
        log.error("%s: damaged stored object recorded (%s, found by %s): %s; the next backup run reads its files "
                  "again", customer_id, d.reason, found_by, d.key)
    return len(new)


def mark_healed(bind: Engine | Connection, customer_id: str, keys: Iterable[str], run_id: int | None,
                snapshot_id: str) -> int:
    keys = sorted(set(keys))
    if not keys:
        return 0
    now = to_db_time(utcnow())
    with transaction(bind) as conn:
        conn.execute(sa.text("UPDATE damaged_objects SET healed_at = :t, healed_by_run_id = :r, "
                             "healed_snapshot_id = :s WHERE customer_id = :c AND object_key = :k "
                             "AND healed_at IS NULL"),
                     [{"t": now, "r": run_id, "s": snapshot_id, "c": customer_id, "k": k} for k in keys])
    return len(keys)


def settle_run(bind: Engine | Connection, customer_id: str, run_id: int | None, result: BackupResult) -> str | None:
    """After a run with a snapshot: record what its sample found, close what it healed; the note for ops
    (the run's `detail`), or None when there was nothing to say."""
    found, healed, unhealed = result.damage_found, result.healed, result.unhealed
    record_damage(bind, customer_id, found, SAMPLE, run_id)
    mark_healed(bind, customer_id, healed, run_id, result.snapshot_id)
    if not (found or healed or unhealed):
        return None
    note = (f"self-healing: sample of {result.sampled_objects} stored object(s) found "
            f"{len(found)} damaged; {len(healed)} damaged object(s) healed (files read again and stored afresh)")
    if unhealed:
        note += f"; still used by the snapshot: {', '.join(unhealed[:5])}"
    log.warning("%s: %s", customer_id, note)
    return note
