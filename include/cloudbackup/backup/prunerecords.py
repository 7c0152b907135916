"""Prune records in the project's database (table prune_runs, snapshots.forgotten_at; migration 0012)."""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cloudbackup.backup import records
from cloudbackup.backup.pruner import PruneReport
from cloudbackup.clock import utcnow
from cloudbackup.edges.db import insert_returning_id, to_db_time, transaction

SUCCEEDED, FAILED = "succeeded", "failed"


def start_prune(bind: Engine | Connection, customer_id: str, run_key: str, policy: str) -> int:
    with transaction(bind) as conn:
        return insert_returning_id(
            conn, "INSERT INTO prune_runs (customer_id, run_key, policy, status, started_at) "
                  "VALUES (:c, :k, :p, 'running', :t)",
            {"c": customer_id, "k": run_key, "p": policy, "t": to_db_time(utcnow())})


def finish_prune(bind: Engine | Connection, prune_id: int, report: PruneReport) -> None:
    """The counts of a prune that ended, and its forgotten snapshots marked, in one transaction."""
    now = to_db_time(utcnow())
    with transaction(bind) as conn:
        conn.execute(sa.text(
            "UPDATE prune_runs SET status = :s, finished_at = :t, snapshots_before = :sb, snapshots_forgotten = :sf, "
            "objects_deleted = :od, packs_repacked = :pr, objects_held = :oh, bytes_before = :bb, bytes_freed = :bf, "
            "seconds = :sec WHERE id = :id"),
            {"s": SUCCEEDED, "t": now, "sb": report.snapshots, "sf": len(report.forgotten),
             "od": len(report.deleted_index) + len(report.deleted_objects), "pr": len(report.repacked),
             "oh": len(report.held), "bb": report.bytes_before, "bf": report.bytes_freed,
             "sec": json.dumps(report.seconds), "id": prune_id})
        # Every recorded snapshot no longer in the repository: this prune's, and those of an earlier prune that was
        # killed before it could record them (the lease held, no snapshot appeared meanwhile).
        records.mark_forgotten(conn, report.customer_id, set(report.kept))


def fail_prune(bind: Engine | Connection, prune_id: int, detail: str) -> None:
    with transaction(bind) as conn:
        conn.execute(sa.text("UPDATE prune_runs SET status = :s, finished_at = :t, detail = :d WHERE id = :id"),
                     {"s": FAILED, "t": to_db_time(utcnow()), "d": detail[:500], "id": prune_id})
