"""Backup runs: walk the designated areas over SFTP, store new bytes in packs and chunks, write the snapshot last."""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import posixpath
import queue
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime

import paramiko

from cloudbackup import snapshot as snap
from cloudbackup.db import utcnow
from cloudbackup.names import NamePolicy, check_name, printable
from cloudbackup.records import CollectionError
from cloudbackup.sftp import ConnectionLost, alive, listdir_raw, read_pipelined
from cloudbackup.storage import SHA256_META, ObjectStore, customer_prefix, object_key

log = logging.getLogger(__name__)

Connect = Callable[[], AbstractContextManager[paramiko.SFTPClient]]
MiB = 1024 * 1024


@dataclass(frozen=True)
class RemoteFile:
    path: str          # absolute path on the customer's server
    size: int
    mtime: int
    mode: int


@dataclass(frozen=True)
class EngineOptions:
    """Tuning of one run; the defaults suit a 2-core worker on a LAN (see README, benchmark)."""

    connections: int = 4                 # parallel SFTP sessions (Transports), one per reader thread
    upload_threads: int = 4
    chunk_size: int = 8 * MiB            # large files are stored as content-addressed chunks of this size
    small_file_max: int = 1 * MiB        # files up to this size go into packs
    pack_target: int = 16 * MiB
    in_flight_bytes: int = 48 * MiB      # read but not yet stored: bounds memory whatever the file sizes
    read_request: int = 128 * 1024       # bytes per SFTP read request
    read_window: int = 32                # read requests in flight per file
    progress_interval: float = 10.0


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


class ChangedDuringRead(Exception):
    """The file's size or mtime moved while it was read: its bytes are not a consistent copy."""


def excluded(relative: str, patterns: list[str]) -> bool:
    """Exclude patterns are shell globs matched against the path relative to its designated area."""
    name = posixpath.basename(relative)
    return any(fnmatch.fnmatchcase(relative, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def walk(sftp: paramiko.SFTPClient, root: str, excludes: list[str], policy: NamePolicy,
         errors: list[CollectionError]) -> Iterator[RemoteFile]:
    """Regular files under `root`; symlinks are never followed, refused names are collection errors."""
    stack = [root.rstrip("/") or "/"]
    while stack:
        directory = stack.pop()
        try:
            entries = sorted(listdir_raw(sftp, directory), key=lambda e: e[0])
        except PermissionError as exc:
            errors.append(CollectionError(directory, "permission_denied", str(exc)))
            continue
        except FileNotFoundError as exc:
            errors.append(CollectionError(directory, "vanished", str(exc)))
            continue
        subdirs = []
        for raw, attr in entries:
            raw_path = directory.encode("utf-8").rstrip(b"/") + b"/" + raw
            reason = check_name(policy, raw, raw_path)
            if reason:
                errors.append(CollectionError(printable(raw_path), "name_policy", reason))
                continue
            path = raw_path.decode("utf-8")
            if excluded(posixpath.relpath(path, root), excludes):
                continue
            mode = attr.st_mode or 0
            if stat.S_ISLNK(mode):
                continue  # a link could point anywhere on the server: never followed
            if stat.S_ISDIR(mode):
                subdirs.append(path)
            elif stat.S_ISREG(mode):
                yield RemoteFile(path, attr.st_size or 0, int(attr.st_mtime or 0), stat.S_IMODE(mode))
        stack.extend(reversed(subdirs))


class _Budget:
    """Bytes read but not yet stored; readers wait while the budget is spent."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self.cond = threading.Condition()

    def acquire(self, n: int) -> int:
        n = min(n, self.limit)
        with self.cond:
            self.cond.wait_for(lambda: self.used + n <= self.limit)
            self.used += n
        return n

    def release(self, n: int) -> None:
        with self.cond:
            self.used -= n
            self.cond.notify_all()


@dataclass
class _Pack:
    pack_id: str
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    entries: list[snap.FileEntry] = field(default_factory=list)


class _Repository:
    """The customer's stored objects as one run sees them: known blobs, uploads, packs (thread-safe)."""

    def __init__(self, store: ObjectStore, customer_id: str, options: EngineOptions, result: BackupResult) -> None:
        self.store, self.customer_id, self.options, self.result = store, customer_id, options, result
        self.lock = threading.Lock()
        self.small: dict[str, tuple[str, int, int]] = {}   # sha256 → (pack key, offset, length)
        self.data_keys: set[str] = set()
        self.pack: _Pack | None = None
        self.budget = _Budget(options.in_flight_bytes)
        self.pool = ThreadPoolExecutor(options.upload_threads, thread_name_prefix="upload")
        self.futures: list[Future] = []
        self.index_keys: list[str] = []

    def key(self, relative: str) -> str:
        return object_key(self.customer_id, relative)

    def learn(self, entries: list[snap.FileEntry]) -> None:
        for e in entries:
            for key, offset, length in e.chunks:
                if key.startswith("packs/") and len(e.chunks) == 1:
                    self.small.setdefault(e.sha256, (key, offset, length))
                elif key.startswith("data/"):
                    self.data_keys.add(key)

    def _put(self, relative: str, data: bytes, sha256: str) -> None:
        self.store.put_bytes(self.key(relative), data, metadata={SHA256_META: sha256})
        with self.lock:
            self.result.bytes_uploaded += len(data)
            self.result.objects_uploaded += 1

    # -- small files: packs ------------------------------------------------------------------------------
    def add_small(self, f: RemoteFile, data: bytes) -> snap.FileEntry:
        sha = hashlib.sha256(data).hexdigest()
        sealed = None
        with self.lock:
            ref = self.small.get(sha)
            if ref is None and data:
                if self.pack is None:
                    self.pack = _Pack(secrets.token_hex(16))
                ref = (snap.pack_key(self.pack.pack_id), self.pack.size, len(data))
                self.pack.parts.append(data)
                self.pack.size += len(data)
                self.small[sha] = ref
            entry = snap.FileEntry(f.path, f.size, f.mtime, f.mode, sha, (ref,) if ref else ())
            if self.pack is not None and ref and ref[0] == snap.pack_key(self.pack.pack_id):
                self.pack.entries.append(entry)
                if self.pack.size >= self.options.pack_target:
                    sealed, self.pack = self.pack, None
        if sealed:
            self._submit_pack(sealed)
        return entry

    def flush(self) -> None:
        with self.lock:
            sealed, self.pack = self.pack, None
        if sealed and sealed.parts:
            self._submit_pack(sealed)

    def _submit_pack(self, pack: _Pack) -> None:
        held = self.budget.acquire(pack.size)

        def upload() -> None:
            try:
                body = b"".join(pack.parts)
                self._put(snap.pack_key(pack.pack_id), body, hashlib.sha256(body).hexdigest())
                self.write_index(pack.pack_id, pack.entries)
            finally:
                self.budget.release(held)

        with self.lock:
            self.futures.append(self.pool.submit(upload))

    def write_index(self, name: str, entries: list[snap.FileEntry]) -> None:
        """After the bytes arrived: lets an interrupted run's successor skip them (removed with the snapshot)."""
        relative = f"{snap.INDEX}{name}.json"
        self.store.put_bytes(self.key(relative), snap.encode_index(entries))
        with self.lock:
            self.index_keys.append(relative)

    # -- large files: content-addressed chunks -----------------------------------------------------------
    def add_chunk(self, data: bytes, held: int) -> tuple[str, Future | None]:
        sha = hashlib.sha256(data).hexdigest()
        relative = snap.data_key(sha)
        with self.lock:
            known = relative in self.data_keys
            self.data_keys.add(relative)
        if known:
            self.budget.release(held)
            return relative, None

        def upload() -> None:
            try:
                self._put(relative, data, sha)
            finally:
                self.budget.release(held)

        return relative, self.pool.submit(upload)

    def wait(self) -> None:
        """Every upload submitted so far has finished; the first failure is raised."""
        while True:
            with self.lock:
                pending, self.futures = self.futures, []
            if not pending:
                return
            for fut in pending:
                fut.result()


class _Progress:
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

    def __enter__(self) -> _Progress:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()
        log.info(self.line())


def latest_snapshot_id(store: ObjectStore, customer_id: str) -> str | None:
    prefix = customer_prefix(customer_id) + snap.SNAPSHOTS
    ids = [k[len(prefix):].removesuffix(".json.gz") for k, _ in store.list_keys(prefix) if k.endswith(".json.gz")]
    return max(ids) if ids else None


def list_snapshots(store: ObjectStore, customer_id: str) -> list[str]:
    prefix = customer_prefix(customer_id) + snap.SNAPSHOTS
    return sorted(k[len(prefix):].removesuffix(".json.gz") for k, _ in store.list_keys(prefix)
                  if k.endswith(".json.gz"))


def load_manifest(store: ObjectStore, customer_id: str, snapshot_id: str | None = None) -> snap.Manifest | None:
    """The named snapshot, or the latest one; None when the customer has none yet."""
    snapshot_id = snapshot_id or latest_snapshot_id(store, customer_id)
    if snapshot_id is None:
        return None
    return snap.decode_manifest(store.get_bytes(object_key(customer_id, snap.snapshot_key(snapshot_id))))


class _Collector:
    """Reader threads, each with its own SFTP session, pulling files from one queue."""

    def __init__(self, connect: Connect, repo: _Repository, options: EngineOptions, observer: Observer,
                 progress: _Progress, result: BackupResult) -> None:
        self.connect, self.repo, self.options, self.observer = connect, repo, options, observer
        self.progress, self.result = progress, result
        self.entries: list[snap.FileEntry] = []
        self.lock = threading.Lock()
        self.abort = threading.Event()
        self.failure: BaseException | None = None

    def run(self, todo: list[RemoteFile]) -> None:
        work: queue.Queue[RemoteFile] = queue.Queue()
        # Large files first, so their long reads overlap with the many small ones.
        for f in sorted(todo, key=lambda f: (f.size <= self.options.small_file_max, f.path)):
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

    def _one(self, sftp: paramiko.SFTPClient, f: RemoteFile) -> None:
        try:
            entry = self._read(sftp, f)
        except ChangedDuringRead as exc:
            self._error(f.path, "changed_during_read", str(exc))
            return
        except PermissionError as exc:
            self._error(f.path, "permission_denied", str(exc))
            return
        except FileNotFoundError as exc:
            self._error(f.path, "vanished", str(exc))
            return
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if not alive(sftp):
                raise ConnectionLost(f"SFTP session lost while reading {f.path}: {exc}") from exc
            self._error(f.path, "unreadable", f"{type(exc).__name__}: {exc}")
            return
        with self.lock:
            self.entries.append(entry)
            self.result.files_read += 1
            self.result.bytes_read += f.size
            self.result.read_paths.append(f.path)
        self.observer.file_done(f)

    def _error(self, path: str, reason: str, detail: str) -> None:
        log.warning("collection error %s: %s (%s)", reason, path, detail)
        with self.lock:
            self.result.errors.append(CollectionError(path, reason, detail))
        self.progress.add(1, 0)

    def _read(self, sftp: paramiko.SFTPClient, f: RemoteFile) -> snap.FileEntry:
        if f.size <= self.options.small_file_max:
            with sftp.open(f.path, "rb") as fh:
                data = b"".join(self._pieces(sftp, fh, 0, f.size)) if f.size else b""
            if len(data) != f.size:
                raise ChangedDuringRead(f"listed with {f.size} bytes, read {len(data)}")
            self.observer.chunk_read(f, 0, f.size)
            self.progress.add(1, f.size)
            return self.repo.add_small(f, data)
        return self._read_large(sftp, f)

    def _pieces(self, sftp: paramiko.SFTPClient, fh: paramiko.SFTPFile, offset: int, length: int) -> Iterator[bytes]:
        return read_pipelined(sftp, fh.handle, offset, length, self.options.read_request, self.options.read_window)

    def _read_large(self, sftp: paramiko.SFTPClient, f: RemoteFile) -> snap.FileEntry:
        digest = hashlib.sha256()
        chunks: list[tuple[str, int, int]] = []
        uploads: list[Future] = []
        with sftp.open(f.path, "rb") as fh:
            for offset in range(0, f.size, self.options.chunk_size):
                if self.abort.is_set():
                    raise ConnectionLost("run aborted")
                length = min(self.options.chunk_size, f.size - offset)
                held = self.repo.budget.acquire(length)
                try:
                    pieces = []
                    for piece in self._pieces(sftp, fh, offset, length):
                        digest.update(piece)
                        pieces.append(piece)
                    data = b"".join(pieces)
                    del pieces
                except BaseException:
                    self.repo.budget.release(held)
                    raise
                if len(data) != length:
                    self.repo.budget.release(held)
                    raise ChangedDuringRead(f"listed with {f.size} bytes, ended early at {offset + len(data)}")
                self.observer.chunk_read(f, offset, length)
                key, fut = self.repo.add_chunk(data, held)
                del data
                chunks.append((key, 0, length))
                if fut is not None:
                    uploads.append(fut)
                self.progress.add(0, length)
            now = fh.stat()
        if now.st_size != f.size or int(now.st_mtime or 0) != f.mtime:
            raise ChangedDuringRead(f"size/mtime changed from {f.size}/{f.mtime} to {now.st_size}/{now.st_mtime}")
        for fut in uploads:
            fut.result()
        entry = snap.FileEntry(f.path, f.size, f.mtime, f.mode, digest.hexdigest(), tuple(chunks))
        self.repo.write_index("file-" + secrets.token_hex(12), [entry])
        self.progress.add(1, 0)
        return entry


def run_backup(connect: Connect, store: ObjectStore, customer_id: str, run_key: str, paths: list[str],
               excludes: list[str], policy: NamePolicy | None = None, options: EngineOptions | None = None,
               observer: Observer | None = None, now: Callable[[], datetime] = utcnow) -> BackupResult:
    """One snapshot of the designated areas; per-file problems are collection errors, lost sessions raise.

    Files whose size and mtime match the previous snapshot (or an interrupted run's index) are neither
    read nor uploaded. The manifest is written last: a run that raises leaves no snapshot behind.
    """
    policy, options, observer = policy or NamePolicy(), options or EngineOptions(), observer or Observer()
    started = now()
    result = BackupResult()
    with connect() as sftp:
        listing: list[RemoteFile] = []
        for root in paths:
            listing.extend(walk(sftp, root, excludes, policy, result.errors))
    previous = load_manifest(store, customer_id)
    repo = _Repository(store, customer_id, options, result)
    known: dict[str, snap.FileEntry] = previous.by_path() if previous else {}
    if previous:
        repo.learn(previous.files)
    # Chunks that arrived before an interruption are skipped by name (one LIST instead of a HEAD per chunk).
    repo.data_keys.update(k[len(customer_prefix(customer_id)):] for k, _ in
                          store.list_keys(customer_prefix(customer_id) + "data/"))
    leftover = [k for k, _ in store.list_keys(customer_prefix(customer_id) + snap.INDEX)]
    for key in leftover:
        entries = snap.decode_index(store.get_bytes(key))
        repo.learn(entries)
        known.update({e.path: e for e in entries})
    carried: list[snap.FileEntry] = []
    todo: list[RemoteFile] = []
    for f in listing:
        old = known.get(f.path)
        if old is not None and old.same_listing(f.size, f.mtime):
            carried.append(snap.FileEntry(f.path, f.size, f.mtime, f.mode, old.sha256, old.chunks))
        else:
            todo.append(f)
    log.info("%s: %d files listed, %d unchanged since the last snapshot, %d to read (%.1f MiB), %d name errors",
             customer_id, len(listing), len(carried), len(todo), sum(f.size for f in todo) / MiB, len(result.errors))
    with _Progress(len(todo), sum(f.size for f in todo), options.progress_interval) as progress:
        collector = _Collector(connect, repo, options, observer, progress, result)
        try:
            collector.run(todo)
        finally:
            # Whatever was read completely still gets stored and indexed, so a retry does not read it again.
            repo.flush()
            try:
                repo.wait()
            finally:
                repo.pool.shutdown(wait=True)
    if collector.failure is not None:
        raise collector.failure
    files = carried + collector.entries
    result.snapshot_id = snap.new_snapshot_id(started)
    result.files, result.bytes = len(files), sum(f.size for f in files)
    header = snap.SnapshotHeader(
        snapshot_id=result.snapshot_id, customer_id=customer_id, run_key=run_key,
        started_at=started.isoformat(), finished_at=now().isoformat(), paths=tuple(paths),
        file_count=result.files, total_bytes=result.bytes, collection_errors=len(result.errors),
        parent=previous.header.snapshot_id if previous else None)
    body = snap.encode_manifest(snap.Manifest(header, files))
    store.put_bytes(object_key(customer_id, snap.snapshot_key(result.snapshot_id)), body,
                    metadata={SHA256_META: hashlib.sha256(body).hexdigest()})
    # The snapshot now lists everything the indexes did: they are no longer needed.
    for key in leftover + [repo.key(k) for k in repo.index_keys]:
        store.remove(key)
    log.info("%s: snapshot %s: %d files, %.1f MiB; read %d files (%.1f MiB), uploaded %.1f MiB in %d objects, "
             "%d collection errors", customer_id, result.snapshot_id, result.files, result.bytes / MiB,
             result.files_read, result.bytes_read / MiB, result.bytes_uploaded / MiB, result.objects_uploaded,
             len(result.errors))
    return result


def stored_bytes(store: ObjectStore, customer_id: str) -> int:
    """Bytes held for the customer: the sum of its object sizes under its prefix (see README)."""
    return sum(size for _key, size in store.list_keys(customer_prefix(customer_id)))
