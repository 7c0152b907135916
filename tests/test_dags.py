"""The DAG files as Airflow parses them: one backup DAG per customer file, the billing DAG, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT, customer_yaml


def _dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_every_dag_imports_and_has_owner_tags_retries_and_docs() -> None:
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


def test_backup_dags_run_on_the_customer_schedule_in_tokyo_time() -> None:
    dag = _dagbag().dags["backup_demo_globex"]
    assert dag.timetable.summary == "30 3 * * 1-5"
    assert str(dag.timetable._timezone) in ("Asia/Tokyo", "Timezone('Asia/Tokyo')")


def test_a_broken_customer_file_is_an_import_error_for_that_customer_only(registry_dir: Path) -> None:
    (registry_dir / "customers" / "good-co.yaml").write_text(customer_yaml("good-co", paths=["/srv/a"]),
                                                             encoding="utf-8")
    (registry_dir / "customers" / "bad-co.yaml").write_text(
        customer_yaml("bad-co", paths=["/srv/a"]).replace("notice_email: bad-co@customer.example.jp",
                                                          "notice_email: nobody"), encoding="utf-8")
    bag = _dagbag()
    assert "backup_good_co" in bag.dag_ids and "billing_monthly" in bag.dag_ids
    assert "backup_bad_co" not in bag.dag_ids
    ((path, message),) = bag.import_errors.items()
    assert path.endswith("registry_check.py")
    assert "bad-co.yaml" in message and "field 'notice_email'" in message
    assert "good-co" not in message


@pytest.mark.parametrize("wanted", ["backup_demo_tanaka", "billing_monthly"])
def test_parsing_for_one_dag_builds_only_that_customer(wanted: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow's task runner parses a file for one dag_id; the other customers are not built then."""
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", wanted)
    bag = _dagbag()
    backups = {d for d in bag.dag_ids if d.startswith("backup_")}
    assert backups == ({wanted} if wanted.startswith("backup_") else set())
