"""The month's sales journal for the accounting software (issue 13): `cloudbackup billing export --format
freee|yayoi|mf` writes the import layouts of freee会計 (取引), 弥生会計 (仕訳日記帳, 弥生インポート形式) and
マネーフォワード クラウド会計 (仕訳帳) in CP932, with each product's required columns, the invoiced tax per rate
(art. 25, 26), the configured account titles, tax categories and counterparty; and what each sales agent is to
collect (art. 23)."""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from billing_fixtures import CATALOG, contract

from cloudbackup import cli
from cloudbackup.billing import BillingMonth, accounting
from cloudbackup.billing import documents as invoices
from cloudbackup.registry.operator import OperatorSettings, load_operator
from conftest import ROOT

OPERATOR = load_operator(ROOT / "dags" / "registry" / "operator.yaml")
SEP, OCT = BillingMonth(2026, 9), BillingMonth(2026, 10)


@pytest.fixture
def month_issued(engine: sa.Engine, database: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> sa.Engine:
    """September billed for 髙橋 (a name only CP932, not Shift_JIS proper, holds) and corrected on 2026-10-28
    (CB-00000002 credit note, CB-00000003 reissue); then October billed for three customers on 2026-11-01
    (CB-00000004 acme, CB-00000005 髙橋, CB-00000006 a penalty, art. 21(3)). The CLI is pointed at the test
    database and a temporary export folder."""
    takahashi = contract("takahashi", contract_date=date(2026, 7, 1), service_start=date(2026, 8, 5))
    takahashi = takahashi.model_copy(update={"name": "髙橋商店"})
    invoices.issue_month(engine, [takahashi], CATALOG, SEP, OPERATOR, date(2026, 10, 1))
    takahashi = takahashi.model_copy(update={"name": "株式会社髙橋商店"})
    invoices.correct(engine, takahashi, CATALOG, SEP, OPERATOR, date(2026, 10, 28), "宛名の訂正")
    customers = [contract("acme", service_start=date(2026, 9, 10)), takahashi,
                 contract("penalty-co", contract_date=date(2026, 10, 1), service_start=date(2026, 11, 1),
                          cancelled_before_start_on=date(2026, 10, 20))]
    invoices.issue_month(engine, customers, CATALOG, OCT, OPERATOR, date(2026, 11, 1))
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDBACKUP_DB", json.dumps(database))
    monkeypatch.setenv("CLOUDBACKUP_EXPORT_DIR", str(tmp_path / "exports"))
    return engine


def _export(fmt: str, capsys: pytest.CaptureFixture[str], *extra: str) -> Path:
    assert cli.main(["billing", "export", "--month", "2026-10", "--format", fmt, *extra]) == 0
    return Path(capsys.readouterr().out.strip())


@pytest.mark.parametrize(("fmt", "required", "all_columns"), [
    ("freee", accounting.FREEE_REQUIRED, accounting.FREEE_COLUMNS),
    ("mf", accounting.MF_REQUIRED, accounting.MF_COLUMNS),
])
def test_freee_and_mf_files_open_as_cp932_with_the_products_header_columns(
        month_issued: sa.Engine, capsys: pytest.CaptureFixture[str], fmt: str, required: list[str],
        all_columns: list[str]) -> None:
    path = _export(fmt, capsys)
    raw = path.read_bytes()
    text = raw.decode("cp932")                                   # opens as CP932 (Shift_JIS)
    assert "髙橋商店" in text, "a CP932 extension character survives"
    assert b"\r\n" in raw and not raw.startswith(b"\xef\xbb\xbf"), "CRLF, no UTF-8 BOM"
    table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    assert list(table.columns) == all_columns
    assert set(required) <= set(table.columns)
    assert all((table[c] != "").all() for c in required), "every required column is filled on every row"


def test_the_yayoi_file_is_the_27_item_positional_import_format_in_cp932(
        month_issued: sa.Engine, capsys: pytest.CaptureFixture[str]) -> None:
    text = _export("yayoi", capsys).read_bytes().decode("cp932")
    table = pd.read_csv(io.StringIO(text), header=None, dtype=str, keep_default_na=False)
    assert table.shape[1] == len(accounting.YAYOI_COLUMNS) == 27, "弥生形式: 25 items + 借方/貸方取引先名"
    table.columns = accounting.YAYOI_COLUMNS
    assert (table["識別フラグ"] == "2000").all(), "no header row: every line is a one-line entry"
    assert all((table[c] != "").all() for c in accounting.YAYOI_REQUIRED)
    assert (table["借方金額"].astype(int) >= 0).all(), "弥生 refuses negative amounts: a credit note swaps sides"


def test_the_journal_books_the_invoiced_tax_per_rate_and_reverses_a_credit_note(month_issued: sa.Engine) -> None:
    """October's journal: October's invoices as first issued, dated the month's last day (art. 22(1)), and the
    corrections issued in October, dated their issue date; never September's original invoice."""
    rows = accounting.mf_frame(accounting.entries(month_issued, OCT, OPERATOR), OPERATOR)
    by_number = {r["摘要"].split()[0]: r for r in rows.to_dict("records")}
    assert sorted(by_number) == [f"CB-0000000{n}" for n in (2, 3, 4, 5, 6)]
    first = by_number["CB-00000004"]           # acme: 40,000 + 4,000 tax at 10% (art. 25, 26)
    assert (first["取引日"], first["借方勘定科目"], first["貸方勘定科目"]) == ("2026/10/31", "売掛金", "売上高")
    assert (first["借方金額(円)"], first["貸方税額"], first["貸方税区分"]) == (44000, 4000, "課税売上 10%")
    credit = by_number["CB-00000002"]          # the credit note of 2026-10-28: booked that day, sides swapped
    assert (credit["取引日"], credit["借方勘定科目"], credit["貸方勘定科目"]) == ("2026/10/28", "売上高", "売掛金")
    assert (credit["借方金額(円)"], credit["借方税額"]) == (44000, 4000), "September's first invoice, initial fee too"
    assert by_number["CB-00000003"]["借方取引先"] == "株式会社髙橋商店", "the counterparty as on the document"
    penalty = by_number["CB-00000006"]         # art. 21(3): outside the scope of tax by default
    assert (penalty["貸方金額(円)"], penalty["貸方税額"], penalty["貸方税区分"]) == (10000, 0, "対象外")


def test_account_titles_tax_categories_and_the_counterparty_come_from_the_operator_settings(
        month_issued: sa.Engine) -> None:
    data = OPERATOR.model_dump()
    data["accounting"] = {"sales_account": "役務収益", "receivable_account": "未収入金", "counterparty": "sales_agent",
                          "tax_categories": {"freee": {"10%": "課税売上10%（税込）"}}}
    custom = OperatorSettings.model_validate(data)
    table = accounting.freee_frame(accounting.entries(month_issued, OCT, custom), custom)
    assert set(table["勘定科目"]) == {"役務収益"}
    assert set(table["取引先"]) == {OPERATOR.agent("kanto-it-sales").name}, "the agent collects (art. 23)"
    assert set(table["税区分"]) == {"課税売上10%（税込）", "不課税"}
    assert set(table["収支区分"]) == {"収入", "支出"}


def test_utf8_on_request(month_issued: sa.Engine, capsys: pytest.CaptureFixture[str]) -> None:
    assert "髙橋商店" in _export("freee", capsys, "--encoding", "utf-8").read_bytes().decode("utf-8")


def test_art23_the_agent_summary_says_what_each_agent_is_to_collect(
        month_issued: sa.Engine, capsys: pytest.CaptureFixture[str]) -> None:
    table = pd.read_csv(_export("agents", capsys), encoding="cp932", dtype=str, keep_default_na=False)
    assert list(table.columns) == accounting.AGENT_COLUMNS
    [agent] = table.to_dict("records")
    # −44,000 (credit note) + 44,000 (reissue) + 44,000 (acme) + 11,000 (髙橋) + 10,000 (penalty, no tax)
    assert (agent["sales_agent"], agent["invoices"], agent["credit_notes"]) == ("kanto-it-sales", "4", "1")
    assert (agent["total_to_collect"], agent["tax"]) == ("65000", "5000")
    assert agent["sales_agent_name"] == OPERATOR.agent("kanto-it-sales").name
