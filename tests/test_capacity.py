"""Capacity (art. 6, 17(3), 18(5)): the contract figure against the contract capacity; each crossing recorded once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from cloudbackup.backup import records
from cloudbackup.backup.capacity import CapacityBasis, crossings
from cloudbackup.backup.outcomes import RunStatus
from cloudbackup.backup.records import record_crossings

CAP = 1_000_000
STORED = CapacityBasis.STORED_BYTES


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
                       status=RunStatus.FAILED if failed else None, counted_bytes=stored,
                       capacity_basis=None if stored is None else STORED)
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
        record_crossings(engine, "cap-cust", run_id, stored, CAP, basis=STORED, stored_bytes=stored)
    assert _events(engine) == [("r2", 80), ("r4", 90), ("r6", 80), ("r6", 90), ("r6", 100)]


def test_a_failed_run_does_not_count_and_a_retry_does_not_duplicate(engine: sa.Engine) -> None:
    """An interrupted run measures nothing; a retried run (same run key) replaces its own events."""
    first = _run(engine, "r1", 700_000)
    record_crossings(engine, "cap-cust", first, 700_000, CAP, basis=STORED, stored_bytes=700_000)
    _run(engine, "r2", None, failed=True)
    for _attempt in range(2):
        retry = _run(engine, "r3", 850_000)
        record_crossings(engine, "cap-cust", retry, 850_000, CAP, basis=STORED, stored_bytes=850_000)
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
    """Art. 6, 17(3): after each run, the customer's data as of the snapshot vs the plan's capacity (the default
    basis); the crossing is recorded once, with the operator's stored bytes beside it."""
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
    assert first["capacity_basis"] == second["capacity_basis"] == "source_bytes"
    assert first["counted_bytes"] == second["counted_bytes"] == 12_000_000
    assert first["capacity_thresholds_crossed"] == [1] and second["capacity_thresholds_crossed"] == []
    assert second["stored_bytes"] > first["stored_bytes"] > 12_000_000
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT customer_id, threshold_percent, counted_bytes, capacity_basis, "
                                    "stored_bytes, contract_capacity_bytes FROM capacity_events")).all()
        runs = conn.execute(sa.text("SELECT counted_bytes, capacity_basis, stored_bytes FROM backup_runs "
                                    "ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [(customer_id, 1, 12_000_000, "source_bytes", first["stored_bytes"],
                                         1_000_000_000)]
    assert [tuple(r) for r in runs] == [(12_000_000, "source_bytes", first["stored_bytes"]),
                                        (12_000_000, "source_bytes", second["stored_bytes"])]


MB_PLAN = """plans:
  - code: mb-1
    name_ja: テスト 1MB
    name_en: Test 1 MB
    contract_capacity_gb: 0.001
    prices:
      - effective_from: 2023-02-01
        monthly_fee: 1000
        initial_fee: 0
"""


@pytest.mark.servers
@pytest.mark.parametrize("basis", ["default", "stored_bytes"])
def test_stored_bytes_growing_under_unchanged_data_notify_only_when_the_operator_counts_stored_bytes(
        stack, registry_dir, database, engine, connect_service, request, basis) -> None:
    """Art. 6, 17(3), 18(5) speak of the customer's data collected for backup: a customer whose data never changes
    (700,000 bytes on a 1 MB plan, 70 %) while its stored bytes grow past 80 % (history and garbage in S3 are the
    operator's) is not told it nears its capacity, unless the operator's backup.yaml says `capacity_basis:
    stored_bytes`. The notice then names the figure it counts, in the customer's language, through real SMTP."""
    import os

    from backup_support import fresh_store, write_tree
    from notices_support import text_of

    from cloudbackup import tasks
    from conftest import customer_yaml

    customer_id = f"flat-{basis.replace('_', '-')}-{request.node.callspec.id.split('-')[0]}"
    catalog = registry_dir / "catalog.yaml"
    catalog.write_text(catalog.read_text(encoding="utf-8").replace("plans:\n", MB_PLAN, 1), encoding="utf-8")
    settings_yaml = "capacity_thresholds_percent: [80]\n"
    if basis != "default":
        settings_yaml += f"capacity_basis: {basis}\n"
    (registry_dir / "backup.yaml").write_text(settings_yaml, encoding="utf-8")
    (registry_dir / "customers" / f"{customer_id}.yaml").write_text(
        customer_yaml(customer_id, paths=[f"/srv/{customer_id}"]).replace("standard-100", "mb-1"), encoding="utf-8")
    write_tree(stack.sshd.root / "srv" / customer_id, {"ledger.bin": os.urandom(700_000)})
    store = fresh_store(stack)
    connect_service(database, [f"sftp_{customer_id.replace('-', '_')}"], bucket=store.bucket)
    before = {p.name for p in stack.smtp.maildir.glob("*.eml")}

    runs = [tasks.collect(customer_id, "run-1")]
    # Garbage the operator's store holds for this customer (a torn upload, an orphan pack): 25 % of the plan.
    store.put_bytes(f"customers/{customer_id}/garbage/orphan-pack", os.urandom(250_000))
    runs += [tasks.collect(customer_id, f"run-{n}") for n in (2, 3)]
    tasks.deliver_notices()

    # The operator's figure grows past 80 % of the plan while the customer's data stays at 70 %.
    assert runs[-1]["stored_bytes"] > 950_000 > 800_000 > runs[0]["stored_bytes"] > 700_000
    with engine.connect() as conn:
        events = conn.execute(sa.text("SELECT threshold_percent, counted_bytes, capacity_basis FROM capacity_events "
                                      "WHERE customer_id = :c"), {"c": customer_id}).all()
        notices = conn.execute(sa.text("SELECT kind FROM notices WHERE customer_id = :c"), {"c": customer_id}).all()
    mails = [m for m in (parse_eml(p) for p in sorted(stack.smtp.maildir.glob("*.eml")) if p.name not in before)
             if m["To"] == f"{customer_id}@customer.example.jp"]
    if basis == "default":
        assert [(r["capacity_basis"], r["counted_bytes"]) for r in runs] == [("source_bytes", 700_000)] * 3
        assert events == [] and notices == [] and mails == []
    else:
        assert [r["counted_bytes"] for r in runs] == [r["stored_bytes"] for r in runs]
        assert [tuple(e) for e in events] == [(80, runs[1]["stored_bytes"], "stored_bytes")]
        assert [n.kind for n in notices] == ["capacity"] and len(mails) == 1
        body = text_of(mails[0])
        assert "保存容量" in body and "過去の世代を含みます" in body and "バックアップ対象データ量" not in body


def parse_eml(path):  # noqa: ANN001, ANN201 - a captured .eml file, parsed as a mail client would
    from notices_support import parse

    return parse(path)


def test_the_capacity_basis_is_the_customers_data_unless_backup_yaml_says_stored_bytes(tmp_path) -> None:
    """Art. 6, 17(3), 18(5): by default the contract figure is the data as of the latest snapshot; an operator who
    reads the terms otherwise writes `capacity_basis: stored_bytes`; anything else is refused, naming the choices."""
    from cloudbackup.registry.backup_settings import load_backup_settings

    path = tmp_path / "backup.yaml"
    path.write_text("capacity_thresholds_percent: [80]\n", encoding="utf-8")
    assert load_backup_settings(path).capacity_basis is CapacityBasis.SOURCE_BYTES
    assert load_backup_settings(tmp_path / "absent.yaml").capacity_basis is CapacityBasis.SOURCE_BYTES
    path.write_text("capacity_basis: stored_bytes\n", encoding="utf-8")
    assert load_backup_settings(path).capacity_basis is CapacityBasis.STORED_BYTES
    assert CapacityBasis.STORED_BYTES.counted_bytes(source_bytes=7, stored_bytes=9) == 9
    assert CapacityBasis.SOURCE_BYTES.counted_bytes(source_bytes=7, stored_bytes=9) == 7
    path.write_text("capacity_basis: s3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"capacity_basis 's3' is not one of \['source_bytes', 'stored_bytes'\]"):
        load_backup_settings(path)


def test_runs_and_events_recorded_before_0011_keep_the_stored_bytes_they_were_compared_by(
        bare_engine: sa.Engine) -> None:
    """Rows older than the contract figure were measured by stored bytes: 0011 records them as such (and the next
    run compares with that figure), runs that measured nothing stay without one."""
    from cloudbackup.edges import db

    db.migrate(bare_engine, target="0010")
    t = db.to_db_time(datetime(2026, 11, 1, tzinfo=UTC))
    with bare_engine.begin() as conn:
        measured = db.insert_returning_id(conn, (
            "INSERT INTO backup_runs (customer_id, run_key, status, started_at, stored_bytes) "
            "VALUES ('old', 'r1', 'succeeded', :t, 850000)"), {"t": t})
        conn.execute(sa.text("INSERT INTO backup_runs (customer_id, run_key, status, started_at) "
                             "VALUES ('old', 'r2', 'skipped', :t)"), {"t": t})
        conn.execute(sa.text("INSERT INTO capacity_events (customer_id, backup_run_id, threshold_percent, "
                             "stored_bytes, contract_capacity_bytes, recorded_at) "
                             "VALUES ('old', :r, 80, 850000, 1000000, :t)"),
                     {"r": measured, "t": t})
    db.migrate(bare_engine)
    with bare_engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT run_key, counted_bytes, capacity_basis FROM backup_runs ORDER BY id")).all()
        events = conn.execute(sa.text("SELECT counted_bytes, capacity_basis FROM capacity_events")).all()
    assert [tuple(r) for r in runs] == [("r1", 850_000, "stored_bytes"), ("r2", None, None)]
    assert [tuple(e) for e in events] == [(850_000, "stored_bytes")]
    assert records.previous_counted_bytes(bare_engine, "old", -1) == 850_000
