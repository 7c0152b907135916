"""Capacity (art. 6, 17(3)): stored bytes against the contract capacity, and threshold crossings."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cloudbackup.catalog import Catalog
from cloudbackup.db import to_db_time, transaction, utcnow
from cloudbackup.registry import Customer

DEFAULT_THRESHOLDS = (80, 90, 100)


def contract_capacity_bytes(customer: Customer, catalog: Catalog, day: date) -> int:
    """The capacity of the plan the customer uses on `day` (the first plan before its start)."""
    current = customer.plans[0]
    for change in customer.plans:
        if change.started_using_on <= day:
            current = change
    return catalog.plan(current.plan).contract_capacity_bytes


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


def previous_stored_bytes(bind: Engine | Connection, customer_id: str, run_id: int) -> int | None:
    """Stored bytes measured by the customer's latest earlier run that measured them."""
    with transaction(bind) as conn:
        return conn.execute(sa.text(
            "SELECT stored_bytes FROM backup_runs WHERE customer_id = :c AND id <> :r AND stored_bytes IS NOT NULL "
            "ORDER BY finished_at DESC, id DESC LIMIT 1"), {"c": customer_id, "r": run_id}).scalar()


def record_crossings(bind: Engine | Connection, customer_id: str, run_id: int, stored_bytes: int, capacity_bytes: int,
                     thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS) -> list[int]:
    """Insert one capacity_events row per threshold crossed by this run; returns the thresholds."""
    crossed = crossings(previous_stored_bytes(bind, customer_id, run_id), stored_bytes, capacity_bytes, thresholds)
    if crossed:
        now = to_db_time(utcnow())
        with transaction(bind) as conn:
            conn.execute(sa.text(
                "INSERT INTO capacity_events (customer_id, backup_run_id, threshold_percent, stored_bytes, "
                "contract_capacity_bytes, recorded_at) VALUES (:c, :r, :t, :s, :cap, :now)"),
                [{"c": customer_id, "r": run_id, "t": t, "s": stored_bytes, "cap": capacity_bytes, "now": now}
                 for t in crossed])
    return crossed
