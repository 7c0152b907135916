"""What customers read (issue 15): every kind as a mail administrator and a customer see it (art. 28).

The notices go through the real outbox and a real aiosmtpd server, and each captured message is parsed with
the `email` package: From with the operator's display name, Date on the Japan clock, Message-ID under the
operator's domain, no List-Unsubscribe (a notice under the terms cannot be unsubscribed from), text and HTML
parts saying the same, and the sales agent (art. 23) named with its contact in every footer.
"""

from __future__ import annotations

import html
import re
from datetime import date, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from devtools import devstack
from notices_support import SENDER, endpoint, html_of, new_messages, record_capacity_event, record_run, text_of

from cloudbackup.clock import utcnow
from cloudbackup.notices import delivery, labels, outbox, samples, templating
from cloudbackup.notices.kinds import ServiceEnd
from cloudbackup.registry.catalog import GB
from cloudbackup.registry.customers import Customer, Suspension
from cloudbackup.registry.maintenance import Window
from cloudbackup.registry.operator import load_operator
from conftest import ROOT

OPERATOR = load_operator(ROOT / "dags" / "registry" / "operator.yaml")
AGENT = OPERATOR.agent("kanto-it-sales")
AGENT_CODE = re.compile(r"(?<![\w@.-])kanto-it-sales(?![\w@.-])")   # the internal code alone, not in an address


def _queue_every_kind(engine: sa.Engine, customer: Customer) -> None:
    """One notice of each kind, queued by the outbox as the engine, billing and the sweep queue them."""
    with engine.begin() as conn:
        run_id = record_run(conn, customer.id, f"run-{customer.id}",
                            [(f"/srv/{customer.id}/経理/a.xlsx", "permission_denied"),
                             (f"/srv/{customer.id}/\\x8c\\xa9.txt", "name_policy")], stored_bytes=86 * GB)
        record_capacity_event(conn, customer.id, run_id, 80, 86 * GB, 100 * GB)
        outbox.queue_run_notices(conn, customer, run_id)
        start = utcnow() + timedelta(days=5)
        outbox.queue_maintenance(conn, [customer], Window(id="m1", start=start, end=start + timedelta(hours=2),
                                                          reason="storage upgrade"))
        suspension = Suspension.model_validate({"from": date.today() + timedelta(days=1), "reason_code": "non_payment"})
        outbox.queue_suspension(conn, customer.model_copy(update={"suspensions": [suspension]}), suspension)
        outbox.queue_service_end(conn, [customer], samples.sample_context("service_end", customer)["service_end"])
        for kind in ("invoice", "correction"):
            outbox.queue(conn, kind, customer, f"{kind}:{customer.id}", samples.sample_context(kind, customer))


def _visible(html_part: str) -> str:
    """The words a mail client shows of an HTML part: no head, no tags, entities decoded."""
    body = re.sub(r"(?s)<head>.*?</head>", " ", html_part)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def _figures(text: str) -> list[str]:
    """Every number, date, time, amount and address-like token a reader could act on."""
    return sorted(re.findall(r"[\w.+-]+@[\w.-]+|\d[\d,.:/]*\d|\d", text))


@pytest.mark.servers
def test_every_kind_passes_a_mail_administrators_eye(engine: sa.Engine, tmp_path: Path) -> None:
    """Art. 28: each kind, in both languages, parsed back from the real SMTP server."""
    smtp = devstack.start_smtp(tmp_path / "smtp")
    try:
        customers = [samples.sample_customer("ja", "mail-ja"), samples.sample_customer("en", "mail-en")]
        for customer in customers:
            _queue_every_kind(engine, customer)
        report = delivery.deliver_pending(engine, endpoint(smtp), delivery.DeliveryPolicy(backoff=timedelta(0)))
        messages = new_messages(smtp)
    finally:
        smtp.stop()
    assert report.sent == len(messages) == 2 * len(templating.KINDS)
    language = {c.notice_email: c.language.value for c in customers}
    for msg in messages:
        kind, lang = msg["X-Cloudbackup-Notice"], language[msg["To"]]
        where = (kind, lang)
        sender = msg["From"].addresses[0]
        assert (sender.display_name, sender.addr_spec) == (OPERATOR.mail.display_name(lang), SENDER), where
        assert msg["Date"].endswith("+0900"), where
        assert parsedate_to_datetime(msg["Date"]).utcoffset() == timedelta(hours=9), where
        assert msg["Message-ID"].endswith(f"@{OPERATOR.mail.message_id_domain}>"), where
        assert "List-Unsubscribe" not in msg and msg["Auto-Submitted"] == "auto-generated", where
        text, shown = text_of(msg), _visible(html_of(msg))
        assert _figures(text) == _figures(shown), f"{where}: text and HTML parts differ"
        for part in (text, shown):
            assert (AGENT.name if lang == "ja" else AGENT.name_en) in part, where
            assert AGENT.contact.email in part and AGENT.contact.phone in part, where
            assert not AGENT_CODE.search(part) and "None" not in part, where


def test_a_suspension_notice_names_the_reason_in_words_never_the_operators_note() -> None:
    """Art. 14(2): the notice carries the reason code's label and the optional customer message; the
    registry's free-text `reason` is for operators and is never mailed."""
    note = "unpaid fees of another service (art. 14(1)(5)); ticket 4711"
    for fields, code in (({"reason": note}, "other"), ({"reason": note, "reason_code": "non_payment"}, "non_payment"),
                         ({"reason": "terms_violation"}, "terms_violation")):
        suspension = Suspension.model_validate({"from": date(2026, 12, 1), "customer_message": "お電話ください。",
                                                **fields})
        for language in templating.LANGUAGES:
            customer = samples.sample_customer(language)
            rendered = templating.render("suspension", language, {"customer": customer, "suspension": suspension})
            for part in (rendered.subject, rendered.text, rendered.html):
                assert note not in part and "ticket" not in part
            for part in (rendered.text, rendered.html):
                assert labels.label("suspension", code, language) in part and "お電話ください。" in part


@pytest.mark.parametrize("language", templating.LANGUAGES)
def test_the_capacity_notice_says_which_threshold_was_passed_and_the_actual_figure(language: str) -> None:
    """Art. 17(3): crossing 80 % at 86.1 % is not '80 % reached'."""
    rendered = samples.render_sample("capacity", language)
    if language == "ja":
        assert "80%を超えました" in rendered.subject and "86.1%" in rendered.subject
        assert "80% を超えました" in rendered.text and "現在の使用率は 86.1% です" in rendered.text
        assert "達しました" not in rendered.subject + rendered.text
    else:
        assert "passed 80%" in rendered.subject and "86.1% used" in rendered.subject
        assert "They now use 86.1%" in rendered.text and "reached" not in rendered.subject + rendered.text


@pytest.mark.parametrize("language", templating.LANGUAGES)
def test_the_digest_gives_each_files_reason_and_the_file_name_rules_in_words(language: str) -> None:
    """Art. 17(2), 18(2): first N paths each with its reason, counts by reason, and which names are collected."""
    rendered = samples.render_sample("collection_errors", language)
    word = labels.label("collection_error", "name_policy", language)
    lines = rendered.text.splitlines()
    at = next(n for n, line in enumerate(lines) if "\\x8c\\xa9" in line)
    assert word in lines[at + 1], "the reason printed under its file"
    assert all(labels.label("collection_error", r, language) in rendered.html
               for r in ("permission_denied", "vanished", "changed_during_read", "unreadable", "name_policy"))
    rules = ("255 バイト", "1,024 バイト", "UTF-8") if language == "ja" else ("255 bytes", "1,024 bytes", "UTF-8")
    for part in (rendered.text, rendered.html):
        assert all(rule in part for rule in rules)


def test_the_correction_cancels_the_invoice_without_calling_it_a_refund_document() -> None:
    """A correction cancels an issued invoice and reissues it; nothing is returned, so no 返還請求書."""
    for kind in ("correction", "invoice"):
        rendered = samples.render_sample(kind, "ja")
        for part in (rendered.subject, rendered.text, rendered.html):
            assert "返還" not in part
    ja, en = samples.render_sample("correction", "ja"), samples.render_sample("correction", "en")
    assert "請求書の取消" in ja.text and "CB-00000042" in ja.text and "2026年10月分" in ja.subject
    assert "Credit note" in en.text and "October 2026" in en.subject


def test_the_english_invoice_keeps_the_issuers_address() -> None:
    """The qualified-invoice fields are the same in both languages: the issuer's address included."""
    for kind in ("invoice", "correction"):
        rendered = samples.render_sample(kind, "en")
        assert OPERATOR.issuer.address_en and OPERATOR.issuer.address_en in rendered.text
        assert OPERATOR.issuer.address_en in rendered.html


def test_a_service_end_is_announced_a_month_ahead_or_not_at_all() -> None:
    """Art. 19(2): one month's notice or more; 19(3): the data's fate is agreed with the customer."""
    with pytest.raises(ValueError, match="19\\(2\\)"):
        ServiceEnd("early", last_day=date(2027, 3, 30), announced_on=date(2027, 3, 1))
    ServiceEnd("on-time", last_day=date(2027, 2, 28), announced_on=date(2027, 1, 31))   # clamped to month end
    rendered = samples.render_sample("service_end", "ja")
    assert "2027年3月31日" in rendered.subject and "第19条第3項" in rendered.text


def test_the_preview_holds_every_kind_with_no_raw_code_internal_note_or_none(tmp_path: Path) -> None:
    """`cloudbackup notices preview`: every kind in both languages, as customers would read them."""
    written = samples.write_previews(tmp_path)
    assert {p.name for p in written} == {f"{k}.{lang}.{ext}" for k in templating.KINDS
                                          for lang in templating.LANGUAGES for ext in ("txt", "html")}
    codes = {m.value for enum in labels.GROUPS.values() for m in enum if "_" in m.value}
    for path in written:
        content = path.read_text(encoding="utf-8")
        assert "None" not in content and "OPERATOR NOTE" not in content and not AGENT_CODE.search(content), path
        assert not codes & set(re.findall(r"\b[a-z]+(?:_[a-z]+)+\b", content)), path


@pytest.mark.parametrize(("change", "words"), [
    (("      email: support@kanto-it-sales.example.jp\n      phone: 03-1234-5678\n", ""),
     "contact needs an email or a phone number"),
    (("  message_id_domain: notices.cloudbackup.example.jp\n", "  message_id_domain: not a domain\n"),
     "message_id_domain"),
])
def test_the_operator_settings_refuse_an_unreachable_agent_or_a_bad_message_id_domain(
        tmp_path: Path, change: tuple[str, str], words: str) -> None:
    """Art. 23, 28: every notice names how to reach the agent; Message-IDs live under a real domain."""
    text = (ROOT / "dags" / "registry" / "operator.yaml").read_text(encoding="utf-8")
    assert change[0] in text
    broken = tmp_path / "operator.yaml"
    broken.write_text(text.replace(change[0], change[1]), encoding="utf-8")
    with pytest.raises(ValueError, match=words):
        load_operator(broken)
