"""Alembic migrations of the project's database, on SQLite and PostgreSQL: adopting a database migrated by the
former hand-written runner (its `schema_migrations` table), refusing a history it cannot adopt, and two worker
processes migrating one database at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from cloudbackup.clock import utcnow
from cloudbackup.edges import db

OLD_RUNNER_NAMES = ["0001_initial", "0002_billing", "0003_snapshots", "0004_notices", "0005_console"]
MAINTENANCE_TEXT = ("maintenance window nightly-upgrade (2026-11-02 01:00–05:00 JST) "
                    "(art. 13, not re-collected)")
SUSPENDED_TEXT = "customer suspended (art. 14); backups resume when the suspension is lifted"
FAILURE_TEXT = "SFTP connection failed: sftp.example.jp:22 refused the connection (100% of 3 attempts)"


def _every_revision_name() -> list[str]:
    return sorted(Path(s.path).stem for s in ScriptDirectory(str(db.MIGRATIONS_DIR)).walk_revisions())


def _as_left_by_the_old_runner(engine: sa.Engine, history: list[tuple[int, str]], schema_at: str) -> None:
    """The schema of revision `schema_at`, recorded the way the pre-Alembic runner did: no alembic_version, a
    schema_migrations table (its very DDL) with one row per file applied."""
    db.migrate(engine, target=schema_at)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version"))
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS schema_migrations "
                             "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"))
        for version, name in history:
            conn.execute(sa.text("INSERT INTO schema_migrations (version, name, applied_at) VALUES (:v, :n, :t)"),
                         {"v": version, "n": name, "t": db.to_db_time(utcnow())})


def _contents(engine: sa.Engine) -> dict[str, list[dict]]:
    """Every row of every table but alembic_version, in primary-key order."""
    inspector = sa.inspect(engine)
    tables = sorted(set(inspector.get_table_names()) - {"alembic_version"})
    with engine.connect() as conn:
        return {t: [dict(r) for r in conn.execute(sa.text(f"SELECT * FROM {t} ORDER BY 1")).mappings()]
                for t in tables}


def _columns(engine: sa.Engine) -> dict[str, list[str]]:
    inspector = sa.inspect(engine)
    return {t: sorted(c["name"] for c in inspector.get_columns(t))
            for t in sorted(set(inspector.get_table_names()) - {"alembic_version", "schema_migrations"})}


def _alembic_version(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()


def _insert_records(engine: sa.Engine) -> dict[str, int]:
    """Real rows in the 0005 schema: runs skipped for maintenance and for suspension, a failed run with its error
    in skip_reason (as the code before 0006 recorded it), a succeeded run, an issued invoice with its line."""
    t = db.to_db_time(utcnow())
    run = ("INSERT INTO backup_runs (customer_id, run_key, status, skip_reason, started_at, finished_at, "
           "stored_bytes) VALUES (:c, :k, :s, :r, :t, :t, :b)")
    with engine.begin() as conn:
        ids = {
            "maintenance": db.insert_returning_id(conn, run, {"c": "acme", "k": "r1", "s": "skipped",
                                                              "r": MAINTENANCE_TEXT, "t": t, "b": None}),
            "suspended": db.insert_returning_id(conn, run, {"c": "bolt", "k": "r1", "s": "skipped",
                                                            "r": SUSPENDED_TEXT, "t": t, "b": None}),
            "failed": db.insert_returning_id(conn, run, {"c": "acme", "k": "r2", "s": "failed",
                                                         "r": FAILURE_TEXT, "t": t, "b": None}),
            "succeeded": db.insert_returning_id(conn, run, {"c": "acme", "k": "r3", "s": "succeeded",
                                                            "r": None, "t": t, "b": 123456}),
        }
        conn.execute(sa.text("INSERT INTO collection_errors (backup_run_id, customer_id, path, reason, detail, "
                             "recorded_at) VALUES (:i, 'acme', '/data/a.txt', 'vanished', NULL, :t)"),
                     {"i": ids["succeeded"], "t": t})
        ids["invoice"] = db.insert_returning_id(conn, (
            "INSERT INTO invoices (customer_id, billing_month, state, invoice_number, issuer_registration_number, "
            "issuer_name, recipient_name, sales_agent, subtotal, tax, total, issue_date, payment_due_date, "
            "created_at, issued_at) VALUES ('acme', '2026-10', 'issued', 'CB-00000007', 'T1234567890123', "
            "'クラウドバックアップ株式会社', 'アクメ株式会社', 'kanto-it-sales', 40000, 4000, 44000, '2026-11-01', "
            "'2026-11-30', :t, :t)"), {"t": t})
        conn.execute(sa.text("INSERT INTO invoice_lines (invoice_id, line_no, kind, description, description_en, "
                             "amount, tax_rate) VALUES (:i, 1, 'monthly_fee', '月額料金 10月分', "
                             "'Monthly fee, October', 40000, '0.10')"), {"i": ids["invoice"]})
        conn.execute(sa.text("INSERT INTO invoice_tax_summaries (invoice_id, tax_rate, subtotal, tax) "
                             "VALUES (:i, '0.10', 40000, 4000)"), {"i": ids["invoice"]})
        conn.execute(sa.text("INSERT INTO invoice_number_sequences (issuer_registration_number, last_number) "
                             "VALUES ('T1234567890123', 7)"))
    return ids


def test_a_database_migrated_by_the_old_runner_is_adopted_and_upgraded_without_losing_a_row(
        bare_engine: sa.Engine) -> None:
    _as_left_by_the_old_runner(bare_engine, list(enumerate(OLD_RUNNER_NAMES, start=1)), schema_at="0005")
    ids = _insert_records(bare_engine)
    before = _contents(bare_engine)

    # Up to 0006, the revision this adoption is about (later revisions add their own tables and columns).
    assert db.migrate(bare_engine, target="0006") == ["0006_run_detail"]

    assert _alembic_version(bare_engine) == ["0006"]
    assert db.migrate(bare_engine, target="0006") == []
    after = _contents(bare_engine)
    # Every table and row is still there (schema_migrations too, as history); only backup_runs changed, as 0006
    # says: the text moved to `detail`, skip_reason became a code.
    assert set(after) == set(before)
    assert len(after["schema_migrations"]) == len(OLD_RUNNER_NAMES)
    for table in set(before) - {"backup_runs"}:
        assert after[table] == before[table], table
    assert [{k: v for k, v in r.items() if k not in ("skip_reason", "detail")} for r in after["backup_runs"]] == \
        [{k: v for k, v in r.items() if k != "skip_reason"} for r in before["backup_runs"]]
    moved = {r["id"]: (r["skip_reason"], r["detail"]) for r in after["backup_runs"]}
    assert moved == {
        ids["maintenance"]: ("maintenance", MAINTENANCE_TEXT),
        ids["suspended"]: ("suspended", SUSPENDED_TEXT),
        ids["failed"]: (None, FAILURE_TEXT),
        ids["succeeded"]: (None, None),
    }
    assert len(after["invoices"]) == 1 and len(after["invoice_lines"]) == 1


def test_an_adopted_database_ends_with_the_schema_of_a_new_one(bare_engine: sa.Engine, tmp_path: Path) -> None:
    _as_left_by_the_old_runner(bare_engine, [(1, "0001_initial"), (2, "0002_billing")], schema_at="0002")

    assert db.migrate(bare_engine) == _every_revision_name()[2:]

    fresh = db.engine_for(f"sqlite:///{tmp_path / 'fresh.db'}")
    db.migrate(fresh)
    assert _columns(bare_engine) == _columns(fresh)


@pytest.mark.parametrize(("history", "found"), [
    pytest.param([(1, "0001_initial"), (2, "0002_billing"), (4, "0004_notices")],
                 "[1 0001_initial, 2 0002_billing, 4 0004_notices]", id="gap"),
    pytest.param([(2, "0002_billing"), (3, "0003_snapshots")], "[2 0002_billing, 3 0003_snapshots]",
                 id="no-first"),
    pytest.param([*enumerate(OLD_RUNNER_NAMES, start=1), (6, "0006_run_detail"), (7, "0007_from_elsewhere")],
                 "7 0007_from_elsewhere]", id="unknown-version"),
    pytest.param([(1, "0001_initial"), (2, "0002_invoices")], "[1 0001_initial, 2 0002_invoices]",
                 id="unknown-name"),
])
def test_a_history_that_is_not_a_contiguous_run_of_known_revisions_is_refused_and_nothing_changes(
        bare_engine: sa.Engine, history: list[tuple[int, str]], found: str) -> None:
    _as_left_by_the_old_runner(bare_engine, history, schema_at="0005")
    _insert_records(bare_engine)
    before = _contents(bare_engine)
    columns = _columns(bare_engine)

    with pytest.raises(db.MigrationHistoryError, match="schema_migrations records") as refused:
        db.migrate(bare_engine)

    assert found in str(refused.value)
    assert "0001_initial, 0002_billing" in str(refused.value)  # the revisions it knows
    assert "alembic_version" not in sa.inspect(bare_engine).get_table_names()
    assert _contents(bare_engine) == before
    assert _columns(bare_engine) == columns  # 0006 did not run: backup_runs has no `detail`


def test_two_workers_migrating_one_new_database_at_once_apply_each_revision_once(bare_engine: sa.Engine) -> None:
    url = bare_engine.url.render_as_string(hide_password=False)
    workers = [subprocess.Popen([sys.executable, "-c", _WORKER, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for w in workers:  # both connected ...
            assert w.stdout.readline() == "ready\n", w.communicate(timeout=30)
        for w in workers:  # ... then both started together
            w.stdin.write("go\n")
            w.stdin.flush()
        outcomes = [w.communicate(timeout=120) for w in workers]
    finally:
        for w in workers:
            w.kill()
            w.wait()

    assert [w.returncode for w in workers] == [0, 0], [err[-600:] for _out, err in outcomes]
    applied = [json.loads(out) for out, _err in outcomes]
    # The worker that got the lock first applied everything; the other waited for it, then found nothing to do.
    assert sorted(applied, key=len) == [[], _every_revision_name()]
    assert _alembic_version(bare_engine) == [ScriptDirectory(str(db.MIGRATIONS_DIR)).get_current_head()]


# A worker process: connects, says so, waits for "go" on stdin, migrates, prints the names it applied as JSON.
_WORKER = """
import json, sys
from cloudbackup.edges import db
engine = db.engine_for(sys.argv[1])
with engine.connect():
    pass
print("ready", flush=True)
sys.stdin.readline()
print(json.dumps(db.migrate(engine)), flush=True)
"""
