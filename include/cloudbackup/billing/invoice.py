"""An invoice's lines and figures; consumption tax once per invoice per rate, truncated (art. 25, 26)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import cache, cached_property
from typing import TYPE_CHECKING

from cloudbackup.billing.months import BillingMonth

if TYPE_CHECKING:
    from cloudbackup.registry.operator import PaymentInstructions


# The "rate" of a line outside the scope of consumption tax (不課税), e.g. the cancellation penalty of art. 21(3)
# unless the catalog says otherwise: its block on the invoice has no tax and is labelled as outside the scope.
OUT_OF_SCOPE = Decimal("0")


class LineKind(StrEnum):
    MONTHLY_FEE = "monthly_fee"                    # art. 22(1)
    INITIAL_FEE = "initial_fee"                    # art. 22(3)
    CANCELLATION_PENALTY = "cancellation_penalty"  # art. 21(3)
    CREDIT = "credit"                              # a credit note's reversal of an issued line
    # There is deliberately no late-payment charge: art. 24.


@dataclass(frozen=True)
class InvoiceLine:
    kind: str              # a LineKind value
    description: str       # Japanese, as printed on the invoice
    amount: int            # integer yen, before tax; negative only on a credit note
    tax_rate: Decimal
    description_en: str = ""

    def describe(self, language: str) -> str:
        return self.description_en if language == "en" and self.description_en else self.description


@dataclass(frozen=True)
class TaxSummary:
    """One tax rate's block of a qualified invoice: subtotal at the rate and the tax on it."""

    rate: Decimal
    subtotal: int
    tax: int

    @property
    def percent(self) -> str:
        return f"{(self.rate * 100).normalize():f}%"

    @property
    def out_of_scope(self) -> bool:
        """Whether the block is outside the scope of consumption tax (不課税), not a taxed rate."""
        return self.rate == OUT_OF_SCOPE

    def label(self, language: str) -> str:
        """The block's name on an invoice: '10%対象' / 'at 10%', or 不課税 / outside the scope of tax."""
        if self.out_of_scope:
            return "outside the scope of consumption tax" if language == "en" else "不課税（消費税の対象外）"
        return f"at {self.percent}" if language == "en" else f"{self.percent}対象"


@dataclass(frozen=True)
class Invoice:
    customer_id: str
    billing_month: BillingMonth
    sales_agent: str
    lines: tuple[InvoiceLine, ...]
    customer_name: str = ""

    # Cached: an invoice is immutable, and month-end exports read these figures many times.
    @cached_property
    def subtotal(self) -> int:
        return sum(line.amount for line in self.lines)

    @property
    def tax(self) -> int:
        return sum(s.tax for s in self.tax_summary)

    @property
    def total(self) -> int:
        return self.subtotal + self.tax

    @property
    def tax_rates(self) -> list[Decimal]:
        return sorted({line.tax_rate for line in self.lines})

    def subtotal_at(self, rate: Decimal) -> int:
        return sum(line.amount for line in self.lines if line.tax_rate == rate)

    @cached_property
    def tax_summary(self) -> tuple[TaxSummary, ...]:
        """Tax computed once per rate on that rate's subtotal, never per line (qualified-invoice rule)."""
        subtotals: dict[Decimal, int] = {}
        for line in self.lines:
            subtotals[line.tax_rate] = subtotals.get(line.tax_rate, 0) + line.amount
        return tuple(TaxSummary(rate, subtotal, tax_on(subtotal, rate)) for rate, subtotal in sorted(subtotals.items()))


@cache
def _ratio(rate: Decimal) -> tuple[int, int]:
    return rate.as_integer_ratio()


def tax_on(subtotal: int, rate: Decimal) -> int:
    """Consumption tax on a subtotal, fractions of a yen truncated (art. 25, 26), in exact integer arithmetic.

    Truncation is toward zero, so a credit note's tax mirrors the tax of the invoice it reverses.
    """
    numerator, denominator = _ratio(rate)
    product = subtotal * numerator
    return product // denominator if product >= 0 else -(-product // denominator)


def payment_due_date(payment: PaymentInstructions, billing_month: BillingMonth, issue_date: date) -> date:
    """When the customer is to pay (art. 23): the sales agent's rule from the billing month, never before the
    issue date.

    An invoice issued on time (the 1st of the month after its billing month) is due on the agent's rule date
    (`due_months_after_billing_month` months after the billing month, on `due_day`). One issued so late that
    this date is already before its issue date (a late run of an old month) gives the customer the same number
    of days from its issue date as an on-time invoice would have had: the due date is computed from the issue
    date, never in the past (our reading, the one most protective of the customer's money).
    """
    due = payment.due_date(billing_month.last_day)
    if due >= issue_date:
        return due
    on_time = billing_month.next().first_day
    return issue_date + max(due - on_time, timedelta(0))
