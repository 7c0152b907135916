"""`cloudbackup backup prune` (issue 12, deliverable 2): the operator's command, against the real sshd, SeaweedFS
and both databases. A dry run prints what would go and changes no object; the real run prints the same and does
it; a prune waits for, then refuses, a customer whose backup holds the run lease.

Terms: art. 17(1) (backups kept per the plan's retention), 18(1) (kept snapshots stay restorable).
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
import sqlalchemy as sa
from backup_support import MiB, fresh_store, write_tree

from cloudbackup import cli
from cloudbackup.backup import records
from cloudbackup.backup.checker import verify
from cloudbackup.backup.format import customer_prefix
from cloudbackup.backup.repository import list_snapshots
from conftest import customer_yaml

pytestmark = pytest.mark.servers


def test_prune_dry_run_then_real_run_from_the_command_line(stack, registry_dir, database, engine, connect_service,
                                                           capsys, monkeypatch, request) -> None:
    customer_id = f"cli-prune-{request.node.callspec.id}"
    local = stack.sshd.root / "srv" / customer_id
    write_tree(local, {"big.bin": os.urandom(9 * MiB), "a.txt": b"a" * 1000})
    (registry_dir / "customers" / f"{customer_id}.yaml").write_text(
        customer_yaml(customer_id, paths=[f"/srv/{customer_id}"], extra="retention: {keep_last: 1}\n"),
        encoding="utf-8")
    store = fresh_store(stack)
    connect_service(database, [f"sftp_{customer_id.replace('-', '_')}"], bucket=store.bucket)
    monkeypatch.setenv("CLOUDBACKUP_PRUNE_GRACE_HOURS", "0")     # everything just written may go
    assert cli.main(["backup", "run", "--customer", customer_id]) == 0
    (local / "big.bin").write_bytes(os.urandom(9 * MiB))           # its old chunks become garbage
    assert cli.main(["backup", "run", "--customer", customer_id]) == 0
    first, second = list_snapshots(store, customer_id)
    before = sorted(store.list_detailed(customer_prefix(customer_id)))
    capsys.readouterr()

    assert cli.main(["backup", "prune", "--customer", customer_id, "--dry-run"]) == 0
    dry = capsys.readouterr().out.splitlines()
    assert sorted(store.list_detailed(customer_prefix(customer_id))) == before      # nothing changed
    assert f"forget  {first}" in dry and any(line.startswith(f"keep    {second}") for line in dry)
    doomed = [line.removeprefix("delete  ") for line in dry if line.startswith("delete  ")]
    assert doomed and all(key.startswith("data/") for key in doomed)
    assert dry[-1].startswith("Would forget 1 snapshot(s), would delete ")

    assert cli.main(["backup", "prune", "--customer", customer_id]) == 0
    real = capsys.readouterr().out.splitlines()
    assert real[1:-1] == dry[1:-1]                                  # the same decisions, line for line
    assert real[-1].startswith("Forgot 1 snapshot(s), deleted ")
    assert list_snapshots(store, customer_id) == [second]
    left = {k.removeprefix(customer_prefix(customer_id)) for k, _ in store.list_keys(customer_prefix(customer_id))}
    assert not left & set(doomed)
    assert verify(store, customer_id, second).ok
    # Recorded (migration 0012): the prune's counts, and the forgotten snapshot marked; dry runs leave no row.
    with engine.connect() as conn:
        (row,) = conn.execute(sa.text("SELECT status, snapshots_before, snapshots_forgotten, objects_deleted, "
                                      "bytes_freed FROM prune_runs WHERE customer_id = :c"), {"c": customer_id}).all()
        marks = dict(conn.execute(sa.text("SELECT snapshot_id, forgotten_at FROM snapshots WHERE customer_id = :c"),
                                  {"c": customer_id}).all())
    assert (row.status, row.snapshots_before, row.snapshots_forgotten, row.objects_deleted) == (
        "succeeded", 2, 1, len(doomed))
    assert row.bytes_freed > 0 and f"; {row.bytes_freed} bytes freed;" in real[-1]
    assert marks[first] is not None and marks[second] is None

    # A running backup holds the customer's lease: the prune waits, then refuses and deletes nothing.
    monkeypatch.setenv("CLOUDBACKUP_RUN_WAIT_SECONDS", "0")
    assert records.acquire_lease(engine, customer_id, "backup-in-progress", "test", timedelta(minutes=5)) is None
    assert cli.main(["backup", "prune", "--customer", customer_id]) == 3
    assert "another backup run is in progress" in capsys.readouterr().err
    # A dry run takes no lease: it reads while the backup runs; --all goes through every customer in the registry.
    assert cli.main(["backup", "prune", "--all", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{customer_id}: keep 1 last; 1 snapshot(s)") and out[-1].startswith("Would forget 0")

    # A prune killed after forgetting a snapshot never recorded it: the next prune marks every recorded snapshot
    # whose manifest is gone (here removed by hand, as the killed prune would have).
    records.release_lease(engine, customer_id, "backup-in-progress")
    assert cli.main(["backup", "run", "--customer", customer_id]) == 0
    third = list_snapshots(store, customer_id)[-1]
    store.remove(f"{customer_prefix(customer_id)}snapshots/{third}.json.gz")
    assert cli.main(["backup", "prune", "--customer", customer_id]) == 0
    with engine.connect() as conn:
        marks = dict(conn.execute(sa.text("SELECT snapshot_id, forgotten_at FROM snapshots WHERE customer_id = :c"),
                                  {"c": customer_id}).all())
    assert marks[third] is not None and marks[second] is None
