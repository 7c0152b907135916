"""docker-compose.yaml: it parses, and its services and settings agree with what the code expects."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from devtools import up

from cloudbackup.edges import connections
from cloudbackup.registry.customers import load_registry
from conftest import ROOT

COMPOSE = ROOT / "docker-compose.yaml"
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker", "airflow-init"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _config(env_file: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose (Debian package) is installed by `make setup`"
    return subprocess.run([exe, "--env-file", str(env_file), "-f", str(COMPOSE), "config", "-q"],
                          capture_output=True, text=True, cwd=ROOT)


def test_docker_compose_validates_offline_with_the_env_file_the_script_writes(tmp_path: Path) -> None:
    # scripts/compose-env.sh in a copy of the project's root: it writes .env there and nowhere else.
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "compose-env.sh", tmp_path / "scripts")
    subprocess.run(["bash", str(tmp_path / "scripts" / "compose-env.sh")], check=True, capture_output=True)
    env = dict(line.split("=", 1) for line in (tmp_path / ".env").read_text().splitlines() if "=" in line
               and not line.startswith("#"))
    assert set(env) == {"FERNET_KEY", "JWT_SECRET", "MASTER_KEY", "MASTER_KEY_ID", "ADMIN_PASSWORD",
                        "OPERATOR_PASSWORD", "FINANCE_PASSWORD"}
    assert len(base64.b64decode(env["MASTER_KEY"], validate=True)) == 32
    assert all(env.values()) and (tmp_path / ".env").stat().st_mode & 0o077 == 0, "secrets: owner only"
    result = _config(tmp_path / ".env")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("empty", ["FERNET_KEY", "JWT_SECRET", "FINANCE_PASSWORD", "MASTER_KEY", "MASTER_KEY_ID"])
def test_docker_compose_refuses_an_empty_secret(tmp_path: Path, empty: str) -> None:
    values = {"FERNET_KEY": "k", "JWT_SECRET": "j", "ADMIN_PASSWORD": "a", "OPERATOR_PASSWORD": "o",
              "FINANCE_PASSWORD": "f", "MASTER_KEY": "m", "MASTER_KEY_ID": "i"}
    values[empty] = ""
    (tmp_path / "env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    result = _config(tmp_path / "env")
    assert result.returncode != 0 and f"{empty} is empty" in result.stderr


def test_the_secrets_come_from_the_env_file_not_literals(compose: dict) -> None:
    env = compose["x-airflow-common"]["environment"]
    assert env["AIRFLOW__CORE__FERNET_KEY"].startswith("${FERNET_KEY:?")
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"].startswith("${JWT_SECRET:?")
    assert "${MASTER_KEY:?" in env["AIRFLOW_CONN_CLOUDBACKUP_MASTER_KEY"]
    assert (ROOT / ".env.example").exists() and ".env" in (ROOT / ".gitignore").read_text().splitlines()


def _make_up_env() -> dict[str, str]:
    """The environment `make up` gives every Airflow process (tests/devtools/up.py), with placeholder hosts."""
    from types import SimpleNamespace

    server = SimpleNamespace(connection=lambda: {"conn_type": "x"})
    stack = SimpleNamespace(s3=server, smtp=server, sshd=server, master_key_connection=lambda: {"conn_type": "x"})
    access = SimpleNamespace(directory="/tmp/x", logs="/tmp/x/logs", export_dir="/tmp/x/e", restore_dir="/tmp/x/r")
    names = {"airflow_db": "a", "project_db": "p", "queue": "q"}
    conn_ids = sorted({c.sftp.connection_id for c in load_registry(ROOT / "dags" / "registry").customers})
    return up.airflow_env(access, stack, names, {"fernet_key": "f", "jwt_secret": "j"}, 8080, 1,  # type: ignore[arg-type]
                          conn_ids)


# What only describes this machine's `make up` (folders, ports, its own queue and parse intervals).
MACHINE_ONLY = {"AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER", "AIRFLOW__API__BASE_URL",
                "AIRFLOW__API__PORT", "AIRFLOW__API__HOST", "AIRFLOW__OPERATORS__DEFAULT_QUEUE",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL", "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER", "AIRFLOW__CELERY__WORKER_CONCURRENCY",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"}


def test_compose_runs_what_make_up_runs(compose: dict) -> None:
    """The stack the end-to-end test proves (tests/test_stack.py) and the compose stack are the same stack."""
    ours = _make_up_env()
    theirs = compose["services"]["airflow-scheduler"]["environment"]
    for key in sorted(k for k in ours if k.startswith(("AIRFLOW__", "CLOUDBACKUP_")) and k not in MACHINE_ONLY):
        assert key in theirs, f"make up sets {key}; docker-compose.yaml does not"
    for key in ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__AUTH_MANAGER", "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"):
        assert theirs[key] == ours[key], key
    assert theirs["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == ours["AIRFLOW__CORE__LOAD_EXAMPLES"].lower()
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
                "AIRFLOW__CELERY__RESULT_BACKEND", "AIRFLOW__CELERY__BROKER_URL"):
        assert theirs[key].split("://")[0] == ours[key].split("://")[0], f"{key}: same driver"
    # The project's own connections; the customers' SFTP connections are made by airflow-init.sh (below).
    project = {k for k in ours if k.startswith("AIRFLOW_CONN_CLOUDBACKUP_")}
    assert project == {k for k in theirs if k.startswith("AIRFLOW_CONN_")}
    # The same Airflow processes, with the same commands.
    commands = {name: service.get("command") for name, service in compose["services"].items()
                if name.startswith("airflow-") and name != "airflow-init"}
    assert sorted(commands.values()) == sorted(" ".join(args) for args in up.COMPONENTS.values())
    # The same image: the Airflow version installed here is the one the Dockerfile builds on.
    from importlib.metadata import version

    assert f"FROM apache/airflow:{version('apache-airflow')}-" in (ROOT / "Dockerfile").read_text()


def test_the_official_celery_layout_plus_minio_sftp_and_mail(compose: dict) -> None:
    services = set(compose["services"])
    assert AIRFLOW_SERVICES | {"postgres", "redis", "minio", "sftp-demo", "mailpit"} <= services
    env = compose["services"]["airflow-worker"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")


def test_every_image_is_pinned(compose: dict) -> None:
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image, f"{name} has no image"
        assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), f"{name}: {image} is not pinned"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM apache/airflow:3.3.2-" in dockerfile
    assert "-c /opt/cloudbackup/constraints.txt" in dockerfile


def test_the_connections_the_code_reads_are_set(compose: dict) -> None:
    env = compose["services"]["airflow-scheduler"]["environment"]
    for conn_id in (connections.DB_CONN_ID, connections.S3_CONN_ID, connections.SMTP_CONN_ID):
        assert f"AIRFLOW_CONN_{conn_id.upper()}" in env, conn_id
    s3 = json.loads(env["AIRFLOW_CONN_CLOUDBACKUP_S3"])
    minio = compose["services"]["minio"]["environment"]
    assert (s3["login"], s3["password"]) == (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"])
    assert s3["extra"]["endpoint_url"] == "http://minio:9000"
    db = json.loads(env["AIRFLOW_CONN_CLOUDBACKUP_DB"])
    assert db["conn_type"] == "postgres" and db["host"] == "postgres"
    smtp = json.loads(env["AIRFLOW_CONN_CLOUDBACKUP_SMTP"])
    assert smtp["host"] == "mailpit" and smtp["extra"]["from_email"]
    assert env["CLOUDBACKUP_REGISTRY_DIR"] == "/opt/airflow/dags/registry"


def test_init_creates_an_sftp_connection_with_a_host_key_for_every_demo_customer() -> None:
    script = (ROOT / "docker" / "airflow-init.sh").read_text()
    for customer in load_registry(ROOT / "dags" / "registry").customers:
        assert customer.sftp.connection_id in script, customer.id
    assert '"host_key"' in script and "no_host_key_check" not in script


def test_compose_init_runs_the_set_up_steps_make_up_runs() -> None:
    script = (ROOT / "docker" / "airflow-init.sh").read_text()
    up_source = (ROOT / "tests" / "devtools" / "up.py").read_text()
    for step in ("airflow db migrate", "cloudbackup db migrate", "cloudbackup registry check",
                 "cloudbackup registry sync-pools"):
        assert step in script, step
        _tool, *args = step.split()
        assert ", ".join(f'"{a}"' for a in args) in up_source, f"make up does not run {step}"
