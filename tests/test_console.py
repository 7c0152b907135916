"""The operations console's queries and pages, on SQLite and PostgreSQL (the real databases)."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from cloudbackup.backup import records
from cloudbackup.backup.capacity import CapacityBasis
from cloudbackup.backup.outcomes import CollectionError, SkipReason
from cloudbackup.backup.records import finish_run, record_skipped, start_run
from cloudbackup.billing import BillingMonth, exports
from cloudbackup.billing import documents as invoices
from cloudbackup.clock import utcnow
from cloudbackup.console import attention, browse, i18n
from cloudbackup.console import pages as console_web
from cloudbackup.console import queries as console
from cloudbackup.console.attention import Facts, Flag
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
         errors: list[CollectionError] = (), counted: int | None = None) -> int:
    """A finished run; without `counted`, the contract figure is its stored bytes (basis stored_bytes), else
    `counted` on the default basis (the customer's data as of the snapshot)."""
    run_id = start_run(engine, customer_id, key)
    basis = CapacityBasis.STORED_BYTES if counted is None else CapacityBasis.SOURCE_BYTES
    finish_run(engine, run_id, customer_id, files=files, bytes_=files * 1000, errors=list(errors), stored_bytes=stored,
               counted_bytes=stored if counted is None else counted, capacity_basis=basis)
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
    assert never.last_run is None and never.stored_bytes is None
    # Its 02:00 JST slot has passed since service began and nothing ran: it needs a look, and says why.
    assert [f.code for f in never.flags] == ["never_run"] and never.attention
    assert [f.code for f in alpha.flags] == ["with_errors", "stuck_notices", "near_capacity"]


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_the_contract_figure_and_its_share_are_shown_beside_the_operators_stored_bytes(
        registry_dir: Path, engine: sa.Engine, lang: str) -> None:
    """Art. 6, 17(3), 18(5): what counts against the contract is the customer's data as of its latest snapshot
    (40 GB of a 100 GB plan: 40 %), not the 95 GB the operator stores for it (history, dedup, garbage). The fleet
    and customer pages show the contract figure with its share and basis, and the stored bytes on their own
    labelled line, in both languages; near-capacity follows the contract figure."""
    _customers(registry_dir, ("flat", "active"))
    _run(engine, "flat", "r1", files=4, stored=95 * GB, counted=40 * GB)
    registry = load_registry(registry_dir)
    [row] = console.fleet(engine, registry.customers, load_catalog(registry_dir / "catalog.yaml"), utcnow())
    assert (row.counted_bytes, row.capacity_basis, row.stored_bytes) == (40 * GB, "source_bytes", 95 * GB)
    assert round(row.capacity_percent) == 40 and "near_capacity" not in [f.code for f in row.flags]

    words = {"en": ("Counted / contract", "data as of the latest snapshot", "stored in S3 (operator): 95.0 GB"),
             "ja": ("契約対象量 / 契約容量", "最新スナップショット時点のデータ量",
                    "S3 保存量（運用者の値）: 95.0 GB")}[lang]
    fleet_page = console_web.fleet_html(engine, registry_dir, {}, utcnow(), lang=lang)
    assert "40.0 GB / 100.0 GB (40%)" in fleet_page and "95.0 GB / 100" not in fleet_page
    for label in words:
        assert label in fleet_page
    detail = console.customer_detail(engine, registry.get("flat"), load_catalog(registry_dir / "catalog.yaml"),
                                     utcnow())
    customer_page = console_web.render_customer(detail, registry.get("flat"), utcnow(), lang=lang)
    assert "40.0 GB / 100.0 GB (40%)" in customer_page and words[2] in customer_page
    assert {"en": "Counted against the contract", "ja": "契約容量の対象量"}[lang] in customer_page


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
    assert [(p.counted_bytes, p.stored_bytes) for p in detail.capacity] == [(GB, GB)]

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

    # A snapshot forgotten by retention (prune) or a purge is no longer offered: its manifest is gone.
    assert records.mark_forgotten(engine, "delta", {"20261102T000000Z-bbbb"}) == 1
    detail = console.customer_detail(engine, load_registry(registry_dir).get("delta"),
                                     load_catalog(registry_dir / "catalog.yaml"), utcnow())
    assert [s.snapshot_id for s in detail.snapshots] == ["20261102T000000Z-bbbb"]


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


def _row(cid: str, name: str, counted: int | None, state: str = "active",
         flags: tuple[Flag, ...] = ()) -> console.FleetRow:
    return console.FleetRow(cid, name, f"backup_{cid}", "standard-100", state, 100 * GB, counted, None, None, 0, 0,
                            flags=flags, counted_bytes=counted,
                            capacity_basis=None if counted is None else "stored_bytes")


def test_sorting_and_filtering_the_fleet() -> None:
    """The fleet page sorts by any column (ascending: smallest first) and filters by text, state, last-run status,
    attention and one reason."""
    rows = [_row("a", "Beta", 90 * GB, flags=(Flag("near_capacity", number=90),)), _row("b", "alpha", 10 * GB),
            _row("c", "Gamma", None, "suspended")]
    assert [r.customer_id for r in console.sort_and_filter(rows)] == ["b", "a", "c"]
    assert [r.customer_id for r in console.sort_and_filter(rows, sort="capacity")] == ["c", "b", "a"]
    assert [r.customer_id for r in console.sort_and_filter(rows, sort="capacity", descending=True)] == ["a", "b", "c"]
    assert [r.customer_id for r in console.sort_and_filter(rows, sort="name", descending=True)] == ["c", "a", "b"]
    assert [r.customer_id for r in console.sort_and_filter(rows, query="GAM")] == ["c"]
    assert [r.customer_id for r in console.sort_and_filter(rows, state="suspended")] == ["c"]
    assert [r.customer_id for r in console.sort_and_filter(rows, attention=True)] == ["a"]
    assert [r.customer_id for r in console.sort_and_filter(rows, flag="near_capacity")] == ["a"]
    assert [r.customer_id for r in console.sort_and_filter(rows, status="never")] == ["b", "a", "c"]


def _arrow_and_order(html: str) -> tuple[str, list[str]]:
    head = html[html.index("<thead>"):html.index("</thead>")]
    arrow = re.search(r'aria-sort="(\w+)".*?class="arrow"[^>]*>(.)<', head, re.S)
    return f"{arrow.group(1)} {arrow.group(2)}", re.findall(r'data-customer="([^"]+)"', html)


def test_the_sort_arrow_shows_the_order_the_rows_are_in() -> None:
    """▲ ascending (smallest first), ▼ descending; a column's first click gives its useful order (fullest
    first for capacity); clicking the shown column reverses it."""
    rows = [_row("a", "Beta", 90 * GB), _row("b", "alpha", 10 * GB), _row("c", "Gamma", 50 * GB)]
    now = utcnow()

    def page(params: dict[str, str]) -> str:
        params = {k: params.get(k, "") for k in console_web.FLEET_PARAMS}
        shown = console.sort_and_filter(rows, sort=params["sort"] or "name",
                                        descending=console_web.sort_direction(
                                            {**params, "sort": params["sort"] or "name"}) == "desc")
        return console_web.render_fleet(shown, total=3, params=params, registry_errors=[], now=now)

    assert _arrow_and_order(page({})) == ("ascending ▲", ["b", "a", "c"])
    html = page({"sort": "capacity"})
    assert _arrow_and_order(html) == ("descending ▼", ["a", "c", "b"])
    head = html[html.index("<thead>"):html.index("</thead>")]
    link = re.search(r'href="([^"]*sort=capacity[^"]*)"', head).group(1)
    assert "dir=asc" in link, "clicking the sorted column reverses it"
    assert _arrow_and_order(page({"sort": "capacity", "dir": "asc"})) == ("ascending ▲", ["b", "c", "a"])
    assert _arrow_and_order(page({"sort": "name", "dir": "desc"})) == ("descending ▼", ["c", "a", "b"])


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


# ---- attention: every flag for a customer in that state (pure rules, no DB) ---------------------------------

NOW = datetime(2026, 11, 25, 3, 30, tzinfo=UTC)             # 12:30 in Tokyo
TODAY_0200 = datetime(2026, 11, 25, 2, 0, tzinfo=TOKYO)     # the daily "0 2 * * *" slot, in Tokyo


def _facts(**changes: object) -> Facts:
    healthy = dict(state="active", schedule="0 2 * * *", service_start=date(2026, 9, 1), paused=False,
                   last_status="succeeded", last_started_at=TODAY_0200 + timedelta(minutes=1),
                   capacity_percent=40.0, notices_stuck=0, usual_run=timedelta(minutes=7),
                   run_timeout=timedelta(hours=6))
    return Facts(**{**healthy, **changes})


@pytest.mark.parametrize(("state", "expected"), [
    ({}, []),
    ({"last_started_at": TODAY_0200 - timedelta(days=1)}, ["overdue"]),
    ({"last_status": None, "last_started_at": None}, ["never_run"]),
    ({"last_status": None, "last_started_at": None, "service_start": date(2026, 11, 26)}, []),   # not due yet
    ({"last_status": "running", "last_started_at": NOW - timedelta(minutes=25)}, ["long_running"]),  # 7 min usual
    ({"last_status": "running", "last_started_at": NOW - timedelta(minutes=12)}, []),
    ({"last_status": "running", "last_started_at": TODAY_0200, "usual_run": None,
      "run_timeout": timedelta(hours=1)}, ["long_running"]),                                      # past the timeout
    ({"paused": True, "last_started_at": TODAY_0200 - timedelta(days=3)}, ["paused"]),   # paused: not "overdue"
    ({"schedule": "0 25 * * *"}, ["broken"]),
    ({"last_status": "failed"}, ["failed"]),
    ({"last_status": "succeeded_with_errors"}, ["with_errors"]),
    ({"notices_stuck": 2}, ["stuck_notices"]),
    ({"capacity_percent": 80.0}, ["near_capacity"]),
    ({"capacity_percent": 79.9}, []),
    ({"state": "suspended", "last_started_at": TODAY_0200 - timedelta(days=9)}, []),     # no run is expected
    ({"state": "maintenance", "last_started_at": TODAY_0200 - timedelta(days=1)}, []),
])
def test_each_attention_flag_appears_for_a_customer_in_that_state(state: dict, expected: list[str]) -> None:
    """Overdue (its cron, read in Tokyo, expected a run that did not start), never run, running longer than
    usual or than the run timeout, paused DAG, a schedule that is not a cron, failed, with errors, stuck
    notices, near capacity; a healthy, suspended or maintenance customer has none."""
    assert [f.code for f in attention.flags(_facts(**state), NOW)] == expected


def test_a_run_is_overdue_only_after_the_grace_following_its_slot() -> None:
    """The 02:00 JST slot is not overdue at 02:30 (a run may start late), and is at 03:01 with no run."""
    yesterday = _facts(last_started_at=TODAY_0200 - timedelta(days=1, minutes=-1))
    assert attention.flags(yesterday, TODAY_0200 + timedelta(minutes=30)) == ()
    late = attention.flags(yesterday, TODAY_0200 + timedelta(hours=1, minutes=1))
    assert [(f.code, f.at) for f in late] == [("overdue", TODAY_0200)]


def test_flag_counts_count_customers_per_reason() -> None:
    counted = attention.counts([(Flag("overdue"), Flag("near_capacity")), (Flag("overdue"),), ()])
    assert list(counted) == list(attention.FLAGS)
    assert counted["overdue"] == 2 and counted["near_capacity"] == 1 and counted["paused"] == 0


def test_a_broken_customer_file_is_shown_as_broken_and_the_fleet_still_answers(
        registry_dir: Path, engine: sa.Engine) -> None:
    """Issue 14: one broken file never takes the page down; its customer is listed as broken, naming the field;
    a cron that loads but cannot fire is flagged too. The others are shown as usual."""
    _customers(registry_dir, ("fine", "active"))
    (registry_dir / "customers" / "badlang.yaml").write_text(
        customer_yaml("badlang", paths=["/srv/data"], language="xx"), encoding="utf-8")
    (registry_dir / "customers" / "badcron.yaml").write_text(
        customer_yaml("badcron", paths=["/srv/data"]).replace('"0 2 * * *"', '"0 25 * * *"'), encoding="utf-8")
    _run(engine, "badlang", "r1", files=1, stored=GB)        # it ran before its file broke

    html = console_web.fleet_html(engine, registry_dir, {}, utcnow())
    assert set(re.findall(r'data-customer="([^"]+)"', html)) == {"fine", "badlang", "badcron"}
    broken = re.search(r'<tr [^>]*data-customer="badlang".*?</tr>', html, re.S).group(0)
    assert 'data-flags="broken"' in broken and "language" in broken and "succeeded" in broken
    assert 'data-flags="broken' in re.search(r'<tr [^>]*data-customer="badcron"[^>]*>', html).group(0)
    assert re.search(r'data-flag="broken" class="some\s*"[^>]*>[^<]*<b>2</b>', html), "counted on top"


def test_a_paused_dag_and_a_run_running_far_longer_than_usual_are_flagged(
        registry_dir: Path, engine: sa.Engine) -> None:
    """Pause state comes from Airflow (the app passes the paused DAG ids); "usual" is the median of the
    customer's recent finished runs, read only for customers with a run in progress."""
    _customers(registry_dir, ("held", "active"), ("slow", "active"))
    now = utcnow()
    with engine.begin() as conn:
        for d in range(1, 6):
            started = now - timedelta(days=d)
            conn.execute(sa.text(
                "INSERT INTO backup_runs (customer_id, run_key, status, started_at, finished_at, files_collected, "
                "bytes_collected, collection_error_count, stored_bytes) "
                "VALUES ('slow', :k, 'succeeded', :s, :f, 1, 1, 0, 1000)"),
                {"k": f"r{d}", "s": to_db_time(started), "f": to_db_time(started + timedelta(minutes=5))})
    run_id = start_run(engine, "slow", "stuck-run")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE backup_runs SET started_at = :t WHERE id = :i"),
                     {"t": to_db_time(now - timedelta(minutes=40)), "i": run_id})
    _run(engine, "held", "r1", files=1, stored=GB)
    registry = load_registry(registry_dir)
    rows = {r.customer_id: r for r in console.fleet(
        engine, registry.customers, load_catalog(registry_dir / "catalog.yaml"), now,
        paused=frozenset({"backup_held"}), run_timeout=timedelta(hours=6))}
    assert [f.code for f in rows["held"].flags] == ["paused"] and rows["held"].next_run is None
    assert [f.code for f in rows["slow"].flags] == ["long_running"]
    assert rows["slow"].flags[0].number == 40


# ---- languages -------------------------------------------------------------------------------------------

def test_the_language_follows_the_toggle_then_airflows_ui_then_the_browser() -> None:
    assert i18n.pick_language("ja", {"cloudbackup_lang": "en"}, "en") == "ja"
    assert i18n.pick_language(None, {"cloudbackup_lang": "en", "cloudbackup_ui_lang": "ja"}, "ja") == "en"
    assert i18n.pick_language(None, {"cloudbackup_ui_lang": "ja"}, "en-US") == "ja"
    assert i18n.pick_language(None, {}, "fr;q=1, ja-JP;q=0.8, en;q=0.5") == "ja"
    assert i18n.pick_language(None, {}, "de") == i18n.pick_language(None, {}, None) == "en"


TEMPLATES = Path(console_web.__file__).resolve().parents[1] / "templates" / "console"


def test_every_console_label_has_a_japanese_translation() -> None:
    """Every `_("…")` of the console's templates and every flag and reason has its Japanese."""
    text = "".join(t.read_text("utf-8") for t in TEMPLATES.glob("*.j2"))
    labels = set(re.findall(r'_\(\s*"([^"]+)"', text)) | set(re.findall(r"_\(\s*'([^']+)'", text))
    labels -= {"flag:", "basis:"}                              # _("flag:" ~ code): each code is added below
    labels |= {label for _, label in console_web.FLEET_COLUMNS}
    labels |= {f"flag:{c}" for c in attention.FLAGS} | {f"reason:{c}" for c in attention.FLAGS}
    labels |= {f"basis:{b}" for b in CapacityBasis}
    labels |= {"succeeded", "succeeded with errors", "failed", "running", "skipped", "active", "maintenance",
               "suspended", "broken", "pending", "stuck", "sent", "queued", "success", "Not allowed", "Restore run"}
    assert sorted(label for label in labels if label not in i18n.JA) == []
    assert sorted(k for k in i18n.JA if k.startswith(("flag:", "reason:")) and k not in i18n.EN) == []


def test_the_fleet_page_in_japanese(registry_dir: Path, engine: sa.Engine) -> None:
    _customers(registry_dir, ("alpha", "active"))
    html = console_web.fleet_html(engine, registry_dir, {}, utcnow(), lang="ja")
    assert '<html lang="ja">' in html
    for label in ("要対応", "顧客", "前回の実行", "契約対象量 / 契約容量", "一度も実行なし", "予定（"):
        assert label in html
    for english in ("Needs attention", "Counted / contract", "Never run", "never ran"):
        assert english not in html


# ---- the capacity chart's axes ----------------------------------------------------------------------------

def test_the_capacity_charts_axes_grow_up_and_to_the_right(registry_dir: Path, engine: sa.Engine) -> None:
    """y: round steps from 0 at the bottom upwards, past the contract line; x: months, oldest on the left."""
    _customers(registry_dir, ("alpha", "active"))
    now = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    for d in (300, 200, 100, 1):
        _run(engine, "alpha", f"r{d}", files=1, stored=(320 - d) * GB // 4)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE backup_runs SET started_at = :t WHERE run_key = :k"),
                         {"t": to_db_time(now - timedelta(days=d)), "k": f"r{d}"})
    customer = load_registry(registry_dir).get("alpha")
    chart = console_web.capacity_chart(console.customer_detail(
        engine, customer, load_catalog(registry_dir / "catalog.yaml"), now), now)
    ys = [y for y, _ in chart.y_ticks]
    assert chart.y_ticks[0] == (chart.bottom, "0") and ys == sorted(ys, reverse=True)
    assert [label for _, label in chart.y_ticks][1:3] == ["25.0 GB", "50.0 GB"]
    assert chart.capacity_y is not None and ys[-1] <= chart.capacity_y
    xs = [x for x, _ in chart.x_ticks]
    assert xs == sorted(xs) and chart.x_ticks[0][1] == "2025-12" and chart.x_ticks[-1][1] == "2026-11"
    first_point = [float(v) for v in chart.points.split()[0].split(",")]
    last_point = [float(v) for v in chart.points.split()[-1].split(",")]
    assert first_point[0] < last_point[0] and first_point[1] > last_point[1], "growth goes up and to the right"


# ---- browsing a snapshot for a restore --------------------------------------------------------------------

def test_browsing_a_snapshot_lists_one_folders_subfolders_and_files() -> None:
    entries = [browse.Entry("/srv/data/経理/2026/a.xlsx", 10, 0), browse.Entry("/srv/data/経理/b.pdf", 5, 0),
               browse.Entry("/srv/data/top.txt", 1, 0), browse.Entry("/srv/other/x", 7, 0)]
    root = browse.listing("s1", entries, "/")
    assert [(f.path, f.files, f.bytes) for f in root.folders] == [("/srv", 4, 23)] and root.files == ()
    data = browse.listing("s1", entries, "/srv/data/")
    assert [(f.name, f.files, f.bytes) for f in data.folders] == [("経理", 2, 15)]
    assert [e.path for e in data.files] == ["/srv/data/top.txt"]
    assert data.crumbs == (("/", "/"), ("srv", "/srv"), ("data", "/srv/data"))
    assert browse.listing("s1", entries, "/srv/dat").total_files == 0, "a prefix is not a folder"
    with pytest.raises(ValueError):
        browse.normalise("srv/data")
