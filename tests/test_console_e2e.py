"""The console as a person meets it: a real `airflow api-server` with the plugin, headless Chromium, Airflow's login.

Set CONSOLE_SCREENSHOTS=<dir> to keep the screenshots of the three pages (the README's come from here).
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
from devtools.console_seed import seed_fleet

from cloudbackup.backup.outcomes import CollectionError
from cloudbackup.backup.records import finish_run, start_run
from cloudbackup.billing import BillingMonth, exports
from cloudbackup.billing import documents as invoices
from cloudbackup.clock import utcnow
from cloudbackup.edges import db
from cloudbackup.registry.catalog import load_catalog
from cloudbackup.registry.customers import load_registry
from cloudbackup.registry.operator import load_operator
from conftest import ROOT, customer_yaml

pytestmark = pytest.mark.servers

HOSTILE_NAME = '<img src=x onerror="window.__pwned=1"> Hacker & Co'
HOSTILE_PATH = "/srv/share/<script>window.__pwned=2</script>.txt"
SEEDED = 8
USERS = {"admin": "admin", "ops": "viewer"}        # simple auth manager: user name → role
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]


@dataclass(frozen=True)
class Console:
    base: str
    passwords: dict[str, str]
    engine: sa.Engine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _seed(engine: sa.Engine, registry: Path) -> None:
    now = utcnow()
    seed_fleet(engine, registry, customers=SEEDED, days=365, now=now)
    (registry / "customers" / "hostile.yaml").write_text(
        customer_yaml("hostile", paths=["/srv/share"]).replace(
            "name: テスト顧客 hostile", f"name: '{HOSTILE_NAME}'"), encoding="utf-8")
    run_id = start_run(engine, "hostile", "manual__hostile")
    finish_run(engine, run_id, "hostile", files=3, bytes_=3000, stored_bytes=60 * 10**9,
               errors=[CollectionError(HOSTILE_PATH, "name_policy", "control characters in the name")])
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO snapshots (customer_id, backup_run_id, snapshot_id, manifest_key, file_count, total_bytes, "
            "files_read, bytes_uploaded, created_at) "
            "VALUES ('hostile', :r, 'snap-hostile-1', 'k', 3, 3000, 3, 3000, :t)"),
            {"r": run_id, "t": db.to_db_time(now)})
    registry_ = load_registry(registry)
    invoices.issue_month(engine, list(registry_.customers), load_catalog(registry / "catalog.yaml"),
                         BillingMonth(2026, 10), load_operator(registry / "operator.yaml"), date(2026, 11, 1))


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A migrated, seeded project DB and a real api-server (own AIRFLOW_HOME, simple auth manager, our plugins)."""
    tmp = tmp_path_factory.mktemp("console")
    registry = tmp / "registry"
    (registry / "customers").mkdir(parents=True)
    for name in ("catalog.yaml", "operator.yaml"):
        (registry / name).write_text((ROOT / "dags" / "registry" / name).read_text(encoding="utf-8"), encoding="utf-8")
    engine = db.engine_for(f"sqlite:///{tmp}/cloudbackup.db")
    db.migrate(engine)
    _seed(engine, registry)

    passwords = {user: secrets.token_urlsafe(12) for user in USERS}
    (tmp / "passwords.json").write_text(json.dumps(passwords))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CLOUDBACKUP"))}
    env.update({
        "AIRFLOW_HOME": str(tmp / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(tmp / "no-dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW_CONN_CLOUDBACKUP_DB": json.dumps({"conn_type": "sqlite", "host": f"{tmp}/cloudbackup.db"}),
        "CLOUDBACKUP_REGISTRY_DIR": str(registry),
    })
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    log = (tmp / "api-server.log").open("wb")
    server = subprocess.Popen([airflow, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
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
        yield Console(base, passwords, engine)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
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


def test_a_viewer_sees_the_fleet_but_not_finance(console_server: Console) -> None:
    """Role mapping: viewer reads the fleet and customers; finance needs the right to operate the billing DAG."""
    headers = {"Authorization": f"Bearer {_token(console_server, 'ops')}"}
    fleet = httpx.get(f"{console_server.base}/cloudbackup/", headers=headers, timeout=30)
    assert fleet.status_code == 200 and 'data-customer="cust-0001"' in fleet.text
    assert httpx.get(f"{console_server.base}/cloudbackup/customers/cust-0001", headers=headers,
                     timeout=30).status_code == 200
    for path in ("/finance", "/finance/csv/invoices-2026-10.csv", "/finance/invoices/CB-00000001"):
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


def _shot(page, name: str) -> None:  # noqa: ANN001
    target = os.environ.get("CONSOLE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / name), full_page=False)


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
        assert "could not be loaded" not in page.content()
        assert page.locator("#fleet tbody tr").count() == SEEDED + 1
        hostile = page.locator('tr[data-customer="hostile"]')
        assert HOSTILE_NAME in hostile.inner_text()
        assert hostile.get_by_role("link", name="backup_hostile").get_attribute("href") == "/dags/backup_hostile"
        assert "60.0 GB / 100.0 GB (60%)" in hostile.inner_text()
        assert page.locator('tr[data-customer="hostile"] .badge').first.inner_text() == "succeeded with errors"
        _shot(page, "console-fleet.png")

        page.get_by_role("link", name="Stored / contract").click()
        percents = [float(v) for v in page.locator("#fleet tbody [role=meter]").evaluate_all(
            "els => els.map(e => e.getAttribute('aria-valuenow'))")]
        assert percents == sorted(percents, reverse=True) and len(percents) == SEEDED + 1
        fullest = page.locator('#fleet tbody tr[data-customer^="cust-"]').first
        fullest_percent = float(fullest.locator("[role=meter]").get_attribute("aria-valuenow"))
        fullest = fullest.get_attribute("data-customer")

        page.get_by_label("Filter by customer").fill("hacker")
        page.get_by_role("button", name="Filter").click()
        assert page.locator("#fleet tbody tr").count() == 1

        # Customer page: capacity chart, open collection errors (escaped path), snapshots, restore link.
        page.get_by_role("link", name=HOSTILE_NAME).click()
        assert page.locator("h1").inner_text().startswith(HOSTILE_NAME)
        assert page.locator("#capacity-chart polyline").count() == 1
        assert HOSTILE_PATH in page.locator("#errors").inner_text()
        assert "snap-hostile-1" in page.locator("#snapshots").inner_text()
        assert page.locator("#restore-link").get_attribute("href") == "/dags/restore"
        page.goto(f"{base}/cloudbackup/customers/{fullest}")
        assert page.locator("#capacity-chart polyline").get_attribute("points").count(",") >= 300
        if fullest_percent >= 80:      # the capacity notices it crossed are marked on the chart
            assert page.locator("#capacity-chart circle").count() >= 1
        _shot(page, "console-customer.png")

        # Finance: month totals, the month-end CSV download, an invoice's detail.
        page.goto(f"{base}/cloudbackup/finance")
        month = page.locator("#months tbody tr").first
        assert month.locator("td").first.inner_text().startswith("2026-10")
        assert int(month.locator("td").nth(1).inner_text()) == SEEDED + 1
        _shot(page, "console-finance.png")
        with page.expect_download() as download:
            page.get_by_role("link", name="invoices-2026-10.csv").click()
        body = Path(download.value.path()).read_bytes()
        assert body.startswith(b"\xef\xbb\xbf")
        table = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
        assert table[0] == exports.INVOICE_CSV_COLUMNS and len(table) == SEEDED + 2
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
        assert report[0][0] == "invoice_number" and len(report) == SEEDED + 2

        # In Airflow's navigation, the plugin page is an iframe of the console.
        page.goto(f"{base}/plugin/cloudbackup-fleet")
        page.wait_for_selector("iframe", timeout=30_000)
        frame = page.frame_locator("iframe").first
        frame.locator("#fleet").wait_for(timeout=30_000)
        assert frame.locator("#fleet tbody tr").count() == SEEDED + 1
        page.wait_for_timeout(500)
        _shot(page, "console-in-airflow.png")

        assert dialogs == [] and page.evaluate("window.__pwned === undefined")
        browser.close()
