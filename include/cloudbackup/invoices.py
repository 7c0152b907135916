"""Invoices as records: issue a month's invoices once, queue their notices, export finance's CSV."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cloudbackup import notices
from cloudbackup.billing import BillingMonth, Invoice, bill
from cloudbackup.catalog import Catalog
from cloudbackup.db import insert_returning_id, to_db_time, utcnow
from cloudbackup.registry import Customer

log = logging.getLogger(__name__)

# Finance's month-end file: one row per invoice. Documented in README ("Month-end CSV").
INVOICE_CSV_COLUMNS = ["invoice_number", "customer_id", "customer_name", "billing_month", "sales_agent",
                       "subtotal", "tax", "total", "issued_at"]


@dataclass(frozen=True)
class MonthResult:
    issued: int         # invoices issued by this run
    unchanged: int      # already issued by an earlier run of the same month
    not_due: int        # customers with nothing to bill this month


def _next_invoice_number(conn: Connection) -> str:
    # Allocated inside the issuing transaction; the UNIQUE constraint refuses a concurrent duplicate.
    count = conn.execute(sa.text("SELECT COUNT(*) FROM invoices WHERE invoice_number IS NOT NULL")).scalar_one()
    return f"CB-{int(count) + 1:08d}"


def _issue(conn: Connection, customer: Customer, invoice: Invoice) -> str:
    now = to_db_time(utcnow())
    number = _next_invoice_number(conn)
    invoice_id = insert_returning_id(conn, (
        "INSERT INTO invoices (customer_id, billing_month, state, invoice_number, sales_agent, subtotal, tax, "
        "total, created_at, issued_at) VALUES (:c, :m, 'issued', :n, :a, :s, :t, :tot, :now, :now)"),
        {"c": customer.id, "m": str(invoice.billing_month), "n": number, "a": invoice.sales_agent,
         "s": invoice.subtotal, "t": invoice.tax, "tot": invoice.total, "now": now})
    conn.execute(sa.text("INSERT INTO invoice_lines (invoice_id, line_no, kind, description, amount, tax_rate) "
                         "VALUES (:i, :n, :k, :d, :a, :r)"),
                 [{"i": invoice_id, "n": n, "k": line.kind, "d": line.description, "a": line.amount,
                   "r": str(line.tax_rate)} for n, line in enumerate(invoice.lines, start=1)])
    notices.queue(conn, "invoice", customer, f"invoice:{customer.id}:{invoice.billing_month}",
                  {"invoice": invoice, "invoice_number": number, "billing_month": str(invoice.billing_month)})
    return number


def issue_month(engine: Engine, customers: list[Customer], catalog: Catalog, month: BillingMonth) -> MonthResult:
    """Issue each customer's invoice for `month`; a re-run changes nothing and queues nothing twice."""
    issued = unchanged = not_due = 0
    for customer in customers:
        invoice = bill(customer, catalog, month)
        if invoice is None:
            not_due += 1
            continue
        with engine.begin() as conn:
            exists = conn.execute(sa.text("SELECT invoice_number FROM invoices WHERE customer_id = :c AND "
                                          "billing_month = :m"), {"c": customer.id, "m": str(month)}).first()
            if exists:
                unchanged += 1
                continue
            number = _issue(conn, customer, invoice)
        issued += 1
        log.info("issued %s to %s for %s: total %d yen", number, customer.id, month, invoice.total)
    return MonthResult(issued, unchanged, not_due)


def month_frame(engine: Engine, customers: list[Customer], month: BillingMonth) -> pd.DataFrame:
    names = {c.id: c.name for c in customers}
    with engine.connect() as conn:
        frame = pd.read_sql_query(
            sa.text("SELECT invoice_number, customer_id, billing_month, sales_agent, subtotal, tax, total, "
                    "issued_at FROM invoices WHERE billing_month = :m AND state = 'issued' "
                    "ORDER BY invoice_number"), conn, params={"m": str(month)})
    frame.insert(2, "customer_name", frame["customer_id"].map(names).fillna(""))
    return frame[INVOICE_CSV_COLUMNS]


def write_month_csv(engine: Engine, customers: list[Customer], month: BillingMonth, out_dir: Path) -> Path:
    """`invoices-YYYY-MM.csv`, UTF-8 with BOM so Japanese Excel opens it; written whole, then renamed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"invoices-{month}.csv"
    partial = path.with_suffix(".csv.partial")
    month_frame(engine, customers, month).to_csv(partial, index=False, encoding="utf-8-sig", lineterminator="\r\n")
    partial.replace(path)
    return path
