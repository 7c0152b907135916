"""Repository format 2 against the real sshd and SeaweedFS: encryption at rest, compression, keys, format 1 still read.

Issue 12, items 4-6: no stored object holds a customer's bytes (or file names) in the clear, compressible files
store smaller, format-1 repositories stay restorable after format-2 runs, a lost master key is a clear error that
writes nothing, and a key rotation re-wraps data keys without touching a data object.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import secrets
from dataclasses import replace
from pathlib import Path

import pytest
from backup_support import SMALL_OPTIONS, MiB, connector, fresh_store, tree, write_tree

from cloudbackup.backup import blob, keys
from cloudbackup.backup import format as snap
from cloudbackup.backup.archiver import run_backup
from cloudbackup.backup.checker import HASH_MISMATCH, verify
from cloudbackup.backup.repository import list_snapshots, load_manifest
from cloudbackup.backup.restorer import LocalTarget, restore
from cloudbackup.edges.connections import MasterKeyMissing

pytestmark = pytest.mark.servers

MARKER = b"CLOUDBACKUP-SECRET-MARKER-7f3a"


def _area(stack, name: str) -> tuple[Path, str]:
    local = stack.sshd.root / "srv" / name
    local.mkdir(parents=True, exist_ok=True)
    return local, f"/srv/{name}"


def _objects(store, customer_id: str) -> dict[str, str]:
    """Every object under the customer's prefix → its ETag (changes whenever the object is rewritten)."""
    return {o.object_name: o.etag for o in store.client.list_objects(store.bucket, prefix=f"customers/{customer_id}/",
                                                                      recursive=True)}


def _use_master(monkeypatch: pytest.MonkeyPatch, key_id: str, key: bytes,
                previous: list[tuple[str, bytes]] | None = None) -> None:
    monkeypatch.setenv("CLOUDBACKUP_MASTER_KEY", base64.b64encode(key).decode())
    monkeypatch.setenv("CLOUDBACKUP_MASTER_KEY_ID", key_id)
    monkeypatch.setenv("CLOUDBACKUP_MASTER_KEY_PREVIOUS",
                       ",".join(f"{i}:{base64.b64encode(k).decode()}" for i, k in previous or []))
    keys.forget()      # the per-process cache of unwrapped data keys


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    keys.forget()
    yield
    keys.forget()


def test_no_stored_object_holds_a_file_or_its_name_in_the_clear(stack, tmp_path) -> None:
    """A small and a multi-chunk file carrying a marker (and a marker in a file name): every object's bytes are
    scanned, in full; chunk names are not the sha256 of anything stored."""
    local, remote = _area(stack, "enc-clear")
    files = {"notes.txt": MARKER * 40,
             f"{MARKER.decode()}-名前.txt": b"name only",
             "big.bin": (os.urandom(700_000) + MARKER) * 4,                 # > 2 chunks of SMALL_OPTIONS
             "text.log": b"\n".join(MARKER + str(i).encode() for i in range(60_000))}
    write_tree(local, files)
    store = fresh_store(stack)
    run_backup(connector(stack.sshd), store, "enc-clear", "r1", [remote], [], options=SMALL_OPTIONS)

    objects = _objects(store, "enc-clear")
    assert any("/packs/" in k for k in objects) and any("/data/" in k for k in objects)
    for key in objects:
        body = store.get_bytes(key)
        assert MARKER not in body, f"{key} holds the marker in the clear"
        assert MARKER not in gzip.decompress(body) if body[:2] == b"\x1f\x8b" else True
        if "/data/" in key:
            assert key.rsplit("/", 1)[1] != hashlib.sha256(body).hexdigest()
    key_files = [k for k in objects if "/keys/" in k]
    assert key_files == ["customers/enc-clear/keys/test-master-1.json"]
    # The key file holds the data key only wrapped: its unwrapped bytes are nowhere in it.
    secret = keys.data_key(store, "enc-clear")
    assert secret is not None
    assert secret.secret not in store.get_bytes(key_files[0])
    assert base64.b64encode(secret.secret) not in store.get_bytes(key_files[0])

    restore(store, "enc-clear", LocalTarget(tmp_path / "out"))
    assert tree(tmp_path / "out" / "srv" / "enc-clear") == files
    assert verify(store, "enc-clear").ok


def test_a_compressible_file_stores_smaller_than_its_size_and_random_bytes_not_larger(stack, tmp_path) -> None:
    local, remote = _area(stack, "enc-zstd")
    text = b"".join(f"{i:08} 請求書 invoice line, amount {i * 37 % 10_000} yen\n".encode() for i in range(60_000))
    noise = os.urandom(2 * MiB)
    write_tree(local, {"ledger.csv": text, "photo.jpg": noise, "small.txt": text[:40_000]})
    store = fresh_store(stack)
    run_backup(connector(stack.sshd), store, "enc-zstd", "r1", [remote], [], options=SMALL_OPTIONS)

    m = load_manifest(store, "enc-zstd")
    assert m.header.format == snap.FORMAT and all(e.sealed for e in m.files)
    by_path = m.by_path()
    stored = {rel: sum(n for _, _, n in by_path[f"{remote}/{rel}"].chunks) for rel in ("ledger.csv", "photo.jpg",
                                                                                       "small.txt")}
    assert stored["ledger.csv"] < len(text) * 0.4
    assert stored["small.txt"] < 40_000 * 0.5
    # Incompressible bytes are kept raw: only each chunk's blob overhead is added.
    assert stored["photo.jpg"] == len(noise) + len(by_path[f"{remote}/photo.jpg"].chunks) * blob.OVERHEAD
    restore(store, "enc-zstd", LocalTarget(tmp_path / "out"))
    assert tree(tmp_path / "out" / "srv" / "enc-zstd") == {"ledger.csv": text, "photo.jpg": noise,
                                                           "small.txt": text[:40_000]}


def _write_format_1(store, customer_id: str, local: Path, remote: str, files: dict[str, bytes]) -> str:
    """A repository exactly as the code before format 2 wrote it: plaintext pack and chunks (a chunk named by its
    sha256), a gzip'd `cloudbackup-snapshot/2` manifest, no key file."""
    pack_id = secrets.token_hex(16)
    pack = bytearray()
    entries = []
    for rel, data in sorted(files.items()):
        st = (local / rel).stat()
        sha = hashlib.sha256(data).hexdigest()
        if len(data) <= 64 * 1024:
            ref = (snap.pack_key(pack_id), len(pack), len(data))
            pack += data
            chunks: tuple[tuple[str, int, int], ...] = (ref,)
        else:
            refs = []
            for off in range(0, len(data), MiB):
                piece = data[off:off + MiB]
                digest = hashlib.sha256(piece).hexdigest()
                store.put_bytes(snap.object_key(customer_id, snap.data_key(digest)), piece,
                                metadata={snap.SHA256_META: digest})
                refs.append((snap.data_key(digest), 0, len(piece)))
            chunks = tuple(refs)
        entries.append(snap.FileEntry(f"{remote}/{rel}", len(data), int(st.st_mtime), 0o644, sha, chunks))
    store.put_bytes(snap.object_key(customer_id, snap.pack_key(pack_id)), bytes(pack),
                    metadata={snap.SHA256_META: hashlib.sha256(pack).hexdigest()})
    snapshot_id = "20261101T000000.000000Z-0000abcd"
    header = snap.SnapshotHeader(snapshot_id, customer_id, "v1", "2026-11-01T00:00:00+00:00",
                                 "2026-11-01T00:00:01+00:00", (remote,), len(entries),
                                 sum(e.size for e in entries), 0, None, "cloudbackup-snapshot/2")
    store.put_bytes(snap.object_key(customer_id, snap.snapshot_key(snapshot_id)),
                    snap.encode_manifest(snap.Manifest(header, entries)))
    return snapshot_id


def test_a_format_1_repository_still_restores_and_verifies_after_format_2_runs(stack, tmp_path, monkeypatch) -> None:
    local, remote = _area(stack, "enc-v1")
    files = {"a.txt": b"alpha" * 100, "b.txt": b"beta" * 50, "big.bin": os.urandom(2 * MiB + 5)}
    write_tree(local, files)
    for rel in files:
        os.utime(local / rel, (1_764_000_000, 1_764_000_000))
    store = fresh_store(stack)
    v1 = _write_format_1(store, "enc-v1", local, remote, files)

    # Read without any master key: a format-1 repository needs none.
    monkeypatch.delenv("CLOUDBACKUP_MASTER_KEY")
    keys.forget()
    assert verify(store, "enc-v1").ok
    restore(store, "enc-v1", LocalTarget(tmp_path / "v1-only"))
    assert tree(tmp_path / "v1-only" / "srv" / "enc-v1") == files
    monkeypatch.undo()
    keys.forget()

    (local / "b.txt").write_bytes(b"beta, changed")
    os.utime(local / "b.txt", (1_764_000_100, 1_764_000_100))
    (local / "c.txt").write_bytes(b"new file")
    r2 = run_backup(connector(stack.sshd), store, "enc-v1", "r2", [remote], [], options=SMALL_OPTIONS)
    assert sorted(r2.read_paths) == [f"{remote}/b.txt", f"{remote}/c.txt"]
    m2 = load_manifest(store, "enc-v1")
    assert m2.header.format == snap.FORMAT
    # Unchanged files keep their plaintext format-1 ranges (nothing re-uploaded); new and changed ones are sealed.
    assert {e.path.rsplit("/", 1)[1]: e.sealed for e in m2.files} == {"a.txt": False, "big.bin": False,
                                                                       "b.txt": True, "c.txt": True}
    r3 = run_backup(connector(stack.sshd), store, "enc-v1", "r3", [remote], [], options=SMALL_OPTIONS)
    assert r3.files_read == 0 and r3.bytes_uploaded == 0

    assert list_snapshots(store, "enc-v1")[0] == v1
    for snapshot_id in list_snapshots(store, "enc-v1"):
        assert verify(store, "enc-v1", snapshot_id).ok, snapshot_id
    restore(store, "enc-v1", LocalTarget(tmp_path / "old"), snapshot_id=v1)
    assert tree(tmp_path / "old" / "srv" / "enc-v1") == files
    restore(store, "enc-v1", LocalTarget(tmp_path / "new"))
    assert tree(tmp_path / "new" / "srv" / "enc-v1") == {**files, "b.txt": b"beta, changed", "c.txt": b"new file"}


def test_a_lost_master_key_is_a_clear_error_and_nothing_is_written(stack, tmp_path, monkeypatch) -> None:
    """Another master key configured: run, restore and verify name the customer and the master key id needed; no
    object is created, replaced or removed. No master key at all: a clear refusal, nothing written."""
    local, remote = _area(stack, "enc-lost")
    write_tree(local, {"a.txt": b"a" * 1000, "big.bin": os.urandom(MiB + 3)})
    store = fresh_store(stack)
    run_backup(connector(stack.sshd), store, "enc-lost", "r1", [remote], [], options=SMALL_OPTIONS)
    (local / "new.txt").write_bytes(b"would be stored")
    before = _objects(store, "enc-lost")

    _use_master(monkeypatch, "another-key", secrets.token_bytes(32))
    needs = r"customer 'enc-lost'.*master key 'test-master-1'.*not configured"
    with pytest.raises(keys.KeyUnavailable, match=needs):
        run_backup(connector(stack.sshd), store, "enc-lost", "r2", [remote], [], options=SMALL_OPTIONS)
    with pytest.raises(keys.KeyUnavailable, match=needs):
        restore(store, "enc-lost", LocalTarget(tmp_path / "out"))
    with pytest.raises(keys.KeyUnavailable, match=needs):
        verify(store, "enc-lost")
    assert _objects(store, "enc-lost") == before

    # The same key id with other bytes (a wrongly restored secret) is refused too, naming the id.
    _use_master(monkeypatch, "test-master-1", secrets.token_bytes(32))
    with pytest.raises(keys.KeyUnavailable, match="enc-lost"):
        run_backup(connector(stack.sshd), store, "enc-lost", "r3", [remote], [], options=SMALL_OPTIONS)
    assert _objects(store, "enc-lost") == before

    monkeypatch.delenv("CLOUDBACKUP_MASTER_KEY")
    keys.forget()
    with pytest.raises((MasterKeyMissing, keys.KeyUnavailable)):
        run_backup(connector(stack.sshd), store, "enc-lost", "r4", [remote], [], options=SMALL_OPTIONS)
    with pytest.raises(MasterKeyMissing, match="never stored unencrypted"):
        run_backup(connector(stack.sshd), store, "enc-nokey", "r1", [remote], [], options=SMALL_OPTIONS)
    assert _objects(store, "enc-lost") == before and _objects(store, "enc-nokey") == {}


def test_rotation_rewraps_data_keys_and_the_old_master_key_is_no_longer_needed(stack, tmp_path, monkeypatch) -> None:
    old_key, new_key = secrets.token_bytes(32), secrets.token_bytes(32)
    _use_master(monkeypatch, "mk-2026-01", old_key)
    local, remote = _area(stack, "enc-rot")
    files = {"a.txt": b"rotate me" * 300, "big.bin": os.urandom(MiB + 9)}
    write_tree(local, files)
    store = fresh_store(stack)
    for customer in ("enc-rot", "enc-rot-2"):
        run_backup(connector(stack.sshd), store, customer, "r1", [remote], [], options=SMALL_OPTIONS)
    data_before = {k: v for c in ("enc-rot", "enc-rot-2") for k, v in _objects(store, c).items() if "/keys/" not in k}

    _use_master(monkeypatch, "mk-2026-07", new_key, previous=[("mk-2026-01", old_key)])
    result = keys.rotate(store)
    assert result.rewrapped == ["enc-rot", "enc-rot-2"] and result.failed == {}
    assert keys.rotate(store).current == ["enc-rot", "enc-rot-2"]      # again: nothing left to do
    after = {k: v for c in ("enc-rot", "enc-rot-2") for k, v in _objects(store, c).items()}
    assert sorted(k for k in after if "/keys/" in k) == ["customers/enc-rot-2/keys/mk-2026-07.json",
                                                        "customers/enc-rot/keys/mk-2026-07.json"]
    assert {k: v for k, v in after.items() if "/keys/" not in k} == data_before, "a data object was rewritten"

    _use_master(monkeypatch, "mk-2026-07", new_key)          # the old master key is gone
    restore(store, "enc-rot", LocalTarget(tmp_path / "out"))
    assert tree(tmp_path / "out" / "srv" / "enc-rot") == files
    assert verify(store, "enc-rot-2").ok
    (local / "c.txt").write_bytes(b"after rotation")
    again = run_backup(connector(stack.sshd), store, "enc-rot", "r2", [remote], [], options=SMALL_OPTIONS)
    assert again.read_paths == [f"{remote}/c.txt"]


def _rewrite(store, key: str, body: bytes) -> None:
    """The object replaced by `body`, with the sha256 metadata of the new body: only the GCM tag can tell."""
    store.client.put_object(store.bucket, key, io.BytesIO(body), len(body),
                            metadata={"x-amz-meta-sha256": hashlib.sha256(body).hexdigest()})


def test_a_forged_blob_with_a_matching_stored_hash_is_caught_by_its_tag_and_healed(stack, tmp_path) -> None:
    """A byte flipped inside the ciphertext of a chunk and of a pack's blob, the recorded sha256 updated to match:
    verify finds both by their GCM tags, the restore refuses the files, and the next run stores them afresh."""
    local, remote = _area(stack, "enc-tag")
    files = {"memo.txt": b"memo " * 900, "big.bin": os.urandom(2 * MiB + 1)}
    write_tree(local, files)
    store = fresh_store(stack)
    run_backup(connector(stack.sshd), store, "enc-tag", "r1", [remote], [], options=SMALL_OPTIONS)
    entries = load_manifest(store, "enc-tag").by_path()
    pack, offset, _ = entries[f"{remote}/memo.txt"].chunks[0]
    chunk = entries[f"{remote}/big.bin"].chunks[1][0]
    for relative, at in ((pack, offset + blob.HEADER_SIZE + 3), (chunk, blob.HEADER_SIZE + 100)):
        key = snap.object_key("enc-tag", relative)
        body = bytearray(store.get_bytes(key))
        body[at] ^= 0x01
        _rewrite(store, key, bytes(body))

    found = verify(store, "enc-tag")
    assert {(d.key, d.reason) for d in found.damaged} == {(pack, HASH_MISMATCH), (chunk, HASH_MISMATCH)}
    assert any("authentication tag" in p for p in found.problems)
    out = restore(store, "enc-tag", LocalTarget(tmp_path / "bad"))
    assert sorted(out.mismatches) == [f"{remote}/big.bin", f"{remote}/memo.txt"]

    healing = run_backup(connector(stack.sshd), store, "enc-tag", "r2", [remote], [], options=SMALL_OPTIONS,
                         damaged={d.key for d in found.damaged})
    assert healing.healed == sorted([pack, chunk])
    assert verify(store, "enc-tag").ok
    restore(store, "enc-tag", LocalTarget(tmp_path / "good"))
    assert tree(tmp_path / "good" / "srv" / "enc-tag") == files


def test_rotation_from_the_command_line_with_the_master_key_in_an_airflow_connection(stack, tmp_path,
                                                                                     monkeypatch, capsys) -> None:
    """`cloudbackup backup keys rotate`, the master keys read from the connection cloudbackup_master_key (the
    new one as password + key_id, the old one in extra `previous`); the environment variables unset."""
    import json

    from cloudbackup import cli

    old_key, new_key = secrets.token_bytes(32), secrets.token_bytes(32)

    def connection(key_id: str, key: bytes, previous: list[dict] | None = None) -> None:
        monkeypatch.delenv("CLOUDBACKUP_MASTER_KEY", raising=False)
        monkeypatch.setenv("AIRFLOW_CONN_CLOUDBACKUP_MASTER_KEY", json.dumps(
            {"conn_type": "generic", "password": base64.b64encode(key).decode(),
             "extra": {"key_id": key_id, "previous": previous or []}}))
        keys.forget()

    connection("conn-old", old_key)
    local, remote = _area(stack, "enc-cli")
    write_tree(local, {"a.txt": b"via the connection" * 50})
    store = fresh_store(stack)
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDBACKUP_S3", json.dumps(stack.s3.connection(bucket=store.bucket)))
    run_backup(connector(stack.sshd), store, "enc-cli", "r1", [remote], [], options=SMALL_OPTIONS)
    assert [k for k in _objects(store, "enc-cli") if "/keys/" in k] == ["customers/enc-cli/keys/conn-old.json"]
    data = {k: v for k, v in _objects(store, "enc-cli").items() if "/keys/" not in k}

    connection("conn-new", new_key, [{"key_id": "conn-old", "key": base64.b64encode(old_key).decode()}])
    assert cli.main(["backup", "keys", "rotate"]) == 0
    out = capsys.readouterr().out
    assert "enc-cli: data key re-wrapped under master key conn-new" in out
    assert base64.b64encode(new_key).decode() not in out and base64.b64encode(old_key).decode() not in out
    assert [k for k in _objects(store, "enc-cli") if "/keys/" in k] == ["customers/enc-cli/keys/conn-new.json"]
    assert {k: v for k, v in _objects(store, "enc-cli").items() if "/keys/" not in k} == data

    connection("conn-new", new_key)
    restore(store, "enc-cli", LocalTarget(tmp_path / "out"))
    assert tree(tmp_path / "out" / "srv" / "enc-cli") == {"a.txt": b"via the connection" * 50}
    monkeypatch.delenv("AIRFLOW_CONN_CLOUDBACKUP_MASTER_KEY")
    keys.forget()
    assert cli.main(["backup", "keys", "rotate"]) == 2
    assert "no master key" in capsys.readouterr().err


def test_a_put_with_its_recorded_sha256_is_not_hashed_again_for_the_signature(stack, monkeypatch) -> None:
    """Over plain HTTP minio hashes each body to sign it; the sha256 the caller records in the metadata is
    reused instead (one pass less per chunk); a PUT without one is hashed as before; both arrive intact."""
    from cloudbackup.edges import s3

    hashed: list[int] = []
    original = s3._minio_sha256_hash
    monkeypatch.setattr(s3, "_minio_sha256_hash", lambda data: hashed.append(len(data or b"")) or original(data))
    store = fresh_store(stack)
    body = os.urandom(MiB + 7)
    store.put_bytes("customers/sig/a", body, metadata={snap.SHA256_META: hashlib.sha256(body).hexdigest()})
    assert [n for n in hashed if n == len(body)] == []
    store.put_bytes("customers/sig/b", body)
    assert [n for n in hashed if n == len(body)] == [len(body)]
    assert store.get_bytes("customers/sig/a") == store.get_bytes("customers/sig/b") == body


def test_a_customer_purged_and_backed_up_again_in_one_process_gets_a_new_key_file(stack, tmp_path) -> None:
    """The per-process key cache never outlives the key file: after every object of the customer is gone
    (a purge), the next run in the same process writes a new key file, and another process restores."""
    local, remote = _area(stack, "enc-again")
    write_tree(local, {"a.txt": b"first life" * 100})
    store = fresh_store(stack)
    run_backup(connector(stack.sshd), store, "enc-again", "r1", [remote], [], options=SMALL_OPTIONS)
    for key in _objects(store, "enc-again"):
        store.remove(key)
    assert _objects(store, "enc-again") == {}
    run_backup(connector(stack.sshd), store, "enc-again", "r2", [remote], [], options=SMALL_OPTIONS)
    assert [k for k in _objects(store, "enc-again") if "/keys/" in k] == ["customers/enc-again/keys/test-master-1.json"]
    keys.forget()      # as a fresh process would start
    restore(store, "enc-again", LocalTarget(tmp_path / "out"))
    assert tree(tmp_path / "out" / "srv" / "enc-again") == {"a.txt": b"first life" * 100}


def test_a_sealed_chunk_is_put_unsigned_without_a_body_hash_and_its_tag_is_its_check(stack, tmp_path,
                                                                                      monkeypatch) -> None:
    """A chunk is one sealed blob: its GCM tag authenticates every byte, so no sha256 of its body is computed,
    neither for x-amz-meta-sha256 nor for the request's signature (UNSIGNED-PAYLOAD), and the run's sample and
    verify check the tag instead. Packs and manifests keep their recorded sha256. A byte flipped in a chunk is
    found by the next run's sample, which reads the file again, and the restore is byte-identical."""
    from cloudbackup.edges import s3

    hashed: list[int] = []
    original = s3._minio_sha256_hash
    monkeypatch.setattr(s3, "_minio_sha256_hash", lambda data: hashed.append(len(data or b"")) or original(data))
    local, remote = _area(stack, "enc-unsigned")
    files = {"big.bin": os.urandom(3 * MiB + 5), "memo.txt": b"memo " * 900}
    write_tree(local, files)
    store = fresh_store(stack)
    run_backup(connector(stack.sshd), store, "enc-unsigned", "r1", [remote], [], options=SMALL_OPTIONS)
    entries = load_manifest(store, "enc-unsigned").by_path()
    chunks = [key for key, _, _ in entries[f"{remote}/big.bin"].chunks]
    pack = entries[f"{remote}/memo.txt"].chunks[0][0]
    assert len(chunks) == 4
    stored = {store.client.stat_object(store.bucket, snap.object_key("enc-unsigned", c)).size for c in chunks}
    assert not stored & set(hashed), "a chunk's body was hashed to sign its PUT"
    for chunk in chunks:
        assert "sha256" not in store.metadata(snap.object_key("enc-unsigned", chunk))
    pack_body = store.get_bytes(snap.object_key("enc-unsigned", pack))
    assert store.metadata(snap.object_key("enc-unsigned", pack))["sha256"] == hashlib.sha256(pack_body).hexdigest()

    key = snap.object_key("enc-unsigned", chunks[2])
    body = bytearray(store.get_bytes(key))
    body[blob.HEADER_SIZE + 1000] ^= 0x40
    store.put_bytes(key, bytes(body))                 # bit rot: nothing but the tag can tell
    healing = run_backup(connector(stack.sshd), store, "enc-unsigned", "r2", [remote], [],
                         options=replace(SMALL_OPTIONS, verify_sample_fraction=1.0))
    assert [(d.key, d.reason) for d in healing.damage_found] == [(chunks[2], HASH_MISMATCH)]
    assert "authentication tag" in healing.damage_found[0].detail
    assert healing.healed == [chunks[2]] and f"{remote}/big.bin" in healing.read_paths
    assert verify(store, "enc-unsigned").ok
    restore(store, "enc-unsigned", LocalTarget(tmp_path / "out"))
    assert tree(tmp_path / "out" / "srv" / "enc-unsigned") == files
