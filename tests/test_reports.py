"""sql/reports: every report runs on SQLite and PostgreSQL and returns what it says."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cloudbackup.backup import records
from cloudbackup.backup.capacity import CapacityBasis
from cloudbackup.backup.outcomes import CollectionError, CollectionErrorReason
from cloudbackup.clock import utcnow
from cloudbackup.console import reports
from cloudbackup.edges.db import to_db_time


def test_every_report_runs_on_both_databases(engine: sa.Engine) -> None:
    params = {"month": "2026-10", "since": "2026-01-01T00:00:00+00:00"}
    assert set(reports.available()) >= {"invoices_for_month", "last_run_per_customer", "collection_errors_since"}
    for name in reports.available():
        columns, rows = reports.run(engine, name, params)
        assert columns and rows == []


def test_last_run_per_customer_shows_the_latest_run_and_its_errors(engine: sa.Engine) -> None:
    first = records.start_run(engine, "acme", "run-1")
    records.finish_run(engine, first, "acme", files=1, bytes_=10, errors=[], stored_bytes=10)
    second = records.start_run(engine, "acme", "run-2")
    records.finish_run(engine, second, "acme", files=2, bytes_=20, stored_bytes=30,
                       errors=[CollectionError("/srv/a/b\x07.txt", CollectionErrorReason.NAME_POLICY,
                                               "control character")],
                       counted_bytes=20, capacity_basis=CapacityBasis.SOURCE_BYTES)
    columns, rows = reports.run(engine, "last_run_per_customer", {})
    (row,) = [dict(zip(columns, r, strict=True)) for r in rows]
    assert (row["customer_id"], row["status"], row["collection_error_count"]) == ("acme", "succeeded_with_errors", 1)
    # Art. 6, 17(3): the contract figure and its basis, beside the operator's stored bytes (README).
    assert (row["counted_bytes"], row["capacity_basis"], row["stored_bytes"]) == (20, "source_bytes", 30)
    columns, rows = reports.run(engine, "collection_errors_since", {"since": to_db_time(utcnow().replace(year=2000))})
    assert [dict(zip(columns, r, strict=True))["reason"] for r in rows] == ["name_policy"]


def test_a_missing_parameter_or_unknown_report_is_named() -> None:
    with pytest.raises(ValueError, match="needs parameter\\(s\\): month"):
        reports.run(sa.create_engine("sqlite://"), "invoices_for_month", {})
    with pytest.raises(ValueError, match="no report 'nope'"):
        reports.run(sa.create_engine("sqlite://"), "nope", {})


def test_the_cli_lists_and_runs_reports_as_csv(engine: sa.Engine, database: dict, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    """`cloudbackup reports list|run`: what ops and finance run on the shell, against the project's DB."""
    import json

    from cloudbackup import cli

    monkeypatch.setenv("AIRFLOW_CONN_CLOUDBACKUP_DB", json.dumps(database))
    run_id = records.start_run(engine, "acme", "run-1")
    records.finish_run(engine, run_id, "acme", files=1, bytes_=10, errors=[], stored_bytes=10)
    assert cli.main(["reports", "list"]) == 0
    listed = capsys.readouterr().out
    assert "last_run_per_customer" in listed and "Finance:" in listed and "Ops:" in listed
    assert cli.main(["reports", "run", "last_run_per_customer"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("customer_id,status,") and lines[1].startswith("acme,succeeded,")
    assert cli.main(["reports", "run", "invoices_for_month", "--param", "month=2026-10",
                     "--out", str(tmp_path / "m.csv")]) == 0
    assert (tmp_path / "m.csv").read_text(encoding="utf-8").startswith("invoice_number,")
    assert cli.main(["reports", "run", "invoices_for_month"]) == 1
    assert "needs parameter(s): month" in capsys.readouterr().err

