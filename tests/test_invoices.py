"""Invoices as records on the real databases (SQLite and PostgreSQL): issued once, numbered without gaps per
issuer, corrected by credit note + reissue, exported for finance."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from billing_fixtures import CATALOG, contract
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudbackup.billing import BillingMonth, exports
from cloudbackup.billing import documents as invoices
from cloudbackup.registry.operator import load_operator
from conftest import ROOT

OPERATOR = load_operator(ROOT / "dags" / "registry" / "operator.yaml")
OCT = BillingMonth(2026, 10)
ISSUED_ON = date(2026, 11, 1)


def _rows(engine: sa.Engine, table: str, order: str = "id") -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY {order}")).all()]


def _customers(n: int = 3) -> list:
    return [contract(f"cust-{i}", service_start=date(2026, 9, 10 + i)) for i in range(n)]


def test_a_month_is_issued_numbered_in_sequence_and_each_customer_gets_one_email(engine: sa.Engine) -> None:
    result = invoices.issue_month(engine, _customers(), CATALOG, OCT, OPERATOR, ISSUED_ON)
    assert (result.issued, result.unchanged, result.not_due, result.failed) == (3, 0, 0, [])
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT customer_id, state, invoice_number, issuer_registration_number, issue_date, payment_due_date, "
            "subtotal, tax, total FROM invoices ORDER BY invoice_number")).all()
        summaries = conn.execute(sa.text("SELECT tax_rate, subtotal, tax FROM invoice_tax_summaries")).all()
        mails = conn.execute(sa.text("SELECT customer_id, idempotency_key FROM notices WHERE kind = 'invoice' "
                                     "ORDER BY customer_id")).all()
    assert [r.invoice_number for r in rows] == ["CB-00000001", "CB-00000002", "CB-00000003"]
    assert {(r.state, r.issuer_registration_number, r.issue_date, r.payment_due_date) for r in rows} == {
        ("issued", "T4010001234567", "2026-11-01", "2026-11-30")}
    assert {(r.subtotal, r.tax, r.total) for r in rows} == {(40000, 4000, 44000)}
    assert [tuple(s) for s in summaries] == [("0.10", 40000, 4000)] * 3
    assert [(m.customer_id, m.idempotency_key) for m in mails] == [
        (f"cust-{i}", f"invoice:cust-{i}:2026-10") for i in range(3)]


def test_a_rerun_changes_nothing_and_queues_nothing_twice(engine: sa.Engine) -> None:
    customers = _customers()
    invoices.issue_month(engine, customers, CATALOG, OCT, OPERATOR, ISSUED_ON)
    before = {t: _rows(engine, t) for t in ("invoices", "invoice_lines", "invoice_tax_summaries", "notices")}
    again = invoices.issue_month(engine, customers, CATALOG, OCT, OPERATOR, date(2026, 11, 5))
    assert (again.issued, again.unchanged, again.differing) == (0, 3, [])
    assert {t: _rows(engine, t) for t in before} == before


def test_an_issued_invoice_that_the_registry_now_bills_otherwise_is_reported_not_edited(engine: sa.Engine) -> None:
    (customer,) = _customers(1)
    invoices.issue_month(engine, [customer], CATALOG, OCT, OPERATOR, ISSUED_ON)
    before = _rows(engine, "invoices")
    moved = contract("cust-0", service_start=date(2026, 8, 25))      # service start corrected after issue
    result = invoices.issue_month(engine, [moved], CATALOG, OCT, OPERATOR, ISSUED_ON)
    assert result.differing == ["cust-0"] and result.issued == 0
    assert _rows(engine, "invoices") == before


def test_a_correction_is_a_credit_note_and_a_reissue_and_the_original_stays_as_issued(engine: sa.Engine) -> None:
    (customer,) = _customers(1)
    invoices.issue_month(engine, [customer], CATALOG, OCT, OPERATOR, ISSUED_ON)
    original = _rows(engine, "invoices")
    moved = contract("cust-0", service_start=date(2026, 8, 25))
    done = invoices.correct(engine, moved, CATALOG, OCT, OPERATOR, date(2026, 11, 10), "service start was 8/25")
    assert (done.credit_note_number, done.reissue_number) == ("CB-00000002", "CB-00000003")
    with engine.connect() as conn:
        docs = conn.execute(sa.text(
            "SELECT i.invoice_number, i.document_type, i.revision, c.invoice_number AS corrects, i.subtotal, i.tax, "
            "i.total FROM invoices i LEFT JOIN invoices c ON c.id = i.corrects_invoice_id ORDER BY i.id")).all()
        credit_lines = conn.execute(sa.text(
            "SELECT l.kind, l.amount FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id "
            "WHERE i.document_type = 'credit_note' ORDER BY l.line_no")).all()
        keys = conn.execute(sa.text("SELECT idempotency_key FROM notices ORDER BY id")).scalars().all()
    assert [tuple(d) for d in docs] == [
        ("CB-00000001", "invoice", 0, None, 40000, 4000, 44000),
        ("CB-00000002", "credit_note", 1, "CB-00000001", -40000, -4000, -44000),
        ("CB-00000003", "invoice", 1, "CB-00000001", 10000, 1000, 11000),
    ]
    assert [tuple(r) for r in credit_lines] == [("credit", -10000), ("credit", -30000)]
    assert _rows(engine, "invoices")[0] == original[0], "the issued invoice is never edited"
    assert keys == ["invoice:cust-0:2026-10", "invoice:cust-0:2026-10:r1"]
    # After the correction, a re-run of the month sees the reissue as current and changes nothing.
    rerun = invoices.issue_month(engine, [moved], CATALOG, OCT, OPERATOR, ISSUED_ON)
    assert (rerun.issued, rerun.unchanged, rerun.differing) == (0, 1, [])


def test_a_customer_that_cannot_be_billed_takes_no_number_and_the_others_go_on(engine: sa.Engine) -> None:
    good, stray = _customers(2)
    stray = stray.model_copy(update={"sales_agent": "unknown-agent"})
    result = invoices.issue_month(engine, [stray, good], CATALOG, OCT, OPERATOR, ISSUED_ON)
    assert result.failed == ["cust-1"] and result.issued == 1
    assert [r[7] for r in _rows(engine, "invoices")] == ["CB-00000001"]


def test_a_dry_run_writes_nothing(engine: sa.Engine) -> None:
    result = invoices.issue_month(engine, _customers(), CATALOG, OCT, OPERATOR, ISSUED_ON, dry_run=True)
    assert result.issued == 3 and result.planned == {"cust-0": 44000, "cust-1": 44000, "cust-2": 44000}
    assert _rows(engine, "invoices") == [] and _rows(engine, "notices") == []


def test_the_month_end_csvs_have_one_row_per_invoice_and_per_line_with_a_bom(engine: sa.Engine,
                                                                            tmp_path: Path) -> None:
    invoices.issue_month(engine, _customers(2), CATALOG, OCT, OPERATOR, ISSUED_ON)
    per_invoice, per_line = exports.write_month_csvs(engine, OCT, tmp_path)
    raw = per_invoice.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    rows = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
    assert list(rows[0]) == exports.INVOICE_CSV_COLUMNS
    assert [(r["invoice_number"], r["customer_id"], r["customer_name"], r["billing_month"], r["subtotal"], r["tax"],
             r["total"], r["sales_agent"]) for r in rows] == [
        ("CB-00000001", "cust-0", "顧客 cust-0", "2026-10", "40000", "4000", "44000", "kanto-it-sales"),
        ("CB-00000002", "cust-1", "顧客 cust-1", "2026-10", "40000", "4000", "44000", "kanto-it-sales")]
    assert rows[0]["issued_at"].endswith("+00:00")
    lines = list(csv.DictReader(per_line.read_text(encoding="utf-8-sig").splitlines()))
    assert list(lines[0]) == exports.LINE_CSV_COLUMNS
    assert [(r["invoice_number"], r["line_no"], r["line_kind"], r["amount"]) for r in lines] == [
        ("CB-00000001", "1", "monthly_fee", "10000"), ("CB-00000001", "2", "initial_fee", "30000"),
        ("CB-00000002", "1", "monthly_fee", "10000"), ("CB-00000002", "2", "initial_fee", "30000")]


def test_csv_frames_built_from_documents_match_the_columns_from_the_database() -> None:
    invoice = invoices.bill(contract(), CATALOG, OCT)
    doc = invoices.Document(invoice, "CB-00000009", "invoice", 0, ISSUED_ON, date(2026, 11, 30), "T4010001234567")
    docs, lines = exports.csv_frames([doc, doc])
    assert list(docs.columns) == exports.INVOICE_CSV_COLUMNS and list(lines.columns) == exports.LINE_CSV_COLUMNS
    assert docs["total"].tolist() == [44000, 44000] and lines["line_no"].tolist() == [1, 2, 1, 2]


@pytest.mark.servers
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(month_index=st.integers(0, 14), starts=st.lists(st.integers(0, 400), min_size=1, max_size=4),
       ends=st.lists(st.one_of(st.none(), st.integers(0, 400)), min_size=4, max_size=4))
def test_property_a_rerun_of_any_month_yields_identical_invoices_and_no_new_email(
        engine: sa.Engine, month_index: int, starts: list[int], ends: list[int | None]) -> None:
    """Art. 22(1) invoices close once a month: re-running any month, on any DB state, changes nothing."""
    month = BillingMonth(2026, 6).plus(month_index)
    customers = []
    for i, (offset, end) in enumerate(zip(starts, ends, strict=False)):
        start = date(2026, 5, 1) + timedelta(days=offset)
        timeline = {} if end is None else {
            "operator_termination": {"date": start + timedelta(days=end)}}
        customers.append(contract(f"p{i}", contract_date=start, service_start=start, **timeline))
    invoices.issue_month(engine, customers, CATALOG, month, OPERATOR, ISSUED_ON)
    before = {t: _rows(engine, t) for t in ("invoices", "invoice_lines", "invoice_tax_summaries", "notices")}
    before["sequences"] = _rows(engine, "invoice_number_sequences", order="issuer_registration_number")
    again = invoices.issue_month(engine, customers, CATALOG, month, OPERATOR, ISSUED_ON)
    assert again.issued == 0
    after = {t: _rows(engine, t) for t in ("invoices", "invoice_lines", "invoice_tax_summaries", "notices")}
    after["sequences"] = _rows(engine, "invoice_number_sequences", order="issuer_registration_number")
    assert after == before


def test_drafts_take_no_number_and_no_email_until_issued_and_a_stale_draft_is_replaced(engine: sa.Engine) -> None:
    """State draft → issued: the number and the email come only with the issue."""
    (customer,) = _customers(1)
    drafted = invoices.issue_month(engine, [customer], CATALOG, OCT, OPERATOR, ISSUED_ON, draft_only=True)
    assert (drafted.drafted, drafted.issued) == (1, 0)
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(sa.text("SELECT state, invoice_number, total FROM invoices"))] == [
            ("draft", None, 44000)]
        assert conn.execute(sa.text("SELECT COUNT(*) FROM notices")).scalar_one() == 0
    # The registry changes before the issue: the draft is refreshed, then issued with the new figures.
    moved = contract("cust-0", service_start=date(2026, 8, 25))
    result = invoices.issue_month(engine, [moved], CATALOG, OCT, OPERATOR, ISSUED_ON)
    assert result.issued == 1
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(sa.text("SELECT state, invoice_number, total FROM invoices"))] == [
            ("issued", "CB-00000001", 11000)]
        assert conn.execute(sa.text("SELECT COUNT(*) FROM invoice_lines")).scalar_one() == 1


def test_concurrent_runs_number_invoices_without_gaps_or_duplicates(engine: sa.Engine) -> None:
    """Numbers are allocated inside each issuing transaction; two runs at once share one gapless series."""
    from concurrent.futures import ThreadPoolExecutor

    batches = [[contract(f"t{t}-{i}") for i in range(8)] for t in range(2)]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda batch: invoices.issue_month(engine, batch, CATALOG, OCT, OPERATOR,
                                                                   ISSUED_ON), batches))
    assert [r.issued for r in results] == [8, 8]
    with engine.connect() as conn:
        numbers = conn.execute(sa.text("SELECT invoice_number FROM invoices ORDER BY invoice_number")).scalars().all()
    assert numbers == [f"CB-{n:08d}" for n in range(1, 17)]


def test_a_correction_to_nothing_due_leaves_the_month_fully_credited_and_settled(engine: sa.Engine) -> None:
    """A credit note alone when nothing is due any more; re-runs then see the month as settled, and a later
    correction bills it afresh without crediting twice."""
    (customer,) = _customers(1)
    invoices.issue_month(engine, [customer], CATALOG, OCT, OPERATOR, ISSUED_ON)
    cancelled = contract("cust-0", cancelled_before_start_on=date(2026, 8, 30), service_start=date(2026, 9, 10))
    assert invoices.correct(engine, cancelled, CATALOG, OCT, OPERATOR, ISSUED_ON, "cancelled before start") == \
        invoices.Correction("CB-00000002", None)
    rerun = invoices.issue_month(engine, [cancelled], CATALOG, OCT, OPERATOR, ISSUED_ON)
    assert (rerun.issued, rerun.unchanged, rerun.differing) == (0, 1, [])

    again = invoices.correct(engine, customer, CATALOG, OCT, OPERATOR, ISSUED_ON, "the cancellation was withdrawn")
    assert again == invoices.Correction(None, "CB-00000003")
    with engine.connect() as conn:
        docs = conn.execute(sa.text("SELECT document_type, revision, total FROM invoices ORDER BY id")).all()
    assert [tuple(d) for d in docs] == [("invoice", 0, 44000), ("credit_note", 1, -44000), ("invoice", 2, 44000)]
    assert invoices.issue_month(engine, [customer], CATALOG, OCT, OPERATOR, ISSUED_ON).differing == []
