"""The operations console's queries and pages, on SQLite and PostgreSQL (the real databases)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from cloudbackup.backup.outcomes import CollectionError, SkipReason
from cloudbackup.backup.records import finish_run, record_skipped, start_run
from cloudbackup.billing import BillingMonth, exports
from cloudbackup.billing import documents as invoices
from cloudbackup.clock import utcnow
from cloudbackup.console import pages as console_web
from cloudbackup.console import queries as console
from cloudbackup.edges.db import to_db_time
from cloudbackup.registry.catalog import GB, load_catalog
from cloudbackup.registry.customers import load_registry
from cloudbackup.registry.maintenance import Window
from cloudbackup.registry.operator import load_operator
from conftest import customer_yaml

TOKYO = console.TOKYO
HOSTILE_NAME = '<script>alert("name")</script> & 株式会社'
HOSTILE_PATH = "/srv/share/<img src=x onerror=alert(1)>.txt"


def _customers(registry_dir: Path, *specs: tuple[str, str]) -> None:
    for customer_id, status in specs:
        (registry_dir / "customers" / f"{customer_id}.yaml").write_text(
            customer_yaml(customer_id, paths=["/srv/data"], status=status), encoding="utf-8")


def _run(engine: sa.Engine, customer_id: str, key: str, *, files: int, stored: int,
         errors: list[CollectionError] = ()) -> int:
    run_id = start_run(engine, customer_id, key)
    finish_run(engine, run_id, customer_id, files=files, bytes_=files * 1000, errors=list(errors), stored_bytes=stored)
    return run_id


def _notice(engine: sa.Engine, customer_id: str, key: str, *, attempts: int, sent: bool = False,
            stuck: bool = False) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO notices (kind, customer_id, recipient, subject, body_text, idempotency_key, message_id, "
            "created_at, sent_at, attempts, stuck_at) "
            "VALUES ('capacity', :c, 'x@example.jp', 's', 't', :k, :m, :at, :sent, :a, :stuck)"),
            {"c": customer_id, "k": key, "m": f"<{key}@test>", "at": to_db_time(utcnow()),
             "sent": to_db_time(utcnow()) if sent else None, "a": attempts,
             "stuck": to_db_time(utcnow()) if stuck else None})


def test_fleet_shows_each_customers_last_run_stored_capacity_and_stuck_notices(
        registry_dir: Path, engine: sa.Engine) -> None:
    """Art. 16–18, 20, 28: what ran last, how full the contract is, which notices did not go out."""
    _customers(registry_dir, ("alpha", "active"), ("beta", "active"), ("never", "active"))
    _run(engine, "alpha", "r1", files=10, stored=20 * GB)
    _run(engine, "alpha", "r2", files=12, stored=85 * GB,
         errors=[CollectionError("/srv/data/locked.xlsx", "permission_denied")])
    _run(engine, "beta", "r1", files=3, stored=5 * GB)
    record_skipped(engine, "beta", "r2", SkipReason.MAINTENANCE,
                   "maintenance window m1")     # a skipped run stores nothing
    _notice(engine, "alpha", "n1", attempts=2)                  # refused twice, will be retried
    _notice(engine, "alpha", "n2", attempts=5, stuck=True)      # gave up: an operator must look
    _notice(engine, "beta", "n3", attempts=1, sent=True)

    registry = load_registry(registry_dir)
    rows = {r.customer_id: r for r in console.fleet(engine, registry.customers,
                                                    load_catalog(registry_dir / "catalog.yaml"), utcnow())}

    assert set(rows) == {"alpha", "beta", "never"}
    alpha, beta, never = rows["alpha"], rows["beta"], rows["never"]
    assert (alpha.last_run.run_key, alpha.last_run.status, alpha.last_run.files_collected,
            alpha.last_run.collection_error_count) == ("r2", "succeeded_with_errors", 12, 1)
    assert alpha.contract_capacity_bytes == 100 * GB and round(alpha.capacity_percent) == 85
    assert (alpha.notices_pending, alpha.notices_stuck) == (1, 1) and alpha.attention
    assert beta.last_run.status == "skipped" and beta.stored_bytes == 5 * GB and beta.state == "maintenance"
    assert (beta.notices_pending, beta.notices_stuck) == (0, 0)
    assert never.last_run is None and never.stored_bytes is None and not never.attention


def test_suspended_customers_have_no_next_run_and_windows_show_maintenance(registry_dir: Path,
                                                                           engine: sa.Engine) -> None:
    """Art. 13 (maintenance windows) and 14 (suspension): the fleet shows why a customer is not collected."""
    _customers(registry_dir, ("held", "suspended"), ("busy", "active"), ("calm", "active"))
    now = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)     # 12:00 in Tokyo
    window = Window(id="w1", start=now - timedelta(hours=1), end=now + timedelta(hours=1), customers=["busy"],
                    reason="storage upgrade")
    registry = load_registry(registry_dir)
    rows = {r.customer_id: r for r in console.fleet(engine, registry.customers,
                                                    load_catalog(registry_dir / "catalog.yaml"), now, [window])}
    assert (rows["held"].state, rows["held"].next_run) == ("suspended", None)
    assert rows["busy"].state == "maintenance"
    assert rows["calm"].state == "active"
    # The customer's cron "0 2 * * *" is read in Asia/Tokyo: the next run is tomorrow 02:00 JST.
    assert rows["calm"].next_run == datetime(2026, 11, 26, 2, 0, tzinfo=TOKYO)


def test_open_collection_errors_are_those_of_the_latest_run_that_collected(registry_dir: Path,
                                                                          engine: sa.Engine) -> None:
    """Art. 17(2), 18(2): unreadable files stay listed until a later run collects them; a skip changes nothing."""
    _customers(registry_dir, ("gamma", "active"))
    customer = load_registry(registry_dir).get("gamma")
    catalog = load_catalog(registry_dir / "catalog.yaml")
    _run(engine, "gamma", "r1", files=5, stored=GB, errors=[CollectionError(HOSTILE_PATH, "permission_denied",
                                                                          "EACCES")])
    record_skipped(engine, "gamma", "r2", SkipReason.SUSPENDED)

    detail = console.customer_detail(engine, customer, catalog, utcnow())
    assert [(e.path, e.reason, e.run_key) for e in detail.open_errors] == [(HOSTILE_PATH, "permission_denied", "r1")]
    assert [r.run_key for r in detail.runs] == ["r2", "r1"]
    assert [p.stored_bytes for p in detail.capacity] == [GB]

    _run(engine, "gamma", "r3", files=6, stored=2 * GB)
    detail = console.customer_detail(engine, customer, catalog, utcnow())
    assert detail.open_errors == () and detail.open_error_count == 0
    assert detail.row.stored_bytes == 2 * GB


def test_snapshots_for_restore_come_from_the_snapshots_table(registry_dir: Path, engine: sa.Engine) -> None:
    """Art. 19: the snapshots a restore can use, newest first, with the run that took them."""
    _customers(registry_dir, ("delta", "active"))
    run_id = _run(engine, "delta", "scheduled__1", files=2, stored=GB)
    with engine.begin() as conn:
        for n, snapshot_id in enumerate(["20261101T000000Z-aaaa", "20261102T000000Z-bbbb"]):
            conn.execute(sa.text(
                "INSERT INTO snapshots (customer_id, backup_run_id, snapshot_id, manifest_key, file_count, "
                "total_bytes, files_read, bytes_uploaded, created_at) VALUES ('delta', :r, :s, :k, :f, :b, 0, 0, :t)"),
                {"r": run_id, "s": snapshot_id, "k": f"m/{snapshot_id}", "f": 10 + n, "b": 1000 + n,
                 "t": to_db_time(datetime(2026, 11, 1 + n, tzinfo=UTC))})
    detail = console.customer_detail(engine, load_registry(registry_dir).get("delta"),
                                     load_catalog(registry_dir / "catalog.yaml"), utcnow())
    assert [(s.snapshot_id, s.file_count, s.run_key) for s in detail.snapshots] == [
        ("20261102T000000Z-bbbb", 11, "scheduled__1"), ("20261101T000000Z-aaaa", 10, "scheduled__1")]


def test_finance_months_total_the_issued_invoices_and_the_csv_matches_the_billing_dags_file(
        registry_dir: Path, engine: sa.Engine, tmp_path: Path) -> None:
    """Art. 22–26: month totals are the sum of the issued invoices; the download is the month-end file."""
    _customers(registry_dir, ("epsilon", "active"), ("zeta", "active"))
    registry = load_registry(registry_dir)
    catalog = load_catalog(registry_dir / "catalog.yaml")
    month = BillingMonth(2026, 10)
    operator = load_operator(registry_dir / "operator.yaml")
    invoices.issue_month(engine, list(registry.customers), catalog, month, operator, date(2026, 11, 1))

    months = console.billing_months(engine)
    listed = console.month_invoices(engine, "2026-10")
    assert [m.billing_month for m in months] == ["2026-10"]
    assert months[0].invoice_count == len(listed) == 2
    assert months[0].total == sum(i.total for i in listed) and months[0].total > 0
    invoice, lines = console.invoice_detail(engine, listed[0].invoice_number)
    assert invoice.customer_id in {"epsilon", "zeta"} and sum(line.amount for line in lines) == invoice.subtotal

    files = console_web.month_csvs(engine, month)
    body = files["invoices-2026-10.csv"]
    assert body.startswith(b"\xef\xbb\xbf"), "UTF-8 with BOM, for Japanese Excel"
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0] == exports.INVOICE_CSV_COLUMNS
    assert sorted(r[rows[0].index("customer_id")] for r in rows[1:]) == ["epsilon", "zeta"]
    written = exports.write_month_csvs(engine, month, tmp_path / "dag")[0]
    assert body == written.read_bytes()


def test_sorting_and_filtering_the_fleet() -> None:
    """The fleet page sorts by any column and filters by text, state, last-run status and attention."""
    def row(cid: str, name: str, stored: int | None, state: str = "active") -> console.FleetRow:
        return console.FleetRow(cid, name, f"backup_{cid}", "standard-100", state, 100 * GB, stored, None, None, 0, 0)
    rows = [row("a", "Beta", 90 * GB), row("b", "alpha", 10 * GB), row("c", "Gamma", None, "suspended")]
    assert [r.customer_id for r in console.sort_and_filter(rows)] == ["b", "a", "c"]
    assert [r.customer_id for r in console.sort_and_filter(rows, sort="capacity")] == ["a", "b", "c"]
    assert [r.customer_id for r in console.sort_and_filter(rows, sort="name", descending=True)] == ["c", "a", "b"]
    assert [r.customer_id for r in console.sort_and_filter(rows, query="GAM")] == ["c"]
    assert [r.customer_id for r in console.sort_and_filter(rows, state="suspended")] == ["c"]
    assert [r.customer_id for r in console.sort_and_filter(rows, attention=True)] == ["a"]
    assert [r.customer_id for r in console.sort_and_filter(rows, status="never")] == ["b", "a", "c"]


def test_customer_names_and_file_paths_are_escaped_on_every_page(registry_dir: Path, engine: sa.Engine) -> None:
    """Customer data is text, never markup: no HTML injection from a customer name or a remote file path."""
    (registry_dir / "customers" / "hostile.yaml").write_text(
        customer_yaml("hostile", paths=["/srv/share"]).replace("name: テスト顧客 hostile",
                                                               f"name: '{HOSTILE_NAME}'"), encoding="utf-8")
    _run(engine, "hostile", "r1", files=1, stored=GB, errors=[CollectionError(HOSTILE_PATH, "name_policy",
                                                                            "<b>detail</b>")])
    now = utcnow()
    fleet_page = console_web.fleet_html(engine, registry_dir, {"q": '"><script>alert(2)</script>'}, now)
    fleet_all = console_web.fleet_html(engine, registry_dir, {}, now)
    customer = load_registry(registry_dir).get("hostile")
    detail = console.customer_detail(engine, customer, load_catalog(registry_dir / "catalog.yaml"), now)
    customer_page = console_web.render_customer(detail, customer, now)

    for page in (fleet_page, fleet_all, customer_page):
        assert "<script>alert" not in page and "<img src=x" not in page and "<b>detail" not in page
    assert "&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt; &amp; 株式会社" in fleet_all
    assert "/srv/share/&lt;img src=x onerror=alert(1)&gt;.txt" in customer_page
