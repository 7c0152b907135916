"""Tax on the cancellation penalty (art. 21(3)): a catalog setting, outside the scope of consumption tax by
default (消費税法基本通達 5-5-2: a penalty compensates for a lost contract and is no consideration for a service)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from billing_fixtures import CATALOG, catalog, contract

from cloudbackup.billing import BillingMonth, bill
from cloudbackup.registry.catalog import Catalog

M = BillingMonth.parse


def _cancelled_before_start():
    return contract(contract_date=date(2026, 8, 20), service_start=date(2026, 9, 15),
                    cancelled_before_start_on=date(2026, 9, 2))


def test_art21_3_the_penalty_is_not_taxed_by_default_and_printed_as_outside_the_scope() -> None:
    assert CATALOG.cancellation_penalty_taxable is False, "dags/registry/catalog.yaml keeps the default"
    invoice = bill(_cancelled_before_start(), CATALOG, M("2026-09"))
    assert invoice is not None
    assert [(line.kind, line.amount, line.tax_rate) for line in invoice.lines] == \
        [("cancellation_penalty", 10000, Decimal("0"))]
    assert (invoice.subtotal, invoice.tax, invoice.total) == (10000, 0, 10000)
    [block] = invoice.tax_summary
    assert block.out_of_scope
    assert block.label("ja") == "不課税（消費税の対象外）"
    assert block.label("en") == "outside the scope of consumption tax"


def test_art21_3_an_operator_may_tax_the_penalty_at_the_months_rate() -> None:
    taxed = Catalog.model_validate({**catalog().model_dump(), "cancellation_penalty_taxable": True})
    invoice = bill(_cancelled_before_start(), taxed, M("2026-09"))
    assert invoice is not None
    assert [line.tax_rate for line in invoice.lines] == [Decimal("0.10")]
    assert (invoice.subtotal, invoice.tax, invoice.total) == (10000, 1000, 11000)
    assert invoice.tax_summary[0].label("ja") == "10%対象"


def test_art25_monthly_and_initial_fees_stay_taxed_whatever_the_penalty_setting() -> None:
    invoice = bill(contract(), CATALOG, M("2026-10"))
    assert invoice is not None
    assert {line.tax_rate for line in invoice.lines} == {Decimal("0.10")}
    assert invoice.tax == 4000
