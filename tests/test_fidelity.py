"""Backup fidelity (issue 11) against the real sshd and S3: a snapshot holds only versions that existed on the
server, every accepted name restores, one bad file never stops a restore, symlinks round-trip as links.

Terms: art. 16 (the designated areas are backed up), 17(1)-(2) (storage; collection errors reported),
18(1) (restore on the customer's instruction), 18(2) (the file-name policy).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import random
import socket
import threading
import time
from pathlib import Path

import pytest
from backup_support import SMALL_OPTIONS, KiB, MiB, connector, fresh_store, tree, write_tree

from cloudbackup.backup import format as snap
from cloudbackup.backup.archiver import run_backup
from cloudbackup.backup.names import NamePolicy
from cloudbackup.backup.repository import load_manifest, write_manifest
from cloudbackup.backup.restorer import LocalTarget, restore, restore_to_sftp

pytestmark = pytest.mark.servers


def _area(stack, name: str) -> tuple[Path, str]:
    local = stack.sshd.root / "srv" / name
    local.mkdir(parents=True)
    return local, f"/srv/{name}"


# -- 1. a snapshot holds only versions that really existed ------------------------------------------------------

class _Rewriter:
    """Rewrites files in place (same size, no truncation), in two halves with a pause between, so a reader can
    catch a file half old, half new; remembers the sha256 of every version each file ever had."""

    def __init__(self, files: dict[Path, int]) -> None:
        self.files = files
        self.versions: dict[Path, set[str]] = {p: set() for p in files}
        self.stop = threading.Event()
        self.rewrites = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)
        for p in files:
            self._write(p, 0, pause=0)

    def _content(self, p: Path, version: int) -> bytes:
        line = f"{p.name} version {version:08d}\n".encode()
        return (line * (self.files[p] // len(line) + 1))[: self.files[p]]

    def _write(self, p: Path, version: int, pause: float) -> None:
        data = self._content(p, version)
        self.versions[p].add(hashlib.sha256(data).hexdigest())
        half = len(data) // 2
        with open(p, "r+b" if p.exists() else "wb") as out:
            out.write(data[:half])
            out.flush()
            time.sleep(pause)
            out.write(data[half:])

    def _loop(self) -> None:
        rng = random.Random(11)
        version = 1
        while not self.stop.is_set():
            self._write(rng.choice(list(self.files)), version, pause=0.004)
            self.rewrites += 1
            version += 1
            time.sleep(rng.uniform(0.0, 0.02))

    def __enter__(self) -> _Rewriter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def test_concurrent_in_place_rewrites_never_yield_mixed_content(stack, tmp_path) -> None:
    """Art. 17(1): a file rewritten while a run reads it is a `changed_during_read` error, never a torn copy;
    every file of every snapshot restores to a version the server really had; the next run collects them."""
    local, remote = _area(stack, "torn")
    small = {local / f"small-{i:02}.txt": 40 * KiB + i for i in range(24)}          # packed (read whole)
    large = {local / f"large-{i}.bin": 3 * MiB + 7 * i for i in range(3)}            # chunked
    store = fresh_store(stack)
    options = dataclasses.replace(SMALL_OPTIONS, small_file_max=64 * KiB, verify_sample_fraction=0)
    snapshots, changed = [], 0
    with _Rewriter(small | large) as writer:
        for run in range(3):
            result = run_backup(connector(stack.sshd), store, "cust-torn", f"run-{run}", [remote], [],
                                options=options)
            if result.files:   # a run during which every file changed holds none: nothing to restore
                snapshots.append(result.snapshot_id)
            changed += sum(e.reason == "changed_during_read" for e in result.errors)
            assert {e.reason for e in result.errors} <= {"changed_during_read"}
    assert writer.rewrites > 50, "the writer must really have been rewriting during the runs"

    stored = 0
    for i, snapshot_id in enumerate(snapshots):
        out = tmp_path / f"out-{i}"
        restored = restore(store, "cust-torn", LocalTarget(out), snapshot_id=snapshot_id)
        assert restored.ok
        for rel, data in tree(out / "srv" / "torn").items():
            stored += 1
            assert hashlib.sha256(data).hexdigest() in writer.versions[local / rel], f"{rel}: torn copy stored"
    assert stored > 0 and changed > 0

    final = run_backup(connector(stack.sshd), store, "cust-torn", "run-final", [remote], [], options=options)
    assert final.errors == [] and final.files == len(small) + len(large)
    restore(store, "cust-torn", LocalTarget(tmp_path / "final"))
    assert tree(tmp_path / "final" / "srv" / "torn") == {p.name: p.read_bytes() for p in small | large}


def test_a_small_file_rewritten_with_the_same_size_during_its_read_is_not_stored(stack, tmp_path) -> None:
    """Art. 17(2): the small-file path re-stats after the read; a same-size rewrite is an error, not content."""
    from cloudbackup.backup.archiver import Observer

    local, remote = _area(stack, "restat")
    write_tree(local, {"a.txt": b"A" * 5000, "b.txt": b"b"})
    os.utime(local / "a.txt", (1_700_000_000, 1_700_000_000))

    class Rewrite(Observer):
        def chunk_read(self, f, offset: int, length: int) -> None:
            if f.path.endswith("/a.txt"):
                (local / "a.txt").write_bytes(b"Z" * 5000)      # same size, mtime now

    first = run_backup(connector(stack.sshd), fresh_store(stack), "cust-restat", "r1", [remote], [],
                       options=SMALL_OPTIONS, observer=Rewrite())
    assert [(e.path, e.reason) for e in first.errors] == [(f"{remote}/a.txt", "changed_during_read")]


def test_a_file_changed_in_the_current_second_is_read_only_once_that_second_is_over(stack) -> None:
    """The same-second residual risk (docs/storage-format.md): a file whose mtime is not yet `settle_seconds`
    old is read after a wait, so a rewrite during the read always moves its mtime."""
    from cloudbackup.backup.archiver import Observer

    local, remote = _area(stack, "settle")
    write_tree(local, {"fresh.txt": b"just written"})
    read_at: list[float] = []

    class When(Observer):
        def chunk_read(self, f, offset: int, length: int) -> None:
            read_at.append(time.time())

    mtime = (local / "fresh.txt").stat().st_mtime
    run_backup(connector(stack.sshd), fresh_store(stack), "cust-settle", "r1", [remote], [],
               options=SMALL_OPTIONS, observer=When())
    assert read_at and read_at[0] >= int(mtime) + SMALL_OPTIONS.settle_seconds


# -- 2. every accepted name restores; temporary names never collide; one bad file never stops the others --------

def _name(length: int, stem: str = "報告書") -> str:
    """A name of exactly `length` UTF-8 bytes: Japanese (3 bytes a character), then ASCII padding."""
    body = stem * ((length - 4) // (3 * len(stem)))
    return body + "x" * (length - len(body.encode()) - 4) + ".txt"


def test_names_of_240_250_and_255_bytes_restore_locally_and_over_sftp(stack, tmp_path) -> None:
    """Art. 18(2): the policy accepts names up to 255 bytes, so restore must write them (issue 11 found the
    temporary name `.<name>.cloudbackup-restore` overflowing at ~235 bytes, and every later file skipped)."""
    local, remote = _area(stack, "longnames")
    files = {_name(n): f"{n} bytes".encode() * 100 for n in (240, 250, 255)}
    files["ascii-" + "n" * 245 + ".bin"] = os.urandom(2 * MiB)          # 255 bytes, a chunked file
    files["zz-after-the-long-ones.txt"] = b"sorted after them"
    assert sorted(len(n.encode()) for n in files)[-4:] == [240, 250, 255, 255]
    write_tree(local, files)
    store = fresh_store(stack)
    result = run_backup(connector(stack.sshd), store, "cust-long", "r1", [remote], [], policy=NamePolicy(),
                        options=SMALL_OPTIONS)
    assert result.errors == []

    out = restore(store, "cust-long", LocalTarget(tmp_path / "out"))
    assert out.ok and out.files == len(files)
    assert tree(tmp_path / "out" / "srv" / "longnames") == files
    over_sftp = restore_to_sftp(store, "cust-long", connector(stack.sshd)(), "/restores/long")
    assert over_sftp.ok and tree(stack.sshd.root / "restores" / "long" / "srv" / "longnames") == files
    # Nothing temporary is left behind at either target.
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".cbtmp-")]
    assert not [p for p in (stack.sshd.root / "restores" / "long").iterdir() if p.name.startswith(".cbtmp-")]


def test_a_file_named_like_a_temporary_file_is_restored_not_destroyed(stack, tmp_path) -> None:
    """Issue 11: a customer file named like the former temporary name was lost while restore reported success."""
    local, remote = _area(stack, "tmpnames")
    files = {"report.txt": b"the report", ".report.txt.cloudbackup-restore": b"the customer's own file",
             ".cbtmp-0123456789abcdef": b"also the customer's", ".cbtmp-dir/x.txt": b"and this"}
    write_tree(local, files)
    store = fresh_store(stack)
    run_backup(connector(stack.sshd), store, "cust-tmpn", "r1", [remote], [], options=SMALL_OPTIONS)
    for attempt in range(2):                       # into an empty folder, then over the first restore
        out = restore(store, "cust-tmpn", LocalTarget(tmp_path / "out"))
        assert out.ok and out.files == len(files), attempt
        assert tree(tmp_path / "out" / "srv" / "tmpnames") == files


def test_one_file_that_cannot_be_restored_never_stops_the_others(stack, tmp_path) -> None:
    """Art. 18(1): every other file is restored, each failure is listed, and the result is not ok."""
    local, remote = _area(stack, "onebad")
    files = {f"f{i:02}.txt": f"file {i}".encode() * 50 for i in range(10)} | {"big.bin": os.urandom(3 * MiB)}
    write_tree(local, files)
    store = fresh_store(stack)
    run_backup(connector(stack.sshd), store, "cust-onebad", "r1", [remote], [], options=SMALL_OPTIONS)
    # A folder where a file must go (cannot be replaced), and a chunk of the large file gone from S3.
    (tmp_path / "out" / "srv" / "onebad" / "f00.txt").mkdir(parents=True)
    chunk = load_manifest(store, "cust-onebad").by_path()[f"{remote}/big.bin"].chunks[1][0]
    store.remove(snap.object_key("cust-onebad", chunk))

    out = restore(store, "cust-onebad", LocalTarget(tmp_path / "out"))

    assert not out.ok and out.files == len(files) - 2
    assert sorted(f.split(":")[0] for f in out.failures) == [f"{remote}/big.bin", f"{remote}/f00.txt"]
    restored = tree(tmp_path / "out" / "srv" / "onebad")
    assert restored == {k: v for k, v in files.items() if k not in ("f00.txt", "big.bin")}


# -- 3. symlinks are links; special files are collection errors ------------------------------------------------

def test_symlinks_round_trip_as_links_locally_and_over_sftp(stack, tmp_path) -> None:
    """Links are recorded with their target (never followed) and restored as links, after every file."""
    local, remote = _area(stack, "links")
    write_tree(local, {"docs/real.txt": b"real", "other/x.txt": b"x"})
    os.symlink("real.txt", local / "docs" / "relative-link")
    os.symlink("/etc/passwd", local / "absolute-link")
    os.symlink("../other", local / "docs" / "dir-link")
    os.symlink("does-not-exist", local / "dangling")
    store = fresh_store(stack)
    result = run_backup(connector(stack.sshd), store, "cust-links", "r1", [remote], [], options=SMALL_OPTIONS)
    assert result.errors == [] and result.links == 4
    links = {"docs/relative-link": "real.txt", "absolute-link": "/etc/passwd", "docs/dir-link": "../other",
             "dangling": "does-not-exist"}

    out = restore(store, "cust-links", LocalTarget(tmp_path / "out"))
    assert out.ok and out.links == 4
    base = tmp_path / "out" / "srv" / "links"
    assert {str(p.relative_to(base)): os.readlink(p) for p in base.rglob("*") if p.is_symlink()} == links
    assert tree(base) == {"docs/real.txt": b"real", "other/x.txt": b"x"}

    sftp_out = restore_to_sftp(store, "cust-links", connector(stack.sshd)(), "/restores/links")
    assert sftp_out.ok and sftp_out.links == 4
    base = stack.sshd.root / "restores" / "links" / "srv" / "links"
    assert {str(p.relative_to(base)): os.readlink(p) for p in base.rglob("*") if p.is_symlink()} == links


def _tamper(store, customer_id: str, extra: list[dict]) -> None:
    """Rewrite the latest manifest with extra lines (what someone holding the customer's data key could do: the
    manifest is sealed, so bucket access alone no longer suffices)."""
    manifest = load_manifest(store, customer_id)
    write_manifest(store, customer_id,
                   snap.Manifest(manifest.header, manifest.files + [snap.FileEntry.from_json(e) for e in extra]))


def test_a_symlink_never_lets_a_restore_write_outside_its_folder(stack, tmp_path) -> None:
    """A file below a link of the same snapshot (only a tampered manifest has one), or below a link left in the
    target folder, is refused: nothing is written through a link."""
    local, remote = _area(stack, "escape")
    write_tree(local, {"a.txt": b"a"})
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), local / "out-link")
    store = fresh_store(stack)
    run_backup(connector(stack.sshd), store, "cust-esc", "r1", [remote], [], options=SMALL_OPTIONS)
    small = load_manifest(store, "cust-esc").by_path()[f"{remote}/a.txt"]
    _tamper(store, "cust-esc", [{"path": f"{remote}/out-link/planted.txt", "size": 1, "mtime": 0, "mode": 420,
                                 "sha256": small.sha256, "chunks": [list(c) for c in small.chunks]}])

    out = restore(store, "cust-esc", LocalTarget(tmp_path / "out"))
    assert [f.split(":")[0] for f in out.failures] == [f"{remote}/out-link/planted.txt"]
    assert list(outside.iterdir()) == []
    assert os.readlink(tmp_path / "out" / "srv" / "escape" / "out-link") == str(outside)

    # A second restore of a snapshot where out-link is a real folder must not follow the link left behind.
    (local / "out-link").unlink()
    write_tree(local, {"out-link/planted.txt": b"p"})
    run_backup(connector(stack.sshd), store, "cust-esc", "r2", [remote], [], options=SMALL_OPTIONS)
    again = restore(store, "cust-esc", LocalTarget(tmp_path / "out"))
    assert [f.split(":")[0] for f in again.failures] == [f"{remote}/out-link/planted.txt"]
    assert list(outside.iterdir()) == []


def test_fifos_and_sockets_are_collection_errors_of_their_own(stack, tmp_path) -> None:
    """Art. 17(2): a special file is reported (reason `special_file`), never silently dropped."""
    local, remote = _area(stack, "special")
    write_tree(local, {"normal.txt": b"n"})
    os.mkfifo(local / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(local / "sock"))
    try:
        store = fresh_store(stack)
        result = run_backup(connector(stack.sshd), store, "cust-spec", "r1", [remote], [], options=SMALL_OPTIONS)
    finally:
        sock.close()
    assert sorted((e.path, e.reason) for e in result.errors) == [(f"{remote}/pipe", "special_file"),
                                                                 (f"{remote}/sock", "special_file")]
    assert {f.path for f in load_manifest(store, "cust-spec").files} == {f"{remote}/normal.txt"}


def test_manifests_of_format_1_stay_readable() -> None:
    """Old snapshots (format /1, no `type` field) still load; the new format adds symlink lines."""
    header = {"snapshot_id": "20260101T000000.000000Z-00000000", "customer_id": "c", "run_key": "r",
              "started_at": "", "finished_at": "", "paths": ["/srv"], "file_count": 1, "total_bytes": 1,
              "collection_errors": 0, "parent": None, "format": "cloudbackup-snapshot/1"}
    line = {"path": "/srv/a", "size": 1, "mtime": 1, "mode": 420, "sha256": "00", "chunks": [["packs/aa/aa", 0, 1]]}
    m = snap.decode_manifest(gzip.compress((json.dumps(header) + "\n" + json.dumps(line) + "\n").encode()))
    assert m.files[0].kind == snap.FILE and not m.files[0].is_link
    link = snap.FileEntry("/srv/l", 3, 1, 0o777, "x", (), snap.SYMLINK, "a/b")
    again = snap.decode_manifest(snap.encode_manifest(snap.Manifest(m.header, [link])))
    assert again.files == [link]


def test_the_restore_command_restores_every_other_file_names_the_failure_and_exits_non_zero(
        stack, registry_dir, database, connect_service, tmp_path, request) -> None:
    """Art. 18(1), from the operator's shell: one file that cannot be restored fails the command (exit code
    non-zero, the file named), after every other file was restored."""
    import subprocess
    import sys

    from conftest import customer_yaml

    customer_id = f"fid-cli-{request.node.callspec.id}"
    files = {"a.txt": b"a" * 100, "big.bin": os.urandom(3 * MiB), "z.txt": b"z" * 100}
    write_tree(stack.sshd.root / "srv" / customer_id, files)
    (registry_dir / "customers" / f"{customer_id}.yaml").write_text(
        customer_yaml(customer_id, paths=[f"/srv/{customer_id}"]), encoding="utf-8")
    store = fresh_store(stack)
    connect_service(database, [f"sftp_{customer_id.replace('-', '_')}"], bucket=store.bucket)
    from cloudbackup import cli
    assert cli.main(["backup", "run", "--customer", customer_id]) == 0
    chunk = load_manifest(store, customer_id).by_path()[f"/srv/{customer_id}/big.bin"].chunks[0][0]
    store.remove(snap.object_key(customer_id, chunk))

    done = subprocess.run([str(Path(sys.executable).with_name("cloudbackup")), "backup", "restore", "--customer",
                           customer_id, "--to", str(tmp_path / "out")], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=300)

    assert done.returncode != 0
    assert f"/srv/{customer_id}/big.bin" in done.stderr and "could not be restored" in done.stderr
    assert tree(tmp_path / "out" / "srv" / customer_id) == {"a.txt": files["a.txt"], "z.txt": files["z.txt"]}


def test_an_sftp_restore_folder_reached_through_a_symlink_is_used(stack) -> None:
    """Only links below the restore folder are refused; the folder itself (or one above it) may be a link on
    the customer's server, as the operator chose it."""
    local, remote = _area(stack, "viaroot")
    write_tree(local, {"a.txt": b"a"})
    store = fresh_store(stack)
    run_backup(connector(stack.sshd), store, "cust-via", "r1", [remote], [], options=SMALL_OPTIONS)
    (stack.sshd.root / "real-restores").mkdir()
    os.symlink("real-restores", stack.sshd.root / "linked-restores")

    out = restore_to_sftp(store, "cust-via", connector(stack.sshd)(), "/linked-restores/r1")

    assert out.ok and tree(stack.sshd.root / "real-restores" / "r1" / "srv" / "viaroot") == {"a.txt": b"a"}
