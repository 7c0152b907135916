"""The backup DAG as an operator sees it (dag.test with real sshd, S3 and database).

Art. 17(2): a run with collection errors is visibly different from a clean one, but not a failed backup.
Art. 13, 14, 18(3): runs in a maintenance window or of a suspended customer are recorded as skipped.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from backup_support import fresh_store
from devtools import devstack

from conftest import ROOT, customer_yaml

pytestmark = pytest.mark.servers


def _dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags[dag_id]


def _states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _setup(stack: devstack.Stack, registry_dir: Path, database: dict, connect_service, customer_id: str,
           files: dict[bytes, bytes], extra: str = "", status: str = "active") -> str:
    area = os.fsencode(stack.sshd.root / "srv" / customer_id)
    os.makedirs(area, exist_ok=True)
    for name, data in files.items():
        with open(area + b"/" + name, "wb") as out:
            out.write(data)
    (registry_dir / "customers" / f"{customer_id}.yaml").write_text(
        customer_yaml(customer_id, paths=[f"/srv/{customer_id}"], status=status, extra=extra), encoding="utf-8")
    bucket = fresh_store(stack).bucket
    connect_service(database, [f"sftp_{customer_id.replace('-', '_')}"], bucket=bucket)
    return bucket


def _runs(engine: sa.Engine, customer_id: str):
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT id, status, skip_reason, detail, collection_error_count FROM backup_runs "
                                    "WHERE customer_id = :c"), {"c": customer_id}).all()


def test_collection_errors_turn_one_task_red_inside_a_successful_run(
        airflow_home, stack, registry_dir, database, engine, connect_service, request) -> None:
    customer_id = f"dag-err-{request.node.callspec.id}"
    _setup(stack, registry_dir, database, connect_service, customer_id,
           {b"good.txt": b"collected", b"bad\x07name.txt": b"refused by the name policy"})

    run = _dag(f"backup_{customer_id.replace('-', '_')}").test(logical_date=datetime(2026, 11, 3, tzinfo=UTC))

    assert run.state == "success"
    assert _states(run) == {"collect": "success", "collection_errors": "failed", "prune": "success",
                            "snapshot": "success"}
    (row,) = _runs(engine, customer_id)
    assert (row.status, row.collection_error_count) == ("succeeded_with_errors", 1)
    with engine.connect() as conn:
        errors = conn.execute(sa.text("SELECT backup_run_id, customer_id, path, reason FROM collection_errors")).all()
        snapshots = conn.execute(sa.text("SELECT customer_id, file_count FROM snapshots")).all()
    assert [tuple(e) for e in errors] == [(row.id, customer_id, f"/srv/{customer_id}/bad\\x07name.txt",
                                           "name_policy")]
    assert [tuple(s) for s in snapshots] == [(customer_id, 1)]
    # Art. 17(2): the run itself queues the customer's digest, with its errors, in the same commit.
    with engine.connect() as conn:
        notices = conn.execute(sa.text("SELECT kind, customer_id, body_text FROM notices")).all()
    assert [(n.kind, n.customer_id) for n in notices] == [("collection_errors", customer_id)]
    assert "bad\\x07name.txt" in notices[0].body_text


def test_each_run_prunes_after_its_snapshot_and_a_failed_prune_is_a_red_square_in_a_green_run(
        airflow_home, stack, registry_dir, database, engine, connect_service, monkeypatch, request) -> None:
    """Issue 12: the `prune` task applies the retention after each snapshot (keep_last: 1 here, no grace); when
    it fails, the snapshot is written and the run stays successful, with `prune` red (never a silent failure)."""
    from cloudbackup.backup.repository import list_snapshots
    from cloudbackup.edges import connections
    from cloudbackup.edges.s3 import ObjectStore

    customer_id = f"dag-prune-{request.node.callspec.id}"
    _setup(stack, registry_dir, database, connect_service, customer_id, {b"a.txt": b"kept"},
           extra="retention: {keep_last: 1}\n")
    monkeypatch.setenv("CLOUDBACKUP_PRUNE_GRACE_HOURS", "0")
    dag = _dag(f"backup_{customer_id.replace('-', '_')}")
    first = dag.test(logical_date=datetime(2026, 11, 3, tzinfo=UTC))
    second = dag.test(logical_date=datetime(2026, 11, 4, tzinfo=UTC))
    assert first.state == second.state == "success"
    assert _states(second) == {"collect": "success", "collection_errors": "success", "prune": "success",
                               "snapshot": "success"}
    store = ObjectStore(connections.s3_endpoint())
    (kept,) = list_snapshots(store, customer_id)                   # the first run's snapshot was forgotten

    monkeypatch.setenv("CLOUDBACKUP_PRUNE_REPACK_UNUSED", "2")     # a setting only prune reads, and wrong
    third = dag.test(logical_date=datetime(2026, 11, 5, tzinfo=UTC))
    assert third.state == "success"
    assert _states(third)["prune"] == "failed" and _states(third)["snapshot"] == "success"
    assert len(list_snapshots(store, customer_id)) == 2 and kept in list_snapshots(store, customer_id)


def test_a_run_inside_a_maintenance_window_is_skipped_and_recorded(
        airflow_home, stack, registry_dir, database, engine, connect_service, request) -> None:
    customer_id = f"dag-mnt-{request.node.callspec.id}"
    bucket = _setup(stack, registry_dir, database, connect_service, customer_id, {b"a.txt": b"a"})
    (registry_dir / "maintenance.yaml").write_text(
        "windows:\n  - {id: nightly-upgrade, start: 2026-11-03 01:00, end: 2026-11-03 04:00, customers: all, "
        "reason: 設備更新}\n", encoding="utf-8")

    run = _dag(f"backup_{customer_id.replace('-', '_')}").test(
        logical_date=datetime.fromisoformat("2026-11-03T02:00:00+09:00"))

    assert run.state == "success"
    assert _states(run)["collect"] == "skipped"
    (row,) = _runs(engine, customer_id)
    assert (row.status, row.skip_reason) == ("skipped", "maintenance")
    assert "nightly-upgrade" in row.detail and "art. 13" in row.detail
    store = fresh_store(stack)
    store.bucket = bucket
    assert list(store.list_keys("")) == []


def test_a_suspended_customer_is_skipped_and_recorded(
        airflow_home, stack, registry_dir, database, engine, connect_service, request) -> None:
    customer_id = f"dag-sus-{request.node.callspec.id}"
    _setup(stack, registry_dir, database, connect_service, customer_id, {b"a.txt": b"a"}, status="suspended")

    run = _dag(f"backup_{customer_id.replace('-', '_')}").test(logical_date=datetime(2026, 11, 3, tzinfo=UTC))

    assert _states(run)["collect"] == "skipped" and run.state == "success"
    (row,) = _runs(engine, customer_id)
    assert (row.status, row.skip_reason) == ("skipped", "suspended") and "art. 14" in row.detail


def test_the_restore_dag_restores_and_verifies(
        airflow_home, stack, registry_dir, database, engine, connect_service, request, tmp_path, monkeypatch) -> None:
    """Art. 18(1): restore on the operator's instruction, from the trigger form's parameters."""
    customer_id = f"dag-rst-{request.node.callspec.id}"
    _setup(stack, registry_dir, database, connect_service, customer_id,
           {"報告書 最終版.txt".encode(): "内容".encode() * 10, b"other.txt": b"other"})
    _dag(f"backup_{customer_id.replace('-', '_')}").test(logical_date=datetime(2026, 11, 3, tzinfo=UTC))

    monkeypatch.setenv("CLOUDBACKUP_RESTORE_DIR", str(tmp_path / "restores"))

    run = _dag("restore").test(run_conf={"customer": customer_id, "snapshot": "latest",
                                         "path": f"/srv/{customer_id}/報告書 最終版.txt",
                                         "target": f"local:{tmp_path / 'restores' / 'out'}"})

    assert run.state == "success"
    restored = tmp_path / "restores" / "out" / "srv" / customer_id
    assert {p.name: p.read_bytes() for p in restored.iterdir()} == {"報告書 最終版.txt": "内容".encode() * 10}


@pytest.mark.parametrize("target", ["local:/etc/cron.d", "sftp:sftp_someone_else:/srv/restore"])
def test_the_restore_dag_writes_only_under_the_restore_folder_or_to_the_customers_own_server(
        airflow_home, stack, registry_dir, database, engine, connect_service, request, tmp_path, monkeypatch,
        target: str) -> None:
    """Art. 33: a restore triggered from the UI never lands on another customer's server or over the worker."""
    customer_id = f"dag-rsx-{database['conn_type']}-{'local' if target.startswith('local') else 'sftp'}"
    _setup(stack, registry_dir, database, connect_service, customer_id, {b"a.txt": b"secret of this customer"})
    _dag(f"backup_{customer_id.replace('-', '_')}").test(logical_date=datetime(2026, 11, 3, tzinfo=UTC))
    monkeypatch.setenv("CLOUDBACKUP_RESTORE_DIR", str(tmp_path / "restores"))

    run = _dag("restore").test(run_conf={"customer": customer_id, "snapshot": "latest", "path": "/",
                                         "target": target})

    assert run.state == "failed"
    assert not (Path("/etc/cron.d") / "srv").exists()
