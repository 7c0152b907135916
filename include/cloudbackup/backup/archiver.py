"""The archiver: one backup run — walk the designated areas, read what changed, store it, write the snapshot last."""

from __future__ import annotations

import hashlib
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime

from cloudbackup.backup import format as snap
from cloudbackup.backup import keys
from cloudbackup.backup.checker import DamagedObject, check_objects, referenced_objects, sample_keys
from cloudbackup.backup.format import customer_prefix
from cloudbackup.backup.names import NamePolicy
from cloudbackup.backup.options import EngineOptions, MiB
from cloudbackup.backup.outcomes import CollectionError, CollectionErrorReason
from cloudbackup.backup.repository import (
    RepositoryWriter,
    list_snapshots,
    load_manifest,
    read_index,
    write_manifest,
)
from cloudbackup.backup.walk import RemoteFile, walk
from cloudbackup.clock import utcnow
from cloudbackup.edges import connections
from cloudbackup.edges.s3 import ObjectStore
from cloudbackup.edges.sftp import TRANSFER_ERRORS, ConnectionLost, RemoteReader, SftpSession

log = logging.getLogger(__name__)

Connect = Callable[[], AbstractContextManager[SftpSession]]


class Observer:
    """Hooks into a run (progress display, tests that change or cut things mid-run); no-ops by default."""

    def chunk_read(self, f: RemoteFile, offset: int, length: int) -> None: ...

    def file_done(self, f: RemoteFile) -> None: ...


@dataclass
class BackupResult:
    snapshot_id: str = ""
    files: int = 0                       # files in the snapshot
    bytes: int = 0                       # their total size
    files_read: int = 0                  # files actually read over SFTP this run
    bytes_read: int = 0
    bytes_uploaded: int = 0
    objects_uploaded: int = 0
    errors: list[CollectionError] = field(default_factory=list)
    read_paths: list[str] = field(default_factory=list)
    links: int = 0                       # symlinks recorded as links
    sampled_objects: int = 0             # stored objects re-read and checked by this run's sample
    damage_found: list[DamagedObject] = field(default_factory=list)   # by this run's sample
    healed: list[str] = field(default_factory=list)     # damaged keys the new snapshot no longer depends on
    unhealed: list[str] = field(default_factory=list)   # damaged keys it still depends on (none expected)


class ChangedDuringRead(Exception):
    """The file's size or mtime moved while it was read: its bytes are not a consistent copy."""


class Progress:
    """Logs files done / total, bytes, rate and ETA every `interval` seconds from its own thread."""

    def __init__(self, total_files: int, total_bytes: int, interval: float) -> None:
        self.total_files, self.total_bytes, self.interval = total_files, total_bytes, interval
        self.files = self.bytes = 0
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def add(self, files: int, nbytes: int) -> None:
        with self.lock:
            self.files += files
            self.bytes += nbytes

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.bytes / elapsed
        left = self.total_bytes - self.bytes
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        return (f"progress: {self.files}/{self.total_files} files, {self.bytes / MiB:.1f}/"
                f"{self.total_bytes / MiB:.1f} MiB, {rate / MiB:.1f} MiB/s, {self.files / elapsed:.0f} files/s, "
                f"ETA {eta}")

    def _loop(self) -> None:
        while not self.stop_event.wait(self.interval):
            log.info(self.line())

    def __enter__(self) -> Progress:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()
        log.info(self.line())


class Collector:
    """Reader threads, each with its own SFTP session, pulling files from one queue."""

    def __init__(self, connect: Connect, repo: RepositoryWriter, options: EngineOptions, observer: Observer,
                 progress: Progress, result: BackupResult) -> None:
        self.connect, self.repo, self.options, self.observer = connect, repo, options, observer
        self.progress, self.result = progress, result
        self.entries: list[snap.FileEntry] = []
        self.lock = threading.Lock()
        self.abort = threading.Event()
        self.failure: BaseException | None = None

    def run(self, todo: list[RemoteFile]) -> None:
        work: queue.Queue[RemoteFile] = queue.Queue()
        # Large files first, so their long reads overlap with the many small ones; files changed in the last
        # seconds last, so they have settled (see _settle) by the time a reader takes them.
        fresh = time.time() - self.options.settle_seconds
        for f in sorted(todo, key=lambda f: (f.mtime > fresh, f.size <= self.options.small_file_max, f.path)):
            work.put(f)
        n = max(1, min(self.options.connections, len(todo)))
        threads = [threading.Thread(target=self._worker, args=(work,), name=f"sftp-{i}") for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _worker(self, work: queue.Queue[RemoteFile]) -> None:
        try:
            with self.connect() as sftp:
                while not self.abort.is_set():
                    try:
                        f = work.get_nowait()
                    except queue.Empty:
                        return
                    self._one(sftp, f)
        except BaseException as exc:  # noqa: BLE001 - handed to the run, which fails
            with self.lock:
                self.failure = self.failure or exc
            self.abort.set()

    def _one(self, sftp: SftpSession, f: RemoteFile) -> None:
        try:
            entry = self._read(sftp, f)
        except ChangedDuringRead as exc:
            self._error(f.path, CollectionErrorReason.CHANGED_DURING_READ, str(exc))
            return
        except PermissionError as exc:
            self._error(f.path, CollectionErrorReason.PERMISSION_DENIED, str(exc))
            return
        except FileNotFoundError as exc:
            self._error(f.path, CollectionErrorReason.VANISHED, str(exc))
            return
        except TRANSFER_ERRORS as exc:
            if not sftp.alive():
                raise ConnectionLost(f"SFTP session lost while reading {f.path}: {exc}") from exc
            self._error(f.path, CollectionErrorReason.UNREADABLE, f"{type(exc).__name__}: {exc}")
            return
        with self.lock:
            self.entries.append(entry)
            self.result.files_read += 1
            self.result.bytes_read += f.size
            self.result.read_paths.append(f.path)
        self.observer.file_done(f)

    def _error(self, path: str, reason: CollectionErrorReason, detail: str) -> None:
        log.warning("collection error %s: %s (%s)", reason, path, detail)
        with self.lock:
            self.result.errors.append(CollectionError(path, reason, detail))
        self.progress.add(1, 0)

    def _settle(self, f: RemoteFile) -> None:
        """Wait until the file's mtime second has surely ended on the server (at most `settle_seconds`).

        A write during a read that starts later moves the mtime to a later second, which the stat after the
        read sees; a read inside the mtime's own second could miss a rewrite that keeps size and mtime.
        """
        wait = min(f.mtime + self.options.settle_seconds - time.time(), self.options.settle_seconds)
        if wait > 0 and self.abort.wait(wait):
            raise ConnectionLost("run aborted")

    def _read(self, sftp: SftpSession, f: RemoteFile) -> snap.FileEntry:
        self._settle(f)
        if f.size <= self.options.small_file_max:
            data = bytearray(f.size)
            with sftp.reader(f.path) as fh:
                n = self._fill(fh, 0, data) if f.size else 0
                self.observer.chunk_read(f, 0, f.size)
                now = fh.stat()
            if n != f.size:
                raise ChangedDuringRead(f"listed with {f.size} bytes, read {n}")
            if now.size != f.size or now.mtime != f.mtime:
                raise ChangedDuringRead(f"size/mtime changed from {f.size}/{f.mtime} to {now.size}/{now.mtime}")
            self.progress.add(1, f.size)
            return self.repo.add_small(f, data)
        return self._read_large(sftp, f)

    def _fill(self, fh: RemoteReader, offset: int, buffer: bytearray) -> int:
        return fh.read_into(offset, memoryview(buffer), self.options.read_request, self.options.read_window)

    def _read_large(self, sftp: SftpSession, f: RemoteFile) -> snap.FileEntry:
        digest = hashlib.sha256()
        uploads: list[Future[tuple[str, int]]] = []
        with sftp.reader(f.path) as fh:
            for offset in range(0, f.size, self.options.chunk_size):
                if self.abort.is_set():
                    raise ConnectionLost("run aborted")
                length = min(self.options.chunk_size, f.size - offset)
                held = self.repo.budget.acquire(length)
                try:
                    # Read straight into the chunk's own buffer (the SFTP edge copies each answer once, into it).
                    data = bytearray(length)
                    n = self._fill(fh, offset, data)
                except BaseException:
                    self.repo.budget.release(held)
                    raise
                if n != length:
                    self.repo.budget.release(held)
                    raise ChangedDuringRead(f"listed with {f.size} bytes, ended early at {offset + n}")
                digest.update(data)
                self.observer.chunk_read(f, offset, length)
                uploads.append(self.repo.add_chunk(data, held))
                del data
                self.progress.add(0, length)
            now = fh.stat()
        if now.size != f.size or now.mtime != f.mtime:
            raise ChangedDuringRead(f"size/mtime changed from {f.size}/{f.mtime} to {now.size}/{now.mtime}")
        chunks = tuple((key, 0, stored) for key, stored in (fut.result() for fut in uploads))
        entry = snap.FileEntry(f.path, f.size, f.mtime, f.mode, digest.hexdigest(), chunks, sealed=True)
        self.repo.write_index("file-" + secrets.token_hex(12), [entry])
        self.progress.add(1, 0)
        return entry


def _link_entry(f: RemoteFile) -> snap.FileEntry:
    target = f.link_target or ""
    return snap.FileEntry(f.path, f.size, f.mtime, f.mode, hashlib.sha256(target.encode("utf-8")).hexdigest(), (),
                          snap.SYMLINK, target)


def run_backup(connect: Connect, store: ObjectStore, customer_id: str, run_key: str, paths: list[str],
               excludes: list[str], policy: NamePolicy | None = None, options: EngineOptions | None = None,
               observer: Observer | None = None, now: Callable[[], datetime] = utcnow,
               damaged: Collection[str] = ()) -> BackupResult:
    """One snapshot of the designated areas; per-file problems are collection errors, lost sessions raise.

    Files whose size and mtime match the previous snapshot (or an interrupted run's index) are neither
    read nor uploaded, unless their bytes are in a damaged object: `damaged` (keys relative to the customer's
    prefix, known damaged from the project's DB) and whatever this run's sample of the stored objects finds
    (`engine.verify_sample_fraction`). Those files are read again and stored afresh (self-healing). The
    manifest is written last: a run that raises leaves no snapshot behind.
    """
    policy, options, observer = policy or NamePolicy(), options or EngineOptions(), observer or Observer()
    started = now()
    result = BackupResult()
    # The data key first: without a master key, or with one that cannot unwrap the customer's key, the run
    # stops here, before anything is read or written (docs/storage-format.md, "Losing the master key"). A
    # customer without one gets it with its first stored object (an unreachable server leaves nothing behind).
    if keys.data_key(store, customer_id, fresh=True) is None:
        connections.master_keys()

    with connect() as sftp:
        listing: list[RemoteFile] = []
        for root in paths:
            listing.extend(walk(sftp, root, excludes, policy, result.errors))
    links = [_link_entry(f) for f in listing if f.is_link]
    listing = [f for f in listing if not f.is_link]
    previous = load_manifest(store, customer_id)
    bad = set(damaged)
    if previous and options.verify_sample_fraction > 0:
        # Self-healing: a rolling share of the stored objects re-read each run (a different share each run).
        turn = len(list_snapshots(store, customer_id))
        sample = sample_keys(referenced_objects(previous.files), options.verify_sample_fraction, turn)
        result.sampled_objects = len(sample)
        result.damage_found = check_objects(store, customer_id, sample, options.upload_threads)
        for d in result.damage_found:
            log.error("%s: stored object %s is damaged (%s: %s); its files are read again this run",
                      customer_id, d.key, d.reason, d.detail)
        bad |= {d.key for d in result.damage_found}

    def usable(e: snap.FileEntry) -> bool:
        return not (bad and e.object_keys() & bad)

    repo = RepositoryWriter(store, customer_id, options)
    known: dict[str, snap.FileEntry] = ({p: e for p, e in previous.by_path().items() if usable(e)}
                                        if previous else {})
    if previous:
        repo.learn([e for e in previous.files if usable(e)])
    # Chunks that arrived before an interruption are skipped by name (one LIST instead of a HEAD per chunk).
    repo.data_keys.update((k[len(customer_prefix(customer_id)):], size) for k, size in
                          store.list_keys(customer_prefix(customer_id) + snap.DATA))
    for key in bad:            # a damaged chunk is PUT again when a file that holds it is read again
        repo.data_keys.pop(key, None)
    leftover = [k for k, _ in store.list_keys(customer_prefix(customer_id) + snap.INDEX)]
    for key in leftover:
        entries = [e for e in read_index(store, customer_id, key) if usable(e)]
        repo.learn(entries)
        known.update({e.path: e for e in entries})
    carried: list[snap.FileEntry] = []
    todo: list[RemoteFile] = []
    for f in listing:
        old = known.get(f.path)
        if old is not None and old.same_listing(f.size, f.mtime):
            carried.append(snap.FileEntry(f.path, f.size, f.mtime, f.mode, old.sha256, old.chunks, sealed=old.sealed))
        else:
            todo.append(f)
    log.info("%s: %d files listed, %d unchanged since the last snapshot, %d to read (%.1f MiB), %d name errors",
             customer_id, len(listing), len(carried), len(todo), sum(f.size for f in todo) / MiB, len(result.errors))
    with Progress(len(todo), sum(f.size for f in todo), options.progress_interval) as progress:
        collector = Collector(connect, repo, options, observer, progress, result)
        try:
            collector.run(todo)
        finally:
            # Whatever was read completely still gets stored and indexed, so a retry does not read it again.
            repo.flush()
            try:
                repo.wait()
            finally:
                repo.pool.shutdown(wait=True)
    result.bytes_uploaded, result.objects_uploaded = repo.bytes_uploaded, repo.objects_uploaded
    if collector.failure is not None:
        raise collector.failure
    files = carried + collector.entries + links
    result.links = len(links)
    if bad:
        still = set().union(*(e.object_keys() for e in files)) & bad
        result.unhealed = sorted(still - repo.uploaded)
        result.healed = sorted(bad - set(result.unhealed))
        log.warning("%s: self-healing: %d damaged object(s) no longer used by the new snapshot%s", customer_id,
                    len(result.healed), f"; still used: {result.unhealed}" if result.unhealed else "")
    result.snapshot_id = snap.new_snapshot_id(started)
    result.files, result.bytes = len(files), sum(f.size for f in files)
    header = snap.SnapshotHeader(
        snapshot_id=result.snapshot_id, customer_id=customer_id, run_key=run_key,
        started_at=started.isoformat(), finished_at=now().isoformat(), paths=tuple(paths),
        file_count=result.files, total_bytes=result.bytes, collection_errors=len(result.errors),
        parent=previous.header.snapshot_id if previous else None)
    write_manifest(store, customer_id, snap.Manifest(header, files))
    # The snapshot now lists everything the indexes did: they are no longer needed.
    for key in leftover + [repo.key(k) for k in repo.index_keys]:
        store.remove(key)
    log.info("%s: snapshot %s: %d files, %.1f MiB; read %d files (%.1f MiB), uploaded %.1f MiB in %d objects, "
             "%d collection errors", customer_id, result.snapshot_id, result.files, result.bytes / MiB,
             result.files_read, result.bytes_read / MiB, result.bytes_uploaded / MiB, result.objects_uploaded,
             len(result.errors))
    return result
