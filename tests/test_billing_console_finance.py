"""The console's finance pages show what the invoices state (issue 13, deliverable 5): the issue date printed on
the invoice, not when its row was written, and the month's consumption tax per rate (art. 25, 26)."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from billing_fixtures import CATALOG, contract

from cloudbackup.billing import BillingMonth
from cloudbackup.billing import documents as invoices
from cloudbackup.console import pages
from cloudbackup.console import queries as console
from cloudbackup.registry.operator import load_operator
from conftest import ROOT

OPERATOR = load_operator(ROOT / "dags" / "registry" / "operator.yaml")
OCT = BillingMonth(2026, 10)


def test_the_finance_pages_show_the_invoices_issue_date_not_when_the_row_was_written(engine: sa.Engine) -> None:
    """October billed by a run today with the issue date 2026-11-01: the console says 2026-11-01."""
    invoices.issue_month(engine, [contract("acme", service_start=date(2026, 9, 15))], CATALOG, OCT, OPERATOR,
                         date(2026, 11, 1))
    (row,) = console.month_invoices(engine, "2026-10")
    assert (row.issue_date, row.payment_due_date) == (date(2026, 11, 1), date(2026, 11, 30))
    assert row.issued_at is not None and row.issued_at.date() != date(2026, 11, 1)   # written today
    html = pages.render_finance(console.billing_months(engine), "2026-10", [row], {"acme": "Acme"})
    assert '<td class="small">2026-11-01</td>' in html
    detail, _lines = console.invoice_detail(engine, row.invoice_number)
    assert "2026-11-01" in pages.render_invoice(detail, _lines, "Acme")


def test_the_finance_page_lists_each_months_tax_per_rate(engine: sa.Engine) -> None:
    """Art. 25, 26: tax is computed per invoice per rate; the month shows each rate's taxable amount and tax."""
    customers = [contract("acme", service_start=date(2026, 9, 15)),
                 contract("beta", contract_date=date(2026, 7, 1), service_start=date(2026, 8, 15))]
    invoices.issue_month(engine, customers, CATALOG, OCT, OPERATOR, date(2026, 11, 1))
    (month,) = console.billing_months(engine)
    assert [(r.percent, r.subtotal, r.tax) for r in month.tax_by_rate] == [("10%", 50000, 5000)]
    assert sum(r.tax for r in month.tax_by_rate) == month.tax
    html = pages.render_finance([month], None, [], {})
    assert '<span class="small mute rate-tax">10%: ¥5,000 / ¥50,000</span>' in html
