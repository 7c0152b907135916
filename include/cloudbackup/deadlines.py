"""Deadline alert callbacks of the backup DAGs (Airflow runs them in the triggerer, never in a task).

A backup that has not finished `window_hours` after its scheduled start has missed its window: Airflow records the
missed deadline on the run (shown in the UI) and calls `backup_window_missed`, which logs it for the operators.
Kept free of Airflow and of the project's database: the triggerer imports it at every missed deadline.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def window_missed_message(customer_id: str, window_hours: int, run_id: str | None) -> str:
    return (f"backup of {customer_id} (run {run_id or '?'}) has not finished {window_hours} h after its scheduled "
            "start: its backup window is missed; see the run's collect log")


async def backup_window_missed(customer_id: str, window_hours: int, context: Any = None, **_: Any) -> None:
    run = (context or {}).get("dag_run") if isinstance(context, dict) else None
    run_id = getattr(run, "run_id", None) or (run.get("run_id") if isinstance(run, dict) else None)
    log.warning(window_missed_message(customer_id, window_hours, run_id))
