"""The project's own database (SQLite by default, PostgreSQL in production): engine and migrations.

The schema is migrated with Alembic: sql/migrations is the script directory (env.py, versions/NNNN_words.py with
revision ids "0001", "0002", … chained in order), applied by migrate() on a connection it hands to env.py. The
revision a database is at is kept in `alembic_version`.

Databases migrated before Alembic, by the project's former hand-written runner, recorded the versions applied in
`schema_migrations (version, name, applied_at)` and have no `alembic_version`. migrate() adopts them: it checks
the recorded versions are a contiguous 1..N of the known revisions, stamps revision N without running anything,
then upgrades. `schema_migrations` is left in place as the history of those earlier migrations (when each was
applied); nothing reads or writes it afterwards, and new databases do not have it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationInfo
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

# sql/migrations of the checkout (the Alembic script directory); an installed package (the Docker image) is told
# where it is.
MIGRATIONS_DIR = Path(os.environ.get("CLOUDBACKUP_MIGRATIONS_DIR",
                                     Path(__file__).resolve().parents[3] / "sql" / "migrations"))

# Key of the PostgreSQL advisory lock that serialises migrate() calls on one database ("cbmigr" in ASCII).
_MIGRATION_LOCK_KEY = 0x63626D696772


class MigrationHistoryError(RuntimeError):
    """A database's pre-Alembic `schema_migrations` history is not one migrate() can adopt."""


def url_from_connection(conn_type: str, host: str | None, port: int | None, login: str | None,
                        password: str | None, schema: str | None) -> sa.URL:
    """SQLAlchemy URL for an Airflow connection of type `sqlite` (host = file path) or `postgres`."""
    if conn_type == "sqlite":
        if not host:
            raise ValueError("sqlite connection needs the database file path in its host field")
        return sa.URL.create("sqlite", database=host)
    if conn_type in ("postgres", "postgresql"):
        return sa.URL.create("postgresql+psycopg", username=login or None, password=password or None,
                             host=host or "127.0.0.1", port=port or 5432, database=schema or "postgres")
    raise ValueError(f"database connection type {conn_type!r} is not supported (use sqlite or postgres)")


@cache
def engine_for(url: str) -> Engine:
    engine = sa.create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            # Foreign keys are off by default in SQLite; WAL lets readers run beside the writer.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
    return engine


def migrate(engine: Engine, target: str = "head") -> list[str]:
    """Upgrade the database to `target` (a revision id such as "0003", or "head"); returns the names of the
    revisions applied by this call (e.g. ["0001_initial", "0002_billing"]), [] when it was already there.

    Everything happens in one transaction (PostgreSQL's DDL is transactional; on SQLite it is BEGIN IMMEDIATE),
    which first takes a lock so that two workers migrating the same database at once apply each revision once:
    the second waits, then finds the revisions applied (Alembic's `op` and `context` are process-global: the lock,
    taken before Alembic runs, serialises threads of one process too). A database left by the pre-Alembic runner
    is adopted first (see the module docstring). Revisions are forward-only: a `target` the database is already
    past applies nothing.
    """
    dialect = engine.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database dialect {dialect!r}")
    applied: list[str] = []
    with engine.begin() as conn:
        _lock_for_migration(conn)
        config = Config()
        # Config values go through configparser interpolation, hence the doubled '%'.
        config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        config.set_main_option("path_separator", "os")
        config.attributes["connection"] = conn  # env.py runs the revisions on it
        names = _revision_names(config)

        def collect(*, step: MigrationInfo, **_: object) -> None:  # Alembic's on_version_apply callback
            if step.is_upgrade and not step.is_stamp and step.up_revision_id:
                applied.append(names[step.up_revision_id])

        config.attributes["on_version_apply"] = collect
        _adopt_pre_alembic_history(conn, config, names)
        command.upgrade(config, target)
    for name in applied:
        log.info("applied migration %s", name)
    return applied


def _revision_names(config: Config) -> dict[str, str]:
    """Revision id → the name migrate() reports, its file's stem: {"0001": "0001_initial", …}."""
    return {script.revision: Path(script.path).stem for script in ScriptDirectory.from_config(config).walk_revisions()}


def _lock_for_migration(conn: Connection) -> None:
    """Serialise migrations of one database, until the end of `conn`'s transaction."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
    else:
        # The driver opens SQLite transactions lazily, and only before DML: take the write lock now, so the DDL
        # runs in this transaction too and a second writer waits (busy_timeout) instead of interleaving.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _adopt_pre_alembic_history(conn: Connection, config: Config, known: dict[str, str]) -> None:
    """Stamp a database migrated by the pre-Alembic runner with the last revision it applied (nothing is run)."""
    inspector = sa.inspect(conn)
    if inspector.has_table("alembic_version") or not inspector.has_table("schema_migrations"):
        return
    recorded = [(int(version), name) for version, name in conn.execute(
        sa.text("SELECT version, name FROM schema_migrations ORDER BY version"))]
    if not recorded:
        return  # the runner created its table but recorded nothing: migrated like a new database
    expected = [(n, known.get(f"{n:04d}")) for n in range(1, len(recorded) + 1)]
    if recorded != expected:
        found = ", ".join(f"{version} {name}" for version, name in recorded)
        raise MigrationHistoryError(
            f"cannot adopt this database's pre-Alembic migration history: schema_migrations records [{found}], "
            f"but it must be a contiguous 1..N of the known revisions "
            f"[{', '.join(sorted(known.values()))}]; nothing was changed")
    last = f"{len(recorded):04d}"
    log.info("adopting a database migrated before Alembic: stamping revision %s", known[last])
    command.stamp(config, last)


def to_db_time(moment: datetime) -> str:
    """Instants are stored in UTC; naive datetimes are refused rather than guessed."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: times must be timezone-aware")
    return moment.astimezone(UTC).isoformat()


def from_db_time(value: str | datetime | None) -> datetime | None:
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@contextmanager
def transaction(bind: Engine | Connection) -> Iterator[Connection]:
    """A transaction on an engine, or the caller's own when given a connection (so several records and the
    notices they cause commit together)."""
    if isinstance(bind, Connection):
        yield bind
    else:
        with bind.begin() as conn:
            yield conn


def insert_returning_id(conn: Connection, sql: str, params: dict) -> int:
    """Run an INSERT … and return the new row's id on both dialects."""
    return int(conn.execute(sa.text(sql + " RETURNING id"), params).scalar_one())
