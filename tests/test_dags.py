"""The DAG files as Airflow parses them: one backup DAG per customer file over shard files, the billing DAG, and a
broken customer file that drops only its own DAG, its error shown as the import error of a file without DAGs."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from cloudbackup import cli, fleetdags
from cloudbackup.registry import customers as customers_module
from conftest import ROOT, customer_yaml


def _dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_every_dag_imports_and_has_owner_tags_retries_timeouts_and_docs() -> None:
    bag = _dagbag()
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {"backup_demo_tanaka", "backup_demo_globex", "billing_monthly", "deliver_notices",
                                "restore"}
    for dag in bag.dags.values():
        assert dag.tags, dag.dag_id
        assert dag.doc_md and len(dag.doc_md) > 100, dag.dag_id
        assert dag.catchup is False, dag.dag_id
        for t in dag.tasks:
            assert t.owner not in (None, "", "airflow"), (dag.dag_id, t.task_id)
            assert t.retries >= 1, (dag.dag_id, t.task_id)
            if dag.dag_id.startswith("backup_"):
                assert t.execution_timeout is not None, (dag.dag_id, t.task_id)


def test_there_is_a_shard_file_and_a_check_file_per_shard_and_the_shard_of_an_id_never_changes() -> None:
    """Moving a customer to another file would only be churn: crc32 of the id, never Python's salted hash()."""
    names = {p.name for p in (ROOT / "dags").glob("*.py")}
    for shard in range(fleetdags.SHARDS):
        assert f"backup_shard_{shard:02d}.py" in names and f"registry_check_{shard:02d}.py" in names
    assert len([n for n in names if n.startswith(("backup_shard_", "registry_check_"))]) == 2 * fleetdags.SHARDS
    assert fleetdags.shard_of("demo-tanaka") == 53 and fleetdags.shard_of("demo-globex") == 3
    assert fleetdags.customer_id_of("backup_demo_tanaka") == "demo-tanaka"
    assert fleetdags.customer_id_of("billing_monthly") is None


def test_backup_dags_run_on_the_customer_schedule_in_tokyo_time() -> None:
    dag = _dagbag().dags["backup_demo_globex"]
    assert dag.timetable.summary == "30 3 * * 1-5"
    assert str(dag.timetable._timezone) in ("Asia/Tokyo", "Timezone('Asia/Tokyo')")


# One customer, each field broken in turn: (what to replace, by what, the field the error names).
BREAKAGES = [
    ('schedule: "0 2 * * *"', 'schedule: "0 25 * * *"', "schedule"),          # the case: hour 25
    ('schedule: "0 2 * * *"', 'schedule: "0 2 30 2 *"', "schedule"),          # never fires
    ('schedule: "0 2 * * *"', 'schedule: "daily"', "schedule"),
    ("notice_email: bad-co@customer.example.jp", "notice_email: nobody", "notice_email"),
    ("language: ja", "language: fr", "language"),
    ("status: active", "status: paused", "status"),
    ("sales_agent: kanto-it-sales", "sales_agent: nobody-sales", "sales_agent"),   # art. 23: not in operator.yaml
    ("  - plan: standard-100", "  - plan: platinum-9000", "plans.0.plan"),        # art. 9, 20: not in the catalog
    ("connection_id: sftp_bad_co", "connection_id: sftp bad/co", "sftp.connection_id"),
    ("paths: [/srv/a]", "paths: [srv/a]", "sftp.paths"),
    ("paths: [/srv/a]", "paths: [/srv/a, /srv/a/b]", "sftp.paths"),             # collected twice
    ("  excludes:", "  server: Not A Host!\n  excludes:", "sftp.server"),
    ("status: active", "status: active\nwindow_hours: 0", "window_hours"),
    ("id: bad-co", "id: other-co", "id"),                                       # the file name is the id
    ("contract_date: 2026-08-20", "contract_date: 20 August", "contract_date"),
    ("status: active", "status: active\ncancellation: {notice_date: 2026-08-01, requested_end: 2026-12-31}",
     "cancellation.notice_date"),                                               # timeline: notice before contract
    ("name: テスト顧客 bad-co", "name: [unclosed", "cannot read YAML"),
]


def _fleet(registry_dir: Path) -> list[str]:
    """Good customers over several shards; good-8 shares the shard of bad-co (5)."""
    ids = ["good-co", "good-two", "good-three", "good-four", "good-8"]
    assert fleetdags.shard_of("good-8") == fleetdags.shard_of("bad-co")
    for cid in ids:
        (registry_dir / "customers" / f"{cid}.yaml").write_text(customer_yaml(cid, paths=["/srv/a"]),
                                                                 encoding="utf-8")
    return ids


@pytest.mark.parametrize(("old", "new", "field"), BREAKAGES, ids=[f"{b[2]}:{b[1][:20]}" for b in BREAKAGES])
def test_a_broken_field_drops_only_that_customer_and_registry_check_names_file_and_field(
        registry_dir: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, field: str) -> None:
    good = _fleet(registry_dir)
    text = customer_yaml("bad-co", paths=["/srv/a"])
    assert old in text
    (registry_dir / "customers" / "bad-co.yaml").write_text(text.replace(old, new), encoding="utf-8")

    bag = _dagbag()
    assert {f"backup_{g.replace('-', '_')}" for g in good} | {"billing_monthly", "deliver_notices", "restore"} \
        <= set(bag.dag_ids)
    assert "backup_bad_co" not in bag.dag_ids and "backup_other_co" not in bag.dag_ids
    ((path, message),) = bag.import_errors.items()
    assert path.endswith(f"registry_check_{fleetdags.shard_of('bad-co'):02d}.py")
    assert "bad-co.yaml" in message and (field in message if " " in field else f"field '{field}'" in message)
    assert "good-" not in message
    # The dag-processor marks every DAG of a file with an import error stale: the error's file holds none.
    assert not [d for d in bag.dags.values() if d.fileloc.endswith(Path(path).name)]

    capsys.readouterr()
    assert cli.main(["registry", "check"]) == 1
    out = capsys.readouterr()
    assert "5 customer file(s) valid, 1 with errors" in out.out
    (line,) = [ln for ln in out.err.splitlines() if ln.startswith("ERROR")]
    assert line.startswith("ERROR customers/bad-co.yaml: ")
    assert field in line if " " in field else f"field '{field}'" in line


def test_two_files_of_one_customer_load_one_dag_and_name_the_other(registry_dir: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _fleet(registry_dir)
    (registry_dir / "customers" / "good-co.yml").write_text(customer_yaml("good-co", paths=["/srv/b"]),
                                                            encoding="utf-8")
    bag = _dagbag()
    assert "backup_good_co" in bag.dag_ids and bag.dags["backup_good_co"].doc_md.count("`/srv/a`") == 1
    ((path, message),) = bag.import_errors.items()
    assert "good-co.yml" in message and "already defined by good-co.yaml" in message
    assert cli.main(["registry", "check"]) == 1
    assert "ERROR customers/good-co.yml: field 'id'" in capsys.readouterr().err


def test_an_unreadable_catalog_is_shown_but_hides_no_customer(registry_dir: Path) -> None:
    """One broken shared file must not hide the fleet: the DAGs load, the error shows on registry_check_00.py."""
    _fleet(registry_dir)
    (registry_dir / "catalog.yaml").write_text("plans: [unclosed", encoding="utf-8")
    bag = _dagbag()
    assert "backup_good_co" in bag.dag_ids
    ((path, message),) = bag.import_errors.items()
    assert path.endswith("registry_check_00.py") and "catalog.yaml: cannot read YAML" in message
    assert cli.main(["registry", "check"]) == 1


@pytest.mark.parametrize("wanted", ["backup_demo_tanaka", "billing_monthly"])
def test_parsing_for_one_dag_builds_only_that_customer(wanted: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow's task runner parses a file for one dag_id; the other customers are not built then."""
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", wanted)
    bag = _dagbag()
    backups = {d for d in bag.dag_ids if d.startswith("backup_")}
    assert backups == ({wanted} if wanted.startswith("backup_") else set())


def test_a_task_parse_reads_only_its_own_customer_file(registry_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task parses its DAG's file (its shard) with the parsing context naming its DAG: one customer file read."""
    from airflow.dag_processing.dagbag import DagBag

    good = _fleet(registry_dir)
    (registry_dir / "customers" / "good-31.yaml").write_text(customer_yaml("good-31", paths=["/srv/a"]),
                                                             encoding="utf-8")
    assert fleetdags.shard_of("good-31") == fleetdags.shard_of("good-three"), "a neighbour in the same shard file"
    shard_file = ROOT / "dags" / f"backup_shard_{fleetdags.shard_of('good-three'):02d}.py"
    read: list[str] = []
    real = customers_module.read_yaml
    monkeypatch.setattr(customers_module, "read_yaml",
                        lambda path: (path.parent.name == "customers" and read.append(path.name)) or real(path))
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "backup_good_three")
    assert set(DagBag(dag_folder=str(shard_file)).dag_ids) == {"backup_good_three"}
    assert read == ["good-three.yaml"], f"read {read} of {good}"
    read.clear()
    other_shard = ROOT / "dags" / f"backup_shard_{(fleetdags.shard_of('good-three') + 1) % fleetdags.SHARDS:02d}.py"
    assert DagBag(dag_folder=str(other_shard)).dag_ids == [] and read == []


def test_backups_of_a_shared_server_share_its_pool_and_a_run_has_a_deadline(
        registry_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Protect the customers' servers: customers naming one `sftp.server` share the pool `sftp_server_<server>`;
    a backup not finished `window_hours` after its scheduled start fires the deadline alert `backup_window`
    (with CLOUDBACKUP_DEADLINE_ALERTS=1: dag.test() of Airflow 3.3.2 fails on a DAG with a deadline alert)."""
    monkeypatch.setenv("CLOUDBACKUP_DEADLINE_ALERTS", "1")
    for cid in ("nas-a", "nas-b"):
        (registry_dir / "customers" / f"{cid}.yaml").write_text(customer_yaml(
            cid, paths=["/srv/a"]).replace("  excludes:", "  server: nas1.example.jp\n  excludes:")
            + "window_hours: 3\n", encoding="utf-8")
    (registry_dir / "customers" / "own.yaml").write_text(customer_yaml("own", paths=["/srv/a"]), encoding="utf-8")
    bag = _dagbag()
    assert bag.import_errors == {}
    for cid in ("nas_a", "nas_b"):
        assert bag.dags[f"backup_{cid}"].get_task("collect").pool == "sftp_server_nas1.example.jp"
    assert bag.dags["backup_own"].get_task("collect").pool == "default_pool"
    (alert,) = bag.dags["backup_nas_a"].deadline
    assert alert.interval == timedelta(hours=3) and alert.name == "backup_window"
    assert alert.callback.path == "cloudbackup.deadlines.backup_window_missed"
    assert alert.callback.kwargs == {"customer_id": "nas-a", "window_hours": 3}
    (default,) = bag.dags["backup_own"].deadline
    assert default.interval == timedelta(hours=6)
    monkeypatch.delenv("CLOUDBACKUP_DEADLINE_ALERTS")
    assert not _dagbag().dags["backup_own"].deadline, "off by default"


def test_the_backup_dags_serialize_as_the_dag_processor_stores_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """A DAG that fails serialization is an import error of its file: deadline, pool and timetable must serialize."""
    from airflow.serialization.serialized_objects import DagSerialization

    monkeypatch.setenv("CLOUDBACKUP_DEADLINE_ALERTS", "1")
    data = DagSerialization.to_dict(_dagbag().dags["backup_demo_tanaka"])
    assert data["dag"]["dag_id"] == "backup_demo_tanaka"
    assert "backup_window_missed" in str(data["dag"].get("deadline"))


def test_the_deadline_callback_names_the_customer_and_its_window(caplog: pytest.LogCaptureFixture) -> None:
    from cloudbackup import deadlines

    with caplog.at_level(logging.WARNING, logger="cloudbackup.deadlines"):
        asyncio.run(deadlines.backup_window_missed("demo-tanaka", 6, context={"dag_run": {"run_id": "scheduled__x"}}))
    assert "backup of demo-tanaka (run scheduled__x) has not finished 6 h after its scheduled start" in caplog.text


def test_sync_pools_creates_the_shared_servers_pools_once(registry_dir: Path, airflow_home: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from airflow.models.pool import Pool

    (registry_dir / "customers" / "nas-a.yaml").write_text(customer_yaml("nas-a", paths=["/srv/a"]).replace(
        "  excludes:", "  server: nas9\n  excludes:"), encoding="utf-8")
    existing = Pool.get_pool("sftp_server_nas9")
    if existing is not None:
        Pool.delete_pool("sftp_server_nas9")
    assert cli.main(["registry", "sync-pools", "--slots", "2"]) == 0
    assert "created pool sftp_server_nas9 (2 slot(s))" in capsys.readouterr().out
    Pool.create_or_update_pool("sftp_server_nas9", slots=3, description="an operator's choice",
                               include_deferred=False)
    assert cli.main(["registry", "sync-pools"]) == 0
    assert "0 pool(s) created, 1 already there" in capsys.readouterr().out
    pool = Pool.get_pool("sftp_server_nas9")
    assert pool is not None and pool.slots == 3, "an existing pool's slots are the operator's"


def test_the_deadline_alert_is_stored_as_the_dag_processor_writes_it_and_found_by_the_scheduler(
        airflow_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The path the scheduler takes (unlike dag.test()): the DAG written to Airflow's DB holds the alert's id, and
    the alert read back by that id is `backup_window`, window_hours after the run's logical date."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.deadline_alert import DeadlineAlert as DeadlineAlertModel
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session

    monkeypatch.setenv("CLOUDBACKUP_DEADLINE_ALERTS", "1")
    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    bundle = next(b for b in manager.get_all_dag_bundles() if Path(b.path) == ROOT / "dags")
    bundle.initialize()
    shard_file = ROOT / "dags" / f"backup_shard_{fleetdags.shard_of('demo-tanaka'):02d}.py"
    bag = BundleDagBag(dag_folder=str(shard_file), bundle_path=bundle.path, bundle_name=bundle.name)
    assert "backup_demo_tanaka" in bag.dag_ids and bag.import_errors == {}
    sync_bag_to_db(bag, bundle.name, bundle.version)
    with create_session() as session:
        stored = SerializedDagModel.get("backup_demo_tanaka", session=session)
        assert stored is not None
        (alert_id,) = stored.dag.deadline
        alert = DeadlineAlertModel.get_by_id(alert_id, session=session)
        assert alert.name == "backup_window"
        assert "DagRunLogicalDateDeadline" in str(alert.reference_class)
