"""Migration 0002 rebuilds the invoice tables and carries the invoices issued under 0001 over, on both databases."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from billing_fixtures import CATALOG, contract

from cloudbackup.billing import BillingMonth
from cloudbackup.billing import documents as invoices
from cloudbackup.clock import utcnow
from cloudbackup.edges import db
from cloudbackup.registry.operator import load_operator
from conftest import ROOT


def test_invoices_issued_before_0002_survive_it_and_their_numbers_continue(bare_engine: sa.Engine) -> None:
    assert db.migrate(bare_engine, target="0001") == ["0001_initial"]
    with bare_engine.begin() as conn:
        old_id = db.insert_returning_id(conn, (
            "INSERT INTO invoices (customer_id, billing_month, state, invoice_number, sales_agent, subtotal, tax, "
            "total, created_at, issued_at) VALUES ('old-co', '2026-09', 'issued', 'CB-00000001', 'kanto-it-sales', "
            "40000, 4000, 44000, :t, :t)"), {"t": db.to_db_time(utcnow())})
        conn.execute(sa.text("INSERT INTO invoice_lines (invoice_id, line_no, kind, description, amount, tax_rate) "
                             "VALUES (:i, 1, 'monthly_fee', 'old line', 40000, '0.10')"), {"i": old_id})

    assert "0002_billing" in db.migrate(bare_engine)

    with bare_engine.connect() as conn:
        carried = conn.execute(sa.text(
            "SELECT i.invoice_number, i.document_type, i.revision, i.total, l.description FROM invoices i "
            "JOIN invoice_lines l ON l.invoice_id = i.id")).all()
    assert [tuple(r) for r in carried] == [("CB-00000001", "invoice", 0, 44000, "old line")]
    operator = load_operator(ROOT / "dags" / "registry" / "operator.yaml")
    invoices.issue_month(bare_engine, [contract("new-co")], CATALOG, BillingMonth(2026, 10), operator,
                         date(2026, 11, 1))
    with bare_engine.connect() as conn:
        numbers = conn.execute(sa.text("SELECT invoice_number FROM invoices ORDER BY id")).scalars().all()
    assert numbers == ["CB-00000001", "CB-00000002"]
