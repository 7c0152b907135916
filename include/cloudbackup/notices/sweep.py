"""Backstop: queue the notices of recorded events and declared stops that have none yet (idempotent)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cloudbackup.clock import tokyo_date
from cloudbackup.edges.db import to_db_time
from cloudbackup.notices.outbox import maintenance_key, queue, queue_capacity, queue_collection_errors, queue_suspension
from cloudbackup.registry.customers import Customer
from cloudbackup.registry.maintenance import Window

log = logging.getLogger(__name__)

LOOKBACK = timedelta(days=7)   # older events are history, not news: never announced late by the sweep


@dataclass(frozen=True)
class SweepResult:
    collection_errors: int = 0
    capacity: int = 0
    maintenance: int = 0
    suspension: int = 0
    unknown_customers: tuple[str, ...] = ()


def queue_recorded_events(engine: Engine, customers: Sequence[Customer], now: datetime,
                          lookback: timedelta = LOOKBACK) -> SweepResult:
    """Digests of runs with collection errors and capacity events recorded since `now - lookback`."""
    by_id = {c.id: c for c in customers}
    since = to_db_time(now - lookback)
    with engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT id, customer_id FROM backup_runs WHERE collection_error_count > 0 "
                                    "AND finished_at >= :t ORDER BY id"), {"t": since}).all()
        events = conn.execute(sa.text("SELECT id, customer_id FROM capacity_events WHERE recorded_at >= :t "
                                      "ORDER BY id"), {"t": since}).all()
    unknown: set[str] = set()
    digests = capacity = 0
    for rows, what in ((runs, "run"), (events, "capacity")):
        for row in rows:
            customer = by_id.get(row.customer_id)
            if customer is None:
                unknown.add(row.customer_id)
                continue
            # One transaction per event: one customer's bad data never holds back the others' notices.
            try:
                with engine.begin() as conn:
                    if what == "run":
                        digests += queue_collection_errors(conn, customer, int(row.id))
                    else:
                        capacity += queue_capacity(conn, customer, int(row.id))
            except Exception:
                log.exception("could not queue the %s notice of %s %s", what, row.customer_id, row.id)
    for cid in sorted(unknown):
        log.warning("events of customer %s not announced: no such customer in the registry", cid)
    return SweepResult(collection_errors=digests, capacity=capacity, unknown_customers=tuple(sorted(unknown)))


def _affected(window: Window, customers: Sequence[Customer]) -> list[Customer]:
    first_day = tokyo_date(window.start)

    def served(c: Customer) -> bool:
        end = c.contract_end   # a contract over before the stop needs no notice of it
        return end is None or end >= first_day

    return [c for c in customers if (window.customers == "all" or c.id in window.customers) and served(c)]


def announce_maintenance(engine: Engine, customers: Sequence[Customer], windows: Iterable[Window],
                         now: datetime) -> int:
    """Advance notice (art. 13(2)) of every declared window still ahead; an emergency one while it lasts."""
    queued = 0
    for window in windows:
        if window.end <= now or (window.start <= now and not window.emergency):
            continue
        with engine.begin() as conn:
            queued += sum(queue(conn, "maintenance", c, maintenance_key(window, c), {"window": window})
                          for c in _affected(window, customers))
    return queued


def announce_suspensions(engine: Engine, customers: Sequence[Customer], today: date,
                         lookback: timedelta = LOOKBACK) -> int:
    """Notice (art. 14(2)) of each suspension in the registry that is ahead or began within the lookback."""
    queued = 0
    for customer in customers:
        for suspension in customer.suspensions:
            if suspension.from_ < today - lookback or (suspension.to is not None and suspension.to < today):
                continue
            with engine.begin() as conn:
                queued += queue_suspension(conn, customer, suspension)
    return queued
