"""Manual restore (terms art. 18(1)): a snapshot, or part of it, to a folder or back onto an SFTP server."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task
from airflow.sdk.exceptions import AirflowFailException

from cloudbackup import tasks

DOC = """
### Restore from a snapshot (art. 18(1))
Trigger with the form. Every restored file is checked against the sha256 in the snapshot's manifest;
a file that does not match is not left in place and the task fails listing it. The terms do not
guarantee the result of a restore (art. 18(1)): check the restored data with the customer.

* **customer**: customer id, e.g. `demo-tanaka`
* **snapshot**: a snapshot id (`cloudbackup backup snapshots --customer ID` lists them) or `latest`
* **path**: a file or folder inside the snapshot (absolute, as on the customer's server); `/` for all
* **target**: `local:<folder>` on the worker, under `$CLOUDBACKUP_RESTORE_DIR` (default `var/restores`), or
  `sftp:<connection id>` with the customer's **own** connection (art. 33 forbids any other): back to its
  server into **`/restore/<snapshot id>/`**, beside its live data, never over it. `sftp:<connection id>:<folder>`
  names another folder; a folder inside (or above) the customer's designated areas (art. 16) is refused, so a
  restore from this form **never overwrites the customer's live files**. Existing files of the same name inside
  the restore folder are replaced.

Overwriting the live files in place is deliberately not offered here: it is the shell command
`cloudbackup backup restore --customer ID --in-place`, for an operator acting on the customer's instruction.
"""

with DAG(
    dag_id="restore",
    description="Restore a customer's snapshot (or a path in it), verified against the manifest",
    doc_md=DOC,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,   # a paused DAG would hold every restore request queued
    tags=["backup", "restore"],
    # A retry is safe: each file is written under a temporary name and renamed only when verified.
    default_args={"owner": "data-ops", "retries": 1, "retry_delay": timedelta(minutes=2)},
    params={
        "customer": Param(type="string", title="Customer id", pattern=r"^[a-z0-9][a-z0-9-]{1,62}$"),
        "snapshot": Param("latest", type="string", title="Snapshot id, or latest"),
        "path": Param("/", type="string", title="File or folder in the snapshot", pattern=r"^/"),
        "target": Param(type="string", title="Target", pattern=r"^(local:/|sftp:[A-Za-z0-9_.-]+(:/|$))",
                        description_md="`local:/folder`, or `sftp:<connection id>` (restores to "
                                       "`/restore/<snapshot id>` on the customer's server), or "
                                       "`sftp:<connection id>:/folder` outside the designated areas"),
    },
) as dag:

    @task(task_id="restore")
    def restore(params: dict | None = None) -> dict:
        p = params or {}
        snapshot = None if p["snapshot"] in ("", "latest") else p["snapshot"]
        try:
            return tasks.restore(p["customer"], p["target"], snapshot, p["path"], confined=True)
        except tasks.RestoreRefused as exc:
            raise AirflowFailException(str(exc)) from exc

    restore()
