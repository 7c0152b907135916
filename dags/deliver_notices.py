"""Customer notices (terms art. 28): queue the notices of recorded events, then send the outbox by SMTP."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from cloudbackup import tasks
from cloudbackup.clock import TOKYO

with DAG(
    dag_id="deliver_notices",
    description="Send pending customer notices (collection errors, capacity, maintenance, suspension, invoices)",
    doc_md="""
### Customer notices (terms art. 13(2), 14(2), 17(2)(3), 28, 33)
Every notice is a row in the `notices` table (the outbox), written in the same transaction as the event
that causes it, rendered in the customer's language. This DAG, every 5 minutes:

1. `queue_event_notices` — queues what is not queued yet: digests of runs with collection errors and
   capacity events (a backstop; the backup run queues them itself), advance notices of the windows in
   `maintenance.yaml`, notices of suspensions in the customer files. Idempotent: never twice. A broken
   `maintenance.yaml` fails this task after the other notices are queued; delivery runs regardless.
2. `deliver_notices` — sends due notices over the `cloudbackup_smtp` connection. Each notice is claimed
   before it is sent and marked sent right after, so a retried task never sends it twice. SMTP down or a
   refusal: the notice waits (backoff doubling from `CLOUDBACKUP_NOTICE_BACKOFF_SECONDS`, default 60 s) and
   the task fails so Airflow retries it; after `CLOUDBACKUP_NOTICE_MAX_ATTEMPTS` (5) refusals the notice is
   flagged **stuck** and left for an operator.

3. `sweep_dead_runs` — backup runs whose worker died (no heartbeat, lease lapsed) or that outlived the run
   time limit are marked `failed` in `backup_runs` (no run stays `running`); `cloudbackup backup sweep` does
   the same from a shell.

The task log lists every notice sent (id, kind, recipient, Message-ID) and every refusal and stuck notice.
Operators: `cloudbackup notices list --state stuck`, `cloudbackup notices retry ID`.
""",
    schedule=timedelta(minutes=5),
    start_date=datetime(2026, 1, 1, tzinfo=TOKYO),
    catchup=False,
    is_paused_upon_creation=False,   # notices take effect when sent (art. 28): never held back by a pause
    max_active_runs=1,
    default_args={"owner": "customer-ops", "retries": 3, "retry_delay": timedelta(minutes=1),
                  "retry_exponential_backoff": 2.0, "max_retry_delay": timedelta(minutes=15)},
    tags=["notices"],
):

    @task
    def queue_event_notices() -> dict:
        return tasks.queue_event_notices()

    @task(trigger_rule="all_done")  # whatever queuing hit, what is already queued still goes out
    def deliver_notices() -> dict:
        return tasks.deliver_notices()

    @task
    def sweep_dead_runs() -> list[dict]:
        return tasks.sweep_dead_runs()

    queue_event_notices() >> deliver_notices()
    sweep_dead_runs()
