"""Billing rules: a customer's invoice lines for one billing month, as pure functions (art. 22, 25, 26)."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_FLOOR, Decimal

from cloudbackup.catalog import Catalog
from cloudbackup.registry import Customer


@dataclass(frozen=True, order=True)
class BillingMonth:
    """A calendar month of the Asia/Tokyo business calendar; invoices close at its end (art. 22(1))."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> BillingMonth:
        m = re.fullmatch(r"(\d{4})-(\d{2})", text)
        if not m or not 1 <= int(m.group(2)) <= 12:
            raise ValueError(f"billing month {text!r} must be YYYY-MM")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def of(cls, day: date) -> BillingMonth:
        return cls(day.year, day.month)

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])

    def next(self) -> BillingMonth:
        return BillingMonth(self.year + self.month // 12, self.month % 12 + 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True)
class InvoiceLine:
    kind: str              # monthly_fee | initial_fee
    description: str
    amount: int            # yen, before tax
    tax_rate: Decimal


@dataclass(frozen=True)
class Invoice:
    customer_id: str
    billing_month: BillingMonth
    sales_agent: str
    lines: tuple[InvoiceLine, ...]

    @property
    def subtotal(self) -> int:
        return sum(line.amount for line in self.lines)

    @property
    def tax(self) -> int:
        return sum(tax_on(self.subtotal_at(rate), rate) for rate in self.tax_rates)

    @property
    def total(self) -> int:
        return self.subtotal + self.tax

    @property
    def tax_rates(self) -> list[Decimal]:
        return sorted({line.tax_rate for line in self.lines})

    def subtotal_at(self, rate: Decimal) -> int:
        return sum(line.amount for line in self.lines if line.tax_rate == rate)


def tax_on(subtotal: int, rate: Decimal) -> int:
    """Consumption tax on a subtotal, fractions of a yen truncated (art. 25, 26)."""
    return int((Decimal(subtotal) * rate).to_integral_value(rounding=ROUND_FLOOR))


def first_billed_month(customer: Customer) -> BillingMonth:
    """The monthly fee runs from the 1st of the month after the service start (art. 22(1))."""
    return BillingMonth.of(customer.service_start_date).next()


def plan_code_for(customer: Customer, month: BillingMonth) -> str:
    """A change applies from the month after approval and first use; its own month keeps the old
    fee (art. 9(4), 22(1))."""
    code = customer.plans[0].plan
    for change in customer.plans[1:]:
        if BillingMonth.of(max(change.approved_on, change.started_using_on)) < month:
            code = change.plan
    return code


def bill(customer: Customer, catalog: Catalog, month: BillingMonth) -> Invoice | None:
    """The invoice for `month`, or None when nothing is due for it."""
    if month < first_billed_month(customer):
        return None
    plan = catalog.plan(plan_code_for(customer, month))
    price = plan.price_on(month.first_day)
    rate = catalog.tax_rate_on(month.last_day)
    lines = [InvoiceLine("monthly_fee", f"{plan.name_ja} 月額利用料金 {month}", price.monthly_fee, rate)]
    if month == first_billed_month(customer):
        lines.append(InvoiceLine("initial_fee", f"{plan.name_ja} 初期費用", price.initial_fee, rate))
    return Invoice(customer.id, month, customer.sales_agent, tuple(lines))
