"""Restore (art. 18(1)) and verify against the real sshd and S3: sub-paths, SFTP targets, corruption caught."""

from __future__ import annotations

import io
import os

import pytest
from backup_support import SMALL_OPTIONS, MiB, connector, fresh_store, tree, write_tree

from cloudbackup.backup.archiver import run_backup
from cloudbackup.backup.checker import verify
from cloudbackup.backup.format import object_key
from cloudbackup.backup.repository import load_manifest
from cloudbackup.backup.restorer import LocalTarget, RestoreError, relative_target, restore, restore_to_sftp

pytestmark = pytest.mark.servers

FILES = {
    "docs/契約書.pdf": os.urandom(200_000),
    "docs/memo 1.txt": "メモ".encode() * 100,
    "docs/sub/deep.bin": os.urandom(2 * MiB + 5),
    "photos/a.jpg": os.urandom(30_000),
}


def _backed_up(stack, name: str):
    local = stack.sshd.root / "srv" / name
    write_tree(local, FILES)
    store = fresh_store(stack)
    result = run_backup(connector(stack.sshd), store, name, "run-1", [f"/srv/{name}"], [], options=SMALL_OPTIONS)
    return store, result


def test_a_sub_path_restores_only_that_folder(stack, tmp_path) -> None:
    store, _ = _backed_up(stack, "rs-sub")
    result = restore(store, "rs-sub", LocalTarget(tmp_path / "out"), sub_path="/srv/rs-sub/docs")
    assert result.files == 3 and result.mismatches == []
    assert tree(tmp_path / "out" / "srv" / "rs-sub") == {k: v for k, v in FILES.items() if k.startswith("docs/")}


def test_a_single_packed_file_restores_by_ranged_read(stack, tmp_path) -> None:
    store, _ = _backed_up(stack, "rs-one")
    result = restore(store, "rs-one", LocalTarget(tmp_path / "out"), sub_path="/srv/rs-one/photos/a.jpg")
    assert result.files == 1
    assert (tmp_path / "out" / "srv" / "rs-one" / "photos" / "a.jpg").read_bytes() == FILES["photos/a.jpg"]


def test_restore_back_onto_an_sftp_server(stack) -> None:
    store, _ = _backed_up(stack, "rs-sftp")
    result = restore_to_sftp(store, "rs-sftp", connector(stack.sshd)(), "/restores/r1")
    assert result.files == len(FILES)
    assert tree(stack.sshd.root / "restores" / "r1" / "srv" / "rs-sftp") == FILES


def test_an_unknown_path_or_snapshot_is_a_clear_error(stack, tmp_path) -> None:
    store, _ = _backed_up(stack, "rs-err")
    with pytest.raises(RestoreError, match="no file at or below"):
        restore(store, "rs-err", LocalTarget(tmp_path), sub_path="/srv/rs-err/nothing-here")
    with pytest.raises(RestoreError, match="has no snapshot"):
        restore(store, "someone-else", LocalTarget(tmp_path))


def test_corrupted_stored_bytes_are_caught_by_verify_and_never_restored_in_place(stack, tmp_path) -> None:
    """Restored bytes are verified against the manifest; a damaged pack is reported, not silently restored."""
    store, result = _backed_up(stack, "rs-bad")
    entry = load_manifest(store, "rs-bad").by_path()["/srv/rs-bad/photos/a.jpg"]
    (pack, offset, length), = entry.chunks
    key = object_key("rs-bad", pack)
    body = bytearray(store.get_bytes(key))
    body[offset] ^= 0xFF
    meta = store.metadata(key)
    store.client.put_object(store.bucket, key, io.BytesIO(bytes(body)), len(body),
                            metadata={"x-amz-meta-sha256": meta["sha256"]})

    check = verify(store, "rs-bad")
    assert not check.ok
    assert any("photos/a.jpg" in p for p in check.problems)
    assert any(pack in p for p in check.problems)

    out = restore(store, "rs-bad", LocalTarget(tmp_path / "out"), sub_path="/srv/rs-bad/photos")
    assert out.mismatches == ["/srv/rs-bad/photos/a.jpg"]
    assert not (tmp_path / "out" / "srv" / "rs-bad" / "photos" / "a.jpg").exists()


@pytest.mark.parametrize("path", ["/../etc/passwd", "/a/../../b", "/"])
def test_restore_never_writes_outside_its_target(path: str) -> None:
    with pytest.raises(RestoreError):
        relative_target(path)


def test_a_packs_files_are_fetched_in_runs_cut_at_the_span_limit_and_at_gaps() -> None:
    """Small files of one pack come back by ranged GETs: in offset order, a run cut before it would span more than
    SPAN_MAX bytes or skip more than SPAN_GAP (the end kept as the run grows: a pack holds thousands of files)."""
    from cloudbackup.backup import format as snap
    from cloudbackup.backup.restorer import SPAN_GAP, SPAN_MAX, _spans

    def entry(offset: int, length: int) -> snap.FileEntry:
        return snap.FileEntry(f"/f{offset}", length, 0, 0o644, "0" * 64, (("packs/aa/p", offset, length),))

    dense = [entry(i * 8192, 8192) for i in range(5000)]                  # 40 MiB of neighbours, shuffled
    runs = list(_spans(dense[::-1]))
    assert [len(r) for r in runs] == [SPAN_MAX // 8192, 5000 - SPAN_MAX // 8192]
    assert [e.chunks[0][1] for r in runs for e in r] == [i * 8192 for i in range(5000)]
    # The gap counts from the furthest end so far (a big file's), not from the last file's: a small file shared
    # inside the big one's range does not cut the run; a file past the allowed gap does.
    big, inside = entry(0, 3 * MiB), entry(1 * MiB, 10)
    near, far = entry(3 * MiB + SPAN_GAP, 10), entry(3 * MiB + 2 * SPAN_GAP + 11, 10)
    assert [[e.path for e in r] for r in _spans([far, near, inside, big])] == [
        [big.path, inside.path, near.path], [far.path]]
