"""The text `cloudbackup billing preview` prints: a customer's invoices month by month, with the reasons."""

from __future__ import annotations

import unicodedata
from typing import Any

from cloudbackup.billing.months import BillingMonth
from cloudbackup.billing.rules import bill, explain
from cloudbackup.registry.catalog import Catalog
from cloudbackup.registry.customers import Customer

_WIDTH = 60   # description column, in terminal cells (a CJK character takes two)


def _cells(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _row(label: str, amount: int) -> str:
    return f"  {label}{' ' * max(1, _WIDTH - _cells(label))}{amount:>12,}"


def preview_month(customer: Customer, catalog: Catalog, month: BillingMonth) -> list[str]:
    invoice = bill(customer, catalog, month)
    out = [f"{month}  {customer.id}" + ("" if invoice else "  nothing due")]
    out += [f"  # {note}" for note in explain(customer, catalog, month)]
    if invoice is None:
        return out
    language = customer.language.value
    out += [_row(line.describe(language), line.amount) for line in invoice.lines]
    for s in invoice.tax_summary:
        out.append(_row(f"subtotal at {s.percent}", s.subtotal))
        out.append(_row(f"consumption tax at {s.percent} (truncated)", s.tax))
    out.append(_row("total", invoice.total))
    return out


def _months(month: str, to: str | None) -> list[BillingMonth]:
    first = BillingMonth.parse(month)
    last = BillingMonth.parse(to) if to else first
    if last < first:
        raise ValueError(f"--to {last} is before --month {first}")
    months = [first]
    while months[-1] < last:
        months.append(months[-1].next())
    return months


def preview_text(customer: Customer, catalog: Catalog, month: str, to: str | None = None) -> str:
    """One block per month from `month` through `to` (inclusive); the timeline's warnings first."""
    lines = [f"WARNING {w}" for w in customer.timeline_warnings]
    for current in _months(month, to):
        lines += preview_month(customer, catalog, current)
    return "\n".join(lines) + "\n"


def preview_data(customer: Customer, catalog: Catalog, month: str, to: str | None = None) -> dict[str, Any]:
    """What `preview_text` prints, as data (`billing preview --json`): amounts in integer yen, rates as strings."""
    language = customer.language.value
    months = []
    for current in _months(month, to):
        invoice = bill(customer, catalog, current)
        entry: dict[str, Any] = {"month": str(current), "due": invoice is not None,
                                 "notes": explain(customer, catalog, current)}
        if invoice is not None:
            entry |= {
                "lines": [{"kind": line.kind, "description": line.describe(language), "amount": line.amount,
                           "tax_rate": str(line.tax_rate)} for line in invoice.lines],
                "tax_summary": [{"rate": str(s.rate), "subtotal": s.subtotal, "tax": s.tax}
                                for s in invoice.tax_summary],
                "subtotal": invoice.subtotal, "tax": invoice.tax, "total": invoice.total}
        months.append(entry)
    return {"customer_id": customer.id, "warnings": list(customer.timeline_warnings), "months": months}
