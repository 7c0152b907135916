"""Delivery through a real aiosmtpd server, on both databases: each notice sent once, in its customer's
language; SMTP down or refusing → the notice waits; N refusals → flagged stuck (art. 28, 33)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from devtools import devstack
from notices_support import (
    SENDER,
    endpoint,
    everything_in,
    new_messages,
    record_capacity_event,
    record_run,
    subject_of,
    suspended,
    text_of,
)

from cloudbackup.clock import utcnow
from cloudbackup.edges.db import to_db_time
from cloudbackup.notices import delivery, outbox, samples, templating
from cloudbackup.registry.catalog import GB
from cloudbackup.registry.customers import Customer
from cloudbackup.registry.maintenance import Window
from conftest import ROOT

pytestmark = pytest.mark.servers

NOW_POLICY = delivery.DeliveryPolicy(backoff=timedelta(0))   # retry refused notices on the very next pass


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator:
    """Start private aiosmtpd servers (optionally refusing); all stopped after the test."""
    started: list[devstack.SmtpServer] = []

    def start(**options: object) -> devstack.SmtpServer:
        server = devstack.start_smtp(tmp_path / f"smtp{len(started)}", **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def smtp(smtp_server) -> devstack.SmtpServer:  # noqa: ANN001
    return smtp_server()


def _queue_every_kind(engine: sa.Engine, customer: Customer, figure: int) -> int:
    """One notice of each kind for `customer`, from recorded rows where the kind has them."""
    with engine.begin() as conn:
        run_id = record_run(conn, customer.id, f"run-{customer.id}",
                            [(f"/srv/{customer.id}/経理/{figure}.xlsx", "permission_denied")],
                            stored_bytes=figure * GB)
        record_capacity_event(conn, customer.id, run_id, 80, figure * GB, 100 * GB)
        queued = outbox.queue_run_notices(conn, customer, run_id)
        start = utcnow() + timedelta(days=5)
        window = Window(id="m1", start=start, end=start + timedelta(hours=2), reason="storage upgrade")
        queued += outbox.queue_maintenance(conn, [customer], window)
        queued += outbox.queue_suspension(conn, *suspended(customer, "non_payment", utcnow() + timedelta(days=1)))
        queued += outbox.queue(conn, "invoice", customer, f"invoice:{customer.id}:2026-10",
                                samples.sample_context("invoice", customer))
        queued += outbox.queue(conn, "correction", customer, f"invoice:{customer.id}:2026-10:r1",
                                samples.sample_context("correction", customer))
        ending = samples.sample_context("service_end", customer)["service_end"]
        queued += outbox.queue_service_end(conn, [customer], ending)
    return queued


def _rows(engine: sa.Engine) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT id, kind, customer_id, recipient, message_id, sent_at, attempts, "
                                    "last_error, stuck_at FROM notices ORDER BY id")).all()


def test_each_kind_is_delivered_exactly_once_in_the_customers_language(
        engine: sa.Engine, smtp: devstack.SmtpServer) -> None:
    """Art. 28: by email to the registered address, recorded as sent; a second pass sends nothing."""
    ja, en = samples.sample_customer("ja", "cust-ja"), samples.sample_customer("en", "cust-en")
    assert _queue_every_kind(engine, ja, 81) + _queue_every_kind(engine, en, 82) == 2 * len(templating.KINDS)

    report = delivery.deliver_pending(engine, endpoint(smtp), NOW_POLICY)
    again = delivery.deliver_pending(engine, endpoint(smtp), NOW_POLICY)

    assert (report.sent, report.failed, report.stuck, report.pending) == (2 * len(templating.KINDS), 0, 0, 0)
    assert (again.sent, again.failed) == (0, 0)
    messages = new_messages(smtp)
    assert Counter((m["To"], m["X-Cloudbackup-Notice"]) for m in messages) == Counter(
        {(c.notice_email, k): 1 for c in (ja, en) for k in templating.KINDS})
    rows = {r.message_id: r for r in _rows(engine)}
    for msg in messages:
        row = rows[msg["Message-ID"]]            # the Message-ID recorded in the outbox
        assert msg["To"] == row.recipient and row.sent_at is not None and row.attempts == 1
        assert msg["Auto-Submitted"] == "auto-generated"
        assert {p.get_content_type() for p in msg.walk()} >= {"text/plain", "text/html"}
        if msg["To"] == ja.notice_email:
            assert subject_of(msg).startswith("【クラウドバックアップ】") and ja.name in text_of(msg)
        else:
            assert subject_of(msg).startswith("[Cloud Backup]") and en.name in text_of(msg)


def test_a_refused_first_attempt_is_recorded_and_sent_on_the_next_pass(engine: sa.Engine, smtp_server) -> None:  # noqa: ANN001
    smtp = smtp_server(refuse_first=1)
    customers = [samples.sample_customer("ja", "cust-a"), samples.sample_customer("en", "cust-b")]
    with engine.begin() as conn:
        start = utcnow() + timedelta(days=5)
        window = Window(id="m1", start=start, end=start + timedelta(hours=2), reason="storage upgrade")
        outbox.queue_maintenance(conn, customers, window)

    first = delivery.deliver_pending(engine, endpoint(smtp), delivery.DeliveryPolicy(backoff=timedelta(hours=1)))
    assert (first.sent, first.failed, first.pending) == (1, 1, 1)
    refused = next(r for r in _rows(engine) if r.sent_at is None)
    assert refused.attempts == 1 and "451" in refused.last_error and refused.stuck_at is None
    # Backoff: not due yet, so an immediate pass leaves it alone.
    hourly = delivery.DeliveryPolicy(backoff=timedelta(hours=1))
    assert delivery.deliver_pending(engine, endpoint(smtp), hourly).sent == 0
    second = delivery.deliver_pending(engine, endpoint(smtp), delivery.DeliveryPolicy(backoff=timedelta(hours=1)),
                                     now=lambda: utcnow() + timedelta(hours=2))
    assert (second.sent, second.failed, second.pending) == (1, 0, 0)
    assert Counter(m["To"] for m in new_messages(smtp)) == Counter({c.notice_email: 1 for c in customers})
    assert all(r.sent_at is not None and r.last_error is None for r in _rows(engine))


def test_smtp_down_means_notices_wait_and_go_later_nothing_lost(engine: sa.Engine, smtp: devstack.SmtpServer) -> None:
    customer = samples.sample_customer("ja", "cust-a")
    with engine.begin() as conn:
        outbox.queue_suspension(conn, *suspended(customer, "terms_violation", utcnow()))
    smtp.stop()
    down = delivery.deliver_pending(engine, endpoint(smtp), NOW_POLICY)
    assert down.sent == 0 and down.pending == 1 and "unavailable" in down.unavailable
    (row,) = _rows(engine)
    assert row.attempts == 0 and row.stuck_at is None   # the server's outage is not the notice's failure
    for _ in range(NOW_POLICY.max_attempts + 1):
        delivery.deliver_pending(engine, endpoint(smtp), NOW_POLICY)
    assert _rows(engine)[0].stuck_at is None            # a long outage never makes notices stuck
    smtp.start()
    up = delivery.deliver_pending(engine, endpoint(smtp), NOW_POLICY)
    assert (up.sent, up.pending) == (1, 0)
    assert [m["To"] for m in new_messages(smtp)] == [customer.notice_email]


def test_a_notice_refused_n_times_is_flagged_stuck_not_retried_forever(engine: sa.Engine, smtp_server) -> None:  # noqa: ANN001
    smtp = smtp_server(refuse_recipients=("cust-bad@customer.example.jp",))
    bad = samples.sample_customer("ja", "cust-bad").model_copy(update={"notice_email": "cust-bad@customer.example.jp"})
    good = samples.sample_customer("en", "cust-good")
    policy = delivery.DeliveryPolicy(max_attempts=3, backoff=timedelta(0))
    with engine.begin() as conn:
        for c in (bad, good):
            outbox.queue_suspension(conn, *suspended(c, "non_payment", utcnow()))
    reports = [delivery.deliver_pending(engine, endpoint(smtp), policy) for _ in range(5)]
    assert [r.sent for r in reports] == [1, 0, 0, 0, 0]
    assert [r.stuck for r in reports] == [0, 0, 1, 1, 1]
    stuck = next(r for r in _rows(engine) if r.customer_id == "cust-bad")
    assert stuck.attempts == 3 and stuck.stuck_at is not None and "550" in stuck.last_error
    listed = delivery.list_notices(engine, "stuck")
    assert [(n.id, n.recipient, n.state) for n in listed] == [(stuck.id, bad.notice_email, "stuck")]
    assert delivery.retry_stuck(engine, stuck.id) and not delivery.retry_stuck(engine, stuck.id)
    assert delivery.deliver_pending(engine, endpoint(smtp), policy).failed == 1   # tried again after the operator
    assert [m["To"] for m in new_messages(smtp)] == [good.notice_email]


def test_a_notice_claimed_by_a_running_delivery_is_not_sent_by_another(
        engine: sa.Engine, smtp: devstack.SmtpServer) -> None:
    """The claim is committed before sending: a second worker (or a retried task) leaves it alone; a claim
    whose worker died is taken over after its lease, with the same Message-ID."""
    customer = samples.sample_customer("en", "cust-a")
    with engine.begin() as conn:
        outbox.queue_suspension(conn, *suspended(customer, "other", utcnow()))
        conn.execute(sa.text("UPDATE notices SET claim_token = 'other-worker', claimed_until = :t"),
                     {"t": to_db_time(utcnow() + timedelta(minutes=10))})
    assert delivery.deliver_pending(engine, endpoint(smtp), NOW_POLICY).sent == 0
    assert new_messages(smtp) == []
    later = delivery.deliver_pending(engine, endpoint(smtp), NOW_POLICY, now=lambda: utcnow() + timedelta(minutes=11))
    assert later.sent == 1
    (msg,) = new_messages(smtp)
    assert msg["Message-ID"] == _rows(engine)[0].message_id


def test_nothing_of_one_customer_reaches_the_others_mail(engine: sa.Engine, smtp: devstack.SmtpServer) -> None:
    """Art. 33: every kind for two customers; no name, id, address, path or figure of one in the other's mail."""
    a = samples.sample_customer("ja", "alpha-kogyo").model_copy(update={"name": "アルファ工業株式会社"})
    b = samples.sample_customer("en", "beta-trading").model_copy(update={"name": "Beta Trading Ltd"})
    _queue_every_kind(engine, a, 83)
    _queue_every_kind(engine, b, 97)
    assert delivery.deliver_pending(engine, endpoint(smtp), NOW_POLICY).sent == 2 * len(templating.KINDS)
    markers = {a.id: [a.id, a.name, a.notice_email, f"/srv/{a.id}/", "83.0 GB"],
               b.id: [b.id, b.name, b.notice_email, f"/srv/{b.id}/", "97.0 GB"]}
    by_recipient = {a.notice_email: a.id, b.notice_email: b.id}
    messages = new_messages(smtp)
    assert len(messages) == 2 * len(templating.KINDS)
    for msg in messages:
        own = by_recipient[msg["To"]]
        other = b.id if own == a.id else a.id
        seen = everything_in(msg)
        assert own in seen or markers[own][1] in seen
        for marker in markers[other]:
            assert marker not in seen, (msg["Subject"], marker)


# --- the delivery DAG, through dag.test() ----------------------------------------------------------------

def _notice_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "deliver_notices.py"))
    assert bag.import_errors == {}
    dag = bag.dags["deliver_notices"]
    for task in dag.tasks:   # the real DAG's retries, without its minutes of waiting
        task.retry_delay = timedelta(seconds=1)
        task.retry_exponential_backoff = 0
    return dag


def _point_service_at(monkeypatch: pytest.MonkeyPatch, database: dict, smtp: devstack.SmtpServer) -> None:
    import json

    monkeypatch.setenv("AIRFLOW_CONN_CLOUDBACKUP_DB", json.dumps(database))
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDBACKUP_SMTP", json.dumps(smtp.connection()))
    monkeypatch.setenv("CLOUDBACKUP_NOTICE_BACKOFF_SECONDS", "0")


def _customer_file(registry_dir: Path, customer_id: str, language: str) -> Customer:
    from cloudbackup.registry.customers import load_customer
    from conftest import customer_yaml

    path = registry_dir / "customers" / f"{customer_id}.yaml"
    path.write_text(customer_yaml(customer_id, paths=[f"/srv/{customer_id}"], language=language), encoding="utf-8")
    return load_customer(path)


def test_the_delivery_dag_announces_recorded_events_and_sends_them_once(
        airflow_home: Path, registry_dir: Path, database: dict, engine: sa.Engine, smtp: devstack.SmtpServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A run recorded with collection errors (no notice queued by the engine) is announced and mailed."""
    customer = _customer_file(registry_dir, "dag-cust", "ja")
    with engine.begin() as conn:
        record_run(conn, customer.id, "run-1", [("/srv/dag-cust/a.txt", "vanished")],
                   started_at=utcnow() - timedelta(hours=1))
    _point_service_at(monkeypatch, database, smtp)
    dag = _notice_dag()

    run = dag.test(logical_date=datetime(2026, 11, 25, 3, 0, tzinfo=UTC))
    rerun = dag.test(logical_date=datetime(2026, 11, 25, 3, 5, tzinfo=UTC))

    assert run.state == rerun.state == "success"
    (msg,) = new_messages(smtp)
    assert msg["To"] == customer.notice_email and msg["X-Cloudbackup-Notice"] == "collection_errors"
    assert "/srv/dag-cust/a.txt" in text_of(msg) and "収集エラー" in subject_of(msg)


def test_the_delivery_task_retried_after_a_send_does_not_send_again(
        airflow_home: Path, registry_dir: Path, database: dict, engine: sa.Engine, smtp_server,  # noqa: ANN001
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SMTP refuses the first message: try 1 sends the second and fails, Airflow retries, try 2 sends only
    the refused one. Each customer gets exactly one mail."""
    smtp = smtp_server(refuse_first=1)
    customers = [_customer_file(registry_dir, "retry-a", "ja"), _customer_file(registry_dir, "retry-b", "en")]
    with engine.begin() as conn:
        for c in customers:
            outbox.queue_suspension(conn, *suspended(c, "non_payment", utcnow() + timedelta(days=2)))
    _point_service_at(monkeypatch, database, smtp)

    run = _notice_dag().test(logical_date=datetime(2026, 11, 25, 3, 0, tzinfo=UTC))

    assert run.state == "success"
    deliver = next(ti for ti in run.get_task_instances() if ti.task_id == "deliver_notices")
    assert deliver.try_number == 2
    assert Counter(m["To"] for m in new_messages(smtp)) == Counter({c.notice_email: 1 for c in customers})
    assert all(r.sent_at is not None for r in _rows(engine))
    assert sorted(r.attempts for r in _rows(engine)) == [1, 2]


def test_a_broken_maintenance_file_does_not_hold_back_the_other_notices(
        airflow_home: Path, registry_dir: Path, database: dict, engine: sa.Engine, smtp: devstack.SmtpServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The queuing task fails naming the file; the notices already queued are delivered all the same."""
    customer = _customer_file(registry_dir, "maint-cust", "en")
    (registry_dir / "maintenance.yaml").write_text("windows:\n  - id: w1\n    start: not-a-date\n", encoding="utf-8")
    with engine.begin() as conn:
        record_run(conn, customer.id, "run-1", [("/srv/maint-cust/a.txt", "vanished")],
                   started_at=utcnow() - timedelta(hours=1))
    _point_service_at(monkeypatch, database, smtp)

    dag = _notice_dag()
    dag.task_dict["queue_event_notices"].retries = 0   # its retries would fail the same way
    run = dag.test(logical_date=datetime(2026, 11, 25, 3, 0, tzinfo=UTC))

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"queue_event_notices": "failed", "deliver_notices": "success", "sweep_dead_runs": "success"}
    (msg,) = new_messages(smtp)
    assert msg["To"] == customer.notice_email and msg["X-Cloudbackup-Notice"] == "collection_errors"


def test_a_refused_sender_address_is_the_servers_problem_not_the_notices(engine: sa.Engine, smtp_server) -> None:  # noqa: ANN001
    """A misconfigured From address must not make every notice stuck: nothing is counted, all wait."""
    smtp = smtp_server(refuse_senders=(SENDER,))
    customer = samples.sample_customer("ja", "cust-a")
    with engine.begin() as conn:
        outbox.queue_suspension(conn, *suspended(customer, "other", utcnow()))
    for _ in range(NOW_POLICY.max_attempts + 1):
        report = delivery.deliver_pending(engine, endpoint(smtp), NOW_POLICY)
        assert report.sent == 0 and "SMTPSenderRefused: 550" in report.unavailable
    (row,) = _rows(engine)
    assert (row.attempts, row.stuck_at, row.sent_at) == (0, None, None)
    assert new_messages(smtp) == []
