"""Notices to customers (art. 28): rendered from Jinja2 templates, kept in an outbox, then sent."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy.engine import Connection, Engine

from cloudbackup import mail
from cloudbackup.connections import SmtpEndpoint
from cloudbackup.db import from_db_time, to_db_time, utcnow
from cloudbackup.registry import Customer

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5


def yen(amount: int) -> str:
    return f"¥{amount:,}"


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("cloudbackup", "templates"), undefined=StrictUndefined,
                      autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True)
    env.filters["yen"] = yen
    return env


ENV = _environment()


@dataclass(frozen=True)
class RenderedNotice:
    subject: str
    text: str
    html: str


def render(kind: str, language: str, context: dict[str, Any]) -> RenderedNotice:
    """Render `notices/<kind>.<lang>.{subject,txt,html}.j2`; an undefined variable is an error."""
    def part(suffix: str) -> str:
        return ENV.get_template(f"notices/{kind}.{language}.{suffix}.j2").render(context)
    return RenderedNotice(part("subject").strip(), part("txt"), part("html"))


def queue(conn: Connection, kind: str, customer: Customer, idempotency_key: str,
          context: dict[str, Any]) -> bool:
    """Add a notice to the outbox inside the caller's transaction; False if it was already queued."""
    exists = conn.execute(sa.text("SELECT 1 FROM notices WHERE idempotency_key = :k"),
                          {"k": idempotency_key}).first()
    if exists:
        return False
    rendered = render(kind, customer.language.value, {"customer": customer, **context})
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    conn.execute(sa.text(
        "INSERT INTO notices (kind, customer_id, recipient, subject, body_text, body_html, idempotency_key, "
        "message_id, created_at, attempts) VALUES (:kind, :c, :r, :s, :t, :h, :k, :m, :at, 0)"),
        {"kind": kind, "c": customer.id, "r": customer.notice_email, "s": rendered.subject,
         "t": rendered.text, "h": rendered.html, "k": idempotency_key,
         "m": f"<{digest}@cloudbackup.notices>", "at": to_db_time(utcnow())})
    return True


@dataclass(frozen=True)
class DeliveryReport:
    sent: int
    failed: int
    stuck: int


def deliver_pending(engine: Engine, ep: SmtpEndpoint) -> DeliveryReport:
    """Send every pending notice once; a refusal is recorded and retried later, up to MAX_ATTEMPTS."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT id, customer_id, recipient, subject, body_text, body_html, message_id, created_at "
            "FROM notices WHERE sent_at IS NULL AND attempts < :max ORDER BY created_at, id"),
            {"max": MAX_ATTEMPTS}).all()
    sent = failed = 0
    for row in rows:
        msg = mail.build_message(ep.sender, row.recipient, row.subject, row.body_text, row.body_html,
                                 row.message_id)
        try:
            mail.send(ep, [msg])
        except (OSError, mail.smtplib.SMTPException) as exc:
            failed += 1
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE notices SET attempts = attempts + 1, last_error = :e "
                                     "WHERE id = :id"), {"e": f"{type(exc).__name__}: {exc}"[:500], "id": row.id})
            log.warning("notice %s to customer %s not sent: %s", row.id, row.customer_id, exc)
            continue
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE notices SET attempts = attempts + 1, sent_at = :t, last_error = NULL "
                                 "WHERE id = :id"), {"t": to_db_time(utcnow()), "id": row.id})
        sent += 1
        log.info("notice %s (%s) sent to customer %s, queued at %s", row.id, row.subject, row.customer_id,
                 from_db_time(row.created_at))
    with engine.connect() as conn:
        stuck = conn.execute(sa.text("SELECT COUNT(*) FROM notices WHERE sent_at IS NULL AND attempts >= :m"),
                             {"m": MAX_ATTEMPTS}).scalar_one()
    return DeliveryReport(sent, failed, int(stuck))
