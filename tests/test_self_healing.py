"""Self-healing (issue 11) against the real sshd, SeaweedFS and both databases: a damaged or missing stored
object, found by `verify` or by a run's rolling sample, is recorded, never reused, and its files are read
again and stored afresh; the latest snapshot then verifies.

Terms: art. 17(1) (the data is stored on the operator's backup devices: stored bytes that rot must be
replaced while the customer's server still has them), 18(1) (restores must be possible).
"""

from __future__ import annotations

import dataclasses
import io
import os

import pytest
import sqlalchemy as sa
from backup_support import SMALL_OPTIONS, MiB, connector, fresh_store, tree, write_tree

from cloudbackup import cli
from cloudbackup.backup import health
from cloudbackup.backup.archiver import run_backup
from cloudbackup.backup.checker import HASH_MISMATCH, MISSING, sample_keys, verify
from cloudbackup.backup.format import object_key
from cloudbackup.backup.repository import load_manifest
from cloudbackup.backup.restorer import LocalTarget, restore
from conftest import customer_yaml

pytestmark = pytest.mark.servers

NO_SAMPLE = dataclasses.replace(SMALL_OPTIONS, verify_sample_fraction=0)
FULL_SAMPLE = dataclasses.replace(SMALL_OPTIONS, verify_sample_fraction=1)
FILES = {"docs/見積書.txt": "見積".encode() * 3000, "docs/memo.txt": b"memo" * 500,
         "big/archive.bin": os.urandom(3 * MiB + 17)}


def _flip(store, customer_id: str, relative: str, at: int = 10) -> None:
    """One byte of a stored object flipped in place (its recorded sha256 metadata kept): silent bit rot."""
    key = object_key(customer_id, relative)
    body = bytearray(store.get_bytes(key))
    body[at] ^= 0x01
    meta = store.metadata(key)
    store.client.put_object(store.bucket, key, io.BytesIO(bytes(body)), len(body),
                            metadata={"x-amz-meta-sha256": meta["sha256"]} if "sha256" in meta else None)


def _backed_up(stack, name: str):
    local = stack.sshd.root / "srv" / name
    write_tree(local, FILES)
    store = fresh_store(stack)
    run_backup(connector(stack.sshd), store, name, "r1", [f"/srv/{name}"], [], options=NO_SAMPLE)
    entries = load_manifest(store, name).by_path()
    pack = entries[f"/srv/{name}/docs/memo.txt"].chunks[0][0]
    chunk = entries[f"/srv/{name}/big/archive.bin"].chunks[1][0]
    return store, pack, chunk


def test_damage_found_by_verify_is_recorded_and_healed_by_the_next_run(stack, engine, tmp_path, request) -> None:
    """A flipped byte in a pack and in a chunk: verify names both, they are recorded, the next run reads their
    files again and stores them afresh, the latest snapshot verifies and restores byte for byte."""
    name = f"heal-v-{request.node.callspec.id}"
    store, pack, chunk = _backed_up(stack, name)
    _flip(store, name, pack)
    _flip(store, name, chunk)

    found = verify(store, name)
    assert not found.ok
    assert {(d.key, d.reason) for d in found.damaged} == {(pack, HASH_MISMATCH), (chunk, HASH_MISMATCH)}
    assert health.record_damage(engine, name, found.damaged, health.VERIFY) == 2
    assert health.record_damage(engine, name, found.damaged, health.VERIFY) == 0     # open once, not twice
    assert health.open_damage(engine, name) == {pack, chunk}

    healing = run_backup(connector(stack.sshd), store, name, "r2", [f"/srv/{name}"], [], options=NO_SAMPLE,
                         damaged=health.open_damage(engine, name))
    # Every file stored in the damaged pack, and the file holding the damaged chunk, read again.
    assert sorted(healing.read_paths) == sorted(f"/srv/{name}/{rel}" for rel in FILES)
    assert healing.healed == sorted([pack, chunk]) and healing.unhealed == []
    health.settle_run(engine, name, None, healing)
    assert health.open_damage(engine, name) == set()

    assert verify(store, name).ok
    restore(store, name, LocalTarget(tmp_path / "out"))
    assert tree(tmp_path / "out" / "srv" / name) == FILES
    latest = load_manifest(store, name).by_path()
    assert pack not in {c[0] for e in latest.values() for c in e.chunks}      # the rotten pack is not used
    # A third run has nothing left to heal and reads nothing.
    calm = run_backup(connector(stack.sshd), store, name, "r3", [f"/srv/{name}"], [], options=NO_SAMPLE,
                      damaged=health.open_damage(engine, name))
    assert calm.read_paths == [] and calm.healed == []


def test_a_runs_sample_finds_a_flipped_byte_and_a_missing_chunk_and_the_run_heals_them(stack, tmp_path) -> None:
    """The run's own sample re-reads stored objects: what it finds damaged is not reused by that run, whose
    snapshot then verifies (found by the sample at the start of the run, healed by the same run)."""
    store, pack, chunk = _backed_up(stack, "heal-sample")
    _flip(store, "heal-sample", pack)
    other_chunk = load_manifest(store, "heal-sample").by_path()["/srv/heal-sample/big/archive.bin"].chunks[2][0]
    store.remove(object_key("heal-sample", other_chunk))

    run = run_backup(connector(stack.sshd), store, "heal-sample", "r2", ["/srv/heal-sample"], [],
                     options=FULL_SAMPLE)

    assert {(d.key, d.reason) for d in run.damage_found} == {(pack, HASH_MISMATCH), (other_chunk, MISSING)}
    assert run.healed == sorted([pack, other_chunk]) and run.unhealed == []
    assert verify(store, "heal-sample").ok
    restore(store, "heal-sample", LocalTarget(tmp_path / "out"))
    assert tree(tmp_path / "out" / "srv" / "heal-sample") == FILES


def test_the_sample_covers_every_object_once_per_cycle() -> None:
    """verify_sample_fraction 1/30: each run re-reads about a thirtieth; 30 consecutive runs re-read all."""
    keys = [f"data/{i:02x}/{i:064x}" for i in range(3000)] + [f"packs/{i:02x}/{i:032x}" for i in range(300)]
    turns = [set(sample_keys(keys, 1 / 30, turn)) for turn in range(30)]
    assert set().union(*turns) == set(keys)
    assert sum(len(t) for t in turns) == len(keys)                  # each once per cycle
    assert all(len(t) < len(keys) / 30 * 1.5 for t in turns)
    assert sample_keys(keys, 0, 5) == [] and len(sample_keys(keys, 1, 5)) == len(keys)


def test_the_command_line_verify_records_damage_and_the_next_run_heals_it(stack, registry_dir, database,
                                                                          connect_service, engine, tmp_path,
                                                                          capsys, request) -> None:
    """Through the shell: `backup verify` records the damaged objects in the project's DB; the next
    `backup run` heals them and says so in the run's record (ops); verify then passes."""
    customer_id = f"heal-cli-{request.node.callspec.id}"
    write_tree(stack.sshd.root / "srv" / customer_id, FILES)
    (registry_dir / "customers" / f"{customer_id}.yaml").write_text(
        customer_yaml(customer_id, paths=[f"/srv/{customer_id}"]), encoding="utf-8")
    (registry_dir / "backup.yaml").write_text("engine:\n  verify_sample_fraction: 0\n", encoding="utf-8")
    store = fresh_store(stack)
    connect_service(database, [f"sftp_{customer_id.replace('-', '_')}"], bucket=store.bucket)
    assert cli.main(["backup", "run", "--customer", customer_id]) == 0
    entries = load_manifest(store, customer_id).by_path()
    chunk = entries[f"/srv/{customer_id}/big/archive.bin"].chunks[0][0]
    _flip(store, customer_id, chunk)

    assert cli.main(["backup", "verify", "--customer", customer_id]) == 1
    assert chunk in capsys.readouterr().err
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT object_key, reason, found_by, healed_at FROM damaged_objects "
                                    "WHERE customer_id = :c"), {"c": customer_id}).all()
    assert [tuple(r) for r in rows] == [(chunk, HASH_MISMATCH, "verify", None)]

    assert cli.main(["backup", "run", "--customer", customer_id, "--run-key", "heal-run"]) == 0
    with engine.connect() as conn:
        healed_by = conn.execute(sa.text("SELECT healed_by_run_id FROM damaged_objects WHERE customer_id = :c"),
                                 {"c": customer_id}).scalar()
        run = conn.execute(sa.text("SELECT id, detail FROM backup_runs WHERE customer_id = :c AND run_key = :k"),
                           {"c": customer_id, "k": "heal-run"}).one()
    assert healed_by == run.id and "1 damaged object(s) healed" in run.detail
    capsys.readouterr()
    assert cli.main(["backup", "verify", "--customer", customer_id]) == 0


def test_the_sample_fraction_is_an_operator_setting(tmp_path) -> None:
    from cloudbackup.registry.backup_settings import load_backup_settings

    (tmp_path / "backup.yaml").write_text("engine:\n  verify_sample_fraction: 1/30\n", encoding="utf-8")
    assert load_backup_settings(tmp_path / "backup.yaml").engine.verify_sample_fraction == pytest.approx(1 / 30)
    (tmp_path / "backup.yaml").write_text("engine:\n  verify_sample_fraction: 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="verify_sample_fraction"):
        load_backup_settings(tmp_path / "backup.yaml")
