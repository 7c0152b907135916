"""Helpers for the notice tests: record events as the backup engine does, read captured mail."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import sqlalchemy as sa
from devtools.devstack import SmtpServer

from cloudbackup.clock import tokyo_date, utcnow
from cloudbackup.edges.connections import SmtpEndpoint
from cloudbackup.edges.db import insert_returning_id, to_db_time
from cloudbackup.registry.customers import Customer, Suspension

SENDER = "cloudbackup@operator.example.jp"


def endpoint(server: SmtpServer) -> SmtpEndpoint:
    return SmtpEndpoint(host="127.0.0.1", port=server.port, sender=SENDER)


def suspended(customer: Customer, reason: str, at: datetime | None = None) -> tuple[Customer, Suspension]:
    """The customer as its registry file reads once a suspension from `at`'s Tokyo day (default today) is
    added (art. 14), and that suspension: what `queue_suspension` takes."""
    suspension = Suspension.model_validate({"from": tokyo_date(at or utcnow()), "reason": reason})
    return customer.model_copy(update={"suspensions": [suspension]}), suspension


def record_run(conn: sa.Connection, customer_id: str, run_key: str, errors: list[tuple[str, str]],
               stored_bytes: int | None = None, started_at: datetime | None = None, files: int = 100,
               basis: str = "stored_bytes") -> int:
    """A finished backup run with its collection errors, as rows (the backup engine's records); the figure given
    is both its stored bytes and its contract figure, on `basis`."""
    start = started_at or datetime(2026, 11, 24, 17, 0, tzinfo=UTC)
    run_id = insert_returning_id(conn, (
        "INSERT INTO backup_runs (customer_id, run_key, status, started_at, finished_at, files_collected, "
        "bytes_collected, collection_error_count, stored_bytes, counted_bytes, capacity_basis) "
        "VALUES (:c, :k, :s, :t, :t, :f, 0, :n, :sb, :sb, :basis)"),
        {"c": customer_id, "k": run_key, "s": "succeeded_with_errors" if errors else "succeeded",
         "t": to_db_time(start), "f": files, "n": len(errors), "sb": stored_bytes,
         "basis": None if stored_bytes is None else basis})
    if errors:
        conn.execute(sa.text("INSERT INTO collection_errors (backup_run_id, customer_id, path, reason, detail, "
                             "recorded_at) VALUES (:r, :c, :p, :reason, '', :t)"),
                     [{"r": run_id, "c": customer_id, "p": p, "reason": r, "t": to_db_time(start)} for p, r in errors])
    return run_id


def record_capacity_event(conn: sa.Connection, customer_id: str, run_id: int | None, threshold: int,
                          stored_bytes: int, capacity_bytes: int, at: datetime | None = None,
                          basis: str = "stored_bytes") -> int:
    return insert_returning_id(conn, (
        "INSERT INTO capacity_events (customer_id, backup_run_id, threshold_percent, stored_bytes, counted_bytes, "
        "capacity_basis, contract_capacity_bytes, recorded_at) VALUES (:c, :r, :t, :s, :s, :basis, :cap, :at)"),
        {"c": customer_id, "r": run_id, "t": threshold, "s": stored_bytes, "cap": capacity_bytes, "basis": basis,
         "at": to_db_time(at or datetime(2026, 11, 24, 17, 30, tzinfo=UTC))})


def parse(path: Path) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(path.read_bytes())


def new_messages(server: SmtpServer, before: set[str] | None = None) -> list[EmailMessage]:
    return [parse(p) for p in sorted(server.maildir.glob("*.eml")) if p.name not in (before or set())]


def subject_of(msg: EmailMessage) -> str:
    # Python's parser keeps the space of a fold right after "Subject:"; a mail client does not.
    return str(msg["Subject"]).strip()


def text_of(msg: EmailMessage) -> str:
    return msg.get_body(("plain",)).get_content()


def html_of(msg: EmailMessage) -> str:
    return msg.get_body(("html",)).get_content()


def everything_in(msg: EmailMessage) -> str:
    """Headers and every decoded part: what a recipient can see."""
    parts = [f"{k}: {v}" for k, v in msg.items()]
    parts += [p.get_content() for p in msg.walk() if p.get_content_maintype() == "text"]
    return "\n".join(parts)
