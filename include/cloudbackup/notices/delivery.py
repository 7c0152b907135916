"""Delivery: claim each pending notice, send it once over SMTP, record the outcome; flag the stuck ones."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cloudbackup.clock import utcnow
from cloudbackup.edges import smtp
from cloudbackup.edges.connections import SmtpEndpoint
from cloudbackup.edges.db import from_db_time, to_db_time
from cloudbackup.notices import outbox
from cloudbackup.registry.operator import OperatorSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard to try: N refusals make a notice stuck; waits between tries double up to a cap."""

    max_attempts: int = 5
    backoff: timedelta = timedelta(minutes=1)
    backoff_cap: timedelta = timedelta(hours=1)
    lease: timedelta = timedelta(minutes=10)   # a claim older than this is a crashed worker's
    batch: int = 500                           # notices per pass
    claim_chunk: int = 50                      # notices claimed per transaction

    @classmethod
    def from_env(cls) -> DeliveryPolicy:
        env = os.environ
        return cls(max_attempts=int(env.get("CLOUDBACKUP_NOTICE_MAX_ATTEMPTS", cls.max_attempts)),
                   backoff=timedelta(seconds=float(env.get("CLOUDBACKUP_NOTICE_BACKOFF_SECONDS", 60))),
                   lease=timedelta(seconds=float(env.get("CLOUDBACKUP_NOTICE_LEASE_SECONDS", 600))))

    def next_attempt(self, attempts: int, now: datetime) -> datetime:
        return now + min(self.backoff_cap, self.backoff * 2 ** max(0, attempts - 1))


MAX_ATTEMPTS = DeliveryPolicy.max_attempts
STUCK_LOGGED = 20


@dataclass(frozen=True)
class Outcome:
    """One notice handled by one delivery pass: sent, or refused (and whether that made it stuck)."""

    id: int
    kind: str
    customer_id: str
    recipient: str
    message_id: str
    attempts: int
    at: datetime
    error: str | None = None
    stuck: bool = False


@dataclass(frozen=True)
class DeliveryReport:
    sent: int
    failed: int            # refused this pass, will be retried after backoff
    stuck: int             # all notices flagged stuck (not only this pass's)
    pending: int = 0       # unsent, not stuck, after this pass
    unavailable: str | None = None   # why the pass stopped early: SMTP unreachable
    outcomes: tuple[Outcome, ...] = field(default=())


def _due_ids(engine: Engine, now: datetime, policy: DeliveryPolicy) -> list[int]:
    with engine.connect() as conn:
        return [int(r.id) for r in conn.execute(sa.text(
            "SELECT id FROM notices WHERE sent_at IS NULL AND stuck_at IS NULL "
            "AND (next_attempt_at IS NULL OR next_attempt_at <= :now) "
            "AND (claimed_until IS NULL OR claimed_until <= :now) ORDER BY created_at, id LIMIT :n"),
            {"now": to_db_time(now), "n": policy.batch})]


def _claim(engine: Engine, ids: list[int], token: str, now: datetime, policy: DeliveryPolicy) -> list:
    """Take these notices for this pass (a lease), committed before any is sent; the ones another worker
    holds, or that were sent meanwhile, are left out. Each row comes with the claim it had before."""
    expanding = sa.bindparam("ids", expanding=True)
    with engine.begin() as conn:
        before = {int(r.id): r.claimed_until for r in conn.execute(
            sa.text("SELECT id, claimed_until FROM notices WHERE id IN :ids").bindparams(expanding), {"ids": ids})}
        conn.execute(sa.text(
            "UPDATE notices SET claim_token = :tok, claimed_until = :until, last_attempt_at = :now "
            "WHERE id IN :ids AND sent_at IS NULL AND stuck_at IS NULL "
            "AND (claimed_until IS NULL OR claimed_until <= :now)").bindparams(expanding),
            {"tok": token, "until": to_db_time(now + policy.lease), "now": to_db_time(now), "ids": ids})
        rows = conn.execute(sa.text(
            "SELECT id, kind, customer_id, recipient, language, subject, body_text, body_html, message_id, attempts, "
            "idempotency_key "
            "FROM notices WHERE claim_token = :tok AND id IN :ids ORDER BY created_at, id").bindparams(expanding),
            {"tok": token, "ids": ids}).all()
    return [(row, before.get(int(row.id))) for row in rows]


def _release(engine: Engine, ids: list[int], token: str) -> None:
    if not ids:
        return
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE notices SET claim_token = NULL, claimed_until = NULL "
                             "WHERE id IN :ids AND claim_token = :tok").bindparams(sa.bindparam("ids", expanding=True)),
                     {"ids": ids, "tok": token})


def _mark_sent(engine: Engine, row, token: str, now: datetime) -> Outcome:  # noqa: ANN001
    with engine.begin() as conn:
        conn.execute(sa.text(
            "UPDATE notices SET sent_at = :now, attempts = attempts + 1, last_error = NULL, claim_token = NULL, "
            "claimed_until = NULL, next_attempt_at = NULL WHERE id = :id AND claim_token = :tok"),
            {"now": to_db_time(now), "id": row.id, "tok": token})
    return Outcome(row.id, row.kind, row.customer_id, row.recipient, row.message_id, row.attempts + 1, now)


def _mark_failed(engine: Engine, row, token: str, now: datetime, error: str,  # noqa: ANN001
                 policy: DeliveryPolicy) -> Outcome:
    attempts = row.attempts + 1
    stuck = attempts >= policy.max_attempts
    with engine.begin() as conn:
        conn.execute(sa.text(
            "UPDATE notices SET attempts = :a, last_error = :e, claim_token = NULL, claimed_until = NULL, "
            "next_attempt_at = :next, stuck_at = :stuck WHERE id = :id AND claim_token = :tok"),
            {"a": attempts, "e": error[:1000], "next": to_db_time(policy.next_attempt(attempts, now)),
             "stuck": to_db_time(now) if stuck else None, "id": row.id, "tok": token})
    return Outcome(row.id, row.kind, row.customer_id, row.recipient, row.message_id, attempts, now, error, stuck)


def _log(o: Outcome) -> Outcome:
    if o.error is None:
        log.info("SENT notice %s %s to %s (customer %s) at %s, Message-ID %s", o.id, o.kind, o.recipient,
                 o.customer_id, o.at.isoformat(), o.message_id)
    elif o.stuck:
        log.error("STUCK notice %s %s to %s (customer %s) after %d attempts: %s — see `cloudbackup notices list "
                  "--state stuck`", o.id, o.kind, o.recipient, o.customer_id, o.attempts, o.error)
    else:
        log.warning("REFUSED notice %s %s to %s (customer %s), attempt %d: %s — will retry", o.id, o.kind,
                    o.recipient, o.customer_id, o.attempts, o.error)
    return o


def _display_names(operator: OperatorSettings | None) -> dict[str, str]:
    """The From display name per notice language, from operator.yaml's `mail` (none if it cannot be read)."""
    operator = operator or outbox.operator_settings()
    return {lang: operator.mail.display_name(lang) for lang in ("ja", "en")} if operator else {}


INVOICE_KINDS = ("invoice", "correction")


def _attachments(engine: Engine, row) -> list[tuple[str, bytes]]:  # noqa: ANN001
    """An invoice or correction mail carries the PDF of each document it announces (the qualified invoice,
    billing/pdf.py), from the archive, in the notice's language: rendered and archived on the first send."""
    if row.kind not in INVOICE_KINDS:
        return []
    from cloudbackup.billing import archive

    return [(f"{number}.pdf", archive.pdf(engine, number, row.language))
            for number in archive.notice_documents(engine, row.idempotency_key)]


def deliver_pending(engine: Engine, ep: SmtpEndpoint, policy: DeliveryPolicy | None = None,
                    now: Callable[[], datetime] = utcnow, operator: OperatorSettings | None = None) -> DeliveryReport:
    """Send every due notice at most once per pass; refusals wait with backoff, N refusals make it stuck.

    Notices are claimed (committed, a few dozen at a time) before they are sent, and each is marked sent
    right after, in its own transaction: a task retried after sending finds it sent, or still claimed, and
    does not send it again.
    Only a worker dying between the SMTP server's acceptance and that commit leaves a claim to expire;
    the notice is then sent again with the same Message-ID (a lost notice is worse than a repeated one).
    """
    policy = policy or DeliveryPolicy.from_env()
    token = secrets.token_hex(16)
    outcomes: list[Outcome] = []
    unavailable: str | None = None
    due = _due_ids(engine, now(), policy)
    display_names = _display_names(operator) if due else {}
    with smtp.Session(ep) as session:
        for first in range(0, len(due), policy.claim_chunk):
            claimed = _claim(engine, due[first:first + policy.claim_chunk], token, now(), policy)
            for n, (row, earlier_claim) in enumerate(claimed):
                if earlier_claim is not None:
                    log.warning("notice %s: an earlier delivery claimed it and ended without an outcome; sending "
                                "again with the same Message-ID %s", row.id, row.message_id)
                try:
                    msg = smtp.build_message(ep.sender, row.recipient, row.subject, row.body_text, row.body_html,
                                             row.message_id, row.kind, display_names.get(row.language, ""))
                except (ValueError, TypeError) as exc:  # a recipient or subject no message can carry
                    outcomes.append(_log(_mark_failed(engine, row, token, now(), smtp.describe(exc), policy)))
                    continue
                try:
                    for name, content in _attachments(engine, row):
                        msg.add_attachment(content, maintype="application", subtype="pdf", filename=name)
                except (OSError, RuntimeError, LookupError, ValueError) as exc:  # font missing, archive damaged
                    outcomes.append(_log(_mark_failed(engine, row, token, now(), f"invoice PDF: {exc}", policy)))
                    continue
                try:
                    session.send(msg)
                except smtp.SmtpUnavailable as exc:
                    # The server, or our sender address, is the problem: no attempt counted against notices.
                    unavailable = str(exc)
                    _release(engine, [int(r.id) for r, _ in claimed[n:]], token)
                    break
                except smtp.MessageRefused as exc:
                    # This message refused (4xx/5xx); the session goes on with the next one.
                    outcomes.append(_log(_mark_failed(engine, row, token, now(), str(exc), policy)))
                    continue
                except smtp.ConnectionDropped as exc:
                    # Lost mid-message: the server did not accept it. Counted, so a message that always
                    # breaks the connection ends up stuck instead of blocking the queue forever.
                    outcomes.append(_log(_mark_failed(engine, row, token, now(), str(exc), policy)))
                    session.drop()
                    unavailable = str(exc)
                    _release(engine, [int(r.id) for r, _ in claimed[n + 1:]], token)
                    break
                outcomes.append(_log(_mark_sent(engine, row, token, now())))
            if unavailable:
                break
    if unavailable:
        log.warning("delivery stopped early, remaining notices wait for the next run: %s", unavailable)
    counts = outbox_counts(engine)
    if counts["stuck"]:
        # Every run says what is stuck, not only the run that gave up on it.
        for n in list_notices(engine, "stuck", limit=STUCK_LOGGED):
            log.warning("stuck since %s: notice %s %s to %s (customer %s), %d attempts, last error: %s",
                        n.stuck_at.isoformat() if n.stuck_at else "?", n.id, n.kind, n.recipient, n.customer_id,
                        n.attempts, n.last_error)
        if counts["stuck"] > STUCK_LOGGED:
            log.warning("… and %d more stuck notices", counts["stuck"] - STUCK_LOGGED)
    return DeliveryReport(sent=sum(o.error is None for o in outcomes),
                          failed=sum(o.error is not None and not o.stuck for o in outcomes),
                          stuck=counts["stuck"], pending=counts["pending"], unavailable=unavailable,
                          outcomes=tuple(outcomes))


def outbox_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT SUM(CASE WHEN sent_at IS NOT NULL THEN 1 ELSE 0 END) AS sent, "
            "SUM(CASE WHEN sent_at IS NULL AND stuck_at IS NULL THEN 1 ELSE 0 END) AS pending, "
            "SUM(CASE WHEN sent_at IS NULL AND stuck_at IS NOT NULL THEN 1 ELSE 0 END) AS stuck FROM notices")).one()
    return {"sent": int(row.sent or 0), "pending": int(row.pending or 0), "stuck": int(row.stuck or 0)}


@dataclass(frozen=True)
class NoticeRecord:
    """One outbox row as an operator sees it."""

    id: int
    kind: str
    customer_id: str
    recipient: str
    subject: str
    created_at: datetime
    sent_at: datetime | None
    attempts: int
    last_error: str | None
    stuck_at: datetime | None
    next_attempt_at: datetime | None

    @property
    def state(self) -> str:
        return "sent" if self.sent_at else "stuck" if self.stuck_at else "pending"


def list_notices(engine: Engine, state: str | None = None, customer_id: str | None = None,
                 limit: int = 50) -> list[NoticeRecord]:
    """Newest first; state one of sent | pending | stuck (or all)."""
    conditions = {"sent": "sent_at IS NOT NULL", "pending": "sent_at IS NULL AND stuck_at IS NULL",
                  "stuck": "sent_at IS NULL AND stuck_at IS NOT NULL", None: "1 = 1"}
    if state not in conditions:
        raise ValueError(f"state {state!r} must be one of sent, pending, stuck")
    where = conditions[state] + (" AND customer_id = :c" if customer_id else "")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT id, kind, customer_id, recipient, subject, created_at, sent_at, attempts, last_error, stuck_at, "
            f"next_attempt_at FROM notices WHERE {where} ORDER BY created_at DESC, id DESC LIMIT :n"),
            {"c": customer_id, "n": limit}).all()
    return [NoticeRecord(r.id, r.kind, r.customer_id, r.recipient, r.subject, from_db_time(r.created_at),
                         from_db_time(r.sent_at), int(r.attempts), r.last_error, from_db_time(r.stuck_at),
                         from_db_time(r.next_attempt_at)) for r in rows]


def retry_stuck(engine: Engine, notice_id: int) -> bool:
    """An operator puts a stuck notice back in the queue (after fixing the address, say); its attempts restart."""
    with engine.begin() as conn:
        done = conn.execute(sa.text(
            "UPDATE notices SET stuck_at = NULL, attempts = 0, next_attempt_at = NULL "
            "WHERE id = :id AND sent_at IS NULL AND stuck_at IS NOT NULL"), {"id": notice_id})
    if done.rowcount == 1:
        log.info("stuck notice %s queued again by an operator", notice_id)
    return done.rowcount == 1
