"""Test fixtures: a throwaway Airflow home, the real servers (sshd, SeaweedFS S3, aiosmtpd), both databases.

Tests that claim to cover a server use the real one; if a server cannot start, the test errors (it is
never skipped).
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Airflow reads its configuration on first import: point it at a private home before anything imports it.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="cloudbackup-airflow-"))
os.environ.update({
    "AIRFLOW_HOME": str(_AIRFLOW_HOME),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
})
# The master key that wraps every test customer's data key (repository format 2); a fresh one per session,
# seen by subprocesses (the CLI, dag.test) too. Tests of a lost or rotated key change it with monkeypatch.
os.environ.setdefault("CLOUDBACKUP_MASTER_KEY", base64.b64encode(secrets.token_bytes(32)).decode())
os.environ.setdefault("CLOUDBACKUP_MASTER_KEY_ID", "test-master-1")

import sqlalchemy as sa  # noqa: E402
from devtools import devstack  # noqa: E402

from cloudbackup.edges import db  # noqa: E402

PG_HOST = os.environ.get("CLOUDBACKUP_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("CLOUDBACKUP_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("CLOUDBACKUP_TEST_PG_USER", "postgres")


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """An initialised Airflow metadata DB (SQLite), needed by dag.test()."""
    subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], check=True,
                   capture_output=True, env=os.environ.copy())
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.Stack]:
    """sshd + SeaweedFS S3 + aiosmtpd on free loopback ports, for the whole session."""
    with devstack.running_stack(tmp_path_factory.mktemp("stack")) as s:
        yield s


def _pg_admin_url(database: str = "postgres") -> str:
    return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


@contextmanager
def _pg_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (its name), dropped afterwards whatever happened in it."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = sa.create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        db.engine_for(_pg_admin_url(name)).dispose()
        db.engine_for.cache_clear()
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict]:
    """A fresh, migrated project database; yields its Airflow connection (JSON form).

    Parametrised: every test using it runs on SQLite (the embedded default) and PostgreSQL.
    """
    if request.param == "sqlite":
        conn = {"conn_type": "sqlite", "host": str(tmp_path / "cloudbackup.db")}
        db.migrate(db.engine_for(f"sqlite:///{conn['host']}"))
        yield conn
        return
    with _pg_database("cb_test") as name:
        db.migrate(db.engine_for(_pg_admin_url(name)))
        yield {"conn_type": "postgres", "host": PG_HOST, "port": PG_PORT, "login": PG_USER, "schema": name}


@pytest.fixture(params=["sqlite", "postgres"])
def bare_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """An empty database (no migrations applied), on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield db.engine_for(f"sqlite:///{tmp_path / 'bare.db'}")
        return
    with _pg_database("cb_mig") as name:
        yield db.engine_for(_pg_admin_url(name))


@pytest.fixture
def engine(database: dict) -> sa.Engine:
    c = database
    url = db.url_from_connection(c["conn_type"], c["host"], c.get("port"), c.get("login"), None, c.get("schema"))
    return db.engine_for(url.render_as_string(hide_password=False))


@pytest.fixture
def registry_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty registry (the real catalog copied in), made the service's registry for this test."""
    d = tmp_path / "registry"
    (d / "customers").mkdir(parents=True)
    (d / "catalog.yaml").write_text((ROOT / "dags" / "registry" / "catalog.yaml").read_text(encoding="utf-8"),
                                    encoding="utf-8")
    # The operator settings (invoice issuer, sales agents) are copied in too: billing needs them.
    (d / "operator.yaml").write_text((ROOT / "dags" / "registry" / "operator.yaml").read_text(encoding="utf-8"),
                                     encoding="utf-8")
    monkeypatch.setenv("CLOUDBACKUP_REGISTRY_DIR", str(d))
    monkeypatch.setenv("CLOUDBACKUP_EXPORT_DIR", str(tmp_path / "exports"))
    return d


def customer_yaml(customer_id: str, *, paths: list[str], conn_id: str | None = None, language: str = "ja",
                  status: str = "active", service_start: str = "2026-09-01", extra: str = "") -> str:
    """A valid customer file for tests; `extra` appends raw YAML."""
    return f"""\
id: {customer_id}
name: テスト顧客 {customer_id}
notice_email: {customer_id}@customer.example.jp
language: {language}
sales_agent: kanto-it-sales
contract_date: 2026-08-20
service_start_date: {service_start}
plans:
  - plan: standard-100
    approved_on: 2026-08-20
    started_using_on: {service_start}
sftp:
  connection_id: {conn_id or 'sftp_' + customer_id.replace('-', '_')}
  paths: [{', '.join(paths)}]
  excludes: ["*.tmp"]
schedule: "0 2 * * *"
status: {status}
{extra}"""


@pytest.fixture
def connect_service(stack: devstack.Stack, monkeypatch: pytest.MonkeyPatch):
    """Point the service's Airflow connections (env AIRFLOW_CONN_*) at the stack and a database."""
    def _connect(database: dict, sftp_conn_ids: list[str], bucket: str | None = None) -> None:
        env = devstack.connection_env(stack, database, sftp_conn_ids)
        if bucket:
            import json

            s3 = stack.s3.connection(bucket=bucket)
            env["AIRFLOW_CONN_CLOUDBACKUP_S3"] = json.dumps(s3)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
    return _connect
