"""Registry and catalog files: what the terms need per customer (art. 5–7, 9, 16) and per plan (art. 22(2))."""

from __future__ import annotations

import re
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


# --- the one gate: everything that would fail at parse or run time, naming file and field ---------------------

@pytest.mark.parametrize(("schedule", "why"), [
    ("0 25 * * *", "is not a valid cron expression"), ("61 2 * * *", "is not a valid cron expression"),
    ("0 2 * * 8", "is not a valid cron expression"), ("0 2 30 2 *", "never fires"),
    ("0 2 * *", "must be a 5-field cron expression"), ("@daily", "must be a 5-field cron expression")])
def test_a_schedule_airflow_would_refuse_or_that_never_fires_is_refused(tmp_path: Path, schedule: str,
                                                                        why: str) -> None:
    """Art. 18(3): the schedule is the customer's 5-field cron (Asia/Tokyo); croniter checks it as Airflow will."""
    path = tmp_path / "bad-co.yaml"
    path.write_text(customer_yaml("bad-co", paths=["/srv/a"]).replace('"0 2 * * *"', f'"{schedule}"'),
                    encoding="utf-8")
    with pytest.raises(ValueError, match=f"field 'schedule': schedule '{re.escape(schedule)}' {why}"):
        load_customer(path)


def test_designated_areas_may_not_overlap(tmp_path: Path) -> None:
    """Art. 16: each designated area once; an area inside another would be collected twice."""
    path = tmp_path / "bad-co.yaml"
    path.write_text(customer_yaml("bad-co", paths=["/srv/a", "/srv/a/b"]), encoding="utf-8")
    with pytest.raises(ValueError, match="field 'sftp.paths'.*inside '/srv/a'"):
        load_customer(path)
    path.write_text(customer_yaml("bad-co", paths=["/srv/a", "/srv/ab"]), encoding="utf-8")
    assert load_customer(path).sftp.paths == ["/srv/a", "/srv/ab"]


def test_check_registry_refuses_unknown_plan_and_sales_agent_codes(registry_dir: Path) -> None:
    """Art. 9, 20 (the plan is in the catalog) and art. 23 (the sales agent is in the operator settings)."""
    from cloudbackup.registry.check import check_registry, problems

    (registry_dir / "customers" / "good-co.yaml").write_text(customer_yaml("good-co", paths=["/srv/a"]),
                                                             encoding="utf-8")
    (registry_dir / "customers" / "bad-co.yaml").write_text(
        customer_yaml("bad-co", paths=["/srv/a"]).replace("plan: standard-100", "plan: gold")
        .replace("sales_agent: kanto-it-sales", "sales_agent: nobody"), encoding="utf-8")
    fleet = check_registry(registry_dir)
    assert [c.id for c in fleet.registry.customers] == ["good-co"]
    assert problems(fleet) == ["customers/bad-co.yaml: field 'plans.0.plan': plan 'gold' is not in the catalog; "
                               "field 'sales_agent': 'nobody' is not in operator.yaml"]
    assert [e.file.name for e in load_registry(registry_dir).errors] == [], "load_registry checks each file alone"


def test_select_reads_only_the_chosen_customer_files(registry_dir: Path) -> None:
    for cid in ("a-co", "b-co"):
        (registry_dir / "customers" / f"{cid}.yaml").write_text(customer_yaml(cid, paths=["/srv/a"]), encoding="utf-8")
    (registry_dir / "customers" / "broken.yaml").write_text("id: [unclosed", encoding="utf-8")
    registry = load_registry(registry_dir, select=lambda i: i == "b-co")
    assert [c.id for c in registry.customers] == ["b-co"] and registry.errors == ()


def test_registry_check_says_which_connections_are_in_the_environment(registry_dir: Path,
                                                                      capsys: pytest.CaptureFixture[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from cloudbackup import cli

    for cid in ("a-co", "b-co"):
        (registry_dir / "customers" / f"{cid}.yaml").write_text(customer_yaml(cid, paths=["/srv/a"]), encoding="utf-8")
    monkeypatch.setenv("AIRFLOW_CONN_SFTP_A_CO", "sftp://u@h:22")
    monkeypatch.delenv("AIRFLOW_CONN_SFTP_B_CO", raising=False)
    assert cli.main(["registry", "check"]) == 0
    assert "SFTP connections: 1 found as AIRFLOW_CONN_<ID> in the environment, 1 not there" in capsys.readouterr().out
    assert cli.main(["registry", "check", "--require-env-connections"]) == 1
    assert "ERROR connection 'sftp_b_co': no AIRFLOW_CONN_SFTP_B_CO in the environment" in capsys.readouterr().err
