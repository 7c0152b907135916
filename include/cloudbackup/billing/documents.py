"""Invoices as records: issue a month's qualified invoices once, numbered; correct by credit note + reissue."""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from time import perf_counter

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cloudbackup.billing import BillingMonth, Invoice, InvoiceLine, LineKind, archive, bill
from cloudbackup.billing.archive import keep as keep_in_archive
from cloudbackup.billing.invoice import payment_due_date
from cloudbackup.clock import utcnow
from cloudbackup.edges.db import insert_returning_id, to_db_time
from cloudbackup.notices import outbox
from cloudbackup.registry.catalog import Catalog
from cloudbackup.registry.customers import Customer, load_customer
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
    seconds: dict[str, float] = field(default_factory=dict)  # where the run's time went (docs/billing.md, Speed)


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


def _allocate_numbers(conn: Connection, operator: OperatorSettings, count: int = 1) -> list[str]:
    """The issuer's next `count` invoice numbers, inside the issuing transaction: a rollback returns them, so the
    series has no gaps; the row update serialises concurrent issuers."""
    issuer = operator.issuer
    prefix = f"{issuer.invoice_number_prefix}-"
    bump = sa.text("UPDATE invoice_number_sequences SET last_number = last_number + :k "
                   "WHERE issuer_registration_number = :r RETURNING last_number")
    last = conn.execute(bump, {"r": issuer.registration_number, "k": count}).scalar()
    if last is None:
        # First use of this issuer: continue after numbers issued before the sequence existed (0001 data).
        existing = conn.execute(sa.text("SELECT COUNT(*) FROM invoices WHERE invoice_number LIKE :p"),
                                {"p": prefix + "%"}).scalar_one()
        conn.execute(sa.text("INSERT INTO invoice_number_sequences (issuer_registration_number, last_number) "
                             "VALUES (:r, :n) ON CONFLICT (issuer_registration_number) DO NOTHING"),
                     {"r": issuer.registration_number, "n": int(existing)})
        last = conn.execute(bump, {"r": issuer.registration_number, "k": count}).scalar_one()
    return [f"{prefix}{n:08d}" for n in range(int(last) - count + 1, int(last) + 1)]


def _allocate_number(conn: Connection, operator: OperatorSettings) -> str:
    return _allocate_numbers(conn, operator, 1)[0]


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
    due = payment_due_date(operator.agent(invoice.sales_agent).payment, invoice.billing_month, issue_date)
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


# ---------------------------------------------------------------------------------------------------------------
# Issuing a month for the whole fleet.
#
# Each customer's month is first worked out away from the database (`_prepare`: read its file, apply the rules,
# render its invoice mail) — in worker processes for a large fleet, both cores busy — then written in batches:
# one transaction per batch of customers takes the batch's block of numbers, inserts the invoices, lines, tax
# blocks, archive rows and mails together (PostgreSQL: COPY). A batch that fails is rolled back whole (its
# numbers with it) and its customers are issued again one transaction each, so one bad customer costs only
# itself. Customers with a draft, and draft-only runs, take the one-transaction-per-customer path throughout.

NUMBER_PLACEHOLDER = "@@cloudbackup-invoice-number@@"   # in a mail rendered before its number is allocated
BATCH = 500                  # customers per worker task and per issuing transaction
PARALLEL_MIN = 1000          # fewer customers are worked out in this process
_WORKERS_ENV = "CLOUDBACKUP_BILLING_WORKERS"


def billing_workers() -> int:
    """Worker processes for a month-end run: $CLOUDBACKUP_BILLING_WORKERS, else one per core."""
    return max(1, int(os.environ.get(_WORKERS_ENV) or os.cpu_count() or 1))


@dataclass(frozen=True)
class _Job:
    items: Sequence[Customer | Path]   # customers, or their files (read by the workers)
    catalog: Catalog
    month: BillingMonth
    operator: OperatorSettings
    issue_date: date
    render: bool                       # issuing (not a dry or draft-only run): render the mails too
    issued: frozenset[str] = frozenset()   # customers whose month is issued already: nothing to render


@dataclass(frozen=True)
class _Prepared:
    """One customer's month, worked out without the database."""

    index: int                         # position in the run's list of customers
    customer_id: str
    invoice: Invoice | None = None
    payment_due_date: date | None = None
    notice: outbox.PreparedNotice | None = None   # with NUMBER_PLACEHOLDER where the number goes
    archive_json: str | None = None               # the archive's document data, NUMBER_PLACEHOLDER likewise
    error: str | None = None           # not billed: why
    broken_file: bool = False          # the customer file itself could not be read
    warnings: tuple[str, ...] = ()


def _prepare(job: _Job, index: int, seconds: dict[str, float]) -> _Prepared:
    t0 = perf_counter()
    item = job.items[index]
    if isinstance(item, Path):
        try:
            customer = load_customer(item)
        except ValueError as exc:
            return _Prepared(index, item.stem, error=str(exc), broken_file=True)
        finally:
            seconds["load_registry"] += perf_counter() - t0
    else:
        customer = item
    warnings = tuple(customer.timeline_warnings) if isinstance(item, Path) else ()
    t1 = perf_counter()
    try:
        invoice = bill(customer, job.catalog, job.month)
        due = None
        if invoice is not None:
            due = payment_due_date(job.operator.agent(invoice.sales_agent).payment, job.month, job.issue_date)
    except (KeyError, LookupError, ValueError) as exc:
        return _Prepared(index, customer.id, error=str(exc), warnings=warnings)
    finally:
        seconds["rules"] += perf_counter() - t1
    if invoice is None or due is None or not job.render or customer.id in job.issued:
        return _Prepared(index, customer.id, invoice, due, warnings=warnings)
    t2 = perf_counter()
    try:
        document = Document(invoice, NUMBER_PLACEHOLDER, INVOICE, 0, job.issue_date, due,
                            job.operator.issuer.registration_number)
        notice = outbox.prepare("invoice", customer, f"invoice:{customer.id}:{job.month}",
                                notice_context(document, job.operator), job.operator)
        data = archive.document_data(invoice, invoice_number=NUMBER_PLACEHOLDER, document_type=INVOICE, revision=0,
                                     corrects_invoice_number=None, reason=None, issue_date=job.issue_date,
                                     payment_due_date=due, operator=job.operator)
    except Exception as exc:  # noqa: BLE001 - a mail that cannot be rendered fails its customer, not the run
        return _Prepared(index, customer.id, error=f"invoice mail not rendered: {type(exc).__name__}: {exc}",
                         warnings=warnings)
    finally:
        seconds["render_mails"] += perf_counter() - t2
    return _Prepared(index, customer.id, invoice, due, notice, archive.canonical(data), warnings=warnings)


def _prepare_range(job: _Job, start: int, stop: int) -> tuple[list[_Prepared], dict[str, float]]:
    seconds = {"load_registry": 0.0, "rules": 0.0, "render_mails": 0.0}
    return [_prepare(job, i, seconds) for i in range(start, stop)], seconds


_WORKER_JOB: _Job | None = None     # set in the parent just before the workers fork; they inherit it


def _prepare_in_worker(start: int, stop: int) -> tuple[list[_Prepared], dict[str, float]]:
    assert _WORKER_JOB is not None
    return _prepare_range(_WORKER_JOB, start, stop)


def _worker_started() -> None:
    # A worker lives for one run: its templates are compiled once (inherited) and never re-checked on disk.
    from cloudbackup.notices import templating

    templating.ENV.auto_reload = False


def _prepared_batches(job: _Job, workers: int) -> Iterator[tuple[list[_Prepared], dict[str, float]]]:
    """The customers' prepared months in their order, a batch at a time; in `workers` processes when it pays."""
    global _WORKER_JOB
    ranges = deque((i, min(i + BATCH, len(job.items))) for i in range(0, len(job.items), BATCH))
    pending: deque[tuple[tuple[int, int], Future]] = deque()
    if workers > 1 and len(job.items) >= PARALLEL_MIN:
        _WORKER_JOB = job
        try:
            # fork: the workers inherit the customers, catalog and compiled templates instead of receiving them.
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                       initializer=_worker_started)
            with pool:
                while ranges or pending:
                    while ranges and len(pending) < 2 * workers:   # bounded: rendered mails are large
                        r = ranges.popleft()
                        pending.append((r, pool.submit(_prepare_in_worker, *r)))
                    r, future = pending[0]
                    result = future.result()
                    pending.popleft()
                    yield result
        except Exception as exc:  # noqa: BLE001 - a pool that cannot start or broke: finish in this process
            log.warning("billing workers unavailable (%s: %s); working out the remaining customers in this process",
                        type(exc).__name__, exc)
            ranges.extendleft(reversed([r for r, _future in pending]))
        finally:
            _WORKER_JOB = None
    while ranges:
        yield _prepare_range(job, *ranges.popleft())


def _month_state(engine: Engine, month: BillingMonth) -> dict[str, sa.Row]:
    """Each customer's latest document for the month (as `_current` picks it), read once for the whole run."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT customer_id, id, state, revision, invoice_number, document_type FROM invoices "
            "WHERE billing_month = :m ORDER BY customer_id, revision DESC, "
            "CASE document_type WHEN 'invoice' THEN 0 ELSE 1 END"), {"m": str(month)}).all()
    latest: dict[str, sa.Row] = {}
    for row in rows:
        latest.setdefault(row.customer_id, row)
    return latest


def _stored_lines_of(conn: Connection, invoice_ids: list[int]) -> dict[int, tuple[InvoiceLine, ...]]:
    found: dict[int, list[InvoiceLine]] = {i: [] for i in invoice_ids}
    for chunk in (invoice_ids[i:i + 1000] for i in range(0, len(invoice_ids), 1000)):
        rows = conn.execute(sa.text("SELECT invoice_id, kind, description, description_en, amount, tax_rate "
                                    "FROM invoice_lines WHERE invoice_id IN :ids ORDER BY invoice_id, line_no")
                            .bindparams(sa.bindparam("ids", expanding=True)), {"ids": chunk}).all()
        for r in rows:
            found[int(r.invoice_id)].append(InvoiceLine(r.kind, r.description, int(r.amount), Decimal(r.tax_rate),
                                                        r.description_en))
    return {i: tuple(lines) for i, lines in found.items()}


@dataclass
class _Tally:
    issued: int = 0
    unchanged: int = 0
    not_due: int = 0
    drafted: int = 0
    differing: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    planned: dict[str, int] = field(default_factory=dict)


def _copy_rows(conn: Connection, table: str, columns: str, rows: list[tuple]) -> None:
    if conn.dialect.name == "postgresql":
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        with cursor as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    names = [c.strip() for c in columns.split(",")]
    conn.execute(sa.text(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(':' + n for n in names)})"),
                 [dict(zip(names, row, strict=True)) for row in rows])


def _new_invoice_ids(conn: Connection, count: int) -> list[int]:
    if conn.dialect.name == "postgresql":
        return [int(i) for i in conn.execute(sa.text(
            "SELECT nextval(pg_get_serial_sequence('invoices', 'id')) FROM generate_series(1, :n)"),
            {"n": count}).scalars()]
    # SQLite: the number allocation before this was the transaction's first write and took the database's write
    # lock, so no one else inserts until the commit and these ids stay ours.
    top = int(conn.execute(sa.text("SELECT COALESCE(MAX(id), 0) FROM invoices")).scalar_one())
    seq = conn.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'invoices'")).scalar()
    start = max(top, int(seq or 0)) + 1
    return list(range(start, start + count))


def _issue_batch(conn: Connection, job: _Job, batch: list[_Prepared], seconds: dict[str, float]) -> list[str]:
    """Issue a batch of new invoices in the caller's transaction: numbers, rows, archive and mails together."""
    t0 = perf_counter()
    numbers = _allocate_numbers(conn, job.operator, len(batch))
    t1 = perf_counter()
    seconds["number"] += t1 - t0
    ids = _new_invoice_ids(conn, len(batch))
    issuer = job.operator.issuer
    now = to_db_time(utcnow())
    month, day = str(job.month), job.issue_date.isoformat()
    invoices, lines, taxes = [], [], []
    for p, invoice_id, number in zip(batch, ids, numbers, strict=True):
        inv = p.invoice
        assert inv is not None and p.payment_due_date is not None
        invoices.append((invoice_id, inv.customer_id, month, INVOICE, 0, "issued", number, issuer.registration_number,
                         issuer.name, inv.customer_name, inv.sales_agent, inv.subtotal, inv.tax, inv.total, day,
                         p.payment_due_date.isoformat(), now, now))
        lines += [(invoice_id, n, line.kind, line.description, line.description_en, line.amount, str(line.tax_rate))
                  for n, line in enumerate(inv.lines, start=1)]
        taxes += [(invoice_id, str(s.rate), s.subtotal, s.tax) for s in inv.tax_summary]
    _copy_rows(conn, "invoices", "id, customer_id, billing_month, document_type, revision, state, invoice_number, "
               "issuer_registration_number, issuer_name, recipient_name, sales_agent, subtotal, tax, total, "
               "issue_date, payment_due_date, created_at, issued_at", invoices)
    _copy_rows(conn, "invoice_lines", "invoice_id, line_no, kind, description, description_en, amount, tax_rate",
               lines)
    _copy_rows(conn, "invoice_tax_summaries", "invoice_id, tax_rate, subtotal, tax", taxes)
    _archive_batch(conn, job, batch, ids, numbers, now)
    t2 = perf_counter()
    seconds["insert"] += t2 - t1
    notices = []
    for p, number in zip(batch, numbers, strict=True):
        assert p.notice is not None
        notices.append(p.notice.replace(NUMBER_PLACEHOLDER, number))
    outbox.queue_many(conn, notices, new_keys=True)   # a key already queued rolls the batch back
    seconds["queue_mails"] += perf_counter() - t2
    return numbers


def _archive_batch(conn: Connection, job: _Job, batch: list[_Prepared], ids: list[int], numbers: list[str],
                   now: str) -> None:
    """The archive rows and audit events of a batch (what archive.keep writes for one invoice)."""
    who = archive.actor()
    rows, events = [], []
    for p, invoice_id, number in zip(batch, ids, numbers, strict=True):
        assert p.invoice is not None and p.archive_json is not None
        rows.append(archive.row(invoice_id, number, INVOICE, 0, None, p.invoice, job.issue_date,
                                p.archive_json.replace(NUMBER_PLACEHOLDER, number), who, now))
        events.append((now, who, "issued", number, INVOICE))
    _copy_rows(conn, "invoice_archive", ", ".join(archive.ROW_COLUMNS), rows)
    _copy_rows(conn, "invoice_archive_events", ", ".join(archive.EVENT_COLUMNS), events)


def _issue_one(engine: Engine, job: _Job, p: _Prepared, tally: _Tally, dry_run: bool, draft_only: bool) -> None:
    """One customer in its own transaction: drafts, and the customers of a batch that failed."""
    invoice = p.invoice
    with engine.begin() as conn:
        current = _current(conn, p.customer_id, job.month)
        if current is not None and current.state == "issued":
            tally.unchanged += 1
            if _bills_otherwise(conn, current, invoice):
                _report_differing(tally, p.customer_id, job.month, current.invoice_number)
            return
        if dry_run:
            if invoice is None:
                tally.not_due += 1
            else:
                tally.issued += 1
                tally.planned[p.customer_id] = invoice.total
            return
        draft_id = current.id if current is not None else None
        if draft_id is not None and (invoice is None or not _draft_is_current(conn, draft_id, invoice)):
            _delete_draft(conn, draft_id)
            draft_id = None
        if invoice is None:
            tally.not_due += 1
            return
        if draft_id is None:
            draft_id = _insert_draft(conn, invoice, INVOICE, 0, None, None)
        if draft_only:
            tally.drafted += 1
            return
        number, _due = _issue_draft(conn, draft_id, invoice, job.operator, job.issue_date)
        assert p.notice is not None
        outbox.queue_many(conn, [p.notice.replace(NUMBER_PLACEHOLDER, number)])
    tally.issued += 1
    log.info("issued %s to %s for %s: total %d yen", number, p.customer_id, job.month, invoice.total)


def _report_differing(tally: _Tally, customer_id: str, month: BillingMonth, number: str) -> None:
    tally.differing.append(customer_id)
    log.warning("%s for %s: invoice %s differs from what the registry bills now; correct it with "
                "`cloudbackup billing correct`", customer_id, month, number)


def _write_batch(engine: Engine, job: _Job, prepared: list[_Prepared], state: dict[str, sa.Row], tally: _Tally,
                 seconds: dict[str, float], dry_run: bool, draft_only: bool) -> None:
    fresh: list[_Prepared] = []       # nothing for the month yet: issued together
    alone: list[_Prepared] = []       # a draft exists, or a draft-only run: one transaction each
    issued_before: list[tuple[_Prepared, sa.Row]] = []
    for p in prepared:
        for warning in p.warnings:
            log.warning("%s", warning)
        if p.error is not None:
            if p.broken_file:
                log.error("customer file not billed until fixed: %s", p.error)
                tally.broken.append(p.customer_id)
            else:
                log.error("customer %s not billed for %s: %s", p.customer_id, job.month, p.error)
                tally.failed.append(p.customer_id)
            continue
        current = state.get(p.customer_id)
        if current is not None and current.state == "issued":
            issued_before.append((p, current))
        elif dry_run:
            if p.invoice is None:
                tally.not_due += 1
            else:
                tally.issued += 1
                tally.planned[p.customer_id] = p.invoice.total
        elif current is not None or (draft_only and p.invoice is not None):
            alone.append(p)
        elif p.invoice is None:
            tally.not_due += 1
        else:
            fresh.append(p)
    if issued_before:
        t0 = perf_counter()
        with engine.connect() as conn:
            stored = _stored_lines_of(conn, [int(row.id) for _p, row in issued_before
                                             if row.document_type != CREDIT_NOTE])
        for p, row in issued_before:
            tally.unchanged += 1
            differs = (p.invoice is not None if row.document_type == CREDIT_NOTE
                       else p.invoice is None or stored[int(row.id)] != p.invoice.lines)
            if differs:
                _report_differing(tally, p.customer_id, job.month, row.invoice_number)
        seconds["compare_issued"] += perf_counter() - t0
    if fresh:
        try:
            with engine.begin() as conn:
                numbers = _issue_batch(conn, job, fresh, seconds)
                t0 = perf_counter()
            seconds["commit"] += perf_counter() - t0
            tally.issued += len(fresh)
            log.info("issued %s … %s to %d customer(s) for %s", numbers[0], numbers[-1], len(fresh), job.month)
        except sa.exc.OperationalError:
            raise    # the database is unreachable: every customer would fail alike; the task retries
        except Exception as exc:  # noqa: BLE001 - rolled back whole: each customer again, in its own transaction
            log.warning("batch of %d customer(s) for %s rolled back (%s: %s); issuing them one by one",
                        len(fresh), job.month, type(exc).__name__, exc)
            alone = fresh + alone
    for p in alone:
        try:
            _issue_one(engine, job, p, tally, dry_run, draft_only)
        except sa.exc.OperationalError:
            raise
        except Exception as exc:  # noqa: BLE001 - rolled back: this customer is not billed, the others go on
            log.error("customer %s not billed for %s: %s: %s", p.customer_id, job.month, type(exc).__name__, exc)
            tally.failed.append(p.customer_id)


def issue_month(engine: Engine, customers: Sequence[Customer | Path], catalog: Catalog, month: BillingMonth,
                operator: OperatorSettings, issue_date: date, dry_run: bool = False,
                draft_only: bool = False, workers: int | None = None) -> MonthResult:
    """Issue each customer's invoice for `month`, all or nothing per customer; a re-run changes nothing and queues
    nothing twice. A customer that cannot be billed is logged and the others go on.

    `customers` are Customer objects or the paths of customer files, which the workers then read (a broken file
    is listed under `failed`, after the customers that could not be billed). `workers` processes (default
    `billing_workers()`) share the reading, the rules and the rendering when the fleet is large.

    `draft_only` writes (or refreshes) drafts for review: no number, no email, not in the CSVs. A later
    run issues them; a draft that no longer matches the registry is replaced first. `dry_run` writes nothing.
    """
    started = perf_counter()
    seconds: dict[str, float] = dict.fromkeys(("read_state", "load_registry", "rules", "render_mails", "waiting",
                                               "compare_issued", "number", "insert", "queue_mails", "commit"), 0.0)
    t0 = perf_counter()
    state = _month_state(engine, month)
    seconds["read_state"] = perf_counter() - t0
    job = _Job(list(customers), catalog, month, operator, issue_date, render=not (dry_run or draft_only),
               issued=frozenset(c for c, row in state.items() if row.state == "issued"))
    tally = _Tally()
    batches = _prepared_batches(job, billing_workers() if workers is None else workers)
    while True:
        t0 = perf_counter()
        got = next(batches, None)
        seconds["waiting"] += perf_counter() - t0
        if got is None:
            break
        prepared, worker_seconds = got
        for key, value in worker_seconds.items():
            seconds[key] += value
        _write_batch(engine, job, prepared, state, tally, seconds, dry_run, draft_only)
    seconds["total"] = perf_counter() - started
    return MonthResult(tally.issued, tally.unchanged, tally.not_due, tally.differing, tally.failed + tally.broken,
                       tally.drafted, tally.planned, {k: round(v, 3) for k, v in seconds.items()})


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
