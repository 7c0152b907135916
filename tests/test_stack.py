"""The production path: the stack of `make up` (Airflow 3.3 on the CeleryExecutor, PostgreSQL, Redis, the demo
customers' sshd, S3 and SMTP), driven only as a user drives it, through Airflow's REST API, and checked where
a user looks: S3, the project's records, the month-end CSV, the mail the SMTP server received, restored files.
No dag.test(): the scheduler schedules, the Celery worker runs every task.
"""

from __future__ import annotations

import csv
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from pathlib import Path

import pytest
import sqlalchemy as sa
from devtools import devstack, up
from devtools.demo import DEMO_FILES

from cloudbackup.backup.format import SNAPSHOTS, customer_prefix
from cloudbackup.billing.months import BillingMonth
from cloudbackup.clock import tokyo_date, utcnow
from cloudbackup.edges.connections import S3Endpoint
from cloudbackup.edges.s3 import ObjectStore

TANAKA, GLOBEX = "backup_demo_tanaka", "backup_demo_globex"


@pytest.fixture(scope="module")
def stack() -> Iterator[up.Access]:
    # Not pytest's tmp_path: another pytest session on the machine prunes old base temps, stack and all.
    directory = Path(tempfile.mkdtemp(prefix="cloudbackup-stack-"))
    prefix = f"cbstack_{secrets.token_hex(4)}"
    try:
        # Its own port, Redis database, Celery queue and PostgreSQL databases: a `make up` stack may run beside it.
        access = up.start(directory, api_port=devstack.free_port(), redis_db=2, db_prefix=prefix)
        yield access
    finally:
        stopped = up.stop(directory)
        for name in (f"{prefix}_airflow", prefix):
            up.drop_database(name)
        if not os.environ.get("CLOUDBACKUP_KEEP_STACK"):   # set it to read the component and task logs after
            shutil.rmtree(directory, ignore_errors=True)
    assert {"api-server", "scheduler", "dag-processor", "triggerer", "celery-worker"} <= set(stopped)


@pytest.fixture(scope="module")
def operator(stack: up.Access) -> up.RestClient:
    return up.RestClient(stack.airflow_url, "operator", stack.passwords["operator"])


@pytest.fixture(scope="module")
def project_db(stack: up.Access) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{stack.project_db}")
    yield engine
    engine.dispose()


def _store(stack: up.Access) -> ObjectStore:
    return ObjectStore(S3Endpoint(stack.s3_endpoint.removeprefix("http://"), False, stack.s3_access_key,
                                  stack.s3_secret_key, stack.s3_bucket))


def _mail(stack: up.Access) -> list:
    return [message_from_bytes(p.read_bytes(), policy=policy.default)
            for p in sorted(Path(stack.maildir).glob("*.eml"))]


def _subject(message) -> str:  # noqa: ANN001
    return str(make_header(decode_header(message["Subject"])))


def test_the_stack_runs_every_component_and_the_worker_listens_on_redis(stack: up.Access) -> None:
    assert set(up.running(Path(stack.directory)).pids) >= {"api-server", "scheduler", "dag-processor",  # type: ignore[union-attr]
                                                           "triggerer", "celery-worker", "sshd", "s3", "smtp"}
    env = dict(line.split("=", 1) for line in (Path(stack.directory) / "access.env").read_text().splitlines())
    assert env["AIRFLOW_URL"] == stack.airflow_url and env["ADMIN_USER"] == "admin"
    # make up twice: the second finds the first and starts nothing.
    assert up.start(Path(stack.directory)).pids == stack.pids


def test_a_backup_triggered_by_the_operator_runs_on_the_celery_worker(stack: up.Access, operator: up.RestClient,
                                                                     project_db: sa.Engine) -> None:
    assert {TANAKA, GLOBEX, "billing_monthly", "deliver_notices", "restore"} <= operator.dag_ids()
    dags = {d["dag_id"]: d for d in operator.request("GET", "/api/v2/dags?limit=100")["dags"]}
    # No one unpaused anything: every DAG of ours starts unpaused (a paused backup DAG is a customer without
    # backups; a paused restore DAG holds every restore queued).
    assert not [d for d, v in dags.items() if v["is_paused"]]

    run_id = operator.trigger(TANAKA)
    assert operator.wait(TANAKA, run_id)["state"] == "success"
    assert set(operator.task_states(TANAKA, run_id).values()) == {"success"}
    # Its deadline alert (the customer's window) was parsed, stored and did not get in the run's way.
    alerts = operator.request("GET", f"/ui/dags/{TANAKA}/deadlineAlerts")
    assert alerts.get("total_entries", 0) >= 1, alerts
    queues = {t["queue"] for t in operator.request(
        "GET", f"/api/v2/dags/{TANAKA}/dagRuns/{run_id}/taskInstances")["task_instances"]}
    assert queues == {stack.queue}, "run by the stack's own Celery worker"

    snapshots = [k for k, _ in _store(stack).list_keys(customer_prefix("demo-tanaka") + SNAPSHOTS)]
    assert snapshots, "the snapshot is in S3"
    with project_db.connect() as conn:
        status = conn.execute(sa.text("SELECT status FROM backup_runs WHERE customer_id = 'demo-tanaka' "
                                      "ORDER BY id DESC LIMIT 1")).scalar_one()
    assert status == "succeeded"


def test_a_backup_with_collection_errors_is_green_with_a_red_square_and_mails_the_customer(
        stack: up.Access, operator: up.RestClient, project_db: sa.Engine) -> None:
    """Art. 17(2): a file not collected is recorded and the customer is told; the snapshot still counts."""
    refused = Path(stack.sftp_root) / "srv" / "projects" / os.fsdecode(b"legacy-\xff\xfe.txt")
    refused.write_bytes(b"a name that is not UTF-8: the name policy refuses it")
    run_id = operator.trigger(GLOBEX)
    assert operator.wait(GLOBEX, run_id)["state"] == "success"
    states = operator.task_states(GLOBEX, run_id)
    assert (states["collect"], states["collection_errors"], states["snapshot"]) == ("success", "failed", "success")
    with project_db.connect() as conn:
        run = conn.execute(sa.text("SELECT id, status FROM backup_runs WHERE customer_id = 'demo-globex' "
                                   "ORDER BY id DESC LIMIT 1")).one()
        reasons = conn.execute(sa.text("SELECT reason FROM collection_errors WHERE backup_run_id = :r"),
                               {"r": run.id}).scalars().all()
    assert run.status == "succeeded_with_errors" and "name_policy" in reasons

    delivered = operator.trigger("deliver_notices")
    assert operator.wait("deliver_notices", delivered)["state"] == "success"
    to_globex = [m for m in _mail(stack) if m["To"] == "it-ops@globex.example.com"]
    body = "\n".join(m.get_body(("plain",)).get_content() for m in to_globex)
    assert to_globex and "legacy-" in body, "the collection-error digest names the file"


def test_billing_a_closed_month_by_param_issues_invoices_csv_and_mail(stack: up.Access, operator: up.RestClient,
                                                                    project_db: sa.Engine) -> None:
    """Art. 20-22: the month just closed is billed; finance gets the CSV, customers the invoice mail."""
    month = BillingMonth.of(tokyo_date(utcnow())).previous()
    next_run = operator.request("GET", "/api/v2/dags/billing_monthly")["next_dagrun_run_after"]

    run_id = operator.trigger("billing_monthly", {"month": str(month)})
    assert operator.wait("billing_monthly", run_id)["state"] == "success"
    with project_db.connect() as conn:
        invoices = conn.execute(sa.text("SELECT customer_id, invoice_number FROM invoices WHERE billing_month = :m"),
                                {"m": str(month)}).all()
    assert {c for c, _ in invoices} == {"demo-tanaka", "demo-globex"}
    rows = list(csv.DictReader((Path(stack.export_dir) / f"invoices-{month}.csv").read_text("utf-8-sig").splitlines()))
    assert {r["invoice_number"] for r in rows} == {n for _, n in invoices}
    mailed = {m["To"] for m in _mail(stack) if any(n in m.get_body(("plain",)).get_content() for _, n in invoices)}
    assert mailed == {"backup-admin@tanaka.example.jp", "it-ops@globex.example.com"}

    # Billing the same month again issues nothing twice, and never takes the scheduled run's slot.
    again = operator.trigger("billing_monthly", {"month": str(month)})
    assert operator.wait("billing_monthly", again)["state"] == "success"
    with project_db.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM invoices WHERE billing_month = :m"),
                            {"m": str(month)}).scalar_one() == len(invoices)
    assert operator.request("GET", "/api/v2/dags/billing_monthly")["next_dagrun_run_after"] == next_run


def test_a_restore_from_the_ui_gives_back_the_bytes_of_the_snapshot(stack: up.Access,
                                                                    operator: up.RestClient) -> None:
    """Art. 18(1): the customer's data comes back, each file checked against the manifest."""
    folder = Path(stack.restore_dir) / "stack-test"
    run_id = operator.trigger("restore", {"customer": "demo-tanaka", "snapshot": "latest", "path": "/",
                                          "target": f"local:{folder}"})
    assert operator.wait("restore", run_id)["state"] == "success"
    expected = {p: data for p, data in DEMO_FILES.items() if p.startswith(("/srv/documents/", "/srv/accounting/"))
                and not p.endswith(".tmp") and "/cache/" not in p}
    for remote, data in expected.items():
        assert (folder / remote.lstrip("/")).read_bytes() == data, remote
    assert not (folder / "srv" / "documents" / "draft.tmp").exists(), "excluded by the customer (*.tmp)"


def test_the_finance_login_opens_the_finance_pages(stack: up.Access) -> None:
    finance = up.RestClient(stack.airflow_url, "finance", stack.passwords["finance"])
    status, body = finance.get_bytes("/cloudbackup/finance")
    assert status == 200 and b"invoice" in body.lower()


BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]


def test_the_operator_signs_in_to_the_airflow_ui_and_sees_one_dag_per_customer_in_chromium(
        stack: up.Access) -> None:
    """What an operator meets first: Airflow's sign-in, then the DAG list with every demo customer's backup."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.goto(f"{stack.airflow_url}/auth/login/?next={stack.airflow_url}/dags")
        page.get_by_label("Username").fill("operator")
        page.get_by_label("Password").fill(stack.passwords["operator"])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{stack.airflow_url}/dags**", timeout=30_000)
        for dag_id in (TANAKA, GLOBEX, "billing_monthly", "restore"):
            page.get_by_text(dag_id, exact=True).first.wait_for(timeout=30_000)
        if os.environ.get("STACK_SCREENSHOTS"):
            page.screenshot(path=str(Path(os.environ["STACK_SCREENSHOTS"]) / "stack-dags.png"))
        browser.close()
