"""The backup DAGs of the fleet, one per customer file, spread over `SHARDS` DAG files by a stable hash of the id.

Each `dags/backup_shard_NN.py` builds the DAGs of its shard; each `dags/registry_check_NN.py` holds no DAG and
raises, as its import error, the customer files of its shard that the registry check refuses (file and field).
A file with an import error has its DAGs marked stale by the dag-processor, so errors never go in a file with DAGs:
a broken customer file drops only its own DAG. A task's parse (Airflow's parsing context names its DAG) reads only
its customer's file, and a shard file that does not hold that DAG reads no customer file at all.
Airflow is imported here. `cloudbackup.tasks` (the tasks' shell: SQLAlchemy, paramiko, minio) is imported only
when a task runs, by the name the DAG file gives (`TASKS_MODULE`): importing it costs more than building a shard's
DAGs, and no cloudbackup module imports the shells (import contract (d)).
"""

from __future__ import annotations

import functools
import importlib
import os
import zlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, AsyncCallback, DeadlineAlert, DeadlineReference, TriggerRule, get_parsing_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from airflow.timetables.trigger import CronTriggerTimetable

from cloudbackup import settings
from cloudbackup.backup.runcontrol import last_collection_moment
from cloudbackup.clock import TOKYO
from cloudbackup.registry.check import FleetCheck, check_registry
from cloudbackup.registry.customers import Customer

SHARDS = 64            # ~160 customers per DAG file at 10,000 customers (bench: fleet_10k_parse_max_s)
SHORT_TASK_TIMEOUT = timedelta(minutes=5)
TASKS_MODULE = "cloudbackup.tasks"


def deadline_alerts_enabled() -> bool:
    """`CLOUDBACKUP_DEADLINE_ALERTS=1` gives each backup DAG its deadline alert. Off by default: in Airflow 3.3.2
    `dag.test()` of a DAG with a DeadlineAlert fails when the run ends (DagRun.update_state looks the alert up by
    id, but dag.test's DAG holds the alert's definition: "'dict' object has no attribute 'hex'")."""
    return os.environ.get("CLOUDBACKUP_DEADLINE_ALERTS", "").lower() in ("1", "true", "yes")


def _deadline(customer: Customer) -> DeadlineAlert | None:
    if not deadline_alerts_enabled():
        return None
    return DeadlineAlert(
        name="backup_window",
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=timedelta(hours=customer.window_hours),
        callback=AsyncCallback("cloudbackup.deadlines.backup_window_missed",
                               kwargs={"customer_id": customer.id, "window_hours": customer.window_hours}))

DOC = """
### Backup of {name} (`{id}`)
Copies the areas this customer designated on its own server (terms art. 16) over SFTP into S3.

* **Source**: Airflow connection `{conn}`; paths {paths}; excludes {excludes}
* **Schedule**: `{schedule}` Asia/Tokyo; missed runs are **not** caught up (art. 18(3))
* **Status in the registry**: `{status}`; a suspended customer's runs are recorded as skipped
* **Service ends**: {end}; runs after the last day of service, or after a cancellation before the start, are
  recorded as skipped (art. 11, 12, 19, 21(3)) and the DAG's `end_date` stops scheduling them
* **Time limit**: `collect` is stopped after {timeout} (execution_timeout); an SFTP server silent for
  {sftp_timeout} s fails the run. One run per customer at a time, whatever starts it (a lease in the project's
  database): a second run waits briefly, then fails with "another backup run is in progress" and records nothing
* **Window**: the run should be finished {window} h after its scheduled start (registry `window_hours`); with
  `CLOUDBACKUP_DEADLINE_ALERTS=1`, past it Airflow's deadline alert `backup_window` fires (its callback logs in
  the triggerer; the run shows the missed deadline)
* **Pool**: {pool}

**Tasks and what their colours mean**

* `collect` — green: snapshot written. Red: server unreachable or hung, host key mismatch, S3 down, time limit
  reached, another run of the customer in progress, or a configuration error, so
  **no snapshot** (retried; a retry is safe and does not resend what arrived). Grey (skipped): the
  customer is suspended or the run fell in a maintenance window (recorded, never caught up).
* `collection_errors` — green: every listed file was collected. Red: **the snapshot was written, but
  some files were not collected** (refused names, permissions, files vanished or changed while read);
  its log and the `collection_errors` table list them (the customer is notified, art. 17(2)).
* `prune` — after a snapshot: applies the plan's retention (or the customer's own) and frees what no kept
  snapshot uses (`cloudbackup backup prune`). Red: the prune failed (S3 down, a manifest unreadable, the lease
  held by another run); **the snapshot is written all the same**, nothing a kept snapshot needs was deleted
  (a prune stopped anywhere is safe), and the next run's prune finishes the job. Retried like `collect`.
* `snapshot` — the last task; it decides the run's colour (it carries the summary, and never fails itself).

Why these tasks and not fewer: a run's colour is decided by its last tasks. With `collection_errors` last, a run
with collection errors would be a *failed* run, like a backup that wrote nothing; with one task, it would be either
green (errors invisible) or red (a failed run). `snapshot` (trigger rule one_success) keeps such a run successful
while `collection_errors` stays red, so clean / with collection errors / failed / skipped stay four distinct pictures.
`prune` sits beside `collection_errors` for the same reason: a failed prune is a red square, never a failed backup.

So a run with collection errors shows a **red `collection_errors` square inside a green (successful) run**:
visibly different from a clean run, yet not a failed backup. A failed run (red `collect`) is red overall.
Files changed during the read are collected again by the next run.
Registry file: `dags/registry/customers/{id}.yaml`; DAG file: shard {shard} of {shards}.
"""


@functools.cache
def _timetable(schedule: str) -> CronTriggerTimetable:
    """One timetable per cron expression, shared by the DAGs that use it (immutable; describing a cron costs ~2 ms)."""
    return CronTriggerTimetable(schedule, timezone="Asia/Tokyo")


def shard_of(customer_id: str) -> int:
    """The shard of a customer: stable across processes and releases (crc32 of the id, never Python's hash())."""
    return zlib.crc32(customer_id.encode()) % SHARDS


def customer_id_of(dag_id: str) -> str | None:
    """The customer id of a backup DAG id (ids have no '_', so `backup_demo_tanaka` is `demo-tanaka`)."""
    return dag_id.removeprefix("backup_").replace("_", "-") if dag_id.startswith("backup_") else None


def check_shard(shard: int, wanted_dag_id: str | None = None) -> FleetCheck:
    """The registry check of one shard's customer files; with `wanted_dag_id` (a task's parse), of that file only."""
    wanted = customer_id_of(wanted_dag_id) if wanted_dag_id else None
    if wanted_dag_id and (wanted is None or shard_of(wanted) != shard):
        return check_registry(settings.registry_dir(), select=lambda _id: False)
    return check_registry(settings.registry_dir(),
                          select=lambda i: shard_of(i) == shard and (wanted is None or i == wanted))


def build_shard(shard: int, tasks_module: str = TASKS_MODULE) -> dict[str, DAG]:
    """The DAGs of one shard, by DAG id (a task's parse builds only its own); their tasks call `tasks_module`."""
    fleet = check_shard(shard, get_parsing_context().dag_id)
    return {c.dag_id: backup_dag(c, shard, tasks_module) for c in fleet.registry.customers}


def raise_shard_errors(shard: int) -> None:
    """The import error of `registry_check_NN.py`: the shard's customer files with errors (their DAGs are not
    loaded); shard 0 also names unreadable catalog or operator settings."""
    fleet = check_shard(shard)
    lines = [str(e) for e in fleet.registry.errors] + (list(fleet.settings_problems) if shard == 0 else [])
    if lines:
        raise ValueError(f"customer registry, shard {shard:02d}: {len(fleet.registry.errors)} customer file(s) with "
                         "errors (their backup DAGs are not loaded; `cloudbackup registry check` shows all):\n"
                         + "\n".join(f"  {line}" for line in lines))


def _service_end(customer: Customer) -> str:
    if customer.cancelled_before_start_on is not None:
        return f"cancelled before the start on {customer.cancelled_before_start_on}: never collected"
    end = customer.contract_end
    return f"last day of service {end}" if end else "open-ended"


def _pool_doc(customer: Customer) -> str:
    if customer.sftp.pool:
        return (f"`{customer.sftp.pool}` (server `{customer.sftp.server}`, shared with the other customers naming it; "
                "created by `cloudbackup registry sync-pools`)")
    return "Airflow's `default_pool` (the customer's own server: one run at a time already)"


def backup_dag(customer: Customer, shard: int, tasks_module: str = TASKS_MODULE) -> DAG:
    run_timeout = timedelta(seconds=settings.run_timeout_seconds())
    with DAG(
        dag_id=customer.dag_id,
        description=f"Backup of {customer.name} over SFTP into S3",
        doc_md=DOC.format(name=customer.name, id=customer.id, conn=customer.sftp.connection_id,
                          paths=", ".join(f"`{p}`" for p in customer.sftp.paths),
                          excludes=", ".join(f"`{p}`" for p in customer.sftp.excludes) or "none",
                          schedule=customer.schedule, status=customer.status.value,
                          end=_service_end(customer), timeout=run_timeout,
                          sftp_timeout=int(settings.sftp_timeout_seconds()), window=customer.window_hours,
                          pool=_pool_doc(customer), shard=f"`dags/backup_shard_{shard:02d}.py`", shards=SHARDS),
        schedule=_timetable(customer.schedule),
        start_date=datetime.combine(customer.service_start_date, datetime.min.time(), TOKYO),
        end_date=last_collection_moment(customer),
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=False,   # a paused backup DAG is a customer without backups
        default_args={"owner": "data-ops", "retries": 2, "retry_delay": timedelta(minutes=5)},
        tags=["backup", f"customer:{customer.id}"],
        deadline=_deadline(customer),
    ) as dag:
        pool: dict[str, Any] = {"pool": customer.sftp.pool} if customer.sftp.pool else {}

        @task(task_id="collect", execution_timeout=run_timeout, **pool)
        def collect(run_id: str | None = None, logical_date: datetime | None = None, ti=None) -> dict:  # noqa: ANN001
            # Each attempt is its own run (its own record): run id plus try number.
            attempt = getattr(ti, "try_number", None) or 1
            tasks = importlib.import_module(tasks_module)
            try:
                return tasks.collect(customer.id, f"{run_id or 'manual'}#try{attempt}", logical_date)
            except tasks.CustomerNotCollected as exc:
                raise AirflowSkipException(str(exc)) from exc

        @task(task_id="collection_errors", execution_timeout=SHORT_TASK_TIMEOUT)
        def collection_errors(summary: dict) -> None:
            # Red on purpose, but not a leaf: the run stays successful (see doc_md). AirflowFailException
            # skips the retries: the same run would find the same errors.
            if summary["collection_errors"]:
                raise AirflowFailException(
                    f"snapshot {summary['snapshot_id']} written, but {summary['collection_errors']} file(s) were "
                    "not collected (art. 17(2)); see the collect log and the collection_errors table")

        @task(task_id="prune", execution_timeout=run_timeout)
        def prune(summary: dict, run_id: str | None = None, ti=None) -> dict:  # noqa: ANN001
            # After the snapshot, under the customer's lease (collect has released it). Not a leaf: a failure shows
            # red here while the run stays green (see doc_md); the next run's prune picks up where this one stopped.
            attempt = getattr(ti, "try_number", None) or 1
            tasks = importlib.import_module(tasks_module)
            try:
                return tasks.prune(customer.id, run_key=f"{run_id or 'manual'}#prune#try{attempt}").summary()
            except ValueError as exc:   # a setting or the registry is wrong: a retry would find it just as wrong
                raise AirflowFailException(f"prune not run: {exc}") from exc

        @task(task_id="snapshot", trigger_rule=TriggerRule.ONE_SUCCESS, execution_timeout=SHORT_TASK_TIMEOUT)
        def snapshot(summary: dict) -> dict:
            return summary

        summary = collect()
        last = snapshot(summary)
        collection_errors(summary) >> last
        prune(summary) >> last
    return dag


def shard_files(dags_folder: Path) -> list[Path]:
    """The shard DAG files and check files in `dags_folder`."""
    return sorted([*dags_folder.glob("backup_shard_*.py"), *dags_folder.glob("registry_check_*.py")])
