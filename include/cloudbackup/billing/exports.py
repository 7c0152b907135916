"""Finance's month-end files: the issued invoices and their lines as CSV (UTF-8 with BOM), from the database."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cloudbackup.billing.documents import Document
from cloudbackup.billing.months import BillingMonth

# Finance's month-end files (docs/billing.md, "Month-end CSV files for finance"). Column order is the file's.
INVOICE_CSV_COLUMNS = ["invoice_number", "document_type", "revision", "corrects_invoice_number", "customer_id",
                       "customer_name", "billing_month", "issue_date", "payment_due_date", "sales_agent",
                       "issuer_registration_number", "subtotal", "tax", "total", "issued_at"]
LINE_CSV_COLUMNS = ["invoice_number", "document_type", "customer_id", "billing_month", "sales_agent", "line_no",
                    "line_kind", "description", "tax_rate", "amount"]


# The documents of a month's CSV files: the month's invoices as first issued (revision 0), and the corrections
# (credit notes and reissues, revision ≥ 1) issued during the month, whatever month they correct: finance books a
# correction in the month it is issued, never back in the closed month it corrects. Each issued document is in
# exactly one month's files. issue_date is YYYY-MM-DD (Asia/Tokyo).
_IN_MONTH_CSV = ("{t}.state = 'issued' AND (({t}.revision = 0 AND {t}.billing_month = :m) "
                 "OR ({t}.revision > 0 AND {t}.issue_date >= :first AND {t}.issue_date <= :last))")


def _csv_frames_from_db(engine: Engine, month: BillingMonth) -> tuple[pd.DataFrame, pd.DataFrame]:
    params = {"m": str(month), "first": month.first_day.isoformat(), "last": month.last_day.isoformat()}
    with engine.connect() as conn:
        docs = pd.read_sql_query(sa.text(
            "SELECT i.invoice_number, i.document_type, i.revision, c.invoice_number AS corrects_invoice_number, "
            "i.customer_id, i.recipient_name AS customer_name, i.billing_month, i.issue_date, i.payment_due_date, "
            "i.sales_agent, i.issuer_registration_number, i.subtotal, i.tax, i.total, i.issued_at "
            "FROM invoices i LEFT JOIN invoices c ON c.id = i.corrects_invoice_id "
            f"WHERE {_IN_MONTH_CSV.format(t='i')} ORDER BY i.invoice_number"), conn, params=params)
        lines = pd.read_sql_query(sa.text(
            "SELECT i.invoice_number, i.document_type, i.customer_id, i.billing_month, i.sales_agent, l.line_no, "
            "l.kind AS line_kind, l.description, l.tax_rate, l.amount FROM invoice_lines l "
            f"JOIN invoices i ON i.id = l.invoice_id WHERE {_IN_MONTH_CSV.format(t='i')} "
            "ORDER BY i.invoice_number, l.line_no"), conn, params=params)
    docs["issued_at"] = pd.to_datetime(docs["issued_at"], utc=True, format="ISO8601").map(
        lambda t: t.isoformat() if pd.notna(t) else "")
    return docs, lines


def csv_frames(documents: list[Document]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Finance's two tables built straight from documents (the same columns as the files from the DB)."""
    rows, line_rows = [], []
    for d in documents:
        inv = d.invoice
        month = str(inv.billing_month)
        rows.append((d.invoice_number, d.document_type, d.revision, d.corrects_invoice_number, inv.customer_id,
                     inv.customer_name, month, d.issue_date.isoformat(), d.payment_due_date.isoformat(),
                     inv.sales_agent, d.issuer_registration_number, inv.subtotal, inv.tax, inv.total, ""))
        line_rows += [(d.invoice_number, d.document_type, inv.customer_id, month, inv.sales_agent, n, line.kind,
                       line.description, str(line.tax_rate), line.amount) for n, line in enumerate(inv.lines, start=1)]
    return (pd.DataFrame.from_records(rows, columns=INVOICE_CSV_COLUMNS),
            pd.DataFrame.from_records(line_rows, columns=LINE_CSV_COLUMNS))


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """UTF-8 with BOM (Japanese Excel opens it), CRLF; written whole, then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".csv.partial")
    frame.to_csv(partial, index=False, encoding="utf-8-sig", lineterminator="\r\n")
    partial.replace(path)
    return path


def write_month_csvs(engine: Engine, month: BillingMonth, out_dir: Path) -> tuple[Path, Path]:
    """`invoices-YYYY-MM.csv` (one row per invoice or credit note) and `invoice-lines-YYYY-MM.csv`."""
    docs, lines = _csv_frames_from_db(engine, month)
    return (write_csv(docs[INVOICE_CSV_COLUMNS], out_dir / f"invoices-{month}.csv"),
            write_csv(lines[LINE_CSV_COLUMNS], out_dir / f"invoice-lines-{month}.csv"))
