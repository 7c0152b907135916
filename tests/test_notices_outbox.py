"""The outbox on both databases: notices built from recorded events, in their transaction, once (art. 28)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from notices_support import record_capacity_event, record_run, suspended

from cloudbackup.clock import utcnow
from cloudbackup.edges.db import to_db_time
from cloudbackup.notices import outbox, samples, sweep
from cloudbackup.notices.kinds import DIGEST_PATHS
from cloudbackup.registry.catalog import GB
from cloudbackup.registry.customers import load_customer
from cloudbackup.registry.maintenance import Window
from conftest import customer_yaml


def _notices(engine: sa.Engine) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT kind, customer_id, recipient, language, subject, body_text, body_html, "
                                    "idempotency_key, message_id, sent_at, attempts FROM notices ORDER BY id")).all()


def test_a_run_with_collection_errors_queues_one_digest_in_its_transaction(engine: sa.Engine) -> None:
    """Art. 17(2): counts by reason and the first paths, from the run's own rows."""
    customer = samples.sample_customer("ja", "cust-a")
    errors = [(f"/srv/a/file{n:03d}.txt", "permission_denied") for n in range(45)] + [("/srv/a/x?.txt", "name_policy")]
    with engine.begin() as conn:
        run_id = record_run(conn, customer.id, "run-1", errors)
        assert outbox.queue_run_notices(conn, customer, run_id) == 1
        assert outbox.queue_run_notices(conn, customer, run_id) == 0   # the same run never twice
    (row,) = _notices(engine)
    assert (row.kind, row.customer_id, row.recipient, row.language) == (
        "collection_errors", "cust-a", customer.notice_email, "ja")
    assert "46件" in row.subject and row.sent_at is None and row.attempts == 0
    assert "45 件" in row.body_text and "1 件" in row.body_text
    assert row.body_text.count("/srv/a/") == DIGEST_PATHS and "ほか 26 件" in row.body_text
    # Stable per notice, under the operator's own domain (operator.yaml `mail.message_id_domain`).
    assert row.message_id == outbox.message_id(row.idempotency_key, "notices.cloudbackup.example.jp")


def test_a_run_without_errors_queues_nothing(engine: sa.Engine) -> None:
    customer = samples.sample_customer("en", "cust-a")
    with engine.begin() as conn:
        run_id = record_run(conn, customer.id, "run-1", [])
        assert outbox.queue_run_notices(conn, customer, run_id) == 0
    assert _notices(engine) == []


def test_a_notice_is_rolled_back_with_the_event_that_caused_it(engine: sa.Engine) -> None:
    """Queued in the event's transaction: no notice of an event that was never recorded."""
    customer = samples.sample_customer("ja", "cust-a")
    with pytest.raises(RuntimeError), engine.begin() as conn:
        event_id = record_capacity_event(conn, customer.id, None, 80, 81 * GB, 100 * GB)
        assert outbox.queue_capacity(conn, customer, event_id)
        raise RuntimeError("the run's transaction fails after queuing")
    assert _notices(engine) == []


def test_a_capacity_event_queues_usage_capacity_percentage_and_a_chart(engine: sa.Engine) -> None:
    """Art. 17(3): the notice when the stored volume reaches a threshold of the contract capacity."""
    customer = samples.sample_customer("en", "cust-a")
    start = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)
    with engine.begin() as conn:
        for day in range(4):
            record_run(conn, customer.id, f"run-{day}", [], stored_bytes=(70 + 5 * day) * GB,
                       started_at=start + timedelta(days=day))
        run_id = record_run(conn, customer.id, "run-4", [], stored_bytes=101 * GB, started_at=start + timedelta(days=4))
        record_capacity_event(conn, customer.id, run_id, 80, 101 * GB, 100 * GB, at=start + timedelta(days=4, hours=1))
        record_capacity_event(conn, customer.id, run_id, 100, 101 * GB, 100 * GB, at=start + timedelta(days=4, hours=1))
        assert outbox.queue_run_notices(conn, customer, run_id) == 2
    rows = _notices(engine)
    assert [r.kind for r in rows] == ["capacity", "capacity"]
    text = rows[1].body_text
    assert "over the contract capacity" in rows[1].subject and "101.0%" in rows[1].subject
    assert "101.0 GB" in text and "100.0 GB" in text and "[####################]!" in text
    chart = [line for line in text.splitlines() if line.strip().startswith(("11/", "12/")) and "[" in line]
    assert [line.split()[0] for line in chart] == ["11/21", "11/22", "11/23", "11/24", "11/25"]


def test_a_capacity_event_written_by_a_worker_before_0011_is_announced_as_stored_volume(engine: sa.Engine) -> None:
    """A rolling upgrade: a worker still on the code before the contract figure records an event without it. That
    code compared stored bytes, so the notice names 保存容量 and that figure (art. 17(3)), and the sweep does not
    fail on the missing column values."""
    customer = samples.sample_customer("ja", "cust-a")
    with engine.begin() as conn:
        run_id = record_run(conn, customer.id, "run-1", [], stored_bytes=85 * GB)
        conn.execute(sa.text("INSERT INTO capacity_events (customer_id, backup_run_id, threshold_percent, "
                             "stored_bytes, contract_capacity_bytes, recorded_at) VALUES (:c, :r, 80, :s, :cap, :t)"),
                     {"c": customer.id, "r": run_id, "s": 85 * GB, "cap": 100 * GB, "t": to_db_time(utcnow())})
        assert outbox.queue_run_notices(conn, customer, run_id) == 1
    [row] = _notices(engine)
    assert "保存容量が契約容量の80%を超えました（現在の使用率 85.0%）" in row.subject
    assert "保存容量: 85.0 GB" in row.body_text and "過去の世代を含みます" in row.body_text


def test_a_notice_is_never_built_from_another_customers_rows(engine: sa.Engine) -> None:
    """Art. 33: a run or capacity event of customer A cannot become a notice to customer B."""
    a, b = samples.sample_customer("ja", "cust-a"), samples.sample_customer("ja", "cust-b")
    with engine.begin() as conn:
        run_id = record_run(conn, a.id, "run-1", [("/srv/a/secret-plan.xlsx", "vanished")])
        event_id = record_capacity_event(conn, a.id, run_id, 80, 80 * GB, 100 * GB)
        with pytest.raises(ValueError, match="belongs to customer 'cust-a'"):
            outbox.queue_collection_errors(conn, b, run_id)
        with pytest.raises(ValueError, match="belongs to customer 'cust-a'"):
            outbox.queue_capacity(conn, b, event_id)
        with pytest.raises(ValueError, match="not one of customer 'cust-b'"):
            outbox.queue_suspension(conn, b, suspended(a, "non_payment")[1])
    assert _notices(engine) == []


def test_maintenance_is_announced_before_the_stop_and_once_per_period(engine: sa.Engine) -> None:
    """Art. 13(2): advance notice of the stop and its period; a rescheduled window is a new notice."""
    customers = [samples.sample_customer("ja", "cust-a"), samples.sample_customer("en", "cust-b")]
    start = utcnow() + timedelta(days=10)
    window = Window(id="2026-12-maint", start=start, end=start + timedelta(hours=4), reason="storage upgrade")
    with engine.begin() as conn:
        assert outbox.queue_maintenance(conn, customers, window) == 2
        assert outbox.queue_maintenance(conn, customers, window) == 0
        later = start + timedelta(days=1)
        moved = window.model_copy(update={"start": later, "end": later + timedelta(hours=4)})
        assert outbox.queue_maintenance(conn, customers[:1], moved) == 1
        with pytest.raises(ValueError, match="not in the future"):
            outbox.queue_maintenance(conn, customers, Window(id="late", start=utcnow() - timedelta(hours=1),
                                                              end=utcnow() + timedelta(hours=1), reason="r"))
        emergency = Window(id="now", start=utcnow() - timedelta(minutes=5), end=utcnow() + timedelta(hours=1),
                           reason="power failure", emergency=True)
        assert outbox.queue_maintenance(conn, customers, emergency) == 2
    rows = _notices(engine)
    assert [(r.kind, r.customer_id, r.language) for r in rows[:2]] == [
        ("maintenance", "cust-a", "ja"), ("maintenance", "cust-b", "en")]
    assert "緊急" in rows[3].subject and "Emergency" in rows[4].subject


def test_the_sweep_queues_what_the_event_did_not_and_never_twice(engine: sa.Engine) -> None:
    """A backstop: a run recorded without its notices gets them from the delivery DAG, exactly once."""
    a = samples.sample_customer("ja", "cust-a")
    now = utcnow()
    with engine.begin() as conn:
        run_id = record_run(conn, a.id, "run-1", [("/srv/a/f.txt", "vanished")], stored_bytes=90 * GB,
                            started_at=now - timedelta(hours=1))
        record_capacity_event(conn, a.id, run_id, 80, 90 * GB, 100 * GB, at=now - timedelta(minutes=30))
        record_run(conn, "gone-customer", "run-1", [("/srv/x", "vanished")], started_at=now - timedelta(hours=1))
        record_run(conn, a.id, "old-run", [("/srv/a/old.txt", "vanished")], started_at=now - timedelta(days=30))
    first = sweep.queue_recorded_events(engine, [a], now)
    assert (first.collection_errors, first.capacity, first.unknown_customers) == (1, 1, ("gone-customer",))
    again = sweep.queue_recorded_events(engine, [a], now)
    assert (again.collection_errors, again.capacity) == (0, 0)
    assert sorted(r.kind for r in _notices(engine)) == ["capacity", "collection_errors"]


def test_declared_maintenance_and_registry_suspensions_are_announced(engine: sa.Engine, tmp_path: Path) -> None:
    """Art. 13(2), 14(2): windows in maintenance.yaml and suspensions in the customer file become notices."""
    from cloudbackup.registry.maintenance import Window

    today = utcnow().date()
    path = tmp_path / "cust-s.yaml"
    path.write_text(customer_yaml("cust-s", paths=["/srv/s"], language="en", extra=(
        f"suspensions:\n  - from: {today + timedelta(days=3)}\n    reason: non_payment\n")), encoding="utf-8")
    suspended = load_customer(path)
    other = samples.sample_customer("ja", "cust-o")
    ahead = Window(id="w-ahead", start=utcnow() + timedelta(days=7), end=utcnow() + timedelta(days=7, hours=3),
                   customers=["cust-o"], reason="ストレージ装置の更新")
    over = Window(id="w-over", start=utcnow() - timedelta(days=2), end=utcnow() - timedelta(days=1), reason="done")
    assert sweep.announce_maintenance(engine, [suspended, other], [ahead, over], utcnow()) == 1
    assert sweep.announce_suspensions(engine, [suspended, other], today) == 1
    assert sweep.announce_maintenance(engine, [suspended, other], [ahead, over], utcnow()) == 0
    assert sweep.announce_suspensions(engine, [suspended, other], today) == 0
    rows = {r.kind: r for r in _notices(engine)}
    assert rows["maintenance"].customer_id == "cust-o" and "ストレージ装置の更新" in rows["maintenance"].body_text
    assert rows["suspension"].customer_id == "cust-s" and "the service fees have not been paid" in rows[
        "suspension"].body_text
