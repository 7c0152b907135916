"""The fee rules of the terms, one test per rule (art. 9(4), 21(2), 21(3), 22(1)–(3), 24, 25, 26)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from billing_fixtures import CATALOG, catalog, contract

from cloudbackup.billing import BillingMonth, Invoice, InvoiceLine, LineKind, bill, tax_on

M = BillingMonth.parse


def _fees(customer, cat, first: str, last: str) -> dict[str, list[tuple[str, int]]]:
    """Month → [(line kind, amount)] for every month in the range that has an invoice."""
    out, month = {}, M(first)
    while month <= M(last):
        invoice = bill(customer, cat, month)
        if invoice is not None:
            out[str(month)] = [(line.kind, line.amount) for line in invoice.lines]
        month = month.next()
    return out


def test_art22_1_the_monthly_fee_starts_on_the_1st_of_the_month_after_the_service_start() -> None:
    customer = contract(contract_date=date(2026, 8, 20), service_start=date(2026, 9, 15))
    assert bill(customer, CATALOG, M("2026-08")) is None
    assert bill(customer, CATALOG, M("2026-09")) is None, "the start month is not charged"
    assert [line.kind for line in bill(customer, CATALOG, M("2026-10")).lines] == ["monthly_fee", "initial_fee"]


@pytest.mark.parametrize("start_day", [1, 15, 30])
def test_art22_1_no_proration_of_the_first_month_whatever_the_start_day(start_day: int) -> None:
    customer = contract(contract_date=date(2026, 9, 1), service_start=date(2026, 9, start_day))
    assert bill(customer, CATALOG, M("2026-10")).subtotal == 10000 + 30000


def test_art22_1_the_end_month_is_charged_in_full_and_nothing_after() -> None:
    customer = contract(cancellation={"notice_date": date(2026, 12, 1), "requested_end": date(2027, 1, 3)})
    assert customer.contract_end == date(2027, 1, 3)
    fees = _fees(customer, CATALOG, "2026-09", "2027-03")
    assert fees["2027-01"] == [("monthly_fee", 10000)], "ending on the 3rd still pays the whole month"
    assert "2027-02" not in fees and "2027-03" not in fees


def test_art9_4_and_22_1_the_change_month_is_charged_at_the_pre_change_fee() -> None:
    customer = contract(plans=[
        {"plan": "standard-100", "approved_on": date(2026, 8, 20), "started_using_on": date(2026, 9, 15)},
        {"plan": "business-500", "approved_on": date(2026, 11, 25), "started_using_on": date(2026, 12, 2)},
    ])
    fees = _fees(customer, CATALOG, "2026-11", "2027-01")
    # Approved in November but first used in December: the change month is December.
    assert fees["2026-11"] == [("monthly_fee", 10000)]
    assert fees["2026-12"] == [("monthly_fee", 10000)], "change month: pre-change fee"
    assert fees["2027-01"] == [("monthly_fee", 42000)], "new plan from the 1st of the following month"


def test_art9_4_a_change_used_before_its_approval_applies_after_the_approval_month() -> None:
    customer = contract(plans=[
        {"plan": "standard-100", "approved_on": date(2026, 8, 20), "started_using_on": date(2026, 9, 15)},
        {"plan": "business-500", "approved_on": date(2026, 11, 2), "started_using_on": date(2026, 11, 2)},
    ])
    assert _fees(customer, CATALOG, "2026-11", "2026-12") == {"2026-11": [("monthly_fee", 10000)],
                                                             "2026-12": [("monthly_fee", 42000)]}


def test_art22_2_a_price_version_applies_from_its_effective_date_never_mid_month() -> None:
    cat = catalog(prices=[
        {"effective_from": date(2020, 1, 1), "monthly_fee": 10000, "initial_fee": 30000},
        {"effective_from": date(2026, 11, 1), "monthly_fee": 11000, "initial_fee": 30000},
        {"effective_from": date(2027, 1, 15), "monthly_fee": 12000, "initial_fee": 30000},
    ])
    customer = contract(service_start=date(2026, 9, 15))
    fees = _fees(customer, cat, "2026-10", "2027-02")
    assert [f[0][1] for f in fees.values()] == [10000, 11000, 11000, 11000, 12000]


def test_art22_3_the_initial_fee_is_charged_once_on_the_first_invoice_with_the_first_monthly_fee() -> None:
    customer = contract()
    kinds = {month: [k for k, _ in lines] for month, lines in _fees(customer, CATALOG, "2026-08", "2027-12").items()}
    assert kinds["2026-10"] == ["monthly_fee", "initial_fee"]
    assert sum(k.count("initial_fee") for k in kinds.values()) == 1


def test_art22_3_a_contract_ending_in_its_start_month_pays_the_initial_fee_alone() -> None:
    """Reading of 22(1)+(3): no monthly fee ever falls due, but the one invoice carries the initial fee."""
    # Contract and notice on 08-31: the one-month periods run 09-01 to 09-30 (Civil Code art. 140, 143(1)), so the
    # service can end on 09-30, in its start month.
    customer = contract(contract_date=date(2026, 8, 31), service_start=date(2026, 9, 1),
                        cancellation={"notice_date": date(2026, 8, 31), "requested_end": date(2026, 9, 30)})
    assert _fees(customer, CATALOG, "2026-08", "2026-12") == {"2026-09": [("initial_fee", 30000)]}


def test_art21_2_a_suspended_month_is_charged_as_if_served() -> None:
    served = contract()
    suspended = contract(suspensions=[{"from": date(2026, 11, 1), "to": date(2026, 12, 31), "reason": "art. 14"}])
    assert suspended.suspended_on(date(2026, 11, 20))
    assert _fees(suspended, CATALOG, "2026-10", "2027-01") == _fees(served, CATALOG, "2026-10", "2027-01")


def test_art21_3_cancellation_before_the_service_start_is_billed_the_catalog_penalty_only() -> None:
    customer = contract(cancelled_before_start_on=date(2026, 9, 2))
    assert _fees(customer, CATALOG, "2026-08", "2027-01") == {"2026-09": [("cancellation_penalty", 10000)]}
    free = contract(cancelled_before_start_on=date(2026, 9, 2))
    assert _fees(free, catalog(penalty=0), "2026-08", "2027-01") == {}, "a zero penalty bills nothing"


def test_art24_there_are_no_late_payment_charges() -> None:
    assert {k.value for k in LineKind} == {"monthly_fee", "initial_fee", "cancellation_penalty", "credit"}
    customer = contract()
    # Payments are not even an input of billing: a month's invoice cannot depend on an earlier one being unpaid.
    assert {line.kind for month in ("2026-11", "2026-12") for line in bill(customer, CATALOG, M(month)).lines} \
        == {"monthly_fee"}


def test_art25_26_tax_once_per_invoice_on_the_subtotal_truncated_not_per_line() -> None:
    customer = contract()
    invoice = bill(customer, catalog(monthly=12345, initial=678), M("2026-10"))
    assert invoice.subtotal == 13023
    assert invoice.tax == 1302, "floor(13023 × 0.10); per-line rounding would give 1234 + 67 = 1301"
    assert invoice.total == 14325
    assert all(isinstance(x, int) for x in (invoice.subtotal, invoice.tax, invoice.total))


def test_art25_the_tax_rate_in_effect_at_the_month_end_applies_and_is_shown_per_rate() -> None:
    cat = catalog(tax_rates=[{"effective_from": date(2019, 10, 1), "rate": "0.10"},
                             {"effective_from": date(2027, 4, 1), "rate": "0.12"}])
    customer = contract()
    assert bill(customer, cat, M("2027-03")).tax == 1000
    april = bill(customer, cat, M("2027-04"))
    assert [(s.rate, s.subtotal, s.tax, s.percent) for s in april.tax_summary] == [(Decimal("0.12"), 10000, 1200,
                                                                                    "12%")]


def test_tax_is_computed_per_rate_when_an_invoice_mixes_rates() -> None:
    lines = (InvoiceLine("monthly_fee", "a", 999, Decimal("0.10")),
             InvoiceLine("monthly_fee", "b", 999, Decimal("0.08")),
             InvoiceLine("initial_fee", "c", 1, Decimal("0.10")))
    invoice = Invoice("acme", M("2026-10"), "agent", lines)
    assert [(s.subtotal, s.tax) for s in invoice.tax_summary] == [(999, 79), (1000, 100)]
    assert invoice.tax == 179


def test_art26_truncation_of_a_credit_mirrors_the_invoice() -> None:
    assert tax_on(13023, Decimal("0.10")) == 1302
    assert tax_on(-13023, Decimal("0.10")) == -1302


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "26-01", "2026/01", ""])
def test_a_billing_month_is_yyyy_mm(text: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        BillingMonth.parse(text)


def test_billing_months_step_across_years() -> None:
    assert M("2026-12").next() == M("2027-01") and M("2027-01").previous() == M("2026-12")
    assert M("2024-02").last_day == date(2024, 2, 29)
