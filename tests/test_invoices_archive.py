"""The archive of issued invoices (電子帳簿保存法, 電子取引データの保存; terms art. 22–26): every issued invoice and
credit note kept as issued with its sha256, never changed (a correction is a new document linked to the old),
searchable by date, amount range and counterparty, with an audit trail; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from billing_fixtures import CATALOG, contract

from cloudbackup import cli
from cloudbackup.billing import BillingMonth, archive
from cloudbackup.billing import documents as invoices
from cloudbackup.registry.operator import load_operator
from conftest import ROOT

OPERATOR = load_operator(ROOT / "dags" / "registry" / "operator.yaml")
OCT = BillingMonth(2026, 10)
ISSUED_ON = date(2026, 11, 1)


@pytest.fixture
def issued(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> sa.Engine:
    """October issued on 2026-11-01 by the billing DAG for four customers whose totals differ: CB-00000001 acme
    44,000 (first invoice, initial fee), CB-00000002 bolt 11,000, CB-00000003 cinder 10,000 (penalty, art. 21(3),
    no tax), CB-00000004 delta 46,200 (Business 500 GB); then acme corrected on 2026-11-10 by a finance user
    (CB-00000005 credit note −44,000, CB-00000006 reissue 44,000)."""
    business = [{"plan": "business-500", "approved_on": date(2026, 7, 1), "started_using_on": date(2026, 8, 1)}]
    customers = [contract("acme", service_start=date(2026, 9, 10)),
                 contract("bolt", contract_date=date(2026, 7, 1), service_start=date(2026, 8, 5)),
                 contract("cinder", contract_date=date(2026, 10, 1), service_start=date(2026, 11, 1),
                          cancelled_before_start_on=date(2026, 10, 20)),
                 contract("delta", contract_date=date(2026, 7, 1), service_start=date(2026, 8, 1), plans=business)]
    monkeypatch.setenv("CLOUDBACKUP_ACTOR", "airflow:billing_monthly/scheduled__2026-11-01")
    invoices.issue_month(engine, customers, CATALOG, OCT, OPERATOR, ISSUED_ON)
    monkeypatch.setenv("CLOUDBACKUP_ACTOR", "cli:finance-yamada")
    renamed = customers[0].model_copy(update={"name": "アクメ株式会社"})
    invoices.correct(engine, renamed, CATALOG, OCT, OPERATOR, date(2026, 11, 10), "宛名の訂正")
    return engine


def _numbers(found: list[archive.Archived]) -> list[str]:
    return [a.invoice_number for a in found]


def test_a_search_by_amount_range_finds_exactly_the_matching_documents(issued: sa.Engine) -> None:
    assert {a.invoice_number: a.total for a in archive.search(issued)} == {
        "CB-00000001": 44000, "CB-00000002": 11000, "CB-00000003": 10000, "CB-00000004": 46200,
        "CB-00000005": -44000, "CB-00000006": 44000}
    assert _numbers(archive.search(issued, amount_min=10500, amount_max=45000)) == [
        "CB-00000001", "CB-00000002", "CB-00000006"]
    assert _numbers(archive.search(issued, amount_min=11000, amount_max=44000)) == [
        "CB-00000001", "CB-00000002", "CB-00000006"], "both ends included"
    assert _numbers(archive.search(issued, amount_max=0)) == ["CB-00000005"], "the credit note"
    assert _numbers(archive.search(issued, amount_min=46201)) == []


def test_a_search_by_date_and_counterparty_combines_with_the_amount(issued: sa.Engine) -> None:
    assert _numbers(archive.search(issued, date_from=date(2026, 11, 2))) == ["CB-00000005", "CB-00000006"]
    assert _numbers(archive.search(issued, date_to=date(2026, 11, 1))) == [f"CB-0000000{n}" for n in range(1, 5)]
    assert _numbers(archive.search(issued, counterparty="acme")) == ["CB-00000001", "CB-00000005", "CB-00000006"]
    assert _numbers(archive.search(issued, counterparty="アクメ")) == ["CB-00000006"], "a part of the name"
    assert _numbers(archive.search(issued, counterparty="acme", amount_min=0, date_from=date(2026, 11, 2))) == [
        "CB-00000006"]


def test_the_cli_searches_the_archive(issued: sa.Engine, database: dict, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDBACKUP_DB", json.dumps(database))
    assert cli.main(["billing", "archive", "search", "--min", "10500", "--max", "45000", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [(a["invoice_number"], a["total"]) for a in found] == [
        ("CB-00000001", 44000), ("CB-00000002", 11000), ("CB-00000006", 44000)]
    assert cli.main(["billing", "archive", "pdf", "CB-00000002", "--out", str(tmp_path / "b.pdf")]) == 0
    assert (tmp_path / "b.pdf").read_bytes().startswith(b"%PDF")
    assert cli.main(["billing", "archive", "verify"]) == 0


def test_each_document_is_kept_as_issued_and_a_correction_is_a_new_document_linked_to_the_old(
        issued: sa.Engine) -> None:
    original = archive.data(issued, "CB-00000001")
    assert (original["recipient"]["name"], original["total"], original["issuer"]["registration_number"]) == (
        "顧客 acme", 44000, "T4010001234567"), "the name as issued, not as corrected"
    credit, reissue = archive.data(issued, "CB-00000005"), archive.data(issued, "CB-00000006")
    assert (credit["document_type"], credit["corrects_invoice_number"], credit["reason"]) == (
        "credit_note", "CB-00000001", "宛名の訂正")
    assert (reissue["corrects_invoice_number"], reissue["recipient"]["name"]) == ("CB-00000001", "アクメ株式会社")
    [kept] = archive.search(issued, counterparty="acme", amount_min=44000, date_to=ISSUED_ON)
    assert kept.data_sha256 == archive.sha256(archive.canonical(original))
    assert kept.retain_until == date(2033, 12, 31), "7 years after the end of the year of issue"


def test_the_audit_trail_says_who_issued_and_corrected_what_and_when(issued: sa.Engine) -> None:
    archive.pdf(issued, "CB-00000001")
    trail = [(e.actor, e.action, e.invoice_number) for e in archive.trail(issued)]
    assert trail[:4] == [("airflow:billing_monthly/scheduled__2026-11-01", "issued", f"CB-0000000{n}")
                         for n in range(1, 5)]
    assert trail[4:] == [("cli:finance-yamada", "corrected", "CB-00000005"),
                         ("cli:finance-yamada", "corrected", "CB-00000006"),
                         ("cli:finance-yamada", "pdf_stored", "CB-00000001")]
    assert all(e.at is not None and e.at.tzinfo is not None for e in archive.trail(issued))
    assert "宛名の訂正" in (archive.trail(issued, "CB-00000005")[0].detail or "")


def _refused(engine: sa.Engine, sql: str) -> None:
    with pytest.raises(sa.exc.DBAPIError, match="never changed or deleted"), engine.begin() as conn:
        conn.execute(sa.text(sql))


def test_an_archived_document_cannot_be_changed_or_deleted(issued: sa.Engine) -> None:
    first_pdf = archive.pdf(issued, "CB-00000002")
    assert archive.pdf(issued, "CB-00000002", "en") == first_pdf, "stored once: never rendered again or replaced"
    _refused(issued, "UPDATE invoice_archive SET total = 1 WHERE invoice_number = 'CB-00000002'")
    _refused(issued, "UPDATE invoice_archive SET data_json = '{}' WHERE invoice_number = 'CB-00000002'")
    _refused(issued, "UPDATE invoice_archive SET pdf_sha256 = 'x' WHERE invoice_number = 'CB-00000002'")
    _refused(issued, "DELETE FROM invoice_archive WHERE invoice_number = 'CB-00000003'")
    _refused(issued, "UPDATE invoice_archive_events SET actor = 'someone else'")
    _refused(issued, "DELETE FROM invoice_archive_events")
    assert archive.verify(issued) == []


def _drop_guards(engine: sa.Engine) -> None:
    """What only someone with the database's owner rights can do: take the triggers away."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(sa.text("DROP TRIGGER invoice_archive_no_update"))
        else:
            conn.execute(sa.text("DROP TRIGGER invoice_archive_immutable ON invoice_archive"))


def test_a_document_altered_behind_our_back_is_found_by_its_sha256(issued: sa.Engine) -> None:
    archive.pdf(issued, "CB-00000004")
    _drop_guards(issued)
    with issued.begin() as conn:
        conn.execute(sa.text("UPDATE invoice_archive SET data_json = REPLACE(data_json, '46200', '4620') "
                             "WHERE invoice_number = 'CB-00000004'"))
        conn.execute(sa.text("UPDATE invoice_archive SET pdf = :p WHERE invoice_number = 'CB-00000004'"),
                     {"p": b"%PDF-1.4 forged"})
    assert [(d.invoice_number, d.what) for d in archive.verify(issued)] == [
        ("CB-00000004", "data"), ("CB-00000004", "pdf")]
    with pytest.raises(archive.TamperedError, match="CB-00000004"):
        archive.data(issued, "CB-00000004")
    with pytest.raises(archive.TamperedError, match="CB-00000004"):
        archive.pdf(issued, "CB-00000004")
    assert archive.trail(issued)[-1].action == "verified"
