"""The outbox: notices queued in the same transaction as the event that causes them (art. 28)."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloudbackup.clock import utcnow
from cloudbackup.edges.db import from_db_time, to_db_time
from cloudbackup.notices.kinds import (
    DIGEST_PATHS,
    CapacityNotice,
    CollectionErrorDigest,
    ErrorPath,
    ReasonCount,
    UsagePoint,
)
from cloudbackup.notices.templating import render
from cloudbackup.registry.customers import Customer, Suspension
from cloudbackup.registry.maintenance import Window

log = logging.getLogger(__name__)

CAPACITY_HISTORY_RUNS = 7   # points in the capacity notice's usage chart, this event included
MESSAGE_ID_DOMAIN = "cloudbackup.notices"


def message_id(idempotency_key: str) -> str:
    """Stable per notice: every (re)send of one notice carries the same Message-ID."""
    return f"<{hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]}@{MESSAGE_ID_DOMAIN}>"


def queue(conn: Connection, kind: str, customer: Customer, idempotency_key: str,
          context: dict[str, Any]) -> bool:
    """Add a notice to the outbox inside the caller's transaction; False if it was already queued.

    Rendered now, in the customer's language, so the record holds exactly the words that will be sent.
    """
    exists = conn.execute(sa.text("SELECT 1 FROM notices WHERE idempotency_key = :k"),
                          {"k": idempotency_key}).first()
    if exists:
        return False
    language = customer.language.value
    rendered = render(kind, language, {"customer": customer, **context})
    # ON CONFLICT: a concurrent writer of the same event gets False instead of a failed transaction.
    inserted = conn.execute(sa.text(
        "INSERT INTO notices (kind, customer_id, recipient, language, subject, body_text, body_html, "
        "idempotency_key, message_id, created_at, attempts) "
        "VALUES (:kind, :c, :r, :lang, :s, :t, :h, :k, :m, :at, 0) ON CONFLICT (idempotency_key) DO NOTHING"),
        {"kind": kind, "c": customer.id, "r": customer.notice_email, "lang": language, "s": rendered.subject,
         "t": rendered.text, "h": rendered.html, "k": idempotency_key, "m": message_id(idempotency_key),
         "at": to_db_time(utcnow())})
    if inserted.rowcount != 1:
        return False
    log.info("queued %s notice for customer %s (%s)", kind, customer.id, idempotency_key)
    return True


def _own_row(row: Any, customer: Customer, what: str) -> None:
    # Art. 33: a notice is built only from rows of its own customer; a mismatched id is a caller bug.
    if row is None:
        raise ValueError(f"{what} not found")
    if row.customer_id != customer.id:
        raise ValueError(f"{what} belongs to customer {row.customer_id!r}, not {customer.id!r}")


def collection_error_digest(conn: Connection, customer: Customer, backup_run_id: int,
                            limit: int = DIGEST_PATHS) -> CollectionErrorDigest | None:
    """The digest of one recorded run (backup_runs + collection_errors rows); None if it had no errors."""
    run = conn.execute(sa.text("SELECT id, customer_id, run_key, started_at, finished_at, files_collected "
                               "FROM backup_runs WHERE id = :r"), {"r": backup_run_id}).first()
    _own_row(run, customer, f"backup run {backup_run_id}")
    where = "WHERE backup_run_id = :r AND customer_id = :c"
    params = {"r": backup_run_id, "c": customer.id}
    counts = conn.execute(sa.text(f"SELECT reason, COUNT(*) AS n FROM collection_errors {where} "
                                  "GROUP BY reason ORDER BY COUNT(*) DESC, reason"), params).all()
    if not counts:
        return None
    first = conn.execute(sa.text(f"SELECT path, reason FROM collection_errors {where} ORDER BY path LIMIT :n"),
                         {**params, "n": limit}).all()
    return CollectionErrorDigest(
        run_key=run.run_key, started_at=from_db_time(run.started_at), finished_at=from_db_time(run.finished_at),
        files_collected=int(run.files_collected), error_count=sum(int(c.n) for c in counts),
        by_reason=tuple(ReasonCount(c.reason, int(c.n)) for c in counts),
        first_paths=tuple(ErrorPath(f.path, f.reason) for f in first))


def queue_collection_errors(conn: Connection, customer: Customer, backup_run_id: int) -> bool:
    """Queue the collection-error digest of a finished run (art. 17(2)); False if no errors or already queued.

    Call it in the transaction that records the run's collection errors.
    """
    found = collection_error_digest(conn, customer, backup_run_id)
    if found is None:
        return False
    return queue(conn, "collection_errors", customer, f"collection_errors:{customer.id}:run:{backup_run_id}",
                 {"digest": found})


def capacity_notice(conn: Connection, customer: Customer, capacity_event_id: int,
                    history_runs: int = CAPACITY_HISTORY_RUNS) -> CapacityNotice:
    """A capacity_events row with the stored volume of the customer's previous runs for the chart."""
    event = conn.execute(sa.text("SELECT id, customer_id, backup_run_id, threshold_percent, stored_bytes, "
                                 "contract_capacity_bytes, recorded_at FROM capacity_events WHERE id = :e"),
                         {"e": capacity_event_id}).first()
    _own_row(event, customer, f"capacity event {capacity_event_id}")
    recorded_at = from_db_time(event.recorded_at)
    not_this_run = "AND id <> :run " if event.backup_run_id is not None else ""
    earlier = conn.execute(sa.text(
        "SELECT started_at, stored_bytes FROM backup_runs WHERE customer_id = :c AND stored_bytes IS NOT NULL "
        f"AND started_at <= :t {not_this_run}ORDER BY started_at DESC LIMIT :n"),
        {"c": customer.id, "t": to_db_time(recorded_at), "run": event.backup_run_id,
         "n": history_runs - 1}).all()
    history = [UsagePoint(from_db_time(r.started_at), int(r.stored_bytes)) for r in reversed(earlier)]
    history.append(UsagePoint(recorded_at, int(event.stored_bytes)))
    return CapacityNotice(int(event.threshold_percent), int(event.stored_bytes),
                          int(event.contract_capacity_bytes), recorded_at, tuple(history))


def queue_capacity(conn: Connection, customer: Customer, capacity_event_id: int) -> bool:
    """Queue the notice of a recorded capacity threshold event (art. 17(3)); call it where the event is recorded."""
    notice = capacity_notice(conn, customer, capacity_event_id)
    return queue(conn, "capacity", customer, f"capacity:{customer.id}:event:{capacity_event_id}",
                 {"capacity": notice})


def queue_run_notices(conn: Connection, customer: Customer, backup_run_id: int) -> int:
    """Queue every notice one finished run caused: its collection-error digest and its capacity events.

    The backup engine calls this in the transaction that records the run's errors and capacity events.
    """
    events = conn.execute(sa.text("SELECT id FROM capacity_events WHERE backup_run_id = :r AND customer_id = :c "
                                  "ORDER BY threshold_percent, id"), {"r": backup_run_id, "c": customer.id}).all()
    queued = int(queue_collection_errors(conn, customer, backup_run_id))
    return queued + sum(queue_capacity(conn, customer, int(e.id)) for e in events)


def maintenance_key(window: Window, customer: Customer) -> str:
    # The period is part of the key: a rescheduled window is a new notice, the same one is never repeated.
    return f"maintenance:{window.id}:{window.start.isoformat()}/{window.end.isoformat()}:{customer.id}"


def queue_maintenance(conn: Connection, customers: list[Customer], window: Window) -> int:
    """Queue the advance notice of a maintenance window (art. 13(2)) to each customer; returns how many were new."""
    if not window.emergency and window.start <= utcnow():
        raise ValueError(f"maintenance {window.id!r} starts at {window.start.isoformat()}, not in the future: "
                         "an advance notice must precede the stop (mark it emergency otherwise)")
    return sum(queue(conn, "maintenance", c, maintenance_key(window, c), {"window": window}) for c in customers)


def queue_suspension(conn: Connection, customer: Customer, suspension: Suspension) -> bool:
    """Queue the notice of a customer's suspension (art. 14(2)) in the transaction that records it."""
    if suspension not in customer.suspensions:
        # Art. 33: a customer is told only of its own suspensions, as its registry file records them.
        raise ValueError(f"suspension from {suspension.from_} is not one of customer {customer.id!r}'s suspensions")
    key = f"suspension:{customer.id}:{suspension.from_.isoformat()}"
    return queue(conn, "suspension", customer, key, {"suspension": suspension})
