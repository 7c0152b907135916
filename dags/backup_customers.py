"""One backup DAG per customer file in dags/registry/customers (see README, "Customer registry")."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, TriggerRule, get_parsing_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from airflow.timetables.trigger import CronTriggerTimetable

from cloudbackup import settings, tasks
from cloudbackup.backup.runcontrol import last_collection_moment
from cloudbackup.clock import TOKYO
from cloudbackup.registry.customers import Customer, load_registry

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

**Tasks and what their colours mean**

* `collect` — green: snapshot written. Red: server unreachable or hung, host key mismatch, S3 down, time limit
  reached, another run of the customer in progress, or a configuration error, so
  **no snapshot** (retried; a retry is safe and does not resend what arrived). Grey (skipped): the
  customer is suspended or the run fell in a maintenance window (recorded, never caught up).
* `collection_errors` — green: every listed file was collected. Red: **the snapshot was written, but
  some files were not collected** (refused names, permissions, files vanished or changed while read);
  its log and the `collection_errors` table list them (the customer is notified, art. 17(2)).
* `snapshot` — the last task; it decides the run's colour.

So a run with collection errors shows a **red `collection_errors` square inside a green (successful) run**:
visibly different from a clean run, yet not a failed backup. A failed run (red `collect`) is red overall.
Files changed during the read are collected again by the next run.
Registry file: `dags/registry/customers/{id}.yaml`.
"""


def _run_timeout() -> timedelta:
    return timedelta(seconds=settings.run_timeout_seconds())


def _service_end(customer: Customer) -> str:
    if customer.cancelled_before_start_on is not None:
        return f"cancelled before the start on {customer.cancelled_before_start_on}: never collected"
    end = customer.contract_end
    return f"last day of service {end}" if end else "open-ended"


def backup_dag(customer: Customer) -> DAG:
    with DAG(
        dag_id=customer.dag_id,
        description=f"Backup of {customer.name} over SFTP into S3",
        doc_md=DOC.format(name=customer.name, id=customer.id, conn=customer.sftp.connection_id,
                          paths=", ".join(f"`{p}`" for p in customer.sftp.paths),
                          excludes=", ".join(f"`{p}`" for p in customer.sftp.excludes) or "none",
                          schedule=customer.schedule, status=customer.status.value,
                          end=_service_end(customer), timeout=_run_timeout(),
                          sftp_timeout=int(settings.sftp_timeout_seconds())),
        schedule=CronTriggerTimetable(customer.schedule, timezone="Asia/Tokyo"),
        start_date=datetime.combine(customer.service_start_date, datetime.min.time(), TOKYO),
        end_date=last_collection_moment(customer),
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=False,   # a paused backup DAG is a customer without backups
        default_args={"owner": "data-ops", "retries": 2, "retry_delay": timedelta(minutes=5)},
        tags=["backup", f"customer:{customer.id}"],
    ) as dag:

        @task(task_id="collect", execution_timeout=_run_timeout())
        def collect(run_id: str | None = None, logical_date: datetime | None = None, ti=None) -> dict:  # noqa: ANN001
            # Each attempt is its own run (its own record): run id plus try number.
            attempt = getattr(ti, "try_number", None) or 1
            try:
                return tasks.collect(customer.id, f"{run_id or 'manual'}#try{attempt}", logical_date)
            except tasks.CustomerNotCollected as exc:
                raise AirflowSkipException(str(exc)) from exc

        @task(task_id="collection_errors")
        def collection_errors(summary: dict) -> None:
            # Red on purpose, but not a leaf: the run stays successful (see doc_md). AirflowFailException
            # skips the retries: the same run would find the same errors.
            if summary["collection_errors"]:
                raise AirflowFailException(
                    f"snapshot {summary['snapshot_id']} written, but {summary['collection_errors']} file(s) were "
                    "not collected (art. 17(2)); see the collect log and the collection_errors table")

        @task(task_id="snapshot", trigger_rule=TriggerRule.ONE_SUCCESS)
        def snapshot(summary: dict) -> dict:
            return summary

        summary = collect()
        collection_errors(summary) >> snapshot(summary)
    return dag


_wanted = get_parsing_context().dag_id
for _customer in load_registry(settings.registry_dir()).customers:
    if _wanted is None or _wanted == _customer.dag_id:
        globals()[_customer.dag_id] = backup_dag(_customer)
