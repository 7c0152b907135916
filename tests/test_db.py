"""The project's own database: versioned migrations under sql/, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from cloudbackup.clock import utcnow
from cloudbackup.edges import db

TABLES = {"backup_runs", "collection_errors", "capacity_events", "invoices", "invoice_lines", "notices",
          "schema_migrations"}


def test_migrations_create_the_tables_and_a_second_run_applies_nothing(engine: sa.Engine) -> None:
    assert set(sa.inspect(engine).get_table_names()) >= TABLES
    assert db.migrate(engine) == []
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version FROM schema_migrations ORDER BY version")).scalars().all()
    assert versions == [m.version for m in db.load_migrations()]


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
