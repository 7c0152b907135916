"""Month-end at fleet scale (issue 13): batches, worker processes and customer files give the same invoices, numbers
and mails as one customer at a time, on SQLite and PostgreSQL; due dates never precede the issue date (art. 23);
corrections are booked in the CSV of the month they are issued in."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from billing_fixtures import CATALOG, contract

from cloudbackup.billing import BillingMonth, archive, exports
from cloudbackup.billing import documents as invoices
from cloudbackup.billing.invoice import payment_due_date
from cloudbackup.notices import outbox
from cloudbackup.registry.operator import PaymentInstructions, load_operator
from conftest import ROOT

OPERATOR = load_operator(ROOT / "dags" / "registry" / "operator.yaml")
OCT = BillingMonth(2026, 10)
ISSUED_ON = date(2026, 11, 1)


def _fleet(n: int) -> list:
    return [contract(f"cust-{i:02d}", service_start=date(2026, 9, 1 + i % 20),
                     language="en" if i % 3 == 0 else "ja") for i in range(n)]


def _issued(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT i.customer_id, i.invoice_number, i.total, i.issue_date, i.payment_due_date, n.subject, "
            "n.body_text, n.body_html, n.message_id FROM invoices i "
            "JOIN notices n ON n.idempotency_key = 'invoice:' || i.customer_id || ':' || i.billing_month "
            "WHERE i.state = 'issued' ORDER BY i.invoice_number"))]


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 3 customers, and worker processes from the first customer on: the fleet path on a small fleet."""
    monkeypatch.setattr(invoices, "BATCH", 3)
    monkeypatch.setattr(invoices, "PARALLEL_MIN", 1)


# --- the fleet path is the same billing as one customer at a time ------------------------------------------------

def test_worker_processes_and_batches_issue_the_same_invoices_and_mails_as_one_by_one(
        engine: sa.Engine, small_batches: None, caplog: pytest.LogCaptureFixture) -> None:
    """Art. 22, 28: whether a month is worked out in two worker processes and written in batches or one customer
    at a time, every customer gets the same invoice, a number from one gapless series in customer order, and
    exactly the mail `outbox.prepare` renders for that invoice and number."""
    customers = _fleet(10)
    result = invoices.issue_month(engine, customers, CATALOG, OCT, OPERATOR, ISSUED_ON, workers=2)
    assert (result.issued, result.failed) == (10, [])
    # Written by the batch path itself: a batch that fails falls back to one by one with the same result, so
    # only the absence of its warning shows the batch (its archive rows included) went through.
    assert not [r for r in caplog.records if "rolled back" in r.getMessage()]
    rows = _issued(engine)
    assert [r[1] for r in rows] == [f"CB-{n:08d}" for n in range(1, 11)]
    assert [r[0] for r in rows] == [c.id for c in customers]
    for customer, row in zip(customers, rows, strict=True):
        invoice = invoices.bill(customer, CATALOG, OCT)
        document = invoices.Document(invoice, row[1], invoices.INVOICE, 0, ISSUED_ON, date(2026, 11, 30),
                                     OPERATOR.issuer.registration_number)
        expected = outbox.prepare("invoice", customer, f"invoice:{customer.id}:{OCT}",
                                  invoices.notice_context(document, OPERATOR), OPERATOR)
        assert row[2:] == (invoice.total, "2026-11-01", "2026-11-30", expected.subject, expected.text,
                           expected.html, expected.message_id)
        assert invoices.NUMBER_PLACEHOLDER not in row[6] + row[7]
    # 電子帳簿保存法: each is archived exactly as archive.keep archives one invoice issued on its own.
    with engine.connect() as conn:
        archived = conn.execute(sa.text("SELECT invoice_number, data_json, data_sha256 FROM invoice_archive "
                                        "ORDER BY invoice_number")).all()
        events = conn.execute(sa.text("SELECT action, invoice_number FROM invoice_archive_events "
                                      "ORDER BY invoice_number")).all()
    assert [a.invoice_number for a in archived] == [r[1] for r in rows]
    for customer, a in zip(customers, archived, strict=True):
        data = archive.document_data(invoices.bill(customer, CATALOG, OCT), invoice_number=a.invoice_number,
                                     document_type="invoice", revision=0, corrects_invoice_number=None, reason=None,
                                     issue_date=ISSUED_ON, payment_due_date=date(2026, 11, 30), operator=OPERATOR)
        assert (a.data_json, a.data_sha256) == (archive.canonical(data), archive.sha256(archive.canonical(data)))
    assert [tuple(e) for e in events] == [("issued", r[1]) for r in rows]
    again = invoices.issue_month(engine, customers, CATALOG, OCT, OPERATOR, ISSUED_ON, workers=2)
    assert (again.issued, again.unchanged, again.differing) == (0, 10, [])
    assert _issued(engine) == rows


def test_customer_files_are_read_by_the_workers_and_a_broken_file_stops_only_itself(
        engine: sa.Engine, small_batches: None, tmp_path: Path) -> None:
    """The DAG hands the customer files to the workers: a broken file is listed under `failed` (after the
    customers that could not be billed), takes no number, and every other customer is billed."""
    folder = tmp_path / "customers"
    folder.mkdir()
    for customer in _fleet(7):
        (folder / f"{customer.id}.yaml").write_text(
            yaml.safe_dump(customer.model_dump(mode="json", by_alias=True, exclude_none=True), allow_unicode=True))
    (folder / "cust-03.yaml").write_text("id: cust-03\nname: [unclosed\n")
    stray = contract("cust-99").model_copy(update={"sales_agent": "unknown-agent"})
    (folder / "cust-99.yaml").write_text(
        yaml.safe_dump(stray.model_dump(mode="json", by_alias=True, exclude_none=True), allow_unicode=True))
    paths = sorted(folder.glob("*.yaml"))
    result = invoices.issue_month(engine, paths, CATALOG, OCT, OPERATOR, ISSUED_ON, workers=2)
    assert result.failed == ["cust-99", "cust-03"]
    assert result.issued == 6
    assert [r[1] for r in _issued(engine)] == [f"CB-{n:08d}" for n in range(1, 7)]


def test_a_batch_that_fails_is_rolled_back_whole_and_its_customers_are_issued_one_by_one(
        engine: sa.Engine, small_batches: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """All or nothing per customer, and no gap in the numbers (qualified-invoice series): a batch whose writing
    fails leaves nothing behind; its customers are then issued one transaction each, and a customer that fails
    there too is listed under `failed` while the others are issued."""
    def refuse(*_args: object) -> None:
        raise RuntimeError("archive refused the batch")

    monkeypatch.setattr(invoices, "_archive_batch", refuse)
    real_issue_draft = invoices._issue_draft

    def issue_draft(conn, invoice_id, invoice, operator, issue_date):  # noqa: ANN001, ANN202
        if invoice.customer_id == "cust-04":
            raise sa.exc.IntegrityError("INSERT", {}, Exception("simulated constraint violation"))
        return real_issue_draft(conn, invoice_id, invoice, operator, issue_date)

    monkeypatch.setattr(invoices, "_issue_draft", issue_draft)
    result = invoices.issue_month(engine, _fleet(7), CATALOG, OCT, OPERATOR, ISSUED_ON, workers=1)
    assert (result.issued, result.failed) == (6, ["cust-04"])
    rows = _issued(engine)
    assert [r[1] for r in rows] == [f"CB-{n:08d}" for n in range(1, 7)]
    assert "cust-04" not in [r[0] for r in rows]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM invoices WHERE customer_id = 'cust-04'")).scalar() == 0
        assert conn.execute(sa.text("SELECT COUNT(*) FROM notices")).scalar() == 6


def test_a_mail_already_queued_is_never_queued_twice_and_its_batch_still_issues(
        engine: sa.Engine, small_batches: None) -> None:
    """Art. 28, each notice once: a mail key already in the outbox (a run interrupted after queueing, say) makes
    the batch's bulk write refuse; the batch is rolled back and issued one by one, keeping the queued mail."""
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO notices (kind, customer_id, recipient, language, subject, body_text, "
                             "body_html, idempotency_key, message_id, created_at, attempts) VALUES ('invoice', "
                             "'cust-01', 'x@example.jp', 'ja', 'earlier', 'earlier', 'earlier', "
                             "'invoice:cust-01:2026-10', '<m@x>', '2026-11-01T00:00:00+00:00', 0)"))
    result = invoices.issue_month(engine, _fleet(5), CATALOG, OCT, OPERATOR, ISSUED_ON, workers=1)
    assert (result.issued, result.failed) == (5, [])
    with engine.connect() as conn:
        keys = conn.execute(sa.text("SELECT idempotency_key, subject FROM notices ORDER BY idempotency_key")).all()
        numbers = conn.execute(sa.text("SELECT invoice_number FROM invoices ORDER BY invoice_number")).scalars().all()
    assert [k.idempotency_key for k in keys] == [f"invoice:cust-{i:02d}:2026-10" for i in range(5)]
    assert keys[1].subject == "earlier"
    assert numbers == [f"CB-{n:08d}" for n in range(1, 6)]


def test_a_re_run_renders_no_mail_for_a_month_already_issued(
        engine: sa.Engine, small_batches: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Art. 28, each notice once: a re-run of an issued month has no mail to send, so it renders none (a mail
    template that could no longer render does not fail an already issued customer)."""
    customers = _fleet(4)
    invoices.issue_month(engine, customers, CATALOG, OCT, OPERATOR, ISSUED_ON, workers=1)

    def no_render(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("rendered a mail on a re-run")

    monkeypatch.setattr(outbox, "prepare", no_render)
    again = invoices.issue_month(engine, customers, CATALOG, OCT, OPERATOR, ISSUED_ON, workers=1)
    assert (again.issued, again.unchanged, again.failed) == (0, 4, [])


# --- dates: the due date never before the issue date (art. 23) ----------------------------------------------------

def test_an_on_time_invoice_is_due_on_the_agents_date() -> None:
    """Art. 23: the sales agent's terms: due at the end of the month after the billing month."""
    payment = PaymentInstructions(method="振込", due_months_after_billing_month=1, due_day=31)
    assert payment_due_date(payment, OCT, date(2026, 11, 1)) == date(2026, 11, 30)
    assert payment_due_date(payment, OCT, date(2026, 11, 30)) == date(2026, 11, 30)


def test_a_late_run_of_an_old_month_is_due_from_its_issue_date_never_before_it() -> None:
    """Art. 23 (our reading, protective of the customer): October billed only on 2027-03-15 cannot be due on
    2026-11-30; it is due as many days after its issue date as an on-time invoice (issued 11-01, due 11-30)."""
    payment = PaymentInstructions(method="振込", due_months_after_billing_month=1, due_day=31)
    assert payment_due_date(payment, OCT, date(2027, 3, 15)) == date(2027, 4, 13)
    assert payment_due_date(payment, OCT, date(2026, 12, 1)) == date(2026, 12, 30)
    for day in range(1, 200):
        issued = date(2026, 11, 1).fromordinal(date(2026, 11, 1).toordinal() + day)
        assert payment_due_date(payment, OCT, issued) >= issued


def test_a_late_run_and_a_late_correction_record_a_due_date_after_their_issue_date(engine: sa.Engine) -> None:
    """Art. 23: what is stored and mailed follows the rule above, for a month issued late and for the credit note
    and reissue of a correction made months later."""
    (customer,) = _fleet(1)
    invoices.issue_month(engine, [customer], CATALOG, OCT, OPERATOR, date(2027, 3, 15))
    moved = contract("cust-00", service_start=date(2026, 8, 25))
    invoices.correct(engine, moved, CATALOG, OCT, OPERATOR, date(2027, 5, 20), "service start was 8/25")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT issue_date, payment_due_date FROM invoices ORDER BY id")).all()
        mail = conn.execute(sa.text("SELECT body_text FROM notices ORDER BY id LIMIT 1")).scalar_one()
    assert [tuple(r) for r in rows] == [("2027-03-15", "2027-04-13"), ("2027-05-20", "2027-06-18"),
                                        ("2027-05-20", "2027-06-18")]
    assert "13 April 2027" in mail   # cust-00 reads English


# --- the CSV of the month a correction is issued in -----------------------------------------------------------------

def _csv_numbers(path: Path) -> list[tuple[str, str, str]]:
    rows = csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines())
    return [(r["invoice_number"], r["billing_month"], r["issue_date"]) for r in rows]


def test_credit_notes_and_reissues_are_in_the_csv_of_the_month_they_are_issued_in(
        engine: sa.Engine, tmp_path: Path) -> None:
    """A correction of October issued on 2026-12-10 is booked in December's files, not in October's closed
    ones; each issued document is in exactly one month's files."""
    (customer,) = _fleet(1)
    invoices.issue_month(engine, [customer], CATALOG, OCT, OPERATOR, ISSUED_ON)
    moved = contract("cust-00", service_start=date(2026, 8, 25))
    invoices.correct(engine, moved, CATALOG, OCT, OPERATOR, date(2026, 12, 10), "service start was 8/25")
    files = {m: exports.write_month_csvs(engine, BillingMonth.parse(m), tmp_path / m)
             for m in ("2026-10", "2026-11", "2026-12")}
    assert _csv_numbers(files["2026-10"][0]) == [("CB-00000001", "2026-10", "2026-11-01")]
    assert _csv_numbers(files["2026-11"][0]) == []
    assert _csv_numbers(files["2026-12"][0]) == [("CB-00000002", "2026-10", "2026-12-10"),
                                                 ("CB-00000003", "2026-10", "2026-12-10")]
    lines = list(csv.DictReader(files["2026-12"][1].read_text(encoding="utf-8-sig").splitlines()))
    assert {r["invoice_number"] for r in lines} == {"CB-00000002", "CB-00000003"}
