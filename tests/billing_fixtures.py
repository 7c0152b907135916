"""Builders for the billing tests: a customer's contract timeline and a catalog, as plain data."""

from __future__ import annotations

from datetime import date
from typing import Any

from cloudbackup.registry.catalog import Catalog, load_catalog
from cloudbackup.registry.customers import Customer
from conftest import ROOT

CATALOG = load_catalog(ROOT / "dags" / "registry" / "catalog.yaml")


def contract(customer_id: str = "acme", *, contract_date: date = date(2026, 8, 20),
             service_start: date = date(2026, 9, 15), plans: list[dict] | None = None, **timeline: Any) -> Customer:
    """A valid customer with the given timeline fields (suspensions, cancellation, ...)."""
    data = {
        "id": customer_id, "name": f"顧客 {customer_id}", "notice_email": f"{customer_id}@example.jp",
        "sales_agent": "kanto-it-sales", "contract_date": contract_date, "service_start_date": service_start,
        "plans": plans or [{"plan": "standard-100", "approved_on": contract_date, "started_using_on": service_start}],
        "sftp": {"connection_id": "sftp_x", "paths": ["/srv/x"]}, "schedule": "0 2 * * *", **timeline,
    }
    return Customer.model_validate(data)


def catalog(monthly: int = 10000, initial: int = 30000, penalty: int = 10000, *, prices: list[dict] | None = None,
            tax_rates: list[dict] | None = None) -> Catalog:
    """A one-plan catalog ('standard-100') with the given prices, for rules that need odd amounts."""
    return Catalog.model_validate({
        "plans": [{"code": "standard-100", "name_ja": "スタンダード", "name_en": "Standard",
                   "contract_capacity_gb": 100,
                   "prices": prices or [{"effective_from": date(2020, 1, 1), "monthly_fee": monthly,
                                         "initial_fee": initial, "cancellation_penalty": penalty}]}],
        "tax_rates": tax_rates or [{"effective_from": date(2019, 10, 1), "rate": "0.10"}],
    })
