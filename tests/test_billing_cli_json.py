"""`cloudbackup billing preview|run --json` for scripts, and billing errors as one line on stderr (issue 13, 8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from cloudbackup import cli
from conftest import customer_yaml


@pytest.fixture
def billing_env(registry_dir: Path, database: dict, monkeypatch: pytest.MonkeyPatch) -> Path:
    (registry_dir / "customers" / "new-co.yaml").write_text(
        customer_yaml("new-co", paths=["/srv/x"], service_start="2026-09-15"), encoding="utf-8")
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDBACKUP_DB", json.dumps(database))
    return registry_dir


def test_preview_json_lists_each_month_with_its_lines_per_rate_tax_and_reasons(
        billing_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Art. 22(1), 22(3), 25, 26: the first billed month carries the initial fee with the first monthly fee; tax
    once per rate, truncated; integer yen."""
    assert cli.main(["billing", "preview", "--customer", "new-co", "--month", "2026-09", "--to", "2026-10",
                     "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["customer_id"] == "new-co" and [m["month"] for m in data["months"]] == ["2026-09", "2026-10"]
    september, october = data["months"]
    assert september["due"] is False and any("22(1)" in note for note in september["notes"])
    assert [(line["kind"], line["amount"], line["tax_rate"]) for line in october["lines"]] == [
        ("monthly_fee", 10000, "0.10"), ("initial_fee", 30000, "0.10")]
    assert october["tax_summary"] == [{"rate": "0.10", "subtotal": 40000, "tax": 4000}]
    assert (october["subtotal"], october["tax"], october["total"]) == (40000, 4000, 44000)


def test_run_dry_run_json_is_one_document_and_writes_nothing(
        billing_env: Path, engine: sa.Engine, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["billing", "run", "--month", "2026-10", "--dry-run", "--issue-date", "2026-11-01",
                     "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["issued"], data["planned"], data["failed"], data["csv"]) == (1, {"new-co": 44000}, [], None)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM invoices")).scalar_one() == 0


def test_an_unknown_customer_is_one_line_on_stderr_not_a_traceback(
        billing_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["billing", "preview", "--customer", "nobody", "--month", "2026-10"],
                    ["billing", "correct", "--customer", "nobody", "--month", "2026-10", "--reason", "x"]):
        assert cli.main(command) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith(f"cloudbackup billing {command[1]}: error: no customer 'nobody' in the registry")


def test_a_bad_month_is_one_line_on_stderr(billing_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["billing", "preview", "--customer", "new-co", "--month", "2026-13"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "2026-13" in err


def test_a_database_not_migrated_is_one_line_naming_the_fix(
        registry_dir: Path, bare_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (registry_dir / "customers" / "new-co.yaml").write_text(
        customer_yaml("new-co", paths=["/srv/x"], service_start="2026-09-15"), encoding="utf-8")
    url = bare_engine.url
    if url.get_backend_name() == "sqlite":
        conn = {"conn_type": "sqlite", "host": url.database}
    else:
        conn = {"conn_type": "postgres", "host": url.host, "port": url.port, "login": url.username,
                "schema": url.database}
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDBACKUP_DB", json.dumps(conn))
    for command in (["billing", "run", "--month", "2026-10", "--dry-run"],
                    ["billing", "correct", "--customer", "new-co", "--month", "2026-10", "--reason", "x"]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert "the project database is not migrated" in err and "cloudbackup db migrate" in err
