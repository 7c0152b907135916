"""Prune (issue 12, deliverable 2) against the real sshd and SeaweedFS S3: retention forgets snapshots, objects no
kept snapshot uses are deleted after the grace period, mostly unused packs are repacked, orphans of crashed runs
and torn reads are freed; a prune killed at any step leaves every snapshot verifying, and the next one finishes.

Terms: art. 17(1) (backups kept on the operator's devices; retention is the plan's), 18(1) (every kept snapshot
must stay restorable), 17(3) (stored bytes: garbage must not count against the customer).
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from backup_support import SMALL_OPTIONS, KiB, MiB, connector, fresh_store, tree, write_tree

from cloudbackup.backup import format as snap
from cloudbackup.backup.archiver import Observer, run_backup
from cloudbackup.backup.checker import referenced_objects, verify
from cloudbackup.backup.pruneplan import PruneSettings
from cloudbackup.backup.pruner import prune
from cloudbackup.backup.repository import list_snapshots, load_manifest, stored_bytes
from cloudbackup.backup.restorer import LocalTarget, restore
from cloudbackup.backup.retention import RetentionPolicy
from cloudbackup.backup.walk import RemoteFile

pytestmark = pytest.mark.servers

NOW_GRACE = PruneSettings(grace=timedelta(0))       # every object is old enough (the grace period is tested apart)
KEEP_LAST = RetentionPolicy(keep_last=1)
STEPS = ["forget", "delete-index", "delete-objects", "repack-write", "repack-rewrite", "repack-delete"]


class Killed(BaseException):
    """The prune's process dies here (raised from the step hook; the pruner has no cleanup that could run)."""


class _CrashAfter(Observer):
    """A backup whose worker dies after `n` files are stored: packs and index files stay, no manifest."""

    def __init__(self, n: int) -> None:
        self.n, self.done = n, 0

    def file_done(self, f: RemoteFile) -> None:
        self.done += 1
        if self.done == self.n:
            raise RuntimeError("worker died")


def _day(n: int) -> datetime:
    return datetime(2026, 11, n, 1, 0, tzinfo=UTC)


def _history(stack, name: str, tmp_path: Path) -> tuple[object, str, dict[str, bytes]]:
    """Three snapshots on three days, then a crashed run: run 1's packs are mostly garbage once runs 1 and 2 are
    forgotten, the large file was rewritten (old chunks unused), and the crash left index files and a pack."""
    local = stack.sshd.root / "srv" / name
    remote = f"/srv/{name}"
    small = {f"docs/{i:02}.txt": os.urandom(6 * KiB + i * 97) for i in range(40)}
    write_tree(local, {**small, "big.bin": os.urandom(3 * MiB + 5)})
    store = fresh_store(stack)
    conn = connector(stack.sshd)
    run_backup(conn, store, name, "r1", [remote], [], options=SMALL_OPTIONS, now=lambda: _day(1))
    for i in range(30):                       # three quarters of run 1's small files go
        (local / f"docs/{i:02}.txt").unlink()
    (local / "big.bin").write_bytes(os.urandom(3 * MiB + 5))
    run_backup(conn, store, name, "r2", [remote], [], options=SMALL_OPTIONS, now=lambda: _day(2))
    write_tree(local, {"docs/new.txt": b"new in run 3" * 100})
    run_backup(conn, store, name, "r3", [remote], [], options=SMALL_OPTIONS, now=lambda: _day(3))
    kept = tree(local)
    shutil.copytree(local, tmp_path / "at-run-3")
    write_tree(local, {f"later/{i:02}.bin": os.urandom(40 * KiB) for i in range(12)})
    with pytest.raises(Exception, match="worker died"):
        run_backup(conn, store, name, "r4", [remote], [], options=SMALL_OPTIONS, now=lambda: _day(4),
                   observer=_CrashAfter(10))
    assert len(list_snapshots(store, name)) == 3
    assert list(store.list_keys(snap.object_key(name, snap.INDEX))), "the crashed run left no index file"
    return store, remote, kept


def _unused(store, name: str) -> set[str]:
    """Packs and chunks no snapshot uses."""
    used = set()
    for sid in list_snapshots(store, name):
        used |= referenced_objects(load_manifest(store, name, sid).files)
    prefix = snap.customer_prefix(name)
    stored = {k[len(prefix):] for k, _ in store.list_keys(prefix)}
    return {k for k in stored if k.startswith((snap.PACKS, snap.DATA))} - used


def _every_snapshot_verifies(store, name: str) -> None:
    for sid in list_snapshots(store, name):
        result = verify(store, name, sid)
        assert result.ok, (sid, result.problems)


def test_prune_forgets_deletes_and_repacks_and_the_kept_snapshot_restores(stack, tmp_path) -> None:
    """keep_last=1: runs 1 and 2 are forgotten; the crashed run's index files and pack, run 1's unused chunks and
    the rewritten file's old chunks are deleted; run 1's packs (three quarters unused) are repacked and run 3's
    manifest points at the new pack; run 3 verifies and restores byte for byte; no unused object is left."""
    name = "prune-full"
    store, remote, kept = _history(stack, name, tmp_path)
    first, second, third = list_snapshots(store, name)
    before = stored_bytes(store, name)
    steps: list[str] = []

    report = prune(store, name, KEEP_LAST, NOW_GRACE, step=steps.append)

    assert list_snapshots(store, name) == [third]
    assert sorted(report.forgotten) == [first, second]
    assert set(STEPS) <= set(steps), f"the history does not exercise every step: {sorted(set(steps))}"
    assert report.repacked and report.rewritten == [third] and len(report.new_packs) == 1
    assert list(store.list_keys(snap.object_key(name, snap.INDEX))) == []
    assert _unused(store, name) == set()
    assert report.bytes_freed == before - stored_bytes(store, name) > 0
    assert verify(store, name, third).ok
    restore(store, name, LocalTarget(tmp_path / "out"))
    assert tree(tmp_path / "out" / remote.lstrip("/")) == kept
    assert not referenced_objects(load_manifest(store, name).files) & set(report.repacked)

    again = prune(store, name, KEEP_LAST, NOW_GRACE)
    assert (again.forgotten, again.deleted_index, again.deleted_objects, again.repacked) == ([], [], [], [])


@pytest.mark.parametrize("kill_at", STEPS)
def test_a_prune_killed_at_any_step_leaves_every_snapshot_verifying_and_the_next_one_finishes(
        stack, tmp_path, kill_at: str) -> None:
    """The process dies right after the first change of each step: every snapshot still in the repository
    verifies (kept ones and those not forgotten yet); the next backup (which reuses what leftover index files
    name) writes a snapshot that verifies; a second prune then ends as an uninterrupted one: one snapshot,
    nothing unused, no index file, and it restores byte for byte."""
    name = f"prune-kill-{kill_at}"
    store, remote, _kept = _history(stack, name, tmp_path)
    third = list_snapshots(store, name)[-1]

    def die(step: str) -> None:
        if step == kill_at:
            raise Killed(step)

    with pytest.raises(Killed):
        prune(store, name, KEEP_LAST, NOW_GRACE, step=die)
    assert third in list_snapshots(store, name)
    _every_snapshot_verifies(store, name)

    after = run_backup(connector(stack.sshd), store, name, "r5", [remote], [], options=SMALL_OPTIONS,
                       now=lambda: _day(5))
    assert verify(store, name, after.snapshot_id).ok

    prune(store, name, KEEP_LAST, NOW_GRACE)
    assert list_snapshots(store, name) == [after.snapshot_id]
    _every_snapshot_verifies(store, name)
    # A kill between writing a new pack and rewriting the manifests leaves that pack unused: it is younger than
    # any real grace period, and the second prune (grace 0 here) deletes it.
    assert _unused(store, name) == set()
    assert list(store.list_keys(snap.object_key(name, snap.INDEX))) == []
    restore(store, name, LocalTarget(tmp_path / "out"))
    assert tree(tmp_path / "out" / remote.lstrip("/")) == tree(stack.sshd.root / remote.lstrip("/"))


_KILL_SCRIPT = """
import os, sys
from datetime import timedelta
from cloudbackup.backup.pruneplan import PruneSettings
from cloudbackup.backup.pruner import prune
from cloudbackup.backup.retention import RetentionPolicy
from cloudbackup.edges.connections import S3Endpoint
from cloudbackup.edges.s3 import ObjectStore

endpoint, access, secret, bucket, name, kill_at = sys.argv[1:]
store = ObjectStore(S3Endpoint(endpoint, False, access, secret, bucket))

def die(step):
    if step == kill_at:
        os._exit(137)          # no exception, no finally, no flush: the process is simply gone

prune(store, name, RetentionPolicy(keep_last=1), PruneSettings(grace=timedelta(0)), step=die)
sys.exit(0)
"""


@pytest.mark.parametrize("kill_at", ["delete-objects", "repack-rewrite"])
def test_a_prune_process_killed_outright_leaves_every_snapshot_verifying(stack, tmp_path, kill_at: str) -> None:
    """The same, with the prune in its own process ended by os._exit (as by SIGKILL): nothing runs after the
    kill, and still every snapshot verifies and a second prune finishes the job."""
    import subprocess
    import sys

    name = f"prune-exit-{kill_at}"
    store, remote, kept = _history(stack, name, tmp_path)
    third = list_snapshots(store, name)[-1]
    done = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, f"127.0.0.1:{stack.s3.port}", stack.s3.access_key,
                           stack.s3.secret_key, store.bucket, name, kill_at], capture_output=True, text=True)
    assert done.returncode == 137, done.stderr
    _every_snapshot_verifies(store, name)

    prune(store, name, KEEP_LAST, NOW_GRACE)
    assert list_snapshots(store, name) == [third] and _unused(store, name) == set()
    _every_snapshot_verifies(store, name)
    restore(store, name, LocalTarget(tmp_path / "out"))
    assert tree(tmp_path / "out" / remote.lstrip("/")) == kept


def test_dry_run_changes_nothing_and_reports_what_the_real_run_does(stack, tmp_path) -> None:
    name = "prune-dry"
    store, _remote, _kept = _history(stack, name, tmp_path)
    prefix = snap.customer_prefix(name)
    listing = sorted(store.list_detailed(prefix))

    dry = prune(store, name, KEEP_LAST, NOW_GRACE, dry_run=True)
    assert sorted(store.list_detailed(prefix)) == listing
    real = prune(store, name, KEEP_LAST, NOW_GRACE)

    assert (sorted(dry.forgotten), dry.deleted_index, dry.deleted_objects, dry.repacked, dry.rewritten) == (
        sorted(real.forgotten), real.deleted_index, real.deleted_objects, real.repacked, real.rewritten)
    # The dry figure cannot know how many bytes a rewritten manifest gains or loses (a few, when its ranges move).
    assert real.bytes_freed > 0 and abs(dry.bytes_freed - real.bytes_freed) < 1 * KiB
    assert any(line.startswith("Would forget 2 snapshot(s)") for line in dry.lines())


def test_nothing_younger_than_the_grace_period_is_deleted(stack, tmp_path) -> None:
    """With the default grace period (1 day) everything just written is kept: retention still forgets the old
    snapshots, but no pack, chunk or index file goes, and the crashed run's index files keep protecting theirs.
    A day later (the clock moved, not the objects) the same prune deletes them."""
    name = "prune-grace"
    store, _remote, _kept = _history(stack, name, tmp_path)
    report = prune(store, name, KEEP_LAST)
    assert len(report.forgotten) == 2
    assert (report.deleted_index, report.deleted_objects, report.repacked) == ([], [], [])
    assert report.young and _unused(store, name)
    _every_snapshot_verifies(store, name)

    later = prune(store, name, KEEP_LAST, now=datetime.now(UTC) + timedelta(days=1, minutes=1))
    assert later.deleted_index and later.deleted_objects and later.repacked
    assert _unused(store, name) == set()
    _every_snapshot_verifies(store, name)


def test_locked_objects_and_manifests_are_kept_and_said_so(stack, tmp_path) -> None:
    """Object lock (C's immutability): a locked manifest is not forgotten, so every object it uses stays; a locked
    unused object is not deleted; both are reported as kept until the lock's end."""
    name = "prune-locked"
    store, _remote, _kept = _history(stack, name, tmp_path)
    first, second, third = list_snapshots(store, name)
    crashed_index = sorted(k for k, _ in store.list_keys(snap.object_key(name, snap.INDEX)))[0]
    until = datetime.now(UTC) + timedelta(days=30)
    locked = {snap.snapshot_key(first): until, crashed_index.removeprefix(snap.customer_prefix(name)): until}

    report = prune(store, name, KEEP_LAST, NOW_GRACE, locked=locked)

    assert list_snapshots(store, name) == [first, third] and report.forgotten == [second]
    assert report.kept[first] == [f"locked until {until.isoformat()}"]
    assert report.held[snap.snapshot_key(first)] == f"locked until {until.isoformat()}"
    assert crashed_index.removeprefix(snap.customer_prefix(name)) in report.held
    _every_snapshot_verifies(store, name)


class _RewriteDuringRead(Observer):
    """Rewrites a large file with other bytes after its first chunk was read: a torn read."""

    def __init__(self, local: Path, remote: str) -> None:
        self.local, self.remote, self.done = local, remote, False

    def chunk_read(self, f: RemoteFile, offset: int, length: int) -> None:
        if f.path == self.remote and not self.done:
            self.done = True
            self.local.write_bytes(os.urandom(f.size))


def test_garbage_from_a_torn_read_is_freed(stack) -> None:
    """Issue 11's changed_during_read stores the chunks it read but no snapshot uses them; prune deletes them and
    the stored bytes fall by as much; the latest snapshot (holding the file, collected again) verifies."""
    name = "prune-torn"
    local = stack.sshd.root / "srv" / name
    write_tree(local, {"log.bin": os.urandom(3 * MiB), "still.txt": b"still"})
    store = fresh_store(stack)
    conn = connector(stack.sshd)
    torn = run_backup(conn, store, name, "r1", [f"/srv/{name}"], [], options=SMALL_OPTIONS,
                      observer=_RewriteDuringRead(local / "log.bin", f"/srv/{name}/log.bin"))
    assert [e.reason for e in torn.errors] == ["changed_during_read"]
    run_backup(conn, store, name, "r2", [f"/srv/{name}"], [], options=SMALL_OPTIONS)
    garbage = _unused(store, name)
    assert garbage and all(k.startswith(snap.DATA) for k in garbage), garbage
    prefix = snap.customer_prefix(name)
    garbage_bytes = sum(size for k, size in store.list_keys(prefix) if k[len(prefix):] in garbage)
    before = stored_bytes(store, name)

    report = prune(store, name, RetentionPolicy(), NOW_GRACE)

    assert set(report.deleted_objects) == garbage and report.forgotten == []
    assert stored_bytes(store, name) == before - garbage_bytes
    assert _unused(store, name) == set()
    _every_snapshot_verifies(store, name)


def test_on_a_locked_bucket_the_locked_snapshot_is_kept_and_nothing_is_hidden(stack) -> None:
    """Part C's object lock, on the real SeaweedFS: a plain DELETE of a locked object is not refused there, it
    hides the object behind a delete marker. With the locks read first (`locks.locked_relative`), retention
    keep_last=1 keeps the older, still locked snapshot ("locked until …"), deletes none of its objects, and
    every snapshot still lists and verifies."""
    import secrets

    from cloudbackup.backup import locks
    from cloudbackup.edges.connections import S3Endpoint
    from cloudbackup.edges.s3 import ObjectStore

    name = "prune-locked-bucket"
    store = ObjectStore(S3Endpoint(f"127.0.0.1:{stack.s3.port}", False, stack.s3.access_key, stack.s3.secret_key,
                                   "lk-" + secrets.token_hex(6)))
    store.ensure_locked_bucket()
    local = stack.sshd.root / "srv" / name
    write_tree(local, {"a.txt": os.urandom(20 * KiB), "big.bin": os.urandom(2 * MiB + 3)})
    run_backup(connector(stack.sshd), locks.for_run(store, lock_days=2), name, "r1", [f"/srv/{name}"], [],
               options=SMALL_OPTIONS, now=lambda: _day(1))
    (local / "big.bin").write_bytes(os.urandom(2 * MiB + 3))
    run_backup(connector(stack.sshd), locks.for_run(store, lock_days=2), name, "r2", [f"/srv/{name}"], [],
               options=SMALL_OPTIONS, now=lambda: _day(2))
    first, second = list_snapshots(store, name)
    before = sorted(k for k, _ in store.list_keys(snap.customer_prefix(name)))

    report = prune(store, name, KEEP_LAST, NOW_GRACE, locked=locks.locked_relative(store, name))

    assert report.forgotten == [] and report.kept[first][0].startswith("locked until ")
    assert report.deleted_objects == [] and report.repacked == []
    assert sorted(k for k, _ in store.list_keys(snap.customer_prefix(name))) == before
    assert list_snapshots(store, name) == [first, second]
    _every_snapshot_verifies(store, name)


def test_on_a_versioned_bucket_the_hidden_versions_are_freed_too(stack, tmp_path) -> None:
    """A versioned bucket (object lock turns versioning on) keeps a DELETE's bytes behind a delete marker: the
    prune removes those hidden versions and the markers left with nothing behind them, so the space a customer's
    old snapshots held is really freed (art. 17(3)); the kept snapshot still verifies and restores."""
    import secrets

    from minio.commonconfig import ENABLED
    from minio.versioningconfig import VersioningConfig

    from cloudbackup.edges.connections import S3Endpoint
    from cloudbackup.edges.s3 import ObjectStore

    name = "prune-versioned"
    store = ObjectStore(S3Endpoint(f"127.0.0.1:{stack.s3.port}", False, stack.s3.access_key, stack.s3.secret_key,
                                   "vs-" + secrets.token_hex(6)))
    store.ensure_bucket()
    store.client.set_bucket_versioning(store.bucket, VersioningConfig(ENABLED))
    local = stack.sshd.root / "srv" / name
    write_tree(local, {"a.txt": os.urandom(20 * KiB), "big.bin": os.urandom(2 * MiB + 3)})
    for day in (1, 2):
        (local / "big.bin").write_bytes(os.urandom(2 * MiB + 3))
        run_backup(connector(stack.sshd), store, name, f"r{day}", [f"/srv/{name}"], [], options=SMALL_OPTIONS,
                   now=lambda day=day: _day(day))
    prefix = snap.customer_prefix(name)
    hidden_before = [v for v in store.list_version_details(prefix) if not v[4]]
    assert hidden_before, "the run's own index deletes already left hidden versions"

    report = prune(store, name, KEEP_LAST, NOW_GRACE)

    left = list(store.list_version_details(prefix))
    assert [v for v in left if not v[4] or v[5]] == [], "no noncurrent version and no delete marker is left"
    physical = sum(v[2] for v in left)
    assert physical == stored_bytes(store, name)
    assert report.old_versions > 0 and report.bytes_freed > 2 * MiB     # the first run's big.bin chunks at least
    _every_snapshot_verifies(store, name)
    out = tmp_path / "out"
    assert restore(store, name, LocalTarget(out), sub_path=f"/srv/{name}").ok
    assert tree(out / "srv" / name) == tree(local)
