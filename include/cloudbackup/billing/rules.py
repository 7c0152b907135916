"""The fee rules of the terms (art. 9(4), 21, 22), each in one function: timeline + catalog + month → lines."""

from __future__ import annotations

from decimal import Decimal

from cloudbackup.billing.invoice import OUT_OF_SCOPE, Invoice, InvoiceLine, LineKind
from cloudbackup.billing.months import BillingMonth
from cloudbackup.registry.catalog import Catalog, Plan, PriceVersion
from cloudbackup.registry.customers import Customer

# Suspensions (art. 14) are deliberately absent from every rule below: a suspended customer is charged
# as if served (art. 21(2)). Late-payment charges are absent too: there are none (art. 24).


def first_billed_month(customer: Customer) -> BillingMonth:
    """The monthly fee runs from the 1st of the month after the service start; no daily proration
    (art. 22(1))."""
    return BillingMonth.of(customer.service_start_date).next()


def last_billed_month(customer: Customer) -> BillingMonth | None:
    """The month the service ends in is charged in full, whatever the day (art. 22(1)); None while the
    contract runs on."""
    end = customer.contract_end
    return None if end is None else BillingMonth.of(end)


def monthly_fee_due(customer: Customer, month: BillingMonth) -> bool:
    """A month carries the monthly fee from the first billed month through the end month (art. 22(1))."""
    if customer.cancelled_before_start_on is not None:
        return False
    last = last_billed_month(customer)
    return first_billed_month(customer) <= month and (last is None or month <= last)


def billed_months(customer: Customer, until: BillingMonth) -> list[BillingMonth]:
    """Every month up to `until` whose invoice carries the monthly fee."""
    month, out = first_billed_month(customer), []
    while month <= until:
        if monthly_fee_due(customer, month):
            out.append(month)
        month = month.next()
    return out


def plan_code_for(customer: Customer, month: BillingMonth) -> str:
    """A change applies from the 1st of the month after the month in which the operator approved it and
    the customer began using the changed service; its own month keeps the pre-change fee (art. 9(4), 22(1))."""
    code = customer.plans[0].plan
    for change in customer.plans[1:]:
        if BillingMonth.of(max(change.approved_on, change.started_using_on)) < month:
            code = change.plan
    return code


def price_for(plan: Plan, month: BillingMonth) -> PriceVersion:
    """A month is charged at the price version in effect on its 1st: a changed price applies from its
    effective date (art. 22(2)), and a month is never split between two prices (no proration)."""
    return plan.price_on(month.first_day)


def initial_fee_month(customer: Customer) -> BillingMonth | None:
    """The initial fee is charged once, on the first invoice, with the first monthly fee (art. 22(3)).

    A contract that ends in its start month never has a monthly fee; its only invoice, for the end
    month, carries the initial fee. A contract cancelled before the service start owes no initial fee.
    """
    if customer.cancelled_before_start_on is not None:
        return None
    last = last_billed_month(customer)
    first = first_billed_month(customer)
    return last if last is not None and last < first else first


def _application_price(customer: Customer, catalog: Catalog) -> tuple[Plan, PriceVersion]:
    # One-off amounts follow the application the contract was formed on (art. 20): the first plan's
    # price version in effect on the contract date.
    plan = catalog.plan(customer.plans[0].plan)
    return plan, plan.price_on(customer.contract_date)


def penalty_month(customer: Customer) -> BillingMonth | None:
    """A cancellation between the contract and the service start is billed in its own month (art. 21(3))."""
    day = customer.cancelled_before_start_on
    return None if day is None else BillingMonth.of(day)


def penalty_tax_rate(catalog: Catalog, rate: Decimal) -> Decimal:
    """The cancellation penalty (art. 21(3)) is compensation, not consideration for a service: outside the scope
    of consumption tax (消費税法基本通達 5-5-2) unless the catalog's `cancellation_penalty_taxable` says so."""
    return rate if catalog.cancellation_penalty_taxable else OUT_OF_SCOPE


def bill(customer: Customer, catalog: Catalog, month: BillingMonth) -> Invoice | None:
    """The invoice for `month`, or None when nothing is due for it."""
    if month < BillingMonth.of(customer.contract_date):
        return None     # nothing is ever due before the contract (cheap exit for long registries)
    rate = catalog.tax_rate_on(month.last_day)
    lines: list[InvoiceLine] = []
    if monthly_fee_due(customer, month):
        plan = catalog.plan(plan_code_for(customer, month))
        lines.append(InvoiceLine(LineKind.MONTHLY_FEE.value, f"{plan.name_ja} 月額利用料金（{month}）",
                                 price_for(plan, month).monthly_fee, rate,
                                 f"{plan.name_en} monthly fee ({month})"))
    # initial_fee_month is never after the first billed month: most months skip computing it.
    if month <= first_billed_month(customer) and month == initial_fee_month(customer):
        plan, price = _application_price(customer, catalog)
        lines.append(InvoiceLine(LineKind.INITIAL_FEE.value, f"{plan.name_ja} 初期費用", price.initial_fee, rate,
                                 f"{plan.name_en} initial fee"))
    if month == penalty_month(customer):
        plan, price = _application_price(customer, catalog)
        if price.cancellation_penalty:
            lines.append(InvoiceLine(LineKind.CANCELLATION_PENALTY.value,
                                     f"{plan.name_ja} サービス開始前の解約に伴う違約金（約款第21条第3項）",
                                     price.cancellation_penalty, penalty_tax_rate(catalog, rate),
                                     f"{plan.name_en} penalty for cancellation before service start "
                                     "(terms art. 21(3))"))
    if not lines:
        return None
    return Invoice(customer.id, month, customer.sales_agent, tuple(lines), customer.name)


def explain(customer: Customer, catalog: Catalog, month: BillingMonth) -> list[str]:
    """Why the month is billed as it is, citing the terms: for previews and the operator's eyes."""
    notes: list[str] = []
    start = BillingMonth.of(customer.service_start_date)
    if customer.cancelled_before_start_on is not None:
        if month == penalty_month(customer):
            notes.append("cancelled before the service start: penalty from the catalog (art. 21(3))")
        return notes
    if month == start:
        notes.append(f"service start month ({customer.service_start_date}): no monthly fee, no proration "
                     "(art. 22(1))")
    # initial_fee_month is never after the first billed month: most months skip computing it.
    if month <= first_billed_month(customer) and month == initial_fee_month(customer):
        notes.append("first invoice: initial fee with the first monthly fee (art. 22(3))")
    for change in customer.plans[1:]:
        if BillingMonth.of(max(change.approved_on, change.started_using_on)) == month:
            notes.append(f"plan change to {change.plan} this month: pre-change fee; the new plan from the 1st "
                         "of next month (art. 9(4), 22(1))")
    if monthly_fee_due(customer, month):
        plan = catalog.plan(plan_code_for(customer, month))
        if len(plan.prices) > 1:
            notes.append(f"{plan.code} at its price effective from {price_for(plan, month).effective_from} "
                         "(art. 22(2))")
    if any(s.from_ <= month.last_day and (s.to is None or s.to >= month.first_day) for s in customer.suspensions):
        notes.append("suspended during the month: charged as if served (art. 21(2))")
    if month == last_billed_month(customer):
        notes.append(f"service ends {customer.contract_end}: end month charged in full (art. 22(1))")
    return notes
