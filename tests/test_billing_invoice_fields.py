"""Qualified invoices (適格請求書): the issuer's registration number, the sales agent's payment instructions (art. 23)
and every required field in the Japanese and English emails."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from billing_fixtures import CATALOG, contract

from cloudbackup.billing import BillingMonth
from cloudbackup.billing import documents as invoices
from cloudbackup.notices import templating
from cloudbackup.registry.operator import corporate_number_check_digit, load_operator
from conftest import ROOT

OPERATOR_FILE = ROOT / "dags" / "registry" / "operator.yaml"


def test_the_corporate_number_check_digit_matches_a_published_number() -> None:
    # The National Tax Agency's own corporate number is 7000012050002.
    assert corporate_number_check_digit("000012050002") == 7


@pytest.mark.parametrize(("number", "words"), [
    ("4010001234567", "must be 'T' followed by 13 digits"),
    ("T401000123456", "must be 'T' followed by 13 digits"),
    ("T5010001234567", "check digit 5 is wrong (expected 4)"),
])
def test_a_bad_registration_number_is_refused_naming_file_and_field(tmp_path: Path, number: str, words: str) -> None:
    path = tmp_path / "operator.yaml"
    path.write_text(OPERATOR_FILE.read_text(encoding="utf-8").replace("T4010001234567", number), encoding="utf-8")
    with pytest.raises(ValueError) as excinfo:
        load_operator(path)
    message = str(excinfo.value)
    assert str(path) in message and "field 'issuer.registration_number'" in message and words in message


def test_the_payment_due_date_follows_the_agents_terms_clamped_to_month_end() -> None:
    payment = load_operator(OPERATOR_FILE).agent("kanto-it-sales").payment
    assert payment.due_date(date(2026, 12, 31)) == date(2027, 1, 31)
    assert payment.due_date(date(2027, 1, 31)) == date(2027, 2, 28)


def test_an_unknown_sales_agent_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="sales agent 'nobody' is not in the operator settings"):
        load_operator(OPERATOR_FILE).agent("nobody")


@pytest.mark.parametrize("language", ["ja", "en"])
def test_the_invoice_email_carries_every_qualified_invoice_field(language: str) -> None:
    operator = load_operator(OPERATOR_FILE)
    customer = contract(language=language)
    invoice = invoices.bill(customer, CATALOG, BillingMonth(2026, 10))
    document = invoices.Document(invoice, "CB-00000042", "invoice", 0, date(2026, 11, 1), date(2026, 11, 30),
                                 operator.issuer.registration_number)
    rendered = templating.render("invoice", language, {"customer": customer,
                                                     **invoices.notice_context(document, operator)})
    agent = operator.agent("kanto-it-sales")
    for part in (rendered.text, rendered.html):
        # Dates as a business reads them: 2026年11月1日 / 1 November 2026, the month 2026年10月分 / October 2026.
        dates = (("2026年11月1日", "2026年10月分", "2026年11月30日") if language == "ja"
                 else ("1 November 2026", "October 2026", "30 November 2026"))
        for field in ("CB-00000042", "T4010001234567", *dates, customer.name, "¥40,000", "¥4,000", "¥44,000", "10%",
                      operator.issuer.address if language == "ja" else operator.issuer.address_en):
            assert field in part, (language, field)
        expected_agent = agent.name if language == "ja" else agent.name_en
        assert expected_agent in part and (agent.payment.account if language == "ja" else agent.payment.account_en) \
            in part
    assert ("株式会社クラウドバックアップ" if language == "ja" else "Cloud Backup Co., Ltd.") in rendered.text
    assert ("初期費用" if language == "ja" else "initial fee") in rendered.text
    assert "¥44,000" in rendered.subject


def test_the_html_email_escapes_what_it_prints() -> None:
    operator = load_operator(OPERATOR_FILE)
    customer = contract(name="<b>Acme</b> & Co")
    invoice = invoices.bill(customer, CATALOG, BillingMonth(2026, 10))
    document = invoices.Document(invoice, "CB-1", "invoice", 0, date(2026, 11, 1), date(2026, 11, 30), "T1")
    context = {"customer": customer, **invoices.notice_context(document, operator)}
    html = templating.render("invoice", "ja", context).html
    assert "&lt;b&gt;Acme&lt;/b&gt; &amp; Co" in html and "<b>Acme</b>" not in html
