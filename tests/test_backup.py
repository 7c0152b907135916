"""Backup engine against the real sshd and S3: snapshots, incremental runs, interruption, hostile input.

Terms: art. 16 (designated areas backed up), 17(1)-(2) (storage, collection errors), 18(2) (file-name policy).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest
from backup_support import SMALL_OPTIONS, MiB, connector, fresh_store, tree, write_tree
from devtools import devstack

from cloudbackup.backup import blob
from cloudbackup.backup.archiver import Observer, run_backup
from cloudbackup.backup.checker import verify
from cloudbackup.backup.names import NamePolicy, printable
from cloudbackup.backup.repository import list_snapshots, load_manifest
from cloudbackup.backup.restorer import LocalTarget, restore
from cloudbackup.backup.walk import RemoteFile
from cloudbackup.edges.sftp import HostKeyMismatch, SftpConnectError, SftpSession

pytestmark = pytest.mark.servers


def _area(stack: devstack.Stack, name: str) -> tuple[Path, str]:
    local = stack.sshd.root / "srv" / name
    local.mkdir(parents=True)
    return local, f"/srv/{name}"


def _source(n_small: int = 40) -> dict[str, bytes]:
    files = {
        "見積書 2026年度.txt": "御見積書\n".encode() * 700,
        "経理/請求 一覧 (最新).csv": "番号,金額\n".encode() * 3000,
        "sub dir/with space.bin": os.urandom(3 * MiB + 123),      # several chunks
        "sub dir/exactly-one-chunk.bin": os.urandom(MiB),
        "empty.txt": b"",
        "dup-a.txt": b"same bytes" * 100,
        "dup-b.txt": b"same bytes" * 100,
    }
    files.update({f"many/{i % 4}/f{i:03}.dat": os.urandom(1000 + i * 37) for i in range(n_small)})
    return files


def test_a_snapshot_restores_byte_identical_including_japanese_and_space_names(stack, tmp_path) -> None:
    """Art. 16, 17(1): every designated file is stored; restore gives back the same bytes, modes and mtimes."""
    local, remote = _area(stack, "roundtrip")
    files = _source()
    write_tree(local, files)
    os.chmod(local / "empty.txt", 0o640)
    store = fresh_store(stack)

    result = run_backup(connector(stack.sshd), store, "cust-rt", "run-1", [remote], [], options=SMALL_OPTIONS)

    assert result.errors == []
    assert result.files == len(files) and result.bytes == sum(map(len, files.values()))
    manifest = load_manifest(store, "cust-rt")
    assert manifest.header.snapshot_id == result.snapshot_id
    assert {f.path for f in manifest.files} == {f"{remote}/{rel}" for rel in files}
    assert all(key.startswith("customers/cust-rt/") for key, _ in store.list_keys(""))

    restore(store, "cust-rt", LocalTarget(tmp_path / "out"))
    assert tree(tmp_path / "out" / "srv" / "roundtrip") == files
    restored = tmp_path / "out" / "srv" / "roundtrip" / "empty.txt"
    assert restored.stat().st_mode & 0o777 == 0o640
    assert int(restored.stat().st_mtime) == int((local / "empty.txt").stat().st_mtime)
    check = verify(store, "cust-rt")
    assert check.ok and check.files == len(files)


def test_a_second_run_reads_only_new_and_changed_files_yet_lists_all(stack) -> None:
    """Art. 17(1): unchanged files (same size and mtime) are neither read nor uploaded, yet in the snapshot."""
    local, remote = _area(stack, "incremental")
    files = _source(20)
    write_tree(local, files)
    store = fresh_store(stack)
    first = run_backup(connector(stack.sshd), store, "cust-inc", "run-1", [remote], [], options=SMALL_OPTIONS)
    assert first.files_read == len(files)

    (local / "dup-a.txt").write_bytes(b"changed content")
    os.utime(local / "dup-a.txt", (1_700_000_000, 1_700_000_000))
    (local / "new folder/新しい.txt").parent.mkdir()
    (local / "new folder/新しい.txt").write_bytes(b"new")
    (local / "many/0/f000.dat").unlink()
    second = run_backup(connector(stack.sshd), store, "cust-inc", "run-2", [remote], [], options=SMALL_OPTIONS)

    assert sorted(second.read_paths) == [f"{remote}/dup-a.txt", f"{remote}/new folder/新しい.txt"]
    # Each file is one sealed blob: its bytes (too short to compress) plus the blob's header and GCM tag.
    assert second.bytes_uploaded == len(b"changed content") + len(b"new") + 2 * blob.OVERHEAD
    latest = load_manifest(store, "cust-inc").by_path()
    assert f"{remote}/many/0/f000.dat" not in latest
    assert len(latest) == len(files)          # one gone, one new
    previous = load_manifest(store, "cust-inc", first.snapshot_id).by_path()
    big = f"{remote}/sub dir/with space.bin"
    assert latest[big].chunks == previous[big].chunks and latest[big].sha256 == previous[big].sha256
    assert list_snapshots(store, "cust-inc") == sorted([first.snapshot_id, second.snapshot_id])
    assert verify(store, "cust-inc").ok


def _kill_sshd(sshd: devstack.Sshd) -> None:
    """Stop our own sshd hard, sessions included (the listener alone would leave sessions running)."""
    sshd.kill()


class _CutAfter(Observer):
    def __init__(self, sshd: devstack.Sshd, files: int) -> None:
        self.sshd, self.limit, self.done, self.cut = sshd, files, [], False

    def file_done(self, f: RemoteFile) -> None:
        self.done.append(f.path)
        if len(self.done) == self.limit and not self.cut:
            self.cut = True
            _kill_sshd(self.sshd)


def test_an_interrupted_run_leaves_no_snapshot_and_the_next_run_does_not_resend(stack, tmp_path) -> None:
    """sshd stopped mid-run: the run fails without a snapshot; the next completes without re-reading."""
    sshd = devstack.start_sshd(tmp_path / "own-sshd")
    try:
        local = sshd.root / "data"
        files = {f"d{i % 5}/file-{i:04}.bin": os.urandom(4000 + i) for i in range(240)}
        write_tree(local, files)
        store = fresh_store(stack)
        cut = _CutAfter(sshd, 80)

        with pytest.raises(SftpConnectError):
            run_backup(connector(sshd), store, "cust-cut", "run-1", ["/data"], [], options=SMALL_OPTIONS,
                       observer=cut)
        assert list_snapshots(store, "cust-cut") == []

        sshd.start()
        second = run_backup(connector(sshd), store, "cust-cut", "run-2", ["/data"], [], options=SMALL_OPTIONS)

        assert second.errors == [] and second.files == len(files)
        assert not set(second.read_paths) & set(cut.done), "files that arrived before the cut were read again"
        stored_file_bytes = sum(size for key, size in store.list_keys("customers/cust-cut/packs/"))
        # Random bytes do not compress: each file is stored once, as its bytes in one sealed blob.
        assert stored_file_bytes == sum(map(len, files.values())) + len(files) * blob.OVERHEAD, "bytes stored twice"
        assert list(store.list_keys("customers/cust-cut/index/")) == []
        restore(store, "cust-cut", LocalTarget(tmp_path / "out"))
        assert tree(tmp_path / "out" / "data") == files
    finally:
        sshd.stop()


def _bytes_name(directory: Path, raw: bytes, data: bytes) -> None:
    fd = os.open(os.fsencode(directory) + b"/" + raw, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, data)
    os.close(fd)


def test_hostile_names_are_reported_and_symlinks_never_followed(stack) -> None:
    """Art. 18(2): names outside the policy are not collected but recorded; nothing leaves the prefix."""
    local, remote = _area(stack, "hostile")
    write_tree(local, {"ok.txt": b"fine", "..dots..txt": b"dots are fine", "back\\slash.txt": b"b",
                       "inside/real.txt": b"real"})
    _bytes_name(local, b"latin1-\xe9t\xe9.txt", b"not utf-8")
    _bytes_name(local, b"bell\x07.txt", b"control")
    _bytes_name(local, b"a" * 60 + b".txt", b"too long for this policy")
    (local / "bad\x1bdir").mkdir()
    (local / "bad\x1bdir" / "hidden.txt").write_bytes(b"below a refused folder")
    os.symlink("/etc", local / "etc-link")
    os.symlink("/etc/passwd", local / "passwd-link")
    os.symlink(local / "inside", local / "loop-link")
    store = fresh_store(stack)
    policy = NamePolicy(max_name_bytes=50)

    result = run_backup(connector(stack.sshd), store, "cust-host", "run-1", [remote], [], policy=policy,
                        options=SMALL_OPTIONS)

    refused = {(e.path, e.reason) for e in result.errors}
    assert refused == {(f"{remote}/latin1-\\xe9t\\xe9.txt", "name_policy"),
                       (f"{remote}/bell\\x07.txt", "name_policy"),
                       (f"{remote}/{'a' * 60}.txt", "name_policy"),
                       (f"{remote}/bad\\x1bdir", "name_policy")}
    manifest = load_manifest(store, "cust-host")
    collected = {f.path for f in manifest.files if not f.is_link}
    assert collected == {f"{remote}/ok.txt", f"{remote}/..dots..txt", f"{remote}/back\\slash.txt",
                         f"{remote}/inside/real.txt"}
    # Symlinks are recorded as links with their targets, never followed (issue 11).
    assert {f.path: f.target for f in manifest.files if f.is_link} == {
        f"{remote}/etc-link": "/etc", f"{remote}/passwd-link": "/etc/passwd",
        f"{remote}/loop-link": str(local / "inside")}
    assert all(f.chunks == () for f in manifest.files if f.is_link)
    keys = [k for k, _ in store.list_keys("")]
    assert keys and all(k.startswith("customers/cust-host/") for k in keys)
    assert not any("passwd" in k or "hidden" in k for k in keys)


class _AppendDuringRead(Observer):
    def __init__(self, local: Path, remote_path: str) -> None:
        self.local, self.remote_path, self.touched = local, remote_path, False

    def chunk_read(self, f: RemoteFile, offset: int, length: int) -> None:
        if f.path == self.remote_path and not self.touched:
            self.touched = True
            with open(self.local, "ab") as out:
                out.write(b"appended while the backup was reading")


def test_a_file_changed_while_read_is_recorded_and_collected_next_run(stack, tmp_path) -> None:
    """Art. 17(2): a torn copy is never stored as the file; the error is recorded, the next run collects it."""
    local, remote = _area(stack, "changing")
    write_tree(local, {"log.bin": os.urandom(3 * MiB), "still.txt": b"still"})
    store = fresh_store(stack)

    first = run_backup(connector(stack.sshd), store, "cust-chg", "run-1", [remote], [], options=SMALL_OPTIONS,
                       observer=_AppendDuringRead(local / "log.bin", f"{remote}/log.bin"))

    assert [(e.path, e.reason) for e in first.errors] == [(f"{remote}/log.bin", "changed_during_read")]
    assert set(load_manifest(store, "cust-chg").by_path()) == {f"{remote}/still.txt"}

    second = run_backup(connector(stack.sshd), store, "cust-chg", "run-2", [remote], [], options=SMALL_OPTIONS)
    assert second.errors == [] and second.read_paths == [f"{remote}/log.bin"]
    restore(store, "cust-chg", LocalTarget(tmp_path / "out"), sub_path=f"{remote}/log.bin")
    assert (tmp_path / "out" / "srv" / "changing" / "log.bin").read_bytes() == (local / "log.bin").read_bytes()


def test_an_unknown_host_key_is_refused_and_nothing_is_written(stack, tmp_path) -> None:
    """SSH host keys are verified, never accepted: a different key fails the run before anything is sent."""
    local, remote = _area(stack, "mitm")
    write_tree(local, {"secret.txt": b"confidential"})
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = " ".join((tmp_path / "other_key.pub").read_text().split()[:2])
    store = fresh_store(stack)

    with pytest.raises(HostKeyMismatch, match="does not match"):
        run_backup(connector(stack.sshd, host_key=wrong), store, "cust-mitm", "run-1", [remote], [])

    assert list(store.list_keys("")) == []


def test_an_unreachable_server_fails_the_run_with_a_clear_message(stack) -> None:
    store = fresh_store(stack)
    sshd_like = devstack.Sshd(Path("/nonexistent"), Path("/nonexistent"), devstack.free_port(), "nobody",
                              stack.sshd.host_key_line, stack.sshd.client_key_path)
    with pytest.raises(SftpConnectError, match="cannot reach SFTP server"):
        run_backup(connector(sshd_like), store, "cust-down", "run-1", ["/srv"], [])
    assert list(store.list_keys("")) == []


def test_excludes_match_the_relative_path_or_the_file_name(stack) -> None:
    local, remote = _area(stack, "excl")
    write_tree(local, {"keep.txt": b"k", "skip.tmp": b"s", "cache/x.bin": b"c", "a/cache/y.bin": b"y"})
    store = fresh_store(stack)
    run_backup(connector(stack.sshd), store, "cust-ex", "run-1", [remote], ["*.tmp", "cache/*"],
               options=SMALL_OPTIONS)
    assert {f.path for f in load_manifest(store, "cust-ex").files} == {f"{remote}/keep.txt", f"{remote}/a/cache/y.bin"}


def test_paramiko_is_the_client_and_sessions_are_parallel(stack) -> None:
    """Several SFTP sessions read at once (issue #3 speed): one Transport per reader thread."""
    local, remote = _area(stack, "parallel")
    write_tree(local, {f"f{i}.txt": os.urandom(2000) for i in range(30)})
    opened: list[SftpSession] = []
    base = connector(stack.sshd)

    from contextlib import contextmanager

    @contextmanager
    def counting():
        with base() as sftp:
            opened.append(sftp)
            yield sftp

    run_backup(counting, fresh_store(stack), "cust-par", "run-1", [remote], [], options=SMALL_OPTIONS)
    transports = {id(s.client.get_channel().get_transport()) for s in opened}
    assert len(transports) == 1 + SMALL_OPTIONS.connections     # the walk, then one per reader


class _DeleteWhenReading(Observer):
    def __init__(self, trigger: str, victim: Path) -> None:
        self.trigger, self.victim = trigger, victim

    def chunk_read(self, f: RemoteFile, offset: int, length: int) -> None:
        if f.path == self.trigger and self.victim.exists():
            self.victim.unlink()


def test_a_file_deleted_after_listing_is_recorded_as_vanished_and_the_run_goes_on(stack) -> None:
    """Art. 17(2): a file listed but gone when read is a collection error, not a failed run."""
    local, remote = _area(stack, "vanish")
    write_tree(local, {"a.txt": b"first", "b.txt": b"deleted meanwhile", "c.txt": b"third"})
    store = fresh_store(stack)
    one_reader = dataclasses.replace(SMALL_OPTIONS, connections=1)

    result = run_backup(connector(stack.sshd), store, "cust-van", "run-1", [remote], [], options=one_reader,
                        observer=_DeleteWhenReading(f"{remote}/a.txt", local / "b.txt"))

    assert [(e.path, e.reason) for e in result.errors] == [(f"{remote}/b.txt", "vanished")]
    assert set(load_manifest(store, "cust-van").by_path()) == {f"{remote}/a.txt", f"{remote}/c.txt"}


def test_long_runs_log_progress_with_rate_and_eta(stack, caplog) -> None:
    """Issue #3: files done / total, bytes, rate and ETA at a steady interval in the task log."""
    local, remote = _area(stack, "progress")
    write_tree(local, {f"f{i}.bin": os.urandom(200_000) for i in range(20)})
    caplog.set_level("INFO", logger="cloudbackup.backup.archiver")

    run_backup(connector(stack.sshd), fresh_store(stack), "cust-prog", "run-1", [remote], [], options=SMALL_OPTIONS)

    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress:")]
    assert lines and lines[-1].startswith("progress: 20/20 files")
    assert all("MiB/s" in line and "ETA" in line for line in lines)


def test_a_name_that_is_not_utf8_is_recorded_byte_for_byte_never_half_decoded() -> None:
    """Art. 17(2), 18(2): the customer reads which file was not collected. A Shift_JIS name (見積書) read as
    UTF-8 would show as \\x8c\\xa9\\x90Ϗ\\x91, a name that never existed; every byte of it is shown instead, and
    the UTF-8 folders around it stay readable."""
    shift_jis = "見積書".encode("cp932") + b".txt"
    assert printable(b"/srv/" + shift_jis) == "/srv/\\x8c\\xa9\\x90\\xcf\\x8f\\x91.txt"
    assert printable("/srv/日本/".encode() + shift_jis + b"/bell\x07") == \
        "/srv/日本/\\x8c\\xa9\\x90\\xcf\\x8f\\x91.txt/bell\\x07"
