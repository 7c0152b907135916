"""The text `cloudbackup billing preview` prints: a customer's invoices month by month, with the reasons."""

from __future__ import annotations

import unicodedata

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


def preview_text(customer: Customer, catalog: Catalog, month: str, to: str | None = None) -> str:
    """One block per month from `month` through `to` (inclusive); the timeline's warnings first."""
    first = BillingMonth.parse(month)
    last = BillingMonth.parse(to) if to else first
    if last < first:
        raise ValueError(f"--to {last} is before --month {first}")
    lines = [f"WARNING {w}" for w in customer.timeline_warnings]
    current = first
    while current <= last:
        lines += preview_month(customer, catalog, current)
        current = current.next()
    return "\n".join(lines) + "\n"
