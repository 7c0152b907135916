"""Properties of the fee rules over generated timelines (hypothesis): no proration (art. 22(1)), the initial fee
exactly once (art. 22(3)), tax once per invoice per rate, truncated (art. 25, 26)."""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from billing_fixtures import CATALOG, contract
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudbackup.billing import BillingMonth, Invoice, InvoiceLine, bill
from cloudbackup.registry.customers import Customer

MONTHS = st.integers(min_value=0, max_value=35).map(lambda i: BillingMonth(2025, 1).plus(i))


def _day(month: BillingMonth, draw_day: int) -> date:
    return date(month.year, month.month, min(draw_day, calendar.monthrange(month.year, month.month)[1]))


def _totals(customer: Customer, first: BillingMonth, last: BillingMonth) -> list[tuple[str, int, int]]:
    out, month = [], first
    while month <= last:
        invoice = bill(customer, CATALOG, month)
        out.append((str(month), invoice.subtotal if invoice else 0, invoice.total if invoice else 0))
        month = month.next()
    return out


@settings(max_examples=150, deadline=None)
@given(start=MONTHS, months_served=st.integers(min_value=0, max_value=24), start_day=st.integers(1, 31),
       end_day=st.integers(1, 31))
def test_no_proration_the_same_fees_whatever_the_day_of_start_or_end(start: BillingMonth, months_served: int,
                                                                     start_day: int, end_day: int) -> None:
    """Art. 22(1): only the months of the start and the end matter, never their days."""
    end = start.plus(months_served)

    def customer(sd: int, ed: int) -> Customer:
        service_start = _day(start, sd)
        return contract(contract_date=service_start, service_start=service_start,
                        operator_termination={"date": max(service_start, _day(end, ed))})

    on_firsts = customer(1, 31)
    assert _totals(customer(start_day, end_day), start, end.plus(2)) == _totals(on_firsts, start, end.plus(2))


@st.composite
def timelines(draw: st.DrawFn) -> Customer:
    """Any valid timeline: plan changes, suspensions, cancellation, termination or cancellation before start."""
    contract_date = _day(draw(MONTHS), draw(st.integers(1, 31)))
    start = contract_date + timedelta(days=draw(st.integers(0, 90)))
    ending = draw(st.sampled_from(["open", "cancellation", "termination", "before_start"]))
    if ending == "before_start" and start > contract_date:
        cancelled = contract_date + timedelta(days=draw(st.integers(0, (start - contract_date).days - 1)))
        return contract(contract_date=contract_date, service_start=start, cancelled_before_start_on=cancelled)
    timeline: dict = {}
    end = None
    if ending == "cancellation":
        notice = start + timedelta(days=draw(st.integers(0, 400)))
        end = notice + timedelta(days=draw(st.integers(0, 90)))
        timeline["cancellation"] = {"notice_date": notice, "requested_end": end}
    elif ending == "termination":
        end = start + timedelta(days=draw(st.integers(0, 400)))
        timeline["operator_termination"] = {"date": end}
    plans = [{"plan": "standard-100", "approved_on": contract_date, "started_using_on": start}]
    if draw(st.booleans()):
        used = start + timedelta(days=draw(st.integers(1, 300)))
        if end is None or used <= end:
            approved = max(contract_date, used - timedelta(days=draw(st.integers(-20, 20))))
            plans.append({"plan": "business-500", "approved_on": approved, "started_using_on": used})
    if draw(st.booleans()):
        s_from = start + timedelta(days=draw(st.integers(0, 200)))
        if end is None or s_from <= end:
            timeline["suspensions"] = [{"from": s_from, "to": s_from + timedelta(days=draw(st.integers(0, 60)))}]
    return contract(contract_date=contract_date, service_start=start, plans=plans, **timeline)


@settings(max_examples=200, deadline=None)
@given(customer=timelines())
def test_the_initial_fee_is_charged_exactly_once_over_any_timeline(customer: Customer) -> None:
    """Art. 22(3): once, on the first invoice; never after a cancellation before the service start (art. 21(3))."""
    month, last = BillingMonth.of(customer.contract_date), BillingMonth.of(customer.service_start_date).plus(30)
    initial_fees, first_invoice = [], None
    while month <= last:
        invoice = bill(customer, CATALOG, month)
        if invoice is not None:
            first_invoice = first_invoice or month
            initial_fees += [month for line in invoice.lines if line.kind == "initial_fee"]
        month = month.next()
    if customer.cancelled_before_start_on is not None:
        assert initial_fees == []
    else:
        assert initial_fees == [first_invoice]


AMOUNTS = st.integers(min_value=0, max_value=10_000_000)
RATES = st.sampled_from([Decimal("0.10"), Decimal("0.08"), Decimal("0.05"), Decimal("0.125")])


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.tuples(AMOUNTS, RATES), min_size=1, max_size=8))
def test_tax_is_floor_of_subtotal_times_rate_per_invoice_per_rate(lines: list[tuple[int, Decimal]]) -> None:
    """Art. 25, 26 and the qualified-invoice rule: one computation per rate on the subtotal, truncated."""
    invoice = Invoice("acme", BillingMonth(2026, 10), "agent",
                      tuple(InvoiceLine("monthly_fee", "x", amount, rate) for amount, rate in lines))
    expected = 0
    for rate in {r for _, r in lines}:
        subtotal = sum(a for a, r in lines if r == rate)
        expected += (subtotal * Fraction(rate)).__floor__()
    assert invoice.tax == expected
    assert invoice.total == sum(a for a, _ in lines) + expected
