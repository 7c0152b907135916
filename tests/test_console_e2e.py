"""The console as a person meets it: a real `airflow api-server` with the plugin, headless Chromium, Airflow's login.

The api-server has DAGs of its own (the seeded customers' backup DAGs as stand-ins, and the real `restore` DAG,
serialized with `airflow dags reserialize`), so the DAG-page tab, pause state and the restore trigger are real.
Set CONSOLE_SCREENSHOTS=<dir> to keep the screenshots (docs/console-*.png come from here).
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from backup_support import connector, tree, write_tree
from devtools import devstack
from devtools.console_seed import seed_attention_cases, seed_fleet

from cloudbackup.backup import format as snap
from cloudbackup.backup.archiver import run_backup
from cloudbackup.backup.capacity import CapacityBasis
from cloudbackup.backup.outcomes import CollectionError
from cloudbackup.backup.records import finish_run, record_snapshot, start_run
from cloudbackup.billing import BillingMonth, exports
from cloudbackup.billing import documents as invoices
from cloudbackup.clock import utcnow
from cloudbackup.edges import db
from cloudbackup.edges.connections import S3Endpoint
from cloudbackup.edges.s3 import ObjectStore
from cloudbackup.registry.catalog import load_catalog
from cloudbackup.registry.customers import load_registry
from cloudbackup.registry.operator import load_operator
from conftest import ROOT, customer_yaml

pytestmark = pytest.mark.servers

HOSTILE_NAME = '<img src=x onerror="window.__pwned=1"> Hacker & Co'
HOSTILE_PATH = "/srv/share/<script>window.__pwned=2</script>.txt"
SEEDED = 8
USERS = {"admin": "admin", "ops": "viewer", "operator": "op", "finance": "user"}   # user name → role
AREA = "/srv/console-share"        # the hostile customer's designated area on the devstack sshd
SNAPSHOT_FILES = {"経理/2026/請求書 11月.xlsx": os.urandom(300_000), "経理/2026/見積書.pdf": b"%PDF-1.4 " * 300,
                  "経理/readme.txt": "領収書は別フォルダ\n".encode(), "設計/図面 A.dwg": os.urandom(70_000),
                  "top.txt": b"top"}
PAUSED = "held-co"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]


@dataclass(frozen=True)
class Console:
    base: str
    passwords: dict[str, str]
    engine: sa.Engine
    snapshot: str                   # the hostile customer's snapshot, taken by a real backup over SFTP
    flags: dict[str, str]           # customer id → the attention flag its seeded state raises
    customers: int                  # rows on the fleet page
    invoiced: int                   # invoices issued for 2026-10
    restore_dir: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _seed(engine: sa.Engine, registry: Path, store: ObjectStore,
          sshd: devstack.Sshd) -> tuple[str, dict[str, str], int]:
    now = utcnow()
    seed_fleet(engine, registry, customers=SEEDED, days=365, now=now)
    (registry / "customers" / "hostile.yaml").write_text(
        customer_yaml("hostile", paths=[AREA]).replace(
            "name: テスト顧客 hostile", f"name: '{HOSTILE_NAME}'"), encoding="utf-8")
    run_id = start_run(engine, "hostile", "manual__hostile")
    # Its data as of the snapshot counts against the contract (60 GB); the operator stores 75 GB for it.
    finish_run(engine, run_id, "hostile", files=3, bytes_=3000, stored_bytes=75 * 10**9,
               errors=[CollectionError(HOSTILE_PATH, "name_policy", "control characters in the name")],
               counted_bytes=60 * 10**9, capacity_basis=CapacityBasis.SOURCE_BYTES)
    # A real snapshot of its area, taken over SFTP into S3 (the console browses its manifest; a restore
    # started from the console reads its objects).
    write_tree(sshd.root / AREA.lstrip("/"), SNAPSHOT_FILES)
    store.ensure_bucket()
    result = run_backup(connector(sshd), store, "hostile", "manual__hostile", [AREA], [])
    record_snapshot(engine, run_id, "hostile", result.snapshot_id, snap.snapshot_key(result.snapshot_id),
                    file_count=result.files, total_bytes=result.bytes, files_read=result.files_read,
                    bytes_uploaded=result.bytes_uploaded)
    registry_ = load_registry(registry)
    invoices.issue_month(engine, list(registry_.customers), load_catalog(registry / "catalog.yaml"),
                         BillingMonth(2026, 10), load_operator(registry / "operator.yaml"), date(2026, 11, 1))
    # One customer in each state the fleet flags, after billing (they are not part of the invoiced month).
    return result.snapshot_id, seed_attention_cases(engine, registry, now), len(registry_.customers)


STAND_IN_DAGS = """\
from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

# Stand-ins for the customers' backup DAGs: the console needs their ids, pause state and pages in Airflow.
for customer_id in {ids!r}:
    with DAG(dag_id="backup_" + customer_id.replace("-", "_"), schedule=None, start_date=datetime(2026, 1, 1),
             tags=["backup"]) as dag:
        EmptyOperator(task_id="collect")
    globals()[dag.dag_id] = dag
"""


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory, stack: devstack.Stack) -> Iterator[Console]:
    """A migrated, seeded project DB, a snapshot's manifest in S3 and a real api-server (own AIRFLOW_HOME, simple
    auth manager, our plugins, stand-in backup DAGs and the restore DAG)."""
    tmp = tmp_path_factory.mktemp("console")
    registry = tmp / "registry"
    (registry / "customers").mkdir(parents=True)
    for name in ("catalog.yaml", "operator.yaml"):
        (registry / name).write_text((ROOT / "dags" / "registry" / name).read_text(encoding="utf-8"), encoding="utf-8")
    engine = db.engine_for(f"sqlite:///{tmp}/cloudbackup.db")
    db.migrate(engine)
    bucket = f"console-{secrets.token_hex(4)}"
    s3 = stack.s3.connection(bucket=bucket)
    store = ObjectStore(S3Endpoint(s3["extra"]["endpoint_url"].removeprefix("http://"), False, s3["login"],
                                   s3["password"], bucket))
    snapshot, flags, invoiced = _seed(engine, registry, store, stack.sshd)
    dags = tmp / "dags"
    dags.mkdir()
    ids = sorted(p.stem for p in (registry / "customers").glob("*.yaml"))
    (dags / "stand_in_backups.py").write_text(STAND_IN_DAGS.format(ids=ids), encoding="utf-8")
    (dags / "restore.py").write_text((ROOT / "dags" / "restore.py").read_text(encoding="utf-8"), encoding="utf-8")

    passwords = {user: secrets.token_urlsafe(12) for user in USERS}
    (tmp / "passwords.json").write_text(json.dumps(passwords))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CLOUDBACKUP"))}
    env.update({
        "AIRFLOW_HOME": str(tmp / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW_CONN_CLOUDBACKUP_DB": json.dumps({"conn_type": "sqlite", "host": f"{tmp}/cloudbackup.db"}),
        "AIRFLOW_CONN_CLOUDBACKUP_S3": json.dumps(s3),
        "CLOUDBACKUP_REGISTRY_DIR": str(registry),
        "CLOUDBACKUP_RESTORE_DIR": str(tmp / "restores"),
        # The session's master key (conftest): the console reads format-2 manifests, the restore DAG their objects.
        "CLOUDBACKUP_MASTER_KEY": os.environ["CLOUDBACKUP_MASTER_KEY"],
        "CLOUDBACKUP_MASTER_KEY_ID": os.environ["CLOUDBACKUP_MASTER_KEY_ID"],
    })
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([airflow, "dags", "reserialize"], env=env, check=True, capture_output=True)
    log = (tmp / "api-server.log").open("wb")
    server = subprocess.Popen([airflow, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    # A scheduler with the LocalExecutor runs what the console triggers (the restore DAG), through this api-server.
    scheduler_env = {**env, "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                     "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/"}
    scheduler_log = (tmp / "scheduler.log").open("wb")
    scheduler = subprocess.Popen([airflow, "scheduler"], env=scheduler_env, stdout=scheduler_log,
                                 stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"api-server exited: {(tmp / 'api-server.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"api-server not up in 90 s: {(tmp / 'api-server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        if b"Failed to import plugin" in (tmp / "api-server.log").read_bytes():
            raise RuntimeError(f"plugin failed to load: {(tmp / 'api-server.log').read_text()[-3000:]}")
        console = Console(base, passwords, engine, snapshot, flags, len(ids) + 0, invoiced, tmp / "restores")
        # An operator pauses one customer's DAG in Airflow: the console must show it.
        r = httpx.patch(f"{base}/api/v2/dags/backup_{PAUSED.replace('-', '_')}", json={"is_paused": True},
                        headers={"Authorization": f"Bearer {_token(console, 'admin')}"}, timeout=30)
        r.raise_for_status()
        yield console
    finally:
        for process in (scheduler, server):
            process.terminate()
        for process in (scheduler, server):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
        scheduler_log.close()
        engine.dispose()


def _token(c: Console, user: str) -> str:
    r = httpx.post(f"{c.base}/auth/token", json={"username": user, "password": c.passwords[user]}, timeout=10)
    r.raise_for_status()
    return r.json()["access_token"]


def test_anonymous_requests_are_refused(console_server: Console) -> None:
    """Plugin endpoints get no auth by themselves: every console URL must refuse a request without a login."""
    for path in ("/", "/customers/cust-0001", "/finance", "/finance/csv/invoices-2026-10.csv",
                 "/finance/invoices/CB-00000001", "/reports", "/reports/last_run_per_customer.csv"):
        r = httpx.get(f"{console_server.base}/cloudbackup{path}", timeout=10)
        assert r.status_code in (401, 403), path
        assert "cust-0001" not in r.text and "Fleet" not in r.text
    # A browser without a session is offered Airflow's sign-in, still with 401.
    r = httpx.get(f"{console_server.base}/cloudbackup/", headers={"Accept": "text/html"}, timeout=10)
    assert r.status_code == 401 and 'href="/auth/login/?next=' in r.text
    r = httpx.get(f"{console_server.base}/cloudbackup/", headers={"Accept": "text/html", "Accept-Language": "ja"},
                  timeout=10)
    assert r.status_code == 401 and "Airflow にサインイン" in r.text


def test_a_viewer_sees_the_fleet_but_not_finance(console_server: Console) -> None:
    """Role mapping: viewer reads the fleet and customers; finance needs the right to operate the billing DAG."""
    headers = {"Authorization": f"Bearer {_token(console_server, 'ops')}"}
    fleet = httpx.get(f"{console_server.base}/cloudbackup/", headers=headers, timeout=30)
    assert fleet.status_code == 200 and 'data-customer="cust-0001"' in fleet.text
    assert httpx.get(f"{console_server.base}/cloudbackup/customers/cust-0001", headers=headers,
                     timeout=30).status_code == 200
    for path in ("/finance", "/finance/csv/invoices-2026-10.csv", "/finance/invoices/CB-00000001",
                 "/finance/archive", "/finance/invoices/CB-00000001/pdf"):
        assert httpx.get(f"{console_server.base}/cloudbackup{path}", headers=headers, timeout=30).status_code == 403
    # Reports: the ops ones for whoever reads the fleet, the finance ones only with the finance right.
    page = httpx.get(f"{console_server.base}/cloudbackup/reports", headers=headers, timeout=30)
    assert page.status_code == 200 and 'data-report="last_run_per_customer"' in page.text
    assert "finance role needed" in page.text
    ops_csv = httpx.get(f"{console_server.base}/cloudbackup/reports/last_run_per_customer.csv", headers=headers,
                        timeout=30)
    assert ops_csv.status_code == 200 and ops_csv.text.splitlines()[0].startswith("customer_id,status,")
    assert httpx.get(f"{console_server.base}/cloudbackup/reports/invoices_for_month.csv?month=2026-10",
                     headers=headers, timeout=30).status_code == 403
    # The "Cloud backup" tab on a backup DAG's page leads to that customer.
    tab = httpx.get(f"{console_server.base}/cloudbackup/dags/backup_hostile", headers=headers, timeout=30)
    assert tab.status_code == 303 and tab.headers["location"] == "/cloudbackup/customers/hostile"
    # A person (a browser) refused gets a page saying which role is needed, not a raw {"detail":"Forbidden"}.
    page = httpx.get(f"{console_server.base}/cloudbackup/finance", headers={**headers, "Accept": "text/html"},
                     timeout=30)
    assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")
    assert 'id="refused"' in page.text and "finance role (Airflow role user, op or admin)" in page.text
    assert "detail" not in page.text
    # A viewer may browse a snapshot but not restore it.
    browse = httpx.get(f"{console_server.base}/cloudbackup/customers/hostile/snapshots/{console_server.snapshot}",
                       headers=headers, timeout=30)
    assert browse.status_code == 200 and 'id="start-restore"' not in browse.text
    assert "Only operators" in browse.text
    # A snapshot recorded in the DB whose manifest is gone from S3 is said so, not a server error.
    with console_server.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO snapshots (customer_id, snapshot_id, manifest_key, file_count, total_bytes, files_read, "
            "bytes_uploaded, created_at) VALUES ('hostile', '20250101T000000Z-gone', 'k', 1, 1, 1, 1, :t)"),
            {"t": db.to_db_time(utcnow())})
    gone = httpx.get(f"{console_server.base}/cloudbackup/customers/hostile/snapshots/20250101T000000Z-gone",
                     headers=headers, timeout=30)
    assert gone.status_code == 200 and "No manifest for this snapshot." in gone.text
    refused = httpx.post(f"{console_server.base}/cloudbackup/customers/hostile/restore", headers=headers,
                         data={"snapshot": console_server.snapshot, "path": AREA, "target": "sftp:sftp_hostile"},
                         timeout=30)
    assert refused.status_code == 403


def test_the_finance_login_opens_the_finance_pages_but_may_not_restore(console_server: Console) -> None:
    """README: finance logs in with Airflow role user, which opens the finance pages and finance reports;
    restores are for operators (op, admin)."""
    headers = {"Authorization": f"Bearer {_token(console_server, 'finance')}"}
    for path in ("/finance", "/finance/csv/invoices-2026-10.csv", "/reports/invoices_for_month.csv?month=2026-10"):
        assert httpx.get(f"{console_server.base}/cloudbackup{path}", headers=headers, timeout=30).status_code == 200
    refused = httpx.post(f"{console_server.base}/cloudbackup/customers/hostile/restore",
                         headers={**headers, "Accept": "text/html"},
                         data={"snapshot": console_server.snapshot, "path": AREA, "target": "sftp:sftp_hostile"},
                         timeout=30)
    assert refused.status_code == 403 and "operator role (Airflow role op or admin)" in refused.text
    runs = httpx.get(f"{console_server.base}/api/v2/dags/restore/dagRuns", timeout=30,
                     headers={"Authorization": f"Bearer {_token(console_server, 'admin')}"}).json()
    assert all(r["conf"].get("customer") != "hostile" or r["conf"].get("path") != AREA
               for r in runs["dag_runs"]), "a refused restore triggers nothing"


def test_finance_searches_the_invoice_archive_by_amount_range_and_downloads_the_pdf(console_server: Console) -> None:
    """電子帳簿保存法: issued documents are searchable by date, amount range and counterparty, in the console too,
    and each one's PDF is the one archived (art. 25: the qualified invoice)."""
    import re
    import subprocess

    from cloudbackup.billing import archive

    headers = {"Authorization": f"Bearer {_token(console_server, 'finance')}"}
    everything = archive.search(console_server.engine)
    assert len(everything) >= 2
    totals = sorted({d.total for d in everything})
    low, high = totals[0], totals[len(totals) // 2]
    expected = {d.invoice_number for d in everything if low <= d.total <= high}
    assert expected and expected != {d.invoice_number for d in everything}, "the range must cut the set"
    page = httpx.get(f"{console_server.base}/cloudbackup/finance/archive", headers=headers, timeout=30,
                     params={"amount_min": low, "amount_max": high, "date_from": "", "counterparty": ""})
    assert page.status_code == 200
    assert set(re.findall(r'<tr data-invoice="([^"]+)"', page.text)) == expected

    by_customer = httpx.get(f"{console_server.base}/cloudbackup/finance/archive", headers=headers, timeout=30,
                            params={"counterparty": everything[0].customer_id, "date_from": "2026-11-01"})
    assert set(re.findall(r'<tr data-invoice="([^"]+)"', by_customer.text)) == {
        d.invoice_number for d in everything if d.customer_id == everything[0].customer_id
        and d.issue_date.isoformat() >= "2026-11-01"}

    bad = httpx.get(f"{console_server.base}/cloudbackup/finance/archive", headers=headers, timeout=30,
                    params={"amount_min": "1,000"})
    assert bad.status_code == 400 and "amount_min" in bad.text

    number = everything[0].invoice_number
    pdf = httpx.get(f"{console_server.base}/cloudbackup/finance/invoices/{number}/pdf", headers=headers, timeout=30)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    text = subprocess.run(["pdftotext", "-", "-"], input=pdf.content, capture_output=True, check=True).stdout
    assert number in text.decode()


def _shot(page, name: str, full_page: bool = False) -> None:  # noqa: ANN001
    target = os.environ.get("CONSOLE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / name), full_page=full_page)


def _sign_in(page, base: str, user: str, password: str, then: str) -> None:  # noqa: ANN001
    """Airflow's own sign-in form, as the console's 401 page links to it."""
    page.goto(f"{base}/auth/login/?next={then}")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(then, timeout=30_000)


def test_every_attention_flag_japanese_the_dag_tab_and_a_restore_in_chromium(
        console_server: Console, tmp_path: Path) -> None:
    """Issue 14: each flag for a customer in that state, with its reason and its count on top; the console in
    Japanese (following Airflow UI's language, and by the toggle); the DAG page's Cloud backup tab; an
    operator browses a snapshot, picks a folder and starts the restore DAG, then follows the run."""
    from playwright.sync_api import sync_playwright

    base, c = console_server.base, console_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 900}, locale="en-US")
        page = context.new_page()
        _sign_in(page, base, "operator", c.passwords["operator"], f"{base}/cloudbackup/?lang=en")

        # Every flag, on the customer in that state, with its reason; counted on top.
        for customer_id, flag in c.flags.items():
            row = page.locator(f'#fleet tr[data-customer="{customer_id}"]')
            assert flag in row.get_attribute("data-flags").split(), (customer_id, row.get_attribute("data-flags"))
            assert row.locator(f'[data-reason="{flag}"]').inner_text().strip()
        assert "language" in page.locator('tr[data-customer="broken-co"] [data-reason="broken"]').inner_text()
        assert "paused" in page.locator(f'tr[data-customer="{PAUSED}"] [data-reason="paused"]').inner_text()
        counts = {a.get_attribute("data-flag"): int(a.locator("b").inner_text().replace(",", ""))
                  for a in page.locator("#attention-counts a[data-flag]").all()}
        assert all(counts[flag] >= 1 for flag in c.flags.values()) and counts["with_errors"] >= 1
        _shot(page, "console-fleet.png")
        page.locator('#attention-counts a[data-flag="overdue"]').click()
        assert "late-co" in [r.get_attribute("data-customer") for r in page.locator("#fleet tbody tr").all()]
        page.goto(f"{base}/cloudbackup/?attention=1&sort=capacity")
        assert page.locator("th[aria-sort] .arrow").inner_text() == "▼"
        _shot(page, "console-attention.png", full_page=True)

        # Japanese by the toggle; remembered for the next page.
        page.get_by_role("link", name="日本語").click()
        assert page.locator("html").get_attribute("lang") == "ja"
        assert page.locator("#attention-heading").inner_text() == "要対応"
        assert "DAG が Airflow で一時停止されています" in page.locator(f'tr[data-customer="{PAUSED}"]').inner_text()
        _shot(page, "console-fleet-ja.png")
        page.goto(f"{base}/cloudbackup/customers/full-co")
        assert page.locator("html").get_attribute("lang") == "ja" and "容量の推移" in page.content()
        # The contract figure (95 GB of 100 GB: the data as of its latest snapshot) and, labelled apart, the bytes
        # the operator stores for it (art. 6, 17(3)).
        figure = page.locator("#contract-figure").inner_text()
        assert figure.startswith("契約容量の対象量") and "95.0 GB / 100.0 GB (95%)" in figure
        assert "最新スナップショット時点のデータ量" in figure and "S3 保存量（運用者の値）: 123.5 GB" in figure
        _shot(page, "console-customer-ja.png")
        page.goto(f"{base}/cloudbackup/?lang=en")

        # The DAG page's "Cloud backup" tab (url_route) shows the customer's console page inside Airflow.
        page.goto(f"{base}/dags/backup_full_co")
        page.get_by_role("tab", name="Cloud backup").or_(page.get_by_role("link", name="Cloud backup")).first.click()
        page.wait_for_url(f"{base}/dags/backup_full_co/plugin/cloudbackup", timeout=30_000)
        frame = page.frame_locator("iframe").first
        frame.locator("#capacity-chart").wait_for(timeout=30_000)
        assert "満杯テスト株式会社" in frame.locator("h1").inner_text()
        page.wait_for_timeout(500)
        _shot(page, "console-dag-tab.png")

        # Restore: browse the snapshot's folders, pick one, start the restore DAG, follow its run.
        page.goto(f"{base}/cloudbackup/customers/hostile")
        page.locator(f'a[data-browse="{console_server.snapshot}"]').click()
        assert [r.get_attribute("data-path") for r in page.locator("#listing tbody tr").all()] == ["/", "/srv"]
        page.get_by_role("link", name="srv/").click()
        page.get_by_role("link", name="console-share/").click()
        page.get_by_role("link", name="経理/").click()
        listed = page.locator("#listing").inner_text()
        assert "2026/" in listed and "readme.txt" in listed and "図面" not in listed
        page.get_by_label(f"Restore this {AREA}/経理/2026").check()
        _shot(page, "console-restore.png")
        assert page.locator('#targets input[name="target"]').first.get_attribute("value") == "sftp:sftp_hostile"
        local = page.locator('#targets input[value^="local:"]')
        target = local.get_attribute("value")
        local.check()
        page.get_by_role("button", name="Start the restore").click()
        page.wait_for_url(f"{base}/cloudbackup/restores/**", timeout=30_000)
        run_id = page.url.rsplit("/", 1)[1]
        assert page.locator("#run-state").inner_text() in ("queued", "running", "success", "failed")
        assert f"path={AREA}/経理/2026" in page.content()
        link = page.locator("#airflow-run").get_attribute("href")
        assert link.startswith("/dags/restore/runs/")
        run = httpx.get(f"{base}/api/v2/dags/restore/dagRuns/{link.rsplit('/', 1)[1]}", timeout=30,
                        headers={"Authorization": f"Bearer {_token(c, 'admin')}"}).json()
        assert run["conf"] == {"customer": "hostile", "snapshot": c.snapshot, "path": f"{AREA}/経理/2026",
                               "target": target}
        assert run_id and target == f"local:{(c.restore_dir / 'hostile' / c.snapshot).resolve()}"
        # The run (on the scheduler beside the api-server) finishes; the console's run page says so, and the
        # chosen folder is restored byte for byte (the DAG verifies each file against the manifest too).
        deadline = time.monotonic() + 240
        while page.locator("#run-state").inner_text() not in ("success", "failed") and time.monotonic() < deadline:
            page.wait_for_timeout(3000)
            page.reload()
        assert page.locator("#run-state").inner_text() == "success"
        _shot(page, "console-restore-run.png")
        restored = tree(c.restore_dir / "hostile" / c.snapshot / AREA.lstrip("/"))
        assert restored == {k: v for k, v in SNAPSHOT_FILES.items() if k.startswith("経理/2026/")}
        context.close()

        # Airflow UI in Japanese (its language lives in the browser): the console follows it without a toggle.
        context = browser.new_context(viewport={"width": 1360, "height": 900}, locale="en-US")
        context.add_init_script("localStorage.setItem('i18nextLng', 'ja')")
        page = context.new_page()
        _sign_in(page, base, "ops", c.passwords["ops"], f"{base}/cloudbackup/")
        page.wait_for_function("document.documentElement.lang === 'ja'", timeout=30_000)
        assert page.locator("#attention-heading").inner_text() == "要対応"
        # A viewer browses snapshots but is told restores are for operators; finance is refused as a page.
        page.goto(f"{base}/cloudbackup/customers/hostile/snapshots/{console_server.snapshot}")
        assert page.locator("#start-restore").count() == 0 and "運用担当" in page.content()
        assert page.goto(f"{base}/cloudbackup/finance").status == 403
        assert "経理のロール" in page.locator("main").inner_text()
        _shot(page, "console-refused-ja.png")
        browser.close()


def test_an_operator_logs_in_and_reads_fleet_customer_and_finance_pages_in_chromium(
        console_server: Console, tmp_path: Path) -> None:
    """What a person sees: Airflow's login, the fleet (sort, filter, DAG links), a customer, finance downloads."""
    from playwright.sync_api import sync_playwright

    base = console_server.base
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
        page = context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

        # Without a session the console refuses and links to Airflow's own sign-in form, which sets the
        # session cookie the plugin accepts and comes back.
        assert page.goto(f"{base}/cloudbackup/").status == 401
        page.get_by_role("link", name="sign in to Airflow").click()
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(console_server.passwords["admin"])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/cloudbackup/", timeout=30_000)

        # Fleet: every customer, with a link to its DAG in Airflow; hostile names are shown as text.
        assert page.locator("#fleet tbody tr").count() == console_server.customers
        hostile = page.locator('tr[data-customer="hostile"]')
        assert HOSTILE_NAME in hostile.inner_text()
        assert hostile.get_by_role("link", name="backup_hostile").get_attribute("href") == "/dags/backup_hostile"
        # Art. 6, 17(3): the contract figure and its share, and beside it, labelled, the operator's stored bytes.
        assert "60.0 GB / 100.0 GB (60%)" in hostile.inner_text()
        assert hostile.locator('[data-figure="basis"]').inner_text() == "data as of the latest snapshot"
        assert hostile.locator('[data-figure="stored"]').inner_text() == "stored in S3 (operator): 75.0 GB"
        assert hostile.locator("[role=meter]").get_attribute("aria-valuenow") == "60"
        assert page.locator('tr[data-customer="hostile"] .badge').first.inner_text() == "succeeded with errors"

        page.get_by_role("link", name="Counted / contract").click()
        percents = [float(v) for v in page.locator("#fleet tbody [role=meter]").evaluate_all(
            "els => els.map(e => e.getAttribute('aria-valuenow'))")]
        assert percents == sorted(percents, reverse=True) and len(percents) >= SEEDED
        assert page.locator("th[aria-sort] .arrow").inner_text() == "▼"        # fullest first, arrow down
        fullest = page.locator('#fleet tbody tr[data-customer^="cust-"]').first
        fullest_percent = float(fullest.locator("[role=meter]").get_attribute("aria-valuenow"))
        fullest = fullest.get_attribute("data-customer")

        page.get_by_label("Filter by customer").fill("hacker")
        page.get_by_role("button", name="Filter").click()
        assert page.locator("#fleet tbody tr").count() == 1

        # Customer page: capacity chart, open collection errors (escaped path), snapshots, restore link.
        page.get_by_role("link", name=HOSTILE_NAME).click()
        assert page.locator("h1").inner_text().startswith(HOSTILE_NAME)
        assert page.locator("#capacity-chart polyline.counted").count() == 1
        assert page.locator("#capacity-chart polyline.stored").count() == 1
        assert "60.0 GB / 100.0 GB (60%)" in page.locator("#contract-figure").inner_text()
        assert HOSTILE_PATH in page.locator("#errors").inner_text()
        assert console_server.snapshot in page.locator("#snapshots").inner_text()
        assert page.locator("#restore-link").get_attribute("href") == "/dags/restore"
        page.goto(f"{base}/cloudbackup/customers/{fullest}")
        assert page.locator("#capacity-chart polyline.counted").get_attribute("points").count(",") >= 300
        if fullest_percent >= 80:      # the capacity notices it crossed are marked on the chart
            assert page.locator("#capacity-chart circle").count() >= 1
        _shot(page, "console-customer.png")

        # Finance: month totals, the month-end CSV download, an invoice's detail.
        page.goto(f"{base}/cloudbackup/finance")
        month = page.locator("#months tbody tr").first
        assert month.locator("td").first.inner_text().startswith("2026-10")
        assert int(month.locator("td").nth(1).inner_text()) == console_server.invoiced
        _shot(page, "console-finance.png")
        with page.expect_download() as download:
            page.get_by_role("link", name="invoices-2026-10.csv").click()
        body = Path(download.value.path()).read_bytes()
        assert body.startswith(b"\xef\xbb\xbf")
        table = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
        assert table[0] == exports.INVOICE_CSV_COLUMNS and len(table) == console_server.invoiced + 1
        first = page.locator("#invoices tbody tr").first.get_by_role("link")
        number = first.inner_text()
        first.click()
        assert page.locator("h1").inner_text() == f"Invoice {number}"
        assert page.locator("#lines tbody tr").count() >= 1
        _shot(page, "console-invoice.png")

        # Reports: finance's month report from the form, the same rows as the month-end CSV.
        page.goto(f"{base}/cloudbackup/reports")
        form = page.locator('tr[data-report="invoices_for_month"] form')
        form.get_by_label("month").fill("2026-10")
        with page.expect_download() as download:
            form.get_by_role("button", name="CSV").click()
        report = list(csv.reader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
        assert report[0][0] == "invoice_number" and len(report) == console_server.invoiced + 1

        # In Airflow's navigation, the plugin page is an iframe of the console.
        page.goto(f"{base}/plugin/cloudbackup-fleet")
        page.wait_for_selector("iframe", timeout=30_000)
        frame = page.frame_locator("iframe").first
        frame.locator("#fleet").wait_for(timeout=30_000)
        assert frame.locator("#fleet tbody tr").count() == console_server.customers
        page.wait_for_timeout(500)
        _shot(page, "console-in-airflow.png")

        assert dialogs == [] and page.evaluate("window.__pwned === undefined")
        browser.close()
