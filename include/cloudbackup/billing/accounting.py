"""The month's sales journal in the import layouts of the accounting software finance uses, and the per-agent
summary of what each sales agent is to collect (art. 23).

`cloudbackup billing export --month YYYY-MM --format freee|yayoi|mf|agents` writes, into the export folder:

- `freee` — freee会計 取引インポート (`freee-torihiki-YYYY-MM.csv`): one 収入 取引 per document and tax rate;
- `yayoi` — 弥生会計 仕訳日記帳, 弥生インポート形式 (`yayoi-shiwake-YYYY-MM.csv`): 27 positional items (25 + 借方/貸方
  取引先名), 識別フラグ 2000 (one-line entries);
- `mf` — マネーフォワード クラウド会計 仕訳帳インポート (`mf-shiwakecho-YYYY-MM.csv`): the 27 columns A–AA;
- `agents` — `agent-summary-YYYY-MM.csv`: per sales agent, the documents and the amounts it is to collect.

A month's journal holds the month's invoices as first issued (revision 0, dated the billing month's last day: the
fee is earned in the month it is for, art. 22(1)) and the corrections (credit notes and reissues) issued during the
month, dated their issue date: a correction is booked when it is made, never back in a closed month. One journal
row per document and tax rate, tax-inclusive with the tax beside it (the tax is computed per invoice per rate,
art. 25, 26, so the books carry exactly the invoiced tax). A credit note reverses its sale (debit and credit
swapped; freee: 支出). Account titles, tax categories, the counterparty (customer or sales agent) and the encoding
come from operator.yaml's `accounting`. CP932 by default, as the products expect; UTF-8 on request.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cloudbackup.billing.months import BillingMonth
from cloudbackup.registry.operator import OperatorSettings

FORMATS = ("freee", "yayoi", "mf", "agents")

# freee会計 取引インポート (収入・支出), its template's header row, in order.
FREEE_COLUMNS = ["収支区分", "管理番号", "発生日", "決済期日", "取引先コード", "取引先", "勘定科目", "税区分", "金額",
                 "税計算区分", "税額", "備考", "品目", "部門", "メモタグ（複数指定可、カンマ区切り）", "決済日",
                 "決済口座", "決済金額"]
FREEE_REQUIRED = ["収支区分", "発生日", "勘定科目", "税区分", "金額"]
# 弥生インポート形式: 25 items, 27 with 借方取引先名 / 貸方取引先名 (positional; no header row in the file).
YAYOI_COLUMNS = ["識別フラグ", "伝票No.", "決算", "取引日付", "借方勘定科目", "借方補助科目", "借方部門", "借方税区分",
                 "借方金額", "借方税金額", "貸方勘定科目", "貸方補助科目", "貸方部門", "貸方税区分", "貸方金額",
                 "貸方税金額", "摘要", "番号", "期日", "タイプ", "生成元", "仕訳メモ", "付箋1", "付箋2", "調整",
                 "借方取引先名", "貸方取引先名"]
YAYOI_REQUIRED = ["識別フラグ", "取引日付", "借方勘定科目", "借方金額", "貸方勘定科目", "貸方金額"]
# マネーフォワード クラウド会計 仕訳帳インポート: the template's columns A–AA.
MF_COLUMNS = ["取引No", "取引日", "借方勘定科目", "借方補助科目", "借方部門", "借方取引先",
              "借方税区分", "借方インボイス", "借方金額(円)", "借方税額", "貸方勘定科目", "貸方補助科目",
              "貸方部門", "貸方取引先", "貸方税区分", "貸方インボイス", "貸方金額(円)", "貸方税額",
              "摘要", "仕訳メモ", "タグ", "MF仕訳タイプ", "決算整理仕訳", "作成日時",
              "作成者", "最終更新日時", "最終更新者"]
MF_REQUIRED = ["取引No", "取引日", "借方勘定科目", "借方金額(円)", "貸方勘定科目", "貸方金額(円)"]
AGENT_COLUMNS = ["sales_agent", "sales_agent_name", "billing_month", "invoices", "credit_notes", "subtotal", "tax",
                 "total_to_collect", "earliest_due_date", "latest_due_date"]
FILE_NAMES = {"freee": "freee-torihiki-{m}.csv", "yayoi": "yayoi-shiwake-{m}.csv", "mf": "mf-shiwakecho-{m}.csv",
              "agents": "agent-summary-{m}.csv"}


@dataclass(frozen=True)
class Entry:
    """One journal row: one document's sale at one tax rate."""

    invoice_number: str
    document_type: str
    booked_on: str            # YYYY-MM-DD
    due_date: str
    counterparty: str
    billing_month: str
    rate: Decimal
    subtotal: int             # yen before tax, negative on a credit note
    tax: int

    @property
    def credit(self) -> bool:
        return self.document_type == "credit_note"

    @property
    def gross(self) -> int:
        """Tax included, as a positive amount (a credit note is booked the other way round)."""
        return abs(self.subtotal + self.tax)

    def summary(self) -> str:
        year, month = self.billing_month.split("-")
        what = "取消" if self.credit else "クラウドバックアップ利用料"
        return f"{self.invoice_number} {self.counterparty} {int(year)}年{int(month)}月分 {what}"


def _documents(engine: Engine, month: BillingMonth) -> pd.DataFrame:
    """The month's documents, one row per document and tax rate (see the module's docstring for which)."""
    params = {"m": str(month), "first": month.first_day.isoformat(), "last": month.last_day.isoformat()}
    with engine.connect() as conn:
        return pd.read_sql_query(sa.text(
            "SELECT i.invoice_number, i.document_type, i.revision, i.customer_id, i.recipient_name, i.sales_agent, "
            "i.billing_month, i.issue_date, i.payment_due_date, s.tax_rate, s.subtotal, s.tax "
            "FROM invoices i JOIN invoice_tax_summaries s ON s.invoice_id = i.id WHERE i.state = 'issued' AND "
            "((i.revision = 0 AND i.billing_month = :m) OR "
            "(i.revision > 0 AND i.issue_date >= :first AND i.issue_date <= :last)) "
            "ORDER BY i.invoice_number, s.tax_rate"), conn, params=params)


def entries(engine: Engine, month: BillingMonth, operator: OperatorSettings) -> list[Entry]:
    by_agent = operator.accounting.counterparty == "sales_agent"
    out = []
    for r in _documents(engine, month).itertuples(index=False):
        agent = operator.sales_agents.get(r.sales_agent)
        counterparty = (agent.name if agent else r.sales_agent) if by_agent else r.recipient_name
        booked = month.last_day.isoformat() if int(r.revision) == 0 else r.issue_date
        out.append(Entry(r.invoice_number, r.document_type, booked, r.payment_due_date or "", counterparty,
                         r.billing_month, Decimal(r.tax_rate), int(r.subtotal), int(r.tax)))
    return out


def _slash(day: str) -> str:
    return day.replace("-", "/")


def freee_frame(rows: list[Entry], operator: OperatorSettings) -> pd.DataFrame:
    acc = operator.accounting
    return pd.DataFrame([{
        "収支区分": "支出" if e.credit else "収入", "管理番号": e.invoice_number, "発生日": _slash(e.booked_on),
        "決済期日": "" if e.credit else _slash(e.due_date), "取引先コード": "", "取引先": e.counterparty,
        "勘定科目": acc.sales_account, "税区分": acc.tax_category("freee", e.rate), "金額": e.gross,
        "税計算区分": "内税", "税額": abs(e.tax), "備考": e.summary(), "品目": "", "部門": "",
        "メモタグ（複数指定可、カンマ区切り）": "", "決済日": "", "決済口座": "", "決済金額": "",
    } for e in rows], columns=FREEE_COLUMNS)


def _double_entry(e: Entry, operator: OperatorSettings, product: str) -> dict[str, object]:
    """Debit receivable / credit sales (swapped for a credit note); the tax sits on the sales side."""
    acc = operator.accounting
    receivable = {"account": acc.receivable_account, "sub": e.counterparty, "tax_category": "対象外", "tax": ""}
    sales = {"account": acc.sales_account, "sub": "", "tax_category": acc.tax_category(product, e.rate),
             "tax": abs(e.tax)}
    debit, credit = (sales, receivable) if e.credit else (receivable, sales)
    return {"debit": debit, "credit": credit}


def yayoi_frame(rows: list[Entry], operator: OperatorSettings) -> pd.DataFrame:
    out = []
    for e in rows:
        side = _double_entry(e, operator, "yayoi")
        d, c = side["debit"], side["credit"]
        assert isinstance(d, dict) and isinstance(c, dict)
        out.append({
            "識別フラグ": "2000", "伝票No.": "", "決算": "", "取引日付": _slash(e.booked_on),
            "借方勘定科目": d["account"], "借方補助科目": d["sub"], "借方部門": "", "借方税区分": d["tax_category"],
            "借方金額": e.gross, "借方税金額": d["tax"], "貸方勘定科目": c["account"], "貸方補助科目": c["sub"],
            "貸方部門": "", "貸方税区分": c["tax_category"], "貸方金額": e.gross, "貸方税金額": c["tax"],
            "摘要": e.summary(), "番号": "", "期日": "" if e.credit else _slash(e.due_date), "タイプ": "0",
            "生成元": "", "仕訳メモ": "", "付箋1": "0", "付箋2": "0", "調整": "no",
            "借方取引先名": e.counterparty, "貸方取引先名": e.counterparty})
    return pd.DataFrame(out, columns=YAYOI_COLUMNS)


def mf_frame(rows: list[Entry], operator: OperatorSettings) -> pd.DataFrame:
    out = []
    for n, e in enumerate(rows, start=1):
        side = _double_entry(e, operator, "mf")
        d, c = side["debit"], side["credit"]
        assert isinstance(d, dict) and isinstance(c, dict)
        out.append({
            "取引No": n, "取引日": _slash(e.booked_on), "借方勘定科目": d["account"], "借方補助科目": d["sub"],
            "借方部門": "", "借方取引先": e.counterparty, "借方税区分": d["tax_category"], "借方インボイス": "",
            "借方金額(円)": e.gross, "借方税額": d["tax"], "貸方勘定科目": c["account"], "貸方補助科目": c["sub"],
            "貸方部門": "", "貸方取引先": e.counterparty, "貸方税区分": c["tax_category"], "貸方インボイス": "",
            "貸方金額(円)": e.gross, "貸方税額": c["tax"], "摘要": e.summary(), "仕訳メモ": "", "タグ": "",
            "MF仕訳タイプ": "", "決算整理仕訳": "", "作成日時": "", "作成者": "", "最終更新日時": "", "最終更新者": ""})
    return pd.DataFrame(out, columns=MF_COLUMNS)


def agent_summary(engine: Engine, month: BillingMonth, operator: OperatorSettings) -> pd.DataFrame:
    """Per sales agent: what it is to collect from its customers for the month's documents (art. 23)."""
    docs = _documents(engine, month)
    if docs.empty:
        return pd.DataFrame(columns=AGENT_COLUMNS)
    per_doc = docs.groupby(["invoice_number", "document_type", "sales_agent", "payment_due_date"],
                           as_index=False)[["subtotal", "tax"]].sum()
    rows = []
    for code, group in per_doc.groupby("sales_agent", sort=True):
        agent = operator.sales_agents.get(str(code))
        invoices = group[group["document_type"] != "credit_note"]
        due = sorted(d for d in invoices["payment_due_date"] if d)
        subtotal, tax = int(group["subtotal"].sum()), int(group["tax"].sum())
        rows.append({"sales_agent": code, "sales_agent_name": agent.name if agent else "",
                     "billing_month": str(month), "invoices": len(invoices),
                     "credit_notes": int((group["document_type"] == "credit_note").sum()), "subtotal": subtotal,
                     "tax": tax, "total_to_collect": subtotal + tax, "earliest_due_date": due[0] if due else "",
                     "latest_due_date": due[-1] if due else ""})
    return pd.DataFrame(rows, columns=AGENT_COLUMNS)


def frame(engine: Engine, month: BillingMonth, operator: OperatorSettings, fmt: str) -> pd.DataFrame:
    if fmt == "agents":
        return agent_summary(engine, month, operator)
    build = {"freee": freee_frame, "yayoi": yayoi_frame, "mf": mf_frame}.get(fmt)
    if build is None:
        raise ValueError(f"unknown export format {fmt!r}: one of {', '.join(FORMATS)}")
    return build(entries(engine, month, operator), operator)


def export(engine: Engine, month: BillingMonth, operator: OperatorSettings, fmt: str, out_dir: Path,
           encoding: str | None = None) -> Path:
    """Write the month's file in `fmt` (CRLF; CP932 unless `encoding` or operator.yaml says utf-8); written
    whole, then renamed. A character CP932 cannot hold fails the export, naming it, rather than being lost."""
    encoding = encoding or operator.accounting.encoding
    if encoding not in ("cp932", "utf-8"):
        raise ValueError(f"encoding {encoding!r}: cp932 or utf-8")
    table = frame(engine, month, operator, fmt)
    header = fmt != "yayoi" or operator.accounting.yayoi_header_row
    text = table.to_csv(index=False, header=header, lineterminator="\r\n")
    try:
        payload = text.encode(encoding)
    except UnicodeEncodeError as exc:
        bad = text[exc.start:exc.end]
        raise ValueError(f"{fmt} export for {month}: {bad!r} cannot be written in {encoding}; export with "
                         "--encoding utf-8 or correct the name in the registry") from None
    path = out_dir / FILE_NAMES[fmt].format(m=month)
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".csv.partial")
    partial.write_bytes(payload)
    partial.replace(path)
    return path
