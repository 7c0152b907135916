"""Invoices as records: issue a month's qualified invoices once, numbered; correct by credit note + reissue."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cloudbackup.billing import BillingMonth, Invoice, InvoiceLine, LineKind, bill
from cloudbackup.billing.archive import keep as keep_in_archive
from cloudbackup.clock import utcnow
from cloudbackup.edges.db import insert_returning_id, to_db_time
from cloudbackup.notices import outbox
from cloudbackup.registry.catalog import Catalog
from cloudbackup.registry.customers import Customer
from cloudbackup.registry.operator import OperatorSettings

log = logging.getLogger(__name__)

INVOICE = "invoice"
CREDIT_NOTE = "credit_note"

@dataclass(frozen=True)
class MonthResult:
    issued: int         # invoices issued by this run
    unchanged: int      # already issued by an earlier run of the same month
    not_due: int        # customers with nothing to bill this month
    differing: list[str] = field(default_factory=list)   # issued earlier, but the registry now bills otherwise
    failed: list[str] = field(default_factory=list)      # customers not billed: see the log
    drafted: int = 0    # drafts written or refreshed by a draft-only run
    planned: dict[str, int] = field(default_factory=dict)   # dry run only: customer id → total it would bill


@dataclass(frozen=True)
class Document:
    """An issued invoice or credit note: the figures plus the qualified-invoice fields fixed at issue."""

    invoice: Invoice
    invoice_number: str
    document_type: str
    revision: int
    issue_date: date
    payment_due_date: date
    issuer_registration_number: str
    corrects_invoice_number: str | None = None


def _allocate_number(conn: Connection, operator: OperatorSettings) -> str:
    """The issuer's next invoice number, inside the issuing transaction: a rollback returns it, so the
    series has no gaps; the row update serialises concurrent issuers."""
    issuer = operator.issuer
    prefix = f"{issuer.invoice_number_prefix}-"
    number = conn.execute(sa.text("UPDATE invoice_number_sequences SET last_number = last_number + 1 "
                                  "WHERE issuer_registration_number = :r RETURNING last_number"),
                          {"r": issuer.registration_number}).scalar()
    if number is None:
        # First use of this issuer: continue after numbers issued before the sequence existed (0001 data).
        existing = conn.execute(sa.text("SELECT COUNT(*) FROM invoices WHERE invoice_number LIKE :p"),
                                {"p": prefix + "%"}).scalar_one()
        conn.execute(sa.text("INSERT INTO invoice_number_sequences (issuer_registration_number, last_number) "
                             "VALUES (:r, :n) ON CONFLICT (issuer_registration_number) DO NOTHING"),
                     {"r": issuer.registration_number, "n": int(existing)})
        number = conn.execute(sa.text("UPDATE invoice_number_sequences SET last_number = last_number + 1 "
                                      "WHERE issuer_registration_number = :r RETURNING last_number"),
                              {"r": issuer.registration_number}).scalar_one()
    return f"{prefix}{int(number):08d}"


def _insert_draft(conn: Connection, invoice: Invoice, document_type: str, revision: int,
                  corrects_id: int | None, reason: str | None) -> int:
    invoice_id = insert_returning_id(conn, (
        "INSERT INTO invoices (customer_id, billing_month, document_type, revision, corrects_invoice_id, state, "
        "recipient_name, sales_agent, subtotal, tax, total, reason, created_at) "
        "VALUES (:c, :m, :d, :rev, :corr, 'draft', :name, :a, :s, :t, :tot, :reason, :now)"),
        {"c": invoice.customer_id, "m": str(invoice.billing_month), "d": document_type, "rev": revision,
         "corr": corrects_id, "name": invoice.customer_name, "a": invoice.sales_agent, "s": invoice.subtotal,
         "t": invoice.tax, "tot": invoice.total, "reason": reason, "now": to_db_time(utcnow())})
    conn.execute(sa.text("INSERT INTO invoice_lines (invoice_id, line_no, kind, description, description_en, "
                         "amount, tax_rate) VALUES (:i, :n, :k, :d, :e, :a, :r)"),
                 [{"i": invoice_id, "n": n, "k": line.kind, "d": line.description, "e": line.description_en,
                   "a": line.amount, "r": str(line.tax_rate)} for n, line in enumerate(invoice.lines, start=1)])
    conn.execute(sa.text("INSERT INTO invoice_tax_summaries (invoice_id, tax_rate, subtotal, tax) "
                         "VALUES (:i, :r, :s, :t)"),
                 [{"i": invoice_id, "r": str(s.rate), "s": s.subtotal, "t": s.tax} for s in invoice.tax_summary])
    return invoice_id


def _issue_draft(conn: Connection, invoice_id: int, invoice: Invoice, operator: OperatorSettings,
                 issue_date: date) -> tuple[str, date]:
    """draft → issued: number, issuer and dates are fixed now, in the caller's transaction."""
    number = _allocate_number(conn, operator)
    due = operator.agent(invoice.sales_agent).payment.due_date(invoice.billing_month.last_day)
    updated = conn.execute(sa.text(
        "UPDATE invoices SET state = 'issued', invoice_number = :n, issuer_registration_number = :r, "
        "issuer_name = :name, issue_date = :d, payment_due_date = :due, issued_at = :now "
        "WHERE id = :i AND state = 'draft'"),
        {"n": number, "r": operator.issuer.registration_number, "name": operator.issuer.name,
         "d": issue_date.isoformat(), "due": due.isoformat(), "now": to_db_time(utcnow()), "i": invoice_id})
    if updated.rowcount != 1:
        raise RuntimeError(f"invoice {invoice_id} is not a draft: an issued invoice is never changed")
    keep_in_archive(conn, invoice_id, invoice, number, issue_date, due, operator)   # 電子帳簿保存法: billing/archive.py
    return number, due


def notice_context(document: Document, operator: OperatorSettings, replaces: dict | None = None) -> dict:
    """What the invoice templates render (the keys are listed at the top of each template)."""
    inv = document.invoice
    return {"invoice": inv, "invoice_number": document.invoice_number, "billing_month": inv.billing_month,
            "issue_date": document.issue_date, "payment_due_date": document.payment_due_date,
            "issuer": operator.issuer, "agent": operator.agent(inv.sales_agent), "tax_summary": inv.tax_summary,
            "replaces": replaces}


def _queue_notice(conn: Connection, customer: Customer, document: Document, operator: OperatorSettings,
                  replaces: dict | None = None) -> bool:
    month = document.invoice.billing_month
    key = f"invoice:{customer.id}:{month}" + (f":r{document.revision}" if document.revision else "")
    # A correction (credit note, and reissue unless nothing is due) has its own wording; an invoice alone is one.
    kind = "correction" if replaces else "invoice"
    return outbox.queue(conn, kind, customer, key, notice_context(document, operator, replaces), operator)


def _issue_invoice(conn: Connection, customer: Customer, invoice: Invoice, operator: OperatorSettings,
                   issue_date: date, revision: int = 0, corrects_id: int | None = None,
                   reason: str | None = None) -> Document:
    invoice_id = _insert_draft(conn, invoice, INVOICE, revision, corrects_id, reason)
    number, due = _issue_draft(conn, invoice_id, invoice, operator, issue_date)
    return Document(invoice, number, INVOICE, revision, issue_date, due, operator.issuer.registration_number)


def _stored_lines(conn: Connection, invoice_id: int) -> tuple[InvoiceLine, ...]:
    rows = conn.execute(sa.text("SELECT kind, description, description_en, amount, tax_rate FROM invoice_lines "
                                "WHERE invoice_id = :i ORDER BY line_no"), {"i": invoice_id}).all()
    return tuple(InvoiceLine(r.kind, r.description, int(r.amount), Decimal(r.tax_rate), r.description_en)
                 for r in rows)


def _current(conn: Connection, customer_id: str, month: BillingMonth):  # noqa: ANN202
    """The customer's latest document for the month (a row), or None: the latest revision's invoice, or its
    credit note when a correction left nothing due (the month is then fully credited)."""
    return conn.execute(sa.text(
        "SELECT id, state, revision, invoice_number, document_type FROM invoices WHERE customer_id = :c AND "
        "billing_month = :m ORDER BY revision DESC, CASE document_type WHEN 'invoice' THEN 0 ELSE 1 END LIMIT 1"),
        {"c": customer_id, "m": str(month)}).first()


def _bills_otherwise(conn: Connection, current, invoice: Invoice | None) -> bool:  # noqa: ANN001
    """Whether the registry now bills the month differently from the latest issued document."""
    if current.document_type == CREDIT_NOTE:
        return invoice is not None
    return invoice is None or _stored_lines(conn, current.id) != invoice.lines


def _delete_draft(conn: Connection, invoice_id: int) -> None:
    """Drafts are not documents yet: a stale one is replaced, never issued."""
    for table in ("invoice_lines", "invoice_tax_summaries"):
        conn.execute(sa.text(f"DELETE FROM {table} WHERE invoice_id = :i"), {"i": invoice_id})
    deleted = conn.execute(sa.text("DELETE FROM invoices WHERE id = :i AND state = 'draft'"), {"i": invoice_id})
    if deleted.rowcount != 1:
        raise RuntimeError(f"invoice {invoice_id} is not a draft: an issued invoice is never deleted")


def _draft_is_current(conn: Connection, draft_id: int, invoice: Invoice) -> bool:
    row = conn.execute(sa.text("SELECT recipient_name, sales_agent FROM invoices WHERE id = :i"),
                       {"i": draft_id}).one()
    return (row.recipient_name, row.sales_agent) == (invoice.customer_name, invoice.sales_agent) \
        and _stored_lines(conn, draft_id) == invoice.lines


def issue_month(engine: Engine, customers: list[Customer], catalog: Catalog, month: BillingMonth,
                operator: OperatorSettings, issue_date: date, dry_run: bool = False,
                draft_only: bool = False) -> MonthResult:
    """Issue each customer's invoice for `month`, one transaction per customer; a re-run changes nothing
    and queues nothing twice. A customer that cannot be billed is logged and the others go on.

    `draft_only` writes (or refreshes) drafts for review: no number, no email, not in the CSVs. A later
    run issues them; a draft that no longer matches the registry is replaced first. `dry_run` writes nothing.
    """
    issued = unchanged = not_due = drafted = 0
    planned: dict[str, int] = {}
    differing: list[str] = []
    failed: list[str] = []
    for customer in customers:
        try:
            invoice = bill(customer, catalog, month)
            if invoice is not None:
                operator.agent(invoice.sales_agent)
        except (KeyError, LookupError, ValueError) as exc:
            log.error("customer %s not billed for %s: %s", customer.id, month, exc)
            failed.append(customer.id)
            continue
        with engine.begin() as conn:
            current = _current(conn, customer.id, month)
            if current is not None and current.state == "issued":
                unchanged += 1
                if _bills_otherwise(conn, current, invoice):
                    differing.append(customer.id)
                    log.warning("%s for %s: invoice %s differs from what the registry bills now; correct it "
                                "with `cloudbackup billing correct`", customer.id, month, current.invoice_number)
                continue
            if dry_run:
                if invoice is None:
                    not_due += 1
                else:
                    issued += 1
                    planned[customer.id] = invoice.total
                continue
            draft_id = current.id if current is not None else None
            if draft_id is not None and (invoice is None or not _draft_is_current(conn, draft_id, invoice)):
                _delete_draft(conn, draft_id)
                draft_id = None
            if invoice is None:
                not_due += 1
                continue
            if draft_id is None:
                draft_id = _insert_draft(conn, invoice, INVOICE, 0, None, None)
            if draft_only:
                drafted += 1
                continue
            number, due = _issue_draft(conn, draft_id, invoice, operator, issue_date)
            document = Document(invoice, number, INVOICE, 0, issue_date, due, operator.issuer.registration_number)
            _queue_notice(conn, customer, document, operator)
        issued += 1
        log.info("issued %s to %s for %s: total %d yen", number, customer.id, month, invoice.total)
    return MonthResult(issued, unchanged, not_due, differing, failed, drafted, planned)


def credit_note_for(invoice: Invoice) -> Invoice:
    """The credit note reversing an issued invoice line by line (its tax mirrors the invoice's)."""
    lines = tuple(InvoiceLine(LineKind.CREDIT.value, f"取消: {line.description}", -line.amount, line.tax_rate,
                              f"Reversal: {line.describe('en')}") for line in invoice.lines)
    return Invoice(invoice.customer_id, invoice.billing_month, invoice.sales_agent, lines, invoice.customer_name)


@dataclass(frozen=True)
class Correction:
    credit_note_number: str | None     # None when the month was already fully credited
    reissue_number: str | None     # None when nothing is due any more for the month


def correct(engine: Engine, customer: Customer, catalog: Catalog, month: BillingMonth, operator: OperatorSettings,
            issue_date: date, reason: str) -> Correction:
    """Correct an issued invoice: a credit note for it, and a reissue billed from the registry as it is now.
    The issued invoice is never edited (qualified-invoice rule). A month already fully credited gets a new
    invoice alone."""
    if not reason.strip():
        raise ValueError("a correction needs a reason")
    with engine.begin() as conn:
        current = _current(conn, customer.id, month)
        if current is None or current.state != "issued":
            raise LookupError(f"customer {customer.id} has no issued invoice for {month} to correct")
        revision = int(current.revision) + 1
        reissue = bill(customer, catalog, month)
        if current.document_type == CREDIT_NOTE:
            if reissue is None:
                raise LookupError(f"customer {customer.id}: {month} is fully credited and nothing is due")
            # Nothing left to credit: a new invoice for the month, sent as an ordinary invoice.
            document = _issue_invoice(conn, customer, reissue, operator, issue_date, revision, current.id, reason)
            _queue_notice(conn, customer, document, operator)
            return Correction(None, document.invoice_number)
        old_row = conn.execute(sa.text("SELECT recipient_name, sales_agent FROM invoices WHERE id = :i"),
                               {"i": current.id}).one()
        old = Invoice(customer.id, month, old_row.sales_agent, _stored_lines(conn, current.id), old_row.recipient_name)
        credit = credit_note_for(old)
        credit_id = _insert_draft(conn, credit, CREDIT_NOTE, revision, current.id, reason)
        credit_number, _due = _issue_draft(conn, credit_id, credit, operator, issue_date)
        replaces = {"invoice_number": current.invoice_number, "credit_note_number": credit_number,
                    "credit_total": credit.total, "reason": reason}
        if reissue is None:
            # Nothing is due any more: the credit note alone settles it, and the customer is told so.
            empty = Document(credit, credit_number, CREDIT_NOTE, revision, issue_date, issue_date,
                             operator.issuer.registration_number, current.invoice_number)
            _queue_notice(conn, customer, empty, operator, replaces)
            return Correction(credit_number, None)
        document = _issue_invoice(conn, customer, reissue, operator, issue_date, revision, current.id, reason)
        _queue_notice(conn, customer, document, operator, replaces)
    log.info("corrected %s for %s: credit note %s, reissue %s", customer.id, month, credit_number,
             document.invoice_number)
    return Correction(credit_number, document.invoice_number)
