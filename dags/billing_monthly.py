"""Monthly billing: on the 1st (Asia/Tokyo) bill the month just closed, export finance's CSV, send invoices."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task
from airflow.sdk.exceptions import AirflowFailException
from airflow.timetables.trigger import CronTriggerTimetable

from cloudbackup import tasks
from cloudbackup.clock import TOKYO

with DAG(
    dag_id="billing_monthly",
    description="Invoices for the billing month just closed, month-end CSV, invoice emails",
    doc_md="""
### Monthly billing (terms art. 20–26)
Runs at 06:00 Asia/Tokyo on the 1st of each month and bills the month just closed. **To bill a month by
hand, trigger with the `month` param** (`YYYY-MM`) and leave the logical date empty: empty `month` bills
the month before the run's date (Asia/Tokyo). Billing a month again issues nothing twice. A manual run
given the logical date of a scheduled run (06:00 on a 1st) is refused: the scheduler would silently skip
the scheduled run of that day.

1. `issue_invoices` — one qualified invoice per customer with anything due, numbered at issue (issue date:
   the Tokyo date of the run), invoice email queued; a customer that cannot be billed is
   listed and the others go on
2. `export_month_csv` — finance's `invoices-YYYY-MM.csv` and `invoice-lines-YYYY-MM.csv` (UTF-8 with BOM)
   in `$CLOUDBACKUP_EXPORT_DIR`
3. `deliver_notices` — sends queued notices over the `cloudbackup_smtp` connection; failures wait
4. `everyone_billed` — fails the run (after the others were billed, exported and mailed) if a customer
   could not be billed; fix the customer file and clear this task
""",
    schedule=CronTriggerTimetable("0 6 1 * *", timezone="Asia/Tokyo"),
    start_date=datetime(2026, 1, 1, tzinfo=TOKYO),
    catchup=False,
    is_paused_upon_creation=False,   # the monthly job runs from the day it is deployed
    max_active_runs=1,
    default_args={"owner": "finance-ops", "retries": 3, "retry_delay": timedelta(minutes=10)},
    tags=["billing"],
    params={"month": Param(None, type=["null", "string"], pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$",
                           title="Billing month (YYYY-MM)",
                           description_md="Empty: the month before the run's date in Asia/Tokyo.")},
):

    @task
    def billing_month(params: dict | None = None, dag_run=None, logical_date: datetime | None = None) -> str:  # noqa: ANN001
        try:
            return str(tasks.billing_month_for((params or {}).get("month"), dag_run.run_after, logical_date,
                                               manual=dag_run.run_type == "manual"))
        except tasks.BillingRunCollides as exc:
            raise AirflowFailException(str(exc)) from exc

    @task
    def issue_invoices(month: str, dag_run=None, logical_date: datetime | None = None) -> dict:  # noqa: ANN001
        run_date = tasks.billing_run_date(dag_run.run_after, logical_date)
        return tasks.issue_invoices(month, issue_date=run_date.isoformat())

    @task
    def export_month_csv(month: str) -> str:
        return tasks.export_month_csv(month)

    @task
    def deliver_notices() -> dict:
        return tasks.deliver_notices()

    @task
    def everyone_billed(result: dict) -> None:
        if result["failed"]:   # retrying cannot help: the customer file needs fixing
            raise AirflowFailException(f"not billed (see issue_invoices' log): {', '.join(result['failed'])}")

    month = billing_month()
    issued = issue_invoices(month)
    exported = export_month_csv(month)
    issued >> exported >> deliver_notices() >> everyone_billed(issued)
