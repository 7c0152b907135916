"""The project's own database: Alembic migrations under sql/migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from cloudbackup.clock import utcnow
from cloudbackup.edges import db

TABLES = {"backup_runs", "collection_errors", "capacity_events", "invoices", "invoice_lines", "invoice_tax_summaries",
          "invoice_number_sequences", "notices", "snapshots", "alembic_version"}


def test_migrations_create_the_tables_and_a_second_run_applies_nothing(engine: sa.Engine) -> None:
    tables = set(sa.inspect(engine).get_table_names())
    assert tables >= TABLES
    assert "schema_migrations" not in tables  # the pre-Alembic runner's table: only adopted databases have it
    head = ScriptDirectory(str(db.MIGRATIONS_DIR)).get_current_head()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [head]
    assert db.migrate(engine) == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [head]


def test_a_new_database_applies_every_revision_in_order_and_reports_their_names(tmp_path: Path) -> None:
    every = sorted(Path(s.path).stem for s in ScriptDirectory(str(db.MIGRATIONS_DIR)).walk_revisions())
    assert every[:6] == ["0001_initial", "0002_billing", "0003_snapshots", "0004_notices", "0005_console",
                         "0006_run_detail"]
    engine = db.engine_for(f"sqlite:///{tmp_path / 'new.db'}")
    assert db.migrate(engine, target="0002") == ["0001_initial", "0002_billing"]
    assert db.migrate(engine) == every[2:]
    assert db.migrate(engine) == []


def test_an_invoice_is_unique_per_customer_and_month(engine: sa.Engine) -> None:
    row = {"c": "acme", "m": "2026-10", "a": "agent", "t": db.to_db_time(utcnow())}
    insert = sa.text("INSERT INTO invoices (customer_id, billing_month, state, sales_agent, subtotal, tax, total, "
                     "created_at) VALUES (:c, :m, 'draft', :a, 0, 0, 0, :t)")
    with engine.begin() as conn:
        conn.execute(insert, row)
    try:
        with engine.begin() as conn:
            conn.execute(insert, row)
    except sa.exc.IntegrityError:
        pass
    else:
        raise AssertionError("a second invoice for the same customer and month was accepted")


def test_times_round_trip_as_utc(engine: sa.Engine) -> None:
    moment = utcnow()
    with engine.begin() as conn:
        run_id = db.insert_returning_id(conn, "INSERT INTO backup_runs (customer_id, run_key, status, started_at) "
                                              "VALUES ('acme', 'k', 'running', :t)", {"t": db.to_db_time(moment)})
        stored = conn.execute(sa.text("SELECT started_at FROM backup_runs WHERE id = :i"), {"i": run_id}).scalar_one()
    assert db.from_db_time(stored) == moment
