"""sql/reports: every report runs on SQLite and PostgreSQL and returns what it says."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cloudbackup.backup import records
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
                                               "control character")])
    columns, rows = reports.run(engine, "last_run_per_customer", {})
    (row,) = [dict(zip(columns, r, strict=True)) for r in rows]
    assert (row["customer_id"], row["status"], row["collection_error_count"]) == ("acme", "succeeded_with_errors", 1)
    columns, rows = reports.run(engine, "collection_errors_since", {"since": to_db_time(utcnow().replace(year=2000))})
    assert [dict(zip(columns, r, strict=True))["reason"] for r in rows] == ["name_policy"]


def test_a_missing_parameter_or_unknown_report_is_named() -> None:
    with pytest.raises(ValueError, match="needs parameter\\(s\\): month"):
        reports.run(sa.create_engine("sqlite://"), "invoices_for_month", {})
    with pytest.raises(ValueError, match="no report 'nope'"):
        reports.run(sa.create_engine("sqlite://"), "nope", {})
