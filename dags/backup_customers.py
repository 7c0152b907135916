"""One backup DAG per customer file in dags/registry/customers (see README, "Customer registry")."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, get_parsing_context, task
from airflow.sdk.exceptions import AirflowSkipException
from airflow.timetables.trigger import CronTriggerTimetable

from cloudbackup import settings, tasks
from cloudbackup.registry import Customer, load_registry

DOC = """
### Backup of {name} (`{id}`)
Copies the areas this customer designated on its own server (terms art. 16) over SFTP into S3.

* **Source**: Airflow connection `{conn}`; paths {paths}; excludes {excludes}
* **Schedule**: `{schedule}` Asia/Tokyo; missed runs are **not** caught up (art. 18(3))
* **Status in the registry**: `{status}`; a suspended customer's runs are recorded as skipped

**Task `collect`** fails only when the server cannot be reached or its host key does not match (retry is
safe); unreadable files are *collection errors*, listed in the `collection_errors` table and in the log.
Registry file: `dags/registry/customers/{id}.yaml`.
"""


def backup_dag(customer: Customer) -> DAG:
    with DAG(
        dag_id=customer.dag_id,
        description=f"Backup of {customer.name} over SFTP into S3",
        doc_md=DOC.format(name=customer.name, id=customer.id, conn=customer.sftp.connection_id,
                          paths=", ".join(f"`{p}`" for p in customer.sftp.paths),
                          excludes=", ".join(f"`{p}`" for p in customer.sftp.excludes) or "none",
                          schedule=customer.schedule, status=customer.status.value),
        schedule=CronTriggerTimetable(customer.schedule, timezone="Asia/Tokyo"),
        start_date=datetime.combine(customer.service_start_date, datetime.min.time(), tasks.TOKYO),
        catchup=False,
        max_active_runs=1,
        default_args={"owner": "data-ops", "retries": 2, "retry_delay": timedelta(minutes=5)},
        tags=["backup", f"customer:{customer.id}"],
    ) as dag:

        @task(task_id="collect")
        def collect(run_id: str | None = None) -> dict:
            try:
                return tasks.collect(customer.id, run_id or "manual")
            except tasks.CustomerNotCollected as exc:
                raise AirflowSkipException(str(exc)) from exc

        collect()
    return dag


_wanted = get_parsing_context().dag_id
for _customer in load_registry(settings.registry_dir()).customers:
    if _wanted is None or _wanted == _customer.dag_id:
        globals()[_customer.dag_id] = backup_dag(_customer)
