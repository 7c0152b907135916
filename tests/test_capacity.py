"""Capacity (art. 6, 17(3)): stored bytes against the contract capacity; each threshold crossing recorded once."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cloudbackup.backup import records
from cloudbackup.backup.capacity import crossings
from cloudbackup.backup.outcomes import RunStatus
from cloudbackup.backup.records import record_crossings

CAP = 1_000_000


def test_the_first_measurement_records_every_threshold_already_reached() -> None:
    assert crossings(None, 850_000, CAP) == [80]
    assert crossings(None, 1_000_000, CAP) == [80, 90, 100]
    assert crossings(None, 10, CAP) == []


def test_a_threshold_is_reached_exactly_at_its_percentage() -> None:
    assert crossings(799_999, 800_000, CAP) == [80]
    assert crossings(800_000, 800_001, CAP) == []


def test_staying_above_a_threshold_records_nothing_more() -> None:
    assert crossings(810_000, 850_000, CAP) == []
    assert crossings(950_000, 990_000, CAP) == []


def test_falling_below_and_rising_again_is_a_new_crossing() -> None:
    assert crossings(950_000, 700_000, CAP) == []
    assert crossings(700_000, 820_000, CAP) == [80]


def test_jumping_past_several_thresholds_records_each() -> None:
    assert crossings(100_000, 1_200_000, CAP) == [80, 90, 100]
    assert crossings(100_000, 949_999, CAP, thresholds=(50, 75, 95)) == [50, 75]


def _run(engine: sa.Engine, key: str, stored: int | None, failed: bool = False) -> int:
    run_id = records.start_run(engine, "cap-cust", key)
    records.finish_run(engine, run_id, "cap-cust", files=1, bytes_=1, errors=[], stored_bytes=stored,
                       status=RunStatus.FAILED if failed else None)
    return run_id


def _events(engine: sa.Engine) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        return [(r.run_key, r.threshold_percent) for r in conn.execute(sa.text(
            "SELECT r.run_key, e.threshold_percent FROM capacity_events e JOIN backup_runs r ON r.id = e.backup_run_id "
            "ORDER BY e.id"))]


def test_capacity_events_are_recorded_once_per_crossing_across_runs(engine: sa.Engine) -> None:
    """Art. 17(3): the notice is due when the volume reaches the capacity, not on every run above it."""
    for key, stored in [("r1", 500_000), ("r2", 810_000), ("r3", 820_000), ("r4", 910_000), ("r5", 600_000),
                        ("r6", 1_000_000)]:
        run_id = _run(engine, key, stored)
        record_crossings(engine, "cap-cust", run_id, stored, CAP)
    assert _events(engine) == [("r2", 80), ("r4", 90), ("r6", 80), ("r6", 90), ("r6", 100)]


def test_a_failed_run_does_not_count_and_a_retry_does_not_duplicate(engine: sa.Engine) -> None:
    """An interrupted run measures nothing; a retried run (same run key) replaces its own events."""
    first = _run(engine, "r1", 700_000)
    record_crossings(engine, "cap-cust", first, 700_000, CAP)
    _run(engine, "r2", None, failed=True)
    for _attempt in range(2):
        retry = _run(engine, "r3", 850_000)
        record_crossings(engine, "cap-cust", retry, 850_000, CAP)
    assert _events(engine) == [("r3", 80)]


TINY_PLAN = """plans:
  - code: tiny-1
    name_ja: テスト 1GB
    name_en: Test 1 GB
    contract_capacity_gb: 1
    prices:
      - effective_from: 2023-02-01
        monthly_fee: 1000
        initial_fee: 0
"""


@pytest.mark.servers
def test_a_backup_run_records_a_crossing_once_against_the_contract_capacity(
        stack, registry_dir, database, engine, connect_service, request) -> None:
    """Art. 6, 17(3): after each run, stored bytes vs the plan's capacity; the crossing is recorded once."""
    import os

    from backup_support import fresh_store, write_tree

    from cloudbackup import tasks
    from conftest import customer_yaml

    customer_id = f"cap-{request.node.callspec.id}"
    catalog = registry_dir / "catalog.yaml"
    catalog.write_text(catalog.read_text(encoding="utf-8").replace("plans:\n", TINY_PLAN, 1), encoding="utf-8")
    (registry_dir / "backup.yaml").write_text("capacity_thresholds_percent: [1, 2]\n", encoding="utf-8")
    (registry_dir / "customers" / f"{customer_id}.yaml").write_text(
        customer_yaml(customer_id, paths=[f"/srv/{customer_id}"]).replace("standard-100", "tiny-1"), encoding="utf-8")
    write_tree(stack.sshd.root / "srv" / customer_id, {"big.bin": os.urandom(12_000_000)})   # 1.2 % of 1 GB
    connect_service(database, [f"sftp_{customer_id.replace('-', '_')}"], bucket=fresh_store(stack).bucket)

    first = tasks.collect(customer_id, "run-1")
    second = tasks.collect(customer_id, "run-2")       # nothing new; a second manifest adds a few bytes

    assert first["contract_capacity_bytes"] == 1_000_000_000
    assert first["capacity_thresholds_crossed"] == [1] and second["capacity_thresholds_crossed"] == []
    assert second["stored_bytes"] > first["stored_bytes"] > 12_000_000
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT customer_id, threshold_percent, stored_bytes, contract_capacity_bytes "
                                    "FROM capacity_events")).all()
    assert [tuple(r) for r in rows] == [(customer_id, 1, first["stored_bytes"], 1_000_000_000)]
