"""docker-compose.yaml: it parses, and its services and settings agree with what the code expects."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from cloudbackup.edges import connections
from cloudbackup.registry.customers import load_registry
from conftest import ROOT

COMPOSE = ROOT / "docker-compose.yaml"
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker", "airflow-init"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_docker_compose_validates_offline() -> None:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose (Debian package) is installed by `make setup`"
    result = subprocess.run([exe, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


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
