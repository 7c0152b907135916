"""Sample notices of every kind in both languages, for review (`cloudbackup notices preview`) and tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cloudbackup.billing import BillingMonth, bill
from cloudbackup.notices.kinds import CapacityNotice, ErrorPath, ServiceEnd, UsagePoint, digest
from cloudbackup.notices.templating import KINDS, LANGUAGES, RenderedNotice, render
from cloudbackup.registry.catalog import GB, load_catalog
from cloudbackup.registry.customers import Customer, Suspension, SuspensionReason
from cloudbackup.registry.maintenance import Window
from cloudbackup.registry.operator import load_operator

REPO_REGISTRY = Path(__file__).resolve().parents[3] / "dags" / "registry"
SAMPLE_MONTH = BillingMonth(2026, 10)
SAMPLE_MESSAGE = {"ja": "2026年10月分のお支払いを確認でき次第、利用停止を解除いたします。",
                  "en": "We lift the suspension as soon as the payment for October 2026 is received."}


def sample_customer(language: str, customer_id: str | None = None) -> Customer:
    cid = customer_id or f"sample-{language}"
    name = "株式会社サンプル商事" if language == "ja" else "Sample Trading K.K."
    return Customer.model_validate({
        "id": cid, "name": name, "notice_email": f"backup-admin@{cid}.example.jp", "language": language,
        "sales_agent": "kanto-it-sales", "contract_date": date(2026, 8, 20), "service_start_date": date(2026, 9, 15),
        "plans": [{"plan": "standard-100", "approved_on": date(2026, 8, 20), "started_using_on": date(2026, 9, 15)}],
        "sftp": {"connection_id": f"sftp_{cid.replace('-', '_')}", "paths": ["/srv/share"]},
        "schedule": "0 2 * * *"})


def _invoice_context(customer: Customer, registry_dir: Path, correction: bool = False) -> dict[str, Any]:
    # Built by billing's own code (invoices.notice_context), so the preview shows what issuing sends. The
    # correction sample: invoice CB-00000042 cancelled by credit note CB-00000051 and reissued as CB-00000052.
    from cloudbackup.billing import documents as invoices

    operator = load_operator(registry_dir / "operator.yaml")
    invoice = bill(customer, load_catalog(registry_dir / "catalog.yaml"), SAMPLE_MONTH)
    if invoice is None:
        raise ValueError(f"sample customer has nothing to bill in {SAMPLE_MONTH}")
    due = operator.agent(invoice.sales_agent).payment.due_date(SAMPLE_MONTH.last_day)
    if not correction:
        document = invoices.Document(invoice, "CB-00000042", invoices.INVOICE, 0, SAMPLE_MONTH.next().first_day,
                                     due, operator.issuer.registration_number)
        return invoices.notice_context(document, operator)
    reissue = invoices.Document(invoice, "CB-00000052", invoices.INVOICE, 1, date(2026, 11, 10), due,
                                operator.issuer.registration_number, "CB-00000042")
    reason = ("ご利用開始日の登録誤り（正しくは2026年9月15日）のため" if customer.language == "ja"
              else "the service start date was recorded wrongly (it is 15 September 2026)")
    replaces = {"invoice_number": "CB-00000042", "credit_note_number": "CB-00000051", "credit_total": -55_000,
                "reason": reason}
    return invoices.notice_context(reissue, operator, replaces)


def sample_context(kind: str, customer: Customer, registry_dir: Path = REPO_REGISTRY) -> dict[str, Any]:
    """The context the outbox would render `kind` with, for a plausible event of `customer`."""
    started = datetime(2026, 11, 24, 17, 0, tzinfo=UTC)  # 02:00 JST on the 25th
    if kind == "collection_errors":
        errors = ([ErrorPath(f"/srv/share/経理/2026年度/請求書_{n:03d}.xlsx", "permission_denied") for n in range(30)]
                  + [ErrorPath("/srv/share/tmp/\\x8c\\xa9\\x90\\xcf\\x8f\\x91.txt", "name_policy"),
                     ErrorPath("/srv/share/logs/app.log", "changed_during_read"),
                     ErrorPath("/srv/share/a/tmp/lock.db", "vanished"),
                     ErrorPath("/srv/share/a/broken.iso", "unreadable")])
        return {"digest": digest("scheduled__2026-11-24T17:00:00+00:00", started, started + timedelta(minutes=42),
                                 12_345, errors)}
    if kind == "capacity":
        history = tuple(UsagePoint(started - timedelta(days=6 - d), (62 + 4 * d) * GB + 123_456_789)
                        for d in range(7))
        last = history[-1]
        return {"capacity": CapacityNotice(80, last.counted_bytes, 100 * GB, last.at, history)}
    if kind == "maintenance":
        return {"window": Window(id="2026-12-maint-1", start=datetime(2026, 12, 5, 16, 0, tzinfo=UTC),
                                 end=datetime(2026, 12, 5, 22, 0, tzinfo=UTC),
                                 reason="データセンター設備の定期保守 / Scheduled data-centre maintenance")}
    if kind == "suspension":
        # `reason` is the operator's note: the notice names the code's label and the customer message only.
        return {"suspension": Suspension.model_validate({
            "from": date(2026, 12, 1), "reason": "OPERATOR NOTE: 2 reminders unanswered (ticket 4711)",
            "reason_code": SuspensionReason.NON_PAYMENT,
            "customer_message": SAMPLE_MESSAGE[customer.language]})}
    if kind == "service_end":
        return {"service_end": ServiceEnd("2027-03-end", last_day=date(2027, 3, 31), announced_on=date(2026, 12, 1))}
    if kind == "invoice":
        return _invoice_context(customer, registry_dir)
    if kind == "correction":
        return _invoice_context(customer, registry_dir, correction=True)
    raise ValueError(f"no sample for notice kind {kind!r}")


def render_sample(kind: str, language: str, registry_dir: Path = REPO_REGISTRY) -> RenderedNotice:
    """Rendered as the outbox renders it: the customer's sales agent in the footer, the operator's file-name policy."""
    from cloudbackup.registry.backup_settings import load_backup_settings

    customer = sample_customer(language)
    operator = load_operator(registry_dir / "operator.yaml")
    policy = load_backup_settings(registry_dir / "backup.yaml").name_policy
    return render(kind, language, {"customer": customer, "agent": operator.sales_agents.get(customer.sales_agent),
                                   "name_policy": policy, **sample_context(kind, customer, registry_dir)})


def write_previews(out_dir: Path, registry_dir: Path = REPO_REGISTRY) -> list[Path]:
    """`<kind>.<lang>.txt` (subject on top) and `<kind>.<lang>.html` for every kind and language."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in KINDS:
        for language in LANGUAGES:
            rendered = render_sample(kind, language, registry_dir)
            txt, html = out_dir / f"{kind}.{language}.txt", out_dir / f"{kind}.{language}.html"
            txt.write_text(f"Subject: {rendered.subject}\n\n{rendered.text}", encoding="utf-8")
            html.write_text(rendered.html, encoding="utf-8")
            written += [txt, html]
    return written
