"""Registry and catalog files: what the terms need per customer (art. 5–7, 9, 16) and per plan (art. 22(2))."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from cloudbackup.registry.catalog import load_catalog
from cloudbackup.registry.customers import load_customer, load_registry
from conftest import ROOT, customer_yaml


def test_the_shipped_registry_and_catalog_are_valid() -> None:
    registry = load_registry(ROOT / "dags" / "registry")
    catalog = load_catalog(ROOT / "dags" / "registry" / "catalog.yaml")
    assert registry.errors == ()
    assert {c.id for c in registry.customers} == {"demo-tanaka", "demo-globex"}
    for customer in registry.customers:
        for change in customer.plans:
            assert catalog.plan(change.plan).contract_capacity_gb > 0


def test_catalog_price_versions_apply_from_their_effective_date() -> None:
    """Art. 22(2): a changed price applies from its effective date."""
    plan = load_catalog(ROOT / "dags" / "registry" / "catalog.yaml").plan("business-500")
    assert plan.price_on(date(2026, 9, 30)).monthly_fee == 40000
    assert plan.price_on(date(2026, 10, 1)).monthly_fee == 42000


def test_tax_rate_is_a_decimal_never_a_float() -> None:
    catalog = load_catalog(ROOT / "dags" / "registry" / "catalog.yaml")
    assert catalog.tax_rate_on(date(2026, 11, 1)) == Decimal("0.10")


def test_a_broken_customer_file_names_the_file_and_the_field(tmp_path: Path) -> None:
    (tmp_path / "customers").mkdir()
    good = tmp_path / "customers" / "good-co.yaml"
    good.write_text(customer_yaml("good-co", paths=["/srv/a"]), encoding="utf-8")
    bad = tmp_path / "customers" / "bad-co.yaml"
    bad.write_text(customer_yaml("bad-co", paths=["/srv/a"]).replace("language: ja", "language: fr"),
                   encoding="utf-8")
    registry = load_registry(tmp_path)
    assert [c.id for c in registry.customers] == ["good-co"]
    (error,) = registry.errors
    assert error.file == bad
    assert "field 'language'" in str(error) and "bad-co.yaml" in str(error)


@pytest.mark.parametrize(("change", "field"), [
    (("/srv/a", "srv/relative"), "sftp.paths"),
    (("notice_email: bad-co@customer.example.jp", "notice_email: not-an-address"), "notice_email"),
    (('schedule: "0 2 * * *"', 'schedule: "daily"'), "schedule"),
    (("service_start_date: 2026-09-01", "service_start_date: 2026-08-01"), "(file)"),
    (("status: active", "status: paused"), "status"),
])
def test_invalid_fields_are_reported_by_name(tmp_path: Path, change: tuple[str, str], field: str) -> None:
    path = tmp_path / "bad-co.yaml"
    path.write_text(customer_yaml("bad-co", paths=["/srv/a"]).replace(*change), encoding="utf-8")
    with pytest.raises(ValueError) as excinfo:
        load_customer(path)
    assert str(path) in str(excinfo.value)
    assert f"field '{field}'" in str(excinfo.value)


def test_the_file_name_is_the_customer_id(tmp_path: Path) -> None:
    path = tmp_path / "other-name.yaml"
    path.write_text(customer_yaml("bad-co", paths=["/srv/a"]), encoding="utf-8")
    with pytest.raises(ValueError, match="field 'id'"):
        load_customer(path)


def test_unreadable_yaml_is_reported_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("id: [unclosed", encoding="utf-8")
    with pytest.raises(ValueError, match="broken.yaml: cannot read YAML"):
        load_customer(path)


def test_a_contract_capacity_may_be_a_fraction_of_a_gb_in_whole_bytes(tmp_path: Path) -> None:
    """Art. 6: the contract capacity in decimal GB; a small trial plan (0.001 GB = 1,000,000 bytes) is allowed,
    a capacity that is not a whole number of bytes is not."""
    catalog = load_catalog(ROOT / "dags" / "registry" / "catalog.yaml")
    assert catalog.plan("trial-1mb").contract_capacity_bytes == 1_000_000
    assert catalog.plan("standard-100").contract_capacity_bytes == 100_000_000_000
    text = (ROOT / "dags" / "registry" / "catalog.yaml").read_text(encoding="utf-8")
    too_fine = text.replace("contract_capacity_gb: 0.001", "contract_capacity_gb: 0.0000000001")
    (tmp_path / "catalog.yaml").write_text(too_fine, encoding="utf-8")
    with pytest.raises(ValueError, match="whole number of bytes"):
        load_catalog(tmp_path / "catalog.yaml")
