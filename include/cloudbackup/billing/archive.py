"""The archive of issued invoices and credit notes (電子帳簿保存法: 電子取引データの保存).

Each issued document is archived in its issuing transaction (`keep`, called from `documents._issue_draft`): its
data as issued (canonical JSON with its sha256), search keys, who issued it and a retention date (7 years after
the end of the year of issue). Its PDF is the rendering of that data, stored once when first produced (`pdf`:
the invoice mail, a download) and never replaced. Nothing here updates or deletes an archived row (the database
refuses it too: migration 0009's triggers); a correction is a new document linked to the old. `verify`
recomputes every sha256, so a document changed behind our back is found. `search` finds documents by issue
date, amount range and counterparty. Every step lands in the audit trail (`invoice_archive_events`).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cloudbackup.billing import pdf as pdf_render
from cloudbackup.billing.invoice import Invoice
from cloudbackup.clock import utcnow
from cloudbackup.edges.db import from_db_time, to_db_time
from cloudbackup.registry.operator import OperatorSettings

RETENTION_YEARS = 7   # 電子帳簿保存法 / 法人税法: 7 years from the filing deadline; counted from the year's end here


def actor() -> str:
    """Who is acting: the Airflow task (its DAG and run) when run by Airflow, else the shell's user."""
    explicit = os.environ.get("CLOUDBACKUP_ACTOR")
    if explicit:
        return explicit
    dag, run = os.environ.get("AIRFLOW_CTX_DAG_ID"), os.environ.get("AIRFLOW_CTX_DAG_RUN_ID")
    if dag:
        return f"airflow:{dag}/{run or '?'}"
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def sha256(payload: str | bytes) -> str:
    return hashlib.sha256(payload.encode() if isinstance(payload, str) else payload).hexdigest()


def retain_until(issue_date: date) -> date:
    return date(issue_date.year + RETENTION_YEARS, 12, 31)


def document_data(invoice: Invoice, *, invoice_number: str, document_type: str, revision: int,
                  corrects_invoice_number: str | None, reason: str | None, issue_date: date,
                  payment_due_date: date, operator: OperatorSettings) -> dict[str, Any]:
    """Everything a qualified invoice (適格請求書) states, as issued: what the archive keeps and the PDF prints."""
    issuer = operator.issuer
    agent = operator.agent(invoice.sales_agent)
    month = invoice.billing_month
    return {
        "document_type": document_type, "invoice_number": invoice_number, "revision": revision,
        "corrects_invoice_number": corrects_invoice_number, "reason": reason,
        "issue_date": issue_date.isoformat(), "payment_due_date": payment_due_date.isoformat(),
        "billing_month": str(month), "period_from": month.first_day.isoformat(),
        "period_to": month.last_day.isoformat(),
        "issuer": {"name": issuer.name, "name_en": issuer.name_en, "registration_number": issuer.registration_number,
                   "address": issuer.address, "address_en": issuer.address_en},
        "recipient": {"customer_id": invoice.customer_id, "name": invoice.customer_name},
        "sales_agent": {"code": invoice.sales_agent, **agent.model_dump(mode="json")},
        "lines": [{"kind": line.kind, "description": line.description, "description_en": line.description_en,
                   "amount": line.amount, "tax_rate": str(line.tax_rate)} for line in invoice.lines],
        "tax_summary": [{"rate": str(s.rate), "subtotal": s.subtotal, "tax": s.tax} for s in invoice.tax_summary],
        "subtotal": invoice.subtotal, "tax": invoice.tax, "total": invoice.total,
    }


# The columns of an archive row and of an audit event, in one place: `keep` inserts one document, the month-end's
# batch path (billing.documents) copies many with the tuples `row` builds.
ROW_COLUMNS = ("invoice_id", "invoice_number", "document_type", "revision", "corrects_invoice_number", "customer_id",
               "counterparty_name", "sales_agent", "billing_month", "issue_date", "subtotal", "tax", "total",
               "data_json", "data_sha256", "issued_by", "archived_at", "retain_until")
EVENT_COLUMNS = ("at", "actor", "action", "invoice_number", "detail")


def row(invoice_id: int, invoice_number: str, document_type: str, revision: int, corrects: str | None,
        invoice: Invoice, issue_date: date, data_json: str, who: str, at: str) -> tuple[Any, ...]:
    """One archive row, in ROW_COLUMNS order: the document as issued, with its sha256 and how long it is kept."""
    return (invoice_id, invoice_number, document_type, revision, corrects, invoice.customer_id, invoice.customer_name,
            invoice.sales_agent, str(invoice.billing_month), issue_date.isoformat(), invoice.subtotal, invoice.tax,
            invoice.total, data_json, sha256(data_json), who, at, retain_until(issue_date).isoformat())


def _insert(conn: Connection, table: str, columns: tuple[str, ...], values: tuple[Any, ...]) -> None:
    conn.execute(sa.text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"),
                 dict(zip(columns, values, strict=True)))


def _event(conn: Connection, action: str, invoice_number: str, detail: str | None = None,
           who: str | None = None) -> None:
    _insert(conn, "invoice_archive_events", EVENT_COLUMNS,
            (to_db_time(utcnow()), who or actor(), action, invoice_number, detail))


def keep(conn: Connection, invoice_id: int, invoice: Invoice, invoice_number: str, issue_date: date,
         payment_due_date: date, operator: OperatorSettings) -> None:
    """Archive a document just issued, in the issuing transaction (a rollback takes the archive row with it)."""
    found = conn.execute(sa.text(
        "SELECT i.document_type, i.revision, i.reason, c.invoice_number AS corrects FROM invoices i "
        "LEFT JOIN invoices c ON c.id = i.corrects_invoice_id WHERE i.id = :i"), {"i": invoice_id}).one()
    data = document_data(invoice, invoice_number=invoice_number, document_type=found.document_type,
                         revision=int(found.revision), corrects_invoice_number=found.corrects, reason=found.reason,
                         issue_date=issue_date, payment_due_date=payment_due_date, operator=operator)
    who = actor()
    _insert(conn, "invoice_archive", ROW_COLUMNS,
            row(invoice_id, invoice_number, found.document_type, int(found.revision), found.corrects, invoice,
                issue_date, canonical(data), who, to_db_time(utcnow())))
    action = "corrected" if found.corrects else "issued"
    detail = (f"{found.document_type} correcting {found.corrects}: {found.reason}" if found.corrects
              else found.document_type)
    _event(conn, action, invoice_number, detail, who)


@dataclass(frozen=True)
class Archived:
    """One archived document as the archive holds it."""

    invoice_number: str
    document_type: str
    revision: int
    corrects_invoice_number: str | None
    customer_id: str
    counterparty_name: str
    sales_agent: str
    billing_month: str
    issue_date: date
    subtotal: int
    tax: int
    total: int
    data_sha256: str
    pdf_sha256: str | None
    issued_by: str
    retain_until: date

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "issue_date": self.issue_date.isoformat(),
                "retain_until": self.retain_until.isoformat()}


_COLUMNS = ("invoice_number, document_type, revision, corrects_invoice_number, customer_id, counterparty_name, "
            "sales_agent, billing_month, issue_date, subtotal, tax, total, data_sha256, pdf_sha256, issued_by, "
            "retain_until")


def _archived(r: Any) -> Archived:
    return Archived(r.invoice_number, r.document_type, int(r.revision), r.corrects_invoice_number, r.customer_id,
                    r.counterparty_name, r.sales_agent, r.billing_month, date.fromisoformat(r.issue_date),
                    int(r.subtotal), int(r.tax), int(r.total), r.data_sha256, r.pdf_sha256, r.issued_by,
                    date.fromisoformat(r.retain_until))


def search(engine: Engine, *, date_from: date | None = None, date_to: date | None = None,
           amount_min: int | None = None, amount_max: int | None = None, counterparty: str | None = None,
           limit: int = 1000) -> list[Archived]:
    """Archived documents by issue date (inclusive range), total in yen (inclusive range, tax included) and
    counterparty (customer id exactly, or a part of the recipient's name); any combination (電子帳簿保存法's
    search requirement: date, amount, counterparty, ranges for date and amount, combined)."""
    where: list[str] = ["1 = 1"]
    params: dict[str, object] = {"n": limit}
    for clause, key, value in (("issue_date >= :df", "df", date_from and date_from.isoformat()),
                               ("issue_date <= :dt", "dt", date_to and date_to.isoformat()),
                               ("total >= :amin", "amin", amount_min), ("total <= :amax", "amax", amount_max)):
        if value is not None:
            where.append(clause)
            params[key] = value
    if counterparty:
        where.append("(customer_id = :cp OR counterparty_name LIKE :cpl)")
        params["cp"], params["cpl"] = counterparty, f"%{counterparty}%"
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT {_COLUMNS} FROM invoice_archive WHERE {' AND '.join(where)} "
                                    "ORDER BY issue_date, invoice_number LIMIT :n"), params).all()
    return [_archived(r) for r in rows]


def data(engine: Engine, invoice_number: str) -> dict[str, Any]:
    """The document's data as archived, after checking its sha256."""
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT data_json, data_sha256 FROM invoice_archive WHERE invoice_number = :n"),
                           {"n": invoice_number}).first()
    if row is None:
        raise LookupError(f"no archived document {invoice_number}")
    if sha256(row.data_json) != row.data_sha256:
        raise TamperedError(f"archived document {invoice_number}: its data no longer matches its sha256")
    return json.loads(row.data_json)


class TamperedError(RuntimeError):
    """An archived document whose content no longer matches the sha256 recorded when it was archived."""


def pdf(engine: Engine, invoice_number: str, language: str | None = None) -> bytes:
    """The document's PDF: the stored one, checked against its sha256; rendered from the archived data and
    stored on first use (in `language`, default Japanese), never replaced afterwards."""
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT pdf, pdf_sha256 FROM invoice_archive WHERE invoice_number = :n"),
                           {"n": invoice_number}).first()
    if row is None:
        raise LookupError(f"no archived document {invoice_number}")
    if row.pdf is not None:
        content = bytes(row.pdf)
        if sha256(content) != row.pdf_sha256:
            raise TamperedError(f"archived document {invoice_number}: its PDF no longer matches its sha256")
        return content
    language = "en" if language == "en" else "ja"
    content = pdf_render.render(data(engine, invoice_number), language)
    with engine.begin() as conn:
        stored = conn.execute(sa.text("UPDATE invoice_archive SET pdf = :p, pdf_sha256 = :h, pdf_language = :l "
                                      "WHERE invoice_number = :n AND pdf IS NULL"),
                              {"p": content, "h": sha256(content), "l": language, "n": invoice_number})
        if stored.rowcount == 1:
            _event(conn, "pdf_stored", invoice_number, f"{language} sha256={sha256(content)}")
    if stored.rowcount != 1:   # another worker stored it first: theirs is the one kept
        return pdf(engine, invoice_number)
    return content


def notice_documents(engine: Engine, idempotency_key: str) -> list[str]:
    """The archived documents an invoice or correction mail carries, from its idempotency key
    (`invoice:<customer>:<YYYY-MM>[:r<n>]`): the revision's invoice and credit note, credit note first."""
    parts = idempotency_key.split(":")
    if len(parts) not in (3, 4) or parts[0] != "invoice":
        return []
    revision = int(parts[3].removeprefix("r")) if len(parts) == 4 else 0
    with engine.connect() as conn:
        return list(conn.execute(sa.text(
            "SELECT invoice_number FROM invoice_archive WHERE customer_id = :c AND billing_month = :m "
            "AND revision = :r ORDER BY CASE document_type WHEN 'credit_note' THEN 0 ELSE 1 END, invoice_number"),
            {"c": parts[1], "m": parts[2], "r": revision}).scalars())


@dataclass(frozen=True)
class Damage:
    invoice_number: str
    what: str     # data | pdf | missing


def verify(engine: Engine) -> list[Damage]:
    """Recompute the sha256 of every archived document's data and PDF; also finds an issued invoice that has
    no archive row. Logged in the audit trail."""
    found: list[Damage] = []
    with engine.connect() as conn:
        for r in conn.execute(sa.text("SELECT invoice_number, data_json, data_sha256, pdf, pdf_sha256 "
                                      "FROM invoice_archive ORDER BY invoice_number")):
            if sha256(r.data_json) != r.data_sha256:
                found.append(Damage(r.invoice_number, "data"))
            if r.pdf is not None and sha256(bytes(r.pdf)) != r.pdf_sha256:
                found.append(Damage(r.invoice_number, "pdf"))
        found += [Damage(n, "missing") for n in conn.execute(sa.text(
            "SELECT i.invoice_number FROM invoices i LEFT JOIN invoice_archive a ON a.invoice_id = i.id "
            "WHERE i.state = 'issued' AND a.id IS NULL ORDER BY i.invoice_number")).scalars()]
    with engine.begin() as conn:
        _event(conn, "verified", "*", f"{len(found)} damaged" + "".join(f"; {d.invoice_number}:{d.what}"
                                                                       for d in found[:20]))
    return found


@dataclass(frozen=True)
class Event:
    at: Any
    actor: str
    action: str
    invoice_number: str
    detail: str | None


def trail(engine: Engine, invoice_number: str | None = None, limit: int = 200) -> list[Event]:
    """The audit trail, oldest first: who issued, corrected, stored or verified what, and when."""
    where = "WHERE invoice_number = :n" if invoice_number else ""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT at, actor, action, invoice_number, detail FROM invoice_archive_events "
                                    f"{where} ORDER BY id LIMIT :lim"), {"n": invoice_number, "lim": limit}).all()
    return [Event(from_db_time(r.at), r.actor, r.action, r.invoice_number, r.detail) for r in rows]


__all__ = ["Archived", "Damage", "Event", "TamperedError", "actor", "data", "document_data",
           "keep", "notice_documents", "pdf", "search", "trail", "verify"]
