"""The qualified invoice as a PDF (適格請求書; terms art. 22–26): every invoice mail, sent through the real outbox
to a real aiosmtpd server, carries one PDF per document it announces, in the customer's language, with the font
embedded; the text pdftotext extracts from it holds every field the qualified-invoice rules require, the sales
agent's payment instructions (art. 23) and the issuer's details."""

from __future__ import annotations

import subprocess
from datetime import date, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa
from billing_fixtures import CATALOG, contract
from devtools import devstack
from notices_support import endpoint, new_messages

from cloudbackup.billing import BillingMonth, archive, bill, pdf
from cloudbackup.billing import documents as invoices
from cloudbackup.notices import delivery
from cloudbackup.registry.operator import load_operator
from conftest import ROOT

OPERATOR = load_operator(ROOT / "dags" / "registry" / "operator.yaml")
AGENT = OPERATOR.agent("kanto-it-sales")
OCT = BillingMonth(2026, 10)
ISSUED_ON = date(2026, 11, 1)


def pdf_text(content: bytes, tmp_path: Path, name: str = "doc.pdf") -> str:
    path = tmp_path / name
    path.write_bytes(content)
    out = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True)
    return " ".join(out.stdout.split())     # one line: a field may wrap in its table cell


def attachments(msg: EmailMessage) -> dict[str, bytes]:
    return {part.get_filename(): part.get_content() for part in msg.iter_attachments()}


def _deliver(engine: sa.Engine, tmp_path: Path) -> list[EmailMessage]:
    smtp = devstack.start_smtp(tmp_path / "smtp")
    try:
        report = delivery.deliver_pending(engine, endpoint(smtp), delivery.DeliveryPolicy(backoff=timedelta(0)),
                                          operator=OPERATOR)
        assert report.failed == 0 and report.stuck == 0, report
        return new_messages(smtp)
    finally:
        smtp.stop()


@pytest.mark.servers
def test_art22_to_26_the_invoice_mail_carries_a_qualified_invoice_pdf_with_every_field(
        engine: sa.Engine, tmp_path: Path) -> None:
    ja = contract("acme-ja", service_start=date(2026, 9, 10))
    en = contract("acme-en", service_start=date(2026, 9, 10), language="en")
    invoices.issue_month(engine, [ja, en], CATALOG, OCT, OPERATOR, ISSUED_ON)
    messages = {m["To"].split("@")[0]: m for m in _deliver(engine, tmp_path)}
    assert set(messages) == {"acme-ja", "acme-en"}

    files = attachments(messages["acme-ja"])
    assert list(files) == ["CB-00000001.pdf"], "one PDF per invoice, named by its number"
    text = pdf_text(files["CB-00000001.pdf"], tmp_path)
    for field in ["請求書（適格請求書）",
                  "株式会社クラウドバックアップ", "T4010001234567", "東京都千代田区丸の内1-1-1",   # issuer, its number
                  "CB-00000001", "2026年11月1日",                                          # number, issue date
                  "2026年10月分（2026年10月1日 – 2026年10月31日）",                          # transaction period
                  "スタンダード 100GB 月額利用料金（2026-10）", "スタンダード 100GB 初期費用",  # what was supplied
                  "10%対象 小計 ¥40,000", "消費税（10%） ¥4,000",                             # per rate: amount, tax
                  "ご請求金額（税込） ¥44,000", "顧客 acme-ja 御中",                          # total, recipient
                  AGENT.name, AGENT.payment.method, AGENT.payment.account, "2026年11月30日",  # art. 23
                  AGENT.contact.email]:
        assert field in text, f"{field!r} missing from the PDF:\n{text}"

    en_text = pdf_text(attachments(messages["acme-en"])["CB-00000002.pdf"], tmp_path, "en.pdf")
    for field in ["Qualified invoice", "Cloud Backup Co., Ltd.", "T4010001234567",
                  "1-1-1 Marunouchi, Chiyoda-ku, Tokyo, Japan", "CB-00000002", "1 November 2026",
                  "October 2026 (1 October 2026 – 31 October 2026)", "Standard 100 GB monthly fee (2026-10)",
                  "Subtotal at 10% ¥40,000", "Consumption tax (10%) ¥4,000", "Total due (tax included) ¥44,000",
                  "acme-en", AGENT.name_en, AGENT.payment.method_en, "30 November 2026"]:
        assert field in en_text, f"{field!r} missing from the English PDF:\n{en_text}"


@pytest.mark.servers
def test_the_correction_mail_carries_the_credit_note_and_the_reissue(engine: sa.Engine, tmp_path: Path) -> None:
    customer = contract("acme", service_start=date(2026, 9, 10))
    invoices.issue_month(engine, [customer], CATALOG, OCT, OPERATOR, ISSUED_ON)
    _deliver(engine, tmp_path / "first")
    moved = customer.model_copy(update={"name": "顧客 acme（新社名）"})
    invoices.correct(engine, moved, CATALOG, OCT, OPERATOR, date(2026, 11, 10), "宛名の訂正")
    [mail] = _deliver(engine, tmp_path / "second")
    files = attachments(mail)
    assert list(files) == ["CB-00000002.pdf", "CB-00000003.pdf"], "credit note first, then the reissue"
    credit = pdf_text(files["CB-00000002.pdf"], tmp_path, "credit.pdf")
    for field in ["請求書の取消", "CB-00000001", "宛名の訂正", "-¥44,000", "お支払いは不要です。"]:
        assert field in credit, f"{field!r} missing from the credit note:\n{credit}"
    assert "顧客 acme（新社名） 御中" in pdf_text(files["CB-00000003.pdf"], tmp_path, "reissue.pdf")


def test_the_pdf_embeds_its_japanese_font_and_is_the_same_bytes_for_the_same_data(tmp_path: Path) -> None:
    invoice = bill(contract(), CATALOG, OCT)
    assert invoice is not None
    data = archive.document_data(invoice, invoice_number="CB-00000009", document_type="invoice", revision=0,
                                 corrects_invoice_number=None, reason=None, issue_date=ISSUED_ON,
                                 payment_due_date=date(2026, 11, 30), operator=OPERATOR)
    content = pdf.render(data, "ja")
    assert content == pdf.render(data, "ja"), "deterministic: the archived PDF can be rendered again identically"
    path = tmp_path / "x.pdf"
    path.write_bytes(content)
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in fonts.splitlines()[2:]]
    assert rows and all(row[-5] == "yes" for row in rows), f"every font embedded:\n{fonts}"
    assert any("IPAGothic" in row[0] for row in rows)
