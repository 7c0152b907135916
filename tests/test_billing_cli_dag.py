"""`cloudbackup billing run|preview|correct` and the billing_monthly DAG, on the real databases (and SMTP)."""

from __future__ import annotations

import csv
import json
import os
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from devtools import devstack

from cloudbackup import cli
from conftest import ROOT, customer_yaml


@pytest.fixture
def billing_env(registry_dir: Path, database: dict, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two customers in a temporary registry, the service pointed at the test database."""
    (registry_dir / "customers" / "new-co.yaml").write_text(
        customer_yaml("new-co", paths=["/srv/x"], service_start="2026-09-15"), encoding="utf-8")
    (registry_dir / "customers" / "old-co.yaml").write_text(
        customer_yaml("old-co", paths=["/srv/x"], language="en", service_start="2026-08-25"), encoding="utf-8")
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDBACKUP_DB", json.dumps(database))
    return registry_dir


def test_billing_run_issues_the_month_writes_both_csvs_and_a_second_run_changes_nothing(
        billing_env: Path, engine: sa.Engine, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["billing", "run", "--month", "2026-10", "--dry-run", "--issue-date", "2026-11-01"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["issued"] == 2
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM invoices")).scalar_one() == 0, "a dry run writes nothing"

    assert cli.main(["billing", "run", "--month", "2026-10", "--issue-date", "2026-11-01"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert json.loads(out[0])["issued"] == 2
    exports = Path(os.environ["CLOUDBACKUP_EXPORT_DIR"])
    invoices_csv = list(csv.DictReader((exports / "invoices-2026-10.csv").read_text(encoding="utf-8-sig").splitlines()))
    lines_csv = list(csv.DictReader((exports / "invoice-lines-2026-10.csv").read_text(encoding="utf-8-sig")
                                    .splitlines()))
    assert {(r["customer_id"], r["total"], r["issue_date"]) for r in invoices_csv} == {
        ("new-co", "44000", "2026-11-01"), ("old-co", "11000", "2026-11-01")}
    assert len(lines_csv) == 3

    assert cli.main(["billing", "run", "--month", "2026-10", "--issue-date", "2026-11-03"]) == 0
    again = json.loads(capsys.readouterr().out.splitlines()[0])
    assert (again["issued"], again["unchanged"]) == (0, 2)


def test_billing_preview_prints_the_lines_and_totals_and_writes_nothing(
        billing_env: Path, engine: sa.Engine, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["billing", "preview", "--customer", "new-co", "--month", "2026-10"]) == 0
    out = capsys.readouterr().out
    assert "初期費用" in out and "44,000" in out and "4,000" in out
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM invoices")).scalar_one() == 0


def test_billing_correct_issues_a_credit_note_and_a_reissue(
        billing_env: Path, engine: sa.Engine, capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["billing", "run", "--month", "2026-10", "--issue-date", "2026-11-01"])
    path = billing_env / "customers" / "new-co.yaml"
    path.write_text(path.read_text(encoding="utf-8")
                    .replace("started_using_on: 2026-09-15", "started_using_on: 2026-08-28")
                    .replace("service_start_date: 2026-09-15", "service_start_date: 2026-08-28"), encoding="utf-8")
    capsys.readouterr()
    assert cli.main(["billing", "correct", "--customer", "new-co", "--month", "2026-10", "--reason",
                     "service started 2026-08-28", "--issue-date", "2026-11-10"]) == 0
    assert capsys.readouterr().out.strip() == "credit note CB-00000003; reissued invoice CB-00000004"


@pytest.mark.servers
def test_the_dag_bills_the_others_and_then_fails_for_a_customer_it_could_not_bill(
        airflow_home: Path, stack: devstack.Stack, registry_dir: Path, database: dict, engine: sa.Engine,
        connect_service) -> None:
    """One broken customer never stops the others; the run still ends failed so that someone looks."""
    (registry_dir / "customers" / "good-co.yaml").write_text(
        customer_yaml("good-co", paths=["/srv/x"], service_start="2026-09-15"), encoding="utf-8")
    (registry_dir / "customers" / "stray-co.yaml").write_text(
        customer_yaml("stray-co", paths=["/srv/x"]).replace("sales_agent: kanto-it-sales", "sales_agent: nobody"),
        encoding="utf-8")
    connect_service(database, [])
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["billing_monthly"]
    run = dag.test(logical_date=datetime.fromisoformat("2026-11-01T06:00:00+09:00"))

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["issue_invoices"] == states["export_month_csv"] == states["deliver_notices"] == "success"
    assert states["everyone_billed"] == "failed"
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT customer_id, billing_month, issue_date FROM invoices")).all()
    assert [tuple(r) for r in rows] == [("good-co", "2026-10", "2026-11-01")], "issue date: the Tokyo date of the run"


def test_registry_check_reports_a_sales_agent_missing_from_the_operator_settings_and_timeline_corrections(
        registry_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (registry_dir / "customers" / "stray-co.yaml").write_text(
        customer_yaml("stray-co", paths=["/srv/x"]).replace("sales_agent: kanto-it-sales", "sales_agent: nobody"),
        encoding="utf-8")
    (registry_dir / "customers" / "leaving-co.yaml").write_text(
        customer_yaml("leaving-co", paths=["/srv/x"], extra="cancellation:\n  notice_date: 2027-01-20\n"
                                                            "  requested_end: 2027-01-31\n"), encoding="utf-8")
    assert cli.main(["registry", "check"]) == 1
    err = capsys.readouterr().err
    assert "ERROR customers/stray-co.yaml: field 'sales_agent': 'nobody' is not in operator.yaml" in err
    assert "WARNING customer leaving-co: field 'cancellation.requested_end': 2027-01-31 is earlier than the " \
           "earliest legal end 2027-02-20" in err
