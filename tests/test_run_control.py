"""Run control (issue 11, part B), against the real sshd, S3 and both databases.

Art. 17(1): backups are taken periodically, one run per customer at a time, each with its own records (collection
errors, capacity events and notices, art. 17(2)(3), are never shared between runs). A run always ends its record
(`failed` when anything goes wrong, even a dead worker: the sweeper), and takes bounded time (SFTP timeouts, the
DAG's execution_timeout). Art. 11, 12, 19, 21(3): nothing is collected after the service ended or after a
cancellation before the start. Art. 16, 18(1): a restore from the Airflow UI never overwrites the customer's live
files; in place is a shell-only option.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
from backup_support import fresh_store, sftp_endpoint, tree, write_tree
from devtools import devstack

from cloudbackup import cli, tasks
from cloudbackup.backup import records, runcontrol
from cloudbackup.backup.runcontrol import Lease, LeaseDecision, RunningRecord
from cloudbackup.edges.db import to_db_time
from cloudbackup.edges.sftp import SftpConnectError, open_sftp
from conftest import ROOT, customer_yaml

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
TTL = timedelta(minutes=5)
SMALL_ENGINE = """engine:
  connections: 2
  upload_threads: 2
  chunk_size: 262144
  small_file_max: 65536
  pack_target: 131072
  in_flight_bytes: 1048576
"""


# --- the rules (pure) ---------------------------------------------------------------------------------------------

def test_lease_rules_one_live_holder_lapsed_leases_are_taken_over() -> None:
    held = Lease("acme", "run-a", "w1:1", NOW, NOW + TTL)
    assert runcontrol.lease_decision(None, "run-b", NOW) is LeaseDecision.TAKE
    assert runcontrol.lease_decision(held, "run-b", NOW) is LeaseDecision.BUSY
    assert runcontrol.lease_decision(held, "run-a", NOW) is LeaseDecision.RENEW
    assert runcontrol.lease_decision(held, "run-b", NOW + TTL) is LeaseDecision.TAKE   # a dead worker's lease


def test_a_running_record_is_dead_without_heartbeat_and_lease_or_past_the_time_limit() -> None:
    run = RunningRecord(1, "acme", "run-a", NOW, NOW + timedelta(minutes=10))
    lease = Lease("acme", "run-a", "w1:1", NOW, NOW + timedelta(minutes=14))
    at = NOW + timedelta(minutes=12)
    assert runcontrol.dead_run_reason(run, lease, at, TTL, timedelta(hours=6)) is None          # alive
    assert "no heartbeat" in runcontrol.dead_run_reason(run, None, NOW + timedelta(minutes=16), TTL,
                                                        timedelta(hours=6))
    assert runcontrol.dead_run_reason(run, None, at, TTL, timedelta(hours=6)) is None         # beat 2 min ago
    late = NOW + timedelta(hours=6, minutes=6)   # still beating and holding its lease, but past every limit
    beating = RunningRecord(1, "acme", "run-a", NOW, late - timedelta(minutes=1))
    assert "time limit" in runcontrol.dead_run_reason(beating, Lease("acme", "run-a", "w1:1", NOW, late + TTL), late,
                                                      TTL, timedelta(hours=6))


@pytest.mark.parametrize(("folder", "inside"), [
    ("/", True), ("/srv/docs", True), ("/srv/docs/sub", True), ("/srv/docs/../docs/x", True), ("srv/docs", True),
    ("/restore/s1", False), ("/srv", False), ("/srv/docs2", False), ("/srv/documents-restore", False),
])
def test_restore_folders_inside_the_designated_areas_are_recognised(folder: str, inside: bool) -> None:
    """Art. 16: the designated areas hold the customer's live data; a restore writes <folder>/<original path>."""
    assert runcontrol.inside_designated_areas(folder, ["/srv/docs", "/home/acme"]) is inside


def _customer(extra: str = "", service_start: str = "2026-09-01"):
    import yaml

    from cloudbackup.registry.customers import Customer

    return Customer.model_validate(yaml.safe_load(customer_yaml("acme", paths=["/srv/acme"], extra=extra,
                                                                service_start=service_start)))


def test_the_timeline_stops_collection_after_the_last_day_of_service() -> None:
    """Art. 11, 19: a cancellation's last day of service is still collected, the day after is not."""
    c = _customer("cancellation: {notice_date: 2026-10-01, requested_end: 2026-11-30}\n")
    assert runcontrol.service_stop(c, date(2026, 11, 30)) is None
    reason, detail = runcontrol.service_stop(c, date(2026, 12, 1))
    assert reason == "contract_ended" and "2026-11-30" in detail and "art. 11" in detail
    assert runcontrol.last_collection_moment(c) == datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=runcontrol.TOKYO)
    assert runcontrol.last_collection_moment(_customer()) is None


def test_a_cancellation_before_the_start_stops_collection() -> None:
    """Art. 21(3): cancelled after the contract, before the service start: never collected."""
    c = _customer("cancelled_before_start_on: 2026-08-25\n")
    reason, detail = runcontrol.service_stop(c, date(2026, 9, 1))
    assert reason == "cancelled_before_start" and "art. 21(3)" in detail


# --- the lease on the real databases ------------------------------------------------------------------------------

def test_simultaneous_takers_get_one_lease_and_a_lapsed_lease_is_taken_over(engine: sa.Engine) -> None:
    """Art. 17(1): eight runs (as from two schedulers and the CLI) ask at once; exactly one gets the lease."""
    barrier = threading.Barrier(8)
    outcome: dict[str, Lease | None] = {}

    def take(key: str) -> None:
        barrier.wait()
        outcome[key] = records.acquire_lease(engine, "acme", key, "test", TTL)

    threads = [threading.Thread(target=take, args=(f"run-{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [k for k, held in outcome.items() if held is None]
    assert len(outcome) == 8 and len(winners) == 1
    assert {held.run_key for held in outcome.values() if held is not None} == set(winners)

    # The winner's worker dies: once its lease lapses, the next run takes it over.
    later = datetime.now(UTC) + TTL + timedelta(seconds=1)
    assert records.acquire_lease(engine, "acme", "run-next", "test", TTL, now=later) is None
    assert records.current_lease(engine, "acme").run_key == "run-next"


# --- runs on the real servers -------------------------------------------------------------------------------------

def _runs(engine: sa.Engine, customer_id: str) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT id, run_key, status, skip_reason, detail FROM backup_runs "
                                    "WHERE customer_id = :c ORDER BY id"), {"c": customer_id}).all()


def _customer_on_stack(stack, registry_dir: Path, database: dict, connect_service, customer_id: str,
                       files: dict[str, bytes], extra: str = "", bucket: str | None = None) -> str:
    write_tree(stack.sshd.root / "srv" / customer_id, files)
    (registry_dir / "customers" / f"{customer_id}.yaml").write_text(
        customer_yaml(customer_id, paths=[f"/srv/{customer_id}"], extra=extra), encoding="utf-8")
    bucket = bucket or fresh_store(stack).bucket
    connect_service(database, [f"sftp_{customer_id.replace('-', '_')}"], bucket=bucket)
    return bucket


def _wait_for(check, timeout: float = 60.0, what: str = "condition"):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_second_run_while_one_runs_is_refused_and_shares_no_record(
        stack, registry_dir, database, engine, connect_service, request, monkeypatch) -> None:
    """Two runs of one customer at once (a CLI run beside a scheduled one): the second is refused with a clear
    message and writes nothing; the first's records (its collection error, art. 17(2)) are its own."""
    customer_id = f"rc-two-{request.node.callspec.id}"
    files = {f"f{i:03d}.bin": os.urandom(64_000) for i in range(300)}
    files["bad\x07name.txt"] = b"refused by the name policy"
    _customer_on_stack(stack, registry_dir, database, connect_service, customer_id, files)
    monkeypatch.setenv("CLOUDBACKUP_RUN_WAIT_SECONDS", "0")
    first = subprocess.Popen([sys.executable, "-m", "cloudbackup.cli", "backup", "run", "--customer", customer_id,
                              "--run-key", "first"], env=os.environ.copy(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: records.current_lease(engine, customer_id) and _runs(engine, customer_id),
                  what="the first run's lease and record")
        time.sleep(0.2)                       # past its record's transaction (SQLite: no write lock held) ...
        os.kill(first.pid, signal.SIGSTOP)    # ... and held mid-way, deterministically
        try:
            assert cli.main(["backup", "run", "--customer", customer_id]) == 3
        finally:
            os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 2, err[-2000:]   # collection error: exit 2

    (row,) = _runs(engine, customer_id)
    assert (row.run_key, row.status) == ("first", "succeeded_with_errors")
    with engine.connect() as conn:
        errors = conn.execute(sa.text("SELECT backup_run_id FROM collection_errors WHERE customer_id = :c"),
                              {"c": customer_id}).scalars().all()
        notices = conn.execute(sa.text("SELECT count(*) FROM notices WHERE customer_id = :c"),
                               {"c": customer_id}).scalar()
    assert errors == [row.id] and notices == 1
    assert records.current_lease(engine, customer_id) is None   # released

    # Free again: the next run goes ahead with its own, unique run key and its own records.
    assert cli.main(["backup", "run", "--customer", customer_id]) == 2
    runs = _runs(engine, customer_id)
    assert len(runs) == 2 and runs[1].run_key.startswith("cli-") and runs[1].status == "succeeded_with_errors"


def test_a_dead_workers_run_is_swept_to_failed_and_its_lease_does_not_block(
        stack, registry_dir, database, engine, connect_service, request, capsys) -> None:
    """A worker killed mid-run leaves `running` and a lease behind; both lapse, the record ends `failed`."""
    customer_id = f"rc-dead-{request.node.callspec.id}"
    _customer_on_stack(stack, registry_dir, database, connect_service, customer_id, {"a.txt": b"a"})
    old = datetime.now(UTC) - timedelta(hours=1)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO backup_runs (customer_id, run_key, status, started_at, heartbeat_at) "
                             "VALUES (:c, 'dead', 'running', :t, :t)"), {"c": customer_id, "t": to_db_time(old)})
        conn.execute(sa.text("INSERT INTO run_leases (customer_id, run_key, holder, acquired_at, expires_at) "
                             "VALUES (:c, 'dead', 'gone:1', :t, :e)"),
                     {"c": customer_id, "t": to_db_time(old), "e": to_db_time(old + TTL)})

    assert cli.main(["backup", "sweep"]) == 0
    assert "1 run(s) marked failed" in capsys.readouterr().out
    assert cli.main(["backup", "run", "--customer", customer_id]) == 0
    dead, fresh = _runs(engine, customer_id)
    assert dead.status == "failed" and "no heartbeat" in dead.detail
    assert fresh.status == "succeeded"


def test_an_unknown_plan_code_found_mid_run_ends_the_record_failed_with_nothing_in_s3(
        stack, registry_dir, database, engine, connect_service, request) -> None:
    """A configuration error never leaves a run `running`, nor a snapshot in S3 that the records do not know."""
    customer_id = f"rc-plan-{request.node.callspec.id}"
    bucket = _customer_on_stack(stack, registry_dir, database, connect_service, customer_id, {"a.txt": b"a"})
    path = registry_dir / "customers" / f"{customer_id}.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("plan: standard-100", "plan: no-such-plan"),
                    encoding="utf-8")

    with pytest.raises(KeyError):
        tasks.collect(customer_id, "r1")

    (row,) = _runs(engine, customer_id)
    assert row.status == "failed" and "no-such-plan" in row.detail
    store = fresh_store(stack)
    store.bucket = bucket
    assert list(store.list_keys(f"customers/{customer_id}/")) == []
    assert records.current_lease(engine, customer_id) is None


def test_a_killed_s3_server_mid_run_leaves_a_failed_record_and_the_next_run_completes(
        stack, registry_dir, database, engine, connect_service, request, tmp_path, monkeypatch) -> None:
    """S3 dies while the run uploads: `failed` with the reason, lease released; the next run succeeds."""
    customer_id = f"rc-s3-{request.node.callspec.id}"
    (registry_dir / "backup.yaml").write_text(SMALL_ENGINE, encoding="utf-8")
    files = {f"d{i % 4}/f{i:03d}.bin": os.urandom(200_000) for i in range(120)}
    _customer_on_stack(stack, registry_dir, database, connect_service, customer_id, files)
    own = devstack.start_s3(tmp_path / "s3")
    try:
        monkeypatch.setenv("AIRFLOW_CONN_CLOUDBACKUP_S3", __import__("json").dumps(own.connection("dying")))
        from cloudbackup.edges import connections
        from cloudbackup.edges.s3 import ObjectStore

        probe = ObjectStore(connections.s3_endpoint())
        failure: list[BaseException] = []

        def run() -> None:
            try:
                tasks.collect(customer_id, "r1")
            except BaseException as exc:  # noqa: BLE001
                failure.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        _wait_for(lambda: probe.client.bucket_exists("dying") and any(probe.list_keys(f"customers/{customer_id}/")),
                  what="the first uploads")
        own.proc.kill()
        worker.join(300)
        assert not worker.is_alive() and failure
    finally:
        own.stop()
    (row,) = _runs(engine, customer_id)
    assert row.status == "failed" and row.detail
    assert records.current_lease(engine, customer_id) is None

    connect_service(database, [f"sftp_{customer_id.replace('-', '_')}"], bucket=fresh_store(stack).bucket)
    summary = tasks.collect(customer_id, "r2")
    assert summary["status"] == "succeeded" and summary["files"] == len(files)
    assert [r.status for r in _runs(engine, customer_id)] == ["failed", "succeeded"]


# --- bounded time: hung SFTP servers ------------------------------------------------------------------------------

def test_a_server_that_accepts_and_never_answers_fails_within_the_timeout(stack) -> None:
    """Art. 18(5) allows slow backups, not endless ones: a silent server ends the attempt after the timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    ep = sftp_endpoint(stack.sshd)
    silent = type(ep)("127.0.0.1", port, ep.username, ep.host_key, private_key=ep.private_key)
    started = time.monotonic()
    try:
        with pytest.raises(SftpConnectError, match="2.0 s"), open_sftp(silent, timeout=2.0):
            pass
    finally:
        listener.close()
    assert time.monotonic() - started < 10


def test_a_run_whose_sftp_server_hangs_mid_run_fails_within_the_timeout(
        stack, registry_dir, database, engine, connect_service, request, tmp_path, monkeypatch) -> None:
    """The sshd session processes are stopped (SIGSTOP) while the run reads: the run fails, its record says so."""
    customer_id = f"rc-hang-{request.node.callspec.id}"
    (registry_dir / "backup.yaml").write_text(SMALL_ENGINE, encoding="utf-8")
    own = devstack.start_sshd(tmp_path / "sshd")
    stopped: list[psutil.Process] = []
    try:
        write_tree(own.root / "srv" / customer_id, {f"f{i:03d}.bin": os.urandom(100_000) for i in range(300)})
        (registry_dir / "customers" / f"{customer_id}.yaml").write_text(
            customer_yaml(customer_id, paths=[f"/srv/{customer_id}"]), encoding="utf-8")
        connect_service(database, [], bucket=fresh_store(stack).bucket)
        monkeypatch.setenv(f"AIRFLOW_CONN_SFTP_{customer_id.replace('-', '_').upper()}",
                           __import__("json").dumps(own.connection()))
        monkeypatch.setenv("CLOUDBACKUP_SFTP_TIMEOUT_SECONDS", "3")
        failure: list[BaseException] = []

        def run() -> None:
            try:
                tasks.collect(customer_id, "r1")
            except BaseException as exc:  # noqa: BLE001
                failure.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        master = psutil.Process(own.proc.pid)
        sessions = _wait_for(lambda: master.children(recursive=True), what="an SFTP session")
        time.sleep(0.3)
        hung_at = time.monotonic()
        for p in master.children(recursive=True):   # the sessions, not the listener
            p.send_signal(signal.SIGSTOP)
            stopped.append(p)
        assert sessions
        worker.join(60)
        took = time.monotonic() - hung_at
        assert not worker.is_alive() and failure, "the run hung"
        assert took < 20, took
    finally:
        for p in stopped:
            with __import__("contextlib").suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGCONT)
        own.stop()
    (row,) = _runs(engine, customer_id)
    assert row.status == "failed" and ("sent nothing" in row.detail or "lost" in row.detail), row.detail


# --- contract end -------------------------------------------------------------------------------------------------

def test_no_collection_after_the_service_ended(stack, registry_dir, database, engine, connect_service, request) -> None:
    """Art. 11, 19: after the last day of service the run is recorded as skipped, with the article; nothing read."""
    customer_id = f"rc-end-{request.node.callspec.id}"
    bucket = _customer_on_stack(stack, registry_dir, database, connect_service, customer_id, {"a.txt": b"a"},
                                extra="cancellation: {notice_date: 2026-10-01, requested_end: 2026-11-15}\n")
    with pytest.raises(tasks.CustomerNotCollected, match="art. 11"):
        tasks.collect(customer_id, "after-end", datetime.fromisoformat("2026-11-16T02:00:00+09:00"))
    (row,) = _runs(engine, customer_id)
    assert (row.status, row.skip_reason) == ("skipped", "contract_ended") and "2026-11-15" in row.detail
    store = fresh_store(stack)
    store.bucket = bucket
    assert list(store.list_keys("")) == []


def test_the_backup_dag_ends_with_the_service(registry_dir) -> None:
    """The DAG's end_date follows the timeline; collect has the execution_timeout of the setting."""
    from airflow.dag_processing.dagbag import DagBag

    (registry_dir / "customers" / "ended.yaml").write_text(customer_yaml(
        "ended", paths=["/srv/x"], extra="operator_termination: {date: 2026-12-31, reason: unpaid}\n"),
        encoding="utf-8")
    (registry_dir / "customers" / "never.yaml").write_text(customer_yaml(
        "never", paths=["/srv/x"], extra="cancelled_before_start_on: 2026-08-25\n"), encoding="utf-8")
    (registry_dir / "customers" / "open.yaml").write_text(customer_yaml("open", paths=["/srv/x"]), encoding="utf-8")
    bag = DagBag(dag_folder=str(ROOT / "dags"))   # the backup DAGs are in shard files (cloudbackup.fleetdags)
    assert bag.import_errors == {}
    ended, never, open_ = bag.dags["backup_ended"], bag.dags["backup_never"], bag.dags["backup_open"]
    assert ended.end_date == datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=runcontrol.TOKYO)
    assert never.end_date == never.start_date
    assert open_.end_date is None
    assert ended.get_task("collect").execution_timeout == timedelta(hours=6)


# --- restores never overwrite live data ---------------------------------------------------------------------------

def test_a_ui_restore_goes_beside_the_live_data_and_in_place_is_cli_only(
        stack, registry_dir, database, engine, connect_service, request) -> None:
    """Art. 16, 18(1): from the UI (confined), an SFTP restore goes to /restore/<snapshot>; a folder inside the
    designated areas is refused; the CLI overwrites in place only with --in-place."""
    customer_id = f"rc-rst-{request.node.callspec.id}"
    conn_id = f"sftp_{customer_id.replace('-', '_')}"
    files = {"docs/a.txt": b"original", "b.txt": b"bee"}
    _customer_on_stack(stack, registry_dir, database, connect_service, customer_id, files)
    summary = tasks.collect(customer_id, "r1")
    live = stack.sshd.root / "srv" / customer_id
    (live / "docs" / "a.txt").write_bytes(b"edited since the backup")
    (stack.sshd.root / "restore").mkdir(exist_ok=True)

    result = tasks.restore(customer_id, f"sftp:{conn_id}", None, "/", confined=True)
    restored = stack.sshd.root / "restore" / summary["snapshot_id"] / "srv" / customer_id
    assert result["files"] == 2 and tree(restored) == files
    assert (live / "docs" / "a.txt").read_bytes() == b"edited since the backup"   # live data untouched

    for folder in ("/", f"/srv/{customer_id}", f"/srv/{customer_id}/docs"):
        with pytest.raises(tasks.RestoreRefused, match="designated areas"):
            tasks.restore(customer_id, f"sftp:{conn_id}:{folder}", None, "/", confined=True)
        assert cli.main(["backup", "restore", "--customer", customer_id, "--to-sftp", f"{conn_id}:{folder}"]) == 1
    with pytest.raises(tasks.RestoreRefused, match="CLI only"):
        tasks.restore(customer_id, f"sftp:{conn_id}", None, "/", confined=True, in_place=True)
    assert (live / "docs" / "a.txt").read_bytes() == b"edited since the backup"

    assert cli.main(["backup", "restore", "--customer", customer_id, "--in-place"]) == 0
    assert tree(live) == files
