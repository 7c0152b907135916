"""The pins of constraints.txt work together: the Celery executor the scheduler and workers load imports,
and pip finds nothing broken (celery 5.7.0 broke apache-airflow-providers-celery 3.26.0 at import)."""

from __future__ import annotations

import subprocess
import sys


def test_pip_check_finds_nothing_broken() -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_celery_executor_and_its_worker_app_import() -> None:
    # A fresh interpreter: what the scheduler and `airflow celery worker` do at start.
    code = ("from airflow.providers.celery.executors.celery_executor import CeleryExecutor\n"
            "from airflow.providers.celery.executors.celery_executor_utils import app\n"
            "print(CeleryExecutor.__name__, app.main)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
