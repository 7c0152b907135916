"""Monthly billing: on the 1st (Asia/Tokyo) bill the month just closed, export finance's CSV, send invoices."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task
from airflow.sdk.exceptions import AirflowFailException
from airflow.timetables.interval import CronDataIntervalTimetable

from cloudbackup import tasks
from cloudbackup.clock import TOKYO

with DAG(
    dag_id="billing_monthly",
    description="Invoices for the billing month just closed, month-end CSV, invoice emails",
    doc_md="""
### Monthly billing (terms art. 20–26)
Runs at 06:00 Asia/Tokyo on the 1st of each month for the month its **data interval** covers (the month
just closed), never for "now": re-running an old run re-bills that old month, and changes nothing
that was already issued.

1. `issue_invoices` — one qualified invoice per customer with anything due, numbered at issue (issue date:
   the Tokyo date the data interval ends on), invoice email queued; a customer that cannot be billed is
   listed and the others go on
2. `export_month_csv` — finance's `invoices-YYYY-MM.csv` and `invoice-lines-YYYY-MM.csv` (UTF-8 with BOM)
   in `$CLOUDBACKUP_EXPORT_DIR`
3. `deliver_notices` — sends queued notices over the `cloudbackup_smtp` connection; failures wait
4. `everyone_billed` — fails the run (after the others were billed, exported and mailed) if a customer
   could not be billed; fix the customer file and clear this task
""",
    schedule=CronDataIntervalTimetable("0 6 1 * *", timezone="Asia/Tokyo"),
    start_date=datetime(2026, 1, 1, tzinfo=TOKYO),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "finance-ops", "retries": 3, "retry_delay": timedelta(minutes=10)},
    tags=["billing"],
):

    @task
    def billing_month(data_interval_start: datetime | None = None) -> str:
        return str(tasks.billing_month_for(data_interval_start))

    @task
    def issue_invoices(month: str, data_interval_end: datetime | None = None) -> dict:
        return tasks.issue_invoices(month, issue_date=data_interval_end.astimezone(TOKYO).date().isoformat())

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
