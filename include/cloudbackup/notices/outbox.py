"""The outbox: notices queued in the same transaction as the event that causes them (art. 28)."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloudbackup import settings
from cloudbackup.backup.capacity import CapacityBasis
from cloudbackup.backup.names import NamePolicy
from cloudbackup.clock import utcnow
from cloudbackup.edges.db import from_db_time, to_db_time
from cloudbackup.notices.kinds import (
    DIGEST_PATHS,
    CapacityNotice,
    CollectionErrorDigest,
    ErrorPath,
    ReasonCount,
    ServiceEnd,
    UsagePoint,
)
from cloudbackup.notices.templating import render
from cloudbackup.registry.customers import Customer, Suspension
from cloudbackup.registry.maintenance import Window
from cloudbackup.registry.operator import OperatorSettings, load_operator, operator_path

log = logging.getLogger(__name__)

CAPACITY_HISTORY_RUNS = 7   # points in the capacity notice's usage chart, this event included
# Used only when operator.yaml cannot be read (logged as an error): `.invalid` is reserved, never anyone's domain.
FALLBACK_MESSAGE_ID_DOMAIN = "notices.cloudbackup.invalid"


def message_id(idempotency_key: str, domain: str = FALLBACK_MESSAGE_ID_DOMAIN) -> str:
    """Stable per notice: every (re)send of one notice carries the same Message-ID, under the operator's domain."""
    return f"<{hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]}@{domain}>"


_operator_cache: dict[tuple[str, int], OperatorSettings] = {}


def operator_settings() -> OperatorSettings | None:
    """operator.yaml of the registry (cached while the file is unchanged); None, logged, if it cannot be read.

    A broken file must not undo the event that queues a notice (a backup run's records): the notice then names
    no sales agent and `cloudbackup registry check` reports the file.
    """
    path = operator_path()
    try:
        key = (str(path), path.stat().st_mtime_ns)
        if key not in _operator_cache:
            _operator_cache.clear()
            _operator_cache[key] = load_operator(path)
        return _operator_cache[key]
    except (OSError, ValueError) as exc:
        log.error("notices: operator settings unreadable, notices go without the sales agent's contact: %s", exc)
        return None


def name_policy() -> NamePolicy:
    """The operator's file-name policy (backup.yaml), worded in collection-error digests (art. 18(2))."""
    from cloudbackup.registry.backup_settings import load_backup_settings

    try:
        return load_backup_settings(settings.registry_dir() / "backup.yaml").name_policy
    except (OSError, ValueError) as exc:
        log.error("notices: backup.yaml unreadable, the digest words the default file-name policy: %s", exc)
        return NamePolicy()


@dataclass(frozen=True)
class PreparedNotice:
    """A notice rendered for the outbox but not yet inserted: the row `queue` / `queue_many` write."""

    kind: str
    customer_id: str
    recipient: str
    language: str
    subject: str
    text: str
    html: str
    idempotency_key: str
    message_id: str

    def replace(self, old: str, new: str) -> PreparedNotice:
        """The same notice with `old` replaced by `new` in its subject and bodies (a figure known only later,
        e.g. the invoice number allocated when the batch is written)."""
        return dataclasses.replace(self, subject=self.subject.replace(old, new), text=self.text.replace(old, new),
                                   html=self.html.replace(old, new))


def prepare(kind: str, customer: Customer, idempotency_key: str, context: dict[str, Any],
            operator: OperatorSettings | None = None) -> PreparedNotice:
    """Render a notice in the customer's language, with the sales agent's contact in the footer (operator.yaml,
    loaded if not given); touches no database, so it can run in a worker process."""
    language = customer.language.value
    operator = operator or operator_settings()
    agent = operator.sales_agents.get(customer.sales_agent) if operator else None
    if operator and agent is None:
        log.error("notices: customer %s has sales agent %r, not in operator.yaml: the %s notice names no agent",
                  customer.id, customer.sales_agent, kind)
    domain = operator.mail.message_id_domain if operator else FALLBACK_MESSAGE_ID_DOMAIN
    rendered = render(kind, language, {"customer": customer, "agent": agent, **context})
    return PreparedNotice(kind, customer.id, customer.notice_email, language, rendered.subject, rendered.text,
                          rendered.html, idempotency_key, message_id(idempotency_key, domain))


_PARAMS = ("kind", "c", "r", "lang", "s", "t", "h", "k", "m", "at")
_INSERT_SQL = ("INSERT INTO notices (kind, customer_id, recipient, language, subject, body_text, body_html, "
               "idempotency_key, message_id, created_at, attempts) VALUES ({}, 0) "
               "ON CONFLICT (idempotency_key) DO NOTHING")
_INSERT = _INSERT_SQL.format(", ".join(f":{p}" for p in _PARAMS))                  # SQLAlchemy
_INSERT_PYFORMAT = _INSERT_SQL.format(", ".join(f"%({p})s" for p in _PARAMS))      # psycopg, for the batch


def _params(notice: PreparedNotice, at: str) -> dict[str, Any]:
    return {"kind": notice.kind, "c": notice.customer_id, "r": notice.recipient, "lang": notice.language,
            "s": notice.subject, "t": notice.text, "h": notice.html, "k": notice.idempotency_key,
            "m": notice.message_id, "at": at}


def queue(conn: Connection, kind: str, customer: Customer, idempotency_key: str,
          context: dict[str, Any], operator: OperatorSettings | None = None) -> bool:
    """Add a notice to the outbox inside the caller's transaction; False if it was already queued.

    Rendered now, in the customer's language, so the record holds exactly the words that will be sent. Every
    notice's footer names the customer's sales agent and how to reach it (operator.yaml, loaded if not given).
    """
    exists = conn.execute(sa.text("SELECT 1 FROM notices WHERE idempotency_key = :k"),
                          {"k": idempotency_key}).first()
    if exists:
        return False
    notice = prepare(kind, customer, idempotency_key, context, operator)
    # ON CONFLICT: a concurrent writer of the same event gets False instead of a failed transaction.
    inserted = conn.execute(sa.text(_INSERT), _params(notice, to_db_time(utcnow())))
    if inserted.rowcount != 1:
        return False
    log.info("queued %s notice for customer %s (%s)", kind, customer.id, idempotency_key)
    return True


def queue_many(conn: Connection, notices: list[PreparedNotice], new_keys: bool = False) -> int:
    """Add prepared notices to the outbox in one batch, inside the caller's transaction (month-end billing
    queues ~100,000 invoice mails); a key already queued is skipped, as in `queue`. Returns how many were new.

    `new_keys`: the caller knows no notice of these events can be queued yet (the events are recorded in this same
    transaction); on PostgreSQL the rows are then COPYed, and a key already queued fails the transaction (the
    caller rolls back and queues them one by one) instead of being skipped.
    """
    if not notices:
        return 0
    at = to_db_time(utcnow())
    if conn.dialect.name == "postgresql":
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        with cursor as cur:
            if new_keys:
                with cur.copy("COPY notices (kind, customer_id, recipient, language, subject, body_text, body_html, "
                              "idempotency_key, message_id, created_at, attempts) FROM STDIN") as copy:
                    for n in notices:
                        copy.write_row((n.kind, n.customer_id, n.recipient, n.language, n.subject, n.text, n.html,
                                        n.idempotency_key, n.message_id, at, 0))
                new = len(notices)
            else:
                # psycopg's executemany pipelines the rows: one round trip for the batch, not one per notice.
                cur.executemany(_INSERT_PYFORMAT, [_params(n, at) for n in notices])
                new = cur.rowcount
    else:
        new = conn.execute(sa.text(_INSERT), [_params(n, at) for n in notices]).rowcount
    log.info("queued %d notice(s) in one batch (%d already queued)", new, len(notices) - new)
    return int(new)


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
                 {"digest": found, "name_policy": name_policy()})


def capacity_notice(conn: Connection, customer: Customer, capacity_event_id: int,
                    history_runs: int = CAPACITY_HISTORY_RUNS) -> CapacityNotice:
    """A capacity_events row with the contract figure of the customer's previous runs for the chart.

    The chart shows earlier runs measured on the event's basis only: a figure of the other basis is another
    quantity, and customers are told one.
    """
    event = conn.execute(sa.text("SELECT id, customer_id, backup_run_id, threshold_percent, counted_bytes, "
                                 "capacity_basis, stored_bytes, contract_capacity_bytes, recorded_at "
                                 "FROM capacity_events WHERE id = :e"), {"e": capacity_event_id}).first()
    _own_row(event, customer, f"capacity event {capacity_event_id}")
    recorded_at = from_db_time(event.recorded_at)
    # A worker still on the code before 0011 (a rolling upgrade) writes no contract figure: it compared stored bytes.
    basis = CapacityBasis(event.capacity_basis or CapacityBasis.STORED_BYTES)
    counted = event.stored_bytes if event.counted_bytes is None else event.counted_bytes
    not_this_run = "AND id <> :run " if event.backup_run_id is not None else ""
    earlier = conn.execute(sa.text(
        "SELECT started_at, counted_bytes FROM backup_runs WHERE customer_id = :c AND counted_bytes IS NOT NULL "
        f"AND capacity_basis = :basis AND started_at <= :t {not_this_run}ORDER BY started_at DESC LIMIT :n"),
        {"c": customer.id, "basis": basis, "t": to_db_time(recorded_at), "run": event.backup_run_id,
         "n": history_runs - 1}).all()
    history = [UsagePoint(from_db_time(r.started_at), int(r.counted_bytes)) for r in reversed(earlier)]
    history.append(UsagePoint(recorded_at, int(counted)))
    return CapacityNotice(int(event.threshold_percent), int(counted),
                          int(event.contract_capacity_bytes), recorded_at, tuple(history), basis)


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


def queue_service_end(conn: Connection, customers: list[Customer], end: ServiceEnd) -> int:
    """Queue the notice that the service (or a part of it) ends (art. 19(2)): one month ahead or more, which
    ServiceEnd itself checks; returns how many were new. Call it in the transaction that records the decision."""
    return sum(queue(conn, "service_end", c, f"service_end:{end.end_id}:{end.last_day.isoformat()}:{c.id}",
                     {"service_end": end}) for c in customers)
