"""The restorer (art. 18(1)): write a snapshot's files to a local folder or an SFTP server, each checked by sha256.

Every file is first written into a temporary folder `.cbtmp-<random>` at the restore root, under a short
numbered name, and renamed into place once its sha256 matches the manifest: a long name (up to the
policy's 255 bytes) never grows past the file system's limit, and no temporary name can be a snapshot's
file. One file that cannot be restored never stops the others: each failure is listed and the caller fails
the restore at the end. Symlinks are restored as links, after every file, and nothing is ever written
through a link (docs/storage-format.md, "Reading: restore").
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import posixpath
import secrets
import shutil
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cloudbackup.backup import blob, keys
from cloudbackup.backup import format as snap
from cloudbackup.backup.format import object_key
from cloudbackup.backup.repository import load_manifest
from cloudbackup.edges.s3 import ObjectStore
from cloudbackup.edges.sftp import SftpSession

log = logging.getLogger(__name__)

TEMP_PREFIX = ".cbtmp-"
SPAN_MAX = 32 * 1024 * 1024     # one GET of a pack covers at most this many bytes of neighbouring files
SPAN_GAP = 1024 * 1024          # … and skips no more than this between two of them


class RestoreError(RuntimeError):
    """The snapshot or path asked for does not exist, or the target is unusable."""


@dataclass
class RestoreResult:
    snapshot_id: str
    files: int = 0                      # files and links restored
    bytes: int = 0
    links: int = 0                      # of which symlinks
    mismatches: list[str] = field(default_factory=list)    # paths whose bytes did not match the manifest
    failures: list[str] = field(default_factory=list)      # "path: why" of files that could not be written

    @property
    def ok(self) -> bool:
        return not (self.mismatches or self.failures)


def _stored(store: ObjectStore, customer_id: str, key: str, offset: int, length: int) -> bytearray:
    """One stored range read into a buffer of its size, straight from the socket (no 1 MiB piece allocated and
    joined per read); a blob's range must be exactly `length` bytes, else it is damaged."""
    buf = bytearray(length)
    out, pos = memoryview(buf), 0
    # A whole chunk: a plain GET, without a Range header, costs the S3 server (SeaweedFS) far less.
    whole = offset == 0 and key.startswith(snap.DATA)
    pieces = store.iter_views(object_key(customer_id, key)) if whole else \
        store.iter_views(object_key(customer_id, key), offset, length)
    for piece in pieces:
        if pos + len(piece) > length:
            raise blob.BlobError(f"{key} holds more than the {length} bytes its reference names")
        out[pos:pos + len(piece)] = piece
        pos += len(piece)
    if pos != length:
        raise blob.BlobError(f"{key} holds {pos} bytes where its reference names {length}")
    return buf


def file_bytes(store: ObjectStore, customer_id: str, entry: snap.FileEntry,
               piece: int = 256 * 1024) -> Iterator[memoryview]:
    """The file's bytes in order, as views of one reused buffer (each valid until the next is asked for), in
    pieces small enough to stay in the CPU cache between hashing and writing. A sealed entry's ranges are
    each fetched whole, authenticated and decrypted (BlobError on a damaged one)."""
    if entry.sealed:
        data_key = keys.require(store, customer_id)
        for key, offset, length in entry.chunks:
            view = memoryview(data_key.open(blob.DATA, _stored(store, customer_id, key, offset, length)))
            for start in range(0, len(view), piece):
                yield view[start:start + piece]
        return
    for key, offset, length in entry.chunks:
        if offset == 0 and key.startswith(snap.DATA):
            # A whole chunk: a plain GET, without a Range header, costs the S3 server (SeaweedFS) far less; an
            # object of another length shows as a sha256 mismatch.
            yield from store.iter_views(object_key(customer_id, key), piece=piece)
        else:
            yield from store.iter_views(object_key(customer_id, key), offset, length, piece=piece)


def manifest_or_fail(store: ObjectStore, customer_id: str, snapshot_id: str | None) -> snap.Manifest:
    manifest = load_manifest(store, customer_id, snapshot_id)
    if manifest is None:
        raise RestoreError(f"customer {customer_id!r} has no snapshot yet")
    return manifest


def relative_target(path: str) -> str:
    """The path a file is restored under, below the target folder; refuses anything that climbs out."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or any("\x00" in p for p in parts):
        raise RestoreError(f"refusing to restore unsafe path {path!r}")
    return "/".join(parts)


def below_links(entries: list[snap.FileEntry]) -> set[str]:
    """Paths that lie below a symlink of the same snapshot: writing them would go through the link.

    A walk never yields such a pair (links are not followed); only a tampered manifest does.
    """
    links = {e.path.rstrip("/") for e in entries if e.is_link}
    out = set()
    for e in entries:
        parts = e.path.split("/")
        if any("/".join(parts[:i]) in links for i in range(1, len(parts))):
            out.add(e.path)
    return out


class _Target(Protocol):
    threads: int

    def begin(self, reserved: set[str]) -> None: ...

    def write_file(self, relative: str, entry: snap.FileEntry, data: Iterable[bytes | memoryview]) -> str: ...

    def write_link(self, relative: str, entry: snap.FileEntry) -> None: ...

    def end(self) -> None: ...


def _temp_name(reserved: set[str]) -> str:
    while True:
        name = TEMP_PREFIX + secrets.token_hex(8)
        if name not in reserved:
            return name


class LocalTarget:
    """Restores into a local folder (thread-safe: files are written in parallel)."""

    def __init__(self, root: Path, threads: int = 4) -> None:
        self.root = root.resolve()
        self.threads = threads
        self.tmp: Path | None = None
        self.counter = itertools.count()
        self.made: set[Path] = set()
        self.lock = threading.Lock()

    def begin(self, reserved: set[str]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        while self.tmp is None:
            candidate = self.root / _temp_name(reserved)
            try:
                candidate.mkdir(mode=0o700)       # never an existing folder: a fresh one or another name
            except FileExistsError:
                continue
            self.tmp = candidate

    def end(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def _parent(self, relative: str) -> Path:
        """The folder the entry goes in, made as needed; refuses a path through a symlink or out of the root."""
        parent = self.root
        for part in relative.split("/")[:-1]:
            parent = parent / part
            if parent in self.made:
                continue
            if parent.is_symlink():
                raise RestoreError(f"refusing to write below the symlink {parent}")
            try:
                parent.mkdir()
            except FileExistsError:
                if not parent.is_dir() or parent.is_symlink():
                    raise RestoreError(f"{parent} exists and is not a folder") from None
            with self.lock:
                self.made.add(parent)
        if parent != self.root and self.root not in parent.resolve().parents:
            raise RestoreError(f"refusing to write {parent} outside {self.root}")
        return parent

    def _tmp(self) -> Path:
        assert self.tmp is not None, "begin() first"
        with self.lock:
            return self.tmp / str(next(self.counter))

    def write_file(self, relative: str, entry: snap.FileEntry, data: Iterable[bytes | memoryview]) -> str:
        final = self._parent(relative) / relative.rsplit("/", 1)[-1]
        tmp = self._tmp()
        digest = hashlib.sha256()
        try:
            with open(tmp, "wb") as out:
                for piece in data:
                    digest.update(piece)
                    out.write(piece)
            if digest.hexdigest() != entry.sha256:
                return digest.hexdigest()
            os.chmod(tmp, entry.mode & 0o7777 or 0o644)
            os.utime(tmp, (entry.mtime, entry.mtime))
            os.replace(tmp, final)     # replaces a file or a link of that name; never follows a link
        finally:
            tmp.unlink(missing_ok=True)
        return digest.hexdigest()

    def write_link(self, relative: str, entry: snap.FileEntry) -> None:
        final = self._parent(relative) / relative.rsplit("/", 1)[-1]
        tmp = self._tmp()
        try:
            os.symlink(entry.target or "", tmp)
            os.utime(tmp, (entry.mtime, entry.mtime), follow_symlinks=False)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)


class SftpTarget:
    """Restores onto an SFTP server below `root` (one session: one thread)."""

    threads = 1

    def __init__(self, sftp: SftpSession, root: str) -> None:
        self.sftp, self.root = sftp, root.rstrip("/") or "/"
        self.made: set[str] = set()
        self.tmp: str | None = None
        self.counter = itertools.count()

    def _mkdirs(self, directory: str) -> None:
        if directory in self.made or directory in ("", "/"):
            return
        self._mkdirs(posixpath.dirname(directory))
        st = self.sftp.lstat(directory)
        if st is None:
            self.sftp.mkdir(directory)
        elif st.is_link and directory.startswith(self.root.rstrip("/") + "/"):
            raise RestoreError(f"refusing to write below the symlink {directory}")
        elif st.is_link:
            pass     # the target folder itself or a folder above it: the operator's choice, followed
        elif not st.is_dir:
            raise RestoreError(f"{directory} exists and is not a folder")
        self.made.add(directory)

    def begin(self, reserved: set[str]) -> None:
        self._mkdirs(self.root)
        while self.tmp is None:
            candidate = posixpath.join(self.root, _temp_name(reserved))
            try:
                self.sftp.mkdir(candidate)      # fails on an existing entry: then another name
            except OSError:
                if self.sftp.lstat(candidate) is None:
                    raise
                continue
            self.tmp = candidate

    def end(self) -> None:
        if self.tmp is None:
            return
        try:
            for raw, _ in self.sftp.listdir(self.tmp):
                self.sftp.remove(posixpath.join(self.tmp, raw.decode()))
            self.sftp.rmdir(self.tmp)
        except OSError as exc:
            log.warning("restore: could not remove the temporary folder %s: %s", self.tmp, exc)
        self.tmp = None

    def _paths(self, relative: str) -> tuple[str, str]:
        assert self.tmp is not None, "begin() first"
        final = posixpath.join(self.root, relative)
        self._mkdirs(posixpath.dirname(final))
        return final, posixpath.join(self.tmp, str(next(self.counter)))

    def write_file(self, relative: str, entry: snap.FileEntry, data: Iterable[bytes | memoryview]) -> str:
        final, tmp = self._paths(relative)
        digest = hashlib.sha256()
        with self.sftp.writer(tmp) as out:
            for piece in data:
                digest.update(piece)
                out.write(bytes(piece))      # a view of a reused buffer: paramiko gets its own copy
        if digest.hexdigest() != entry.sha256:
            self.sftp.remove(tmp)
            return digest.hexdigest()
        self.sftp.chmod(tmp, entry.mode & 0o7777 or 0o644)
        self.sftp.utime(tmp, entry.mtime)
        self.sftp.rename_over(tmp, final)
        return digest.hexdigest()

    def write_link(self, relative: str, entry: snap.FileEntry) -> None:
        final, tmp = self._paths(relative)
        self.sftp.symlink(entry.target or "", tmp)
        self.sftp.rename_over(tmp, final)


def _spans(entries: list[snap.FileEntry]) -> Iterator[list[snap.FileEntry]]:
    """A pack's files in offset order, cut into runs that one ranged GET fetches."""
    run: list[snap.FileEntry] = []
    start = end = 0
    for e in sorted(entries, key=lambda e: e.chunks[0][1]):
        _, offset, length = e.chunks[0]
        if run and (offset + length - start > SPAN_MAX or offset - end > SPAN_GAP):
            yield run
            run = []
        if not run:
            start = end = offset
        run.append(e)
        end = max(end, offset + length)     # kept as it goes: a pack holds thousands of small files
    if run:
        yield run


class _Restore:
    def __init__(self, store: ObjectStore, customer_id: str, target: _Target, result: RestoreResult) -> None:
        self.store, self.customer_id, self.target, self.result = store, customer_id, target, result
        self.lock = threading.Lock()

    def fail(self, path: str, why: str) -> None:
        log.error("restore: %s not restored: %s", path, why)
        with self.lock:
            self.result.failures.append(f"{path}: {why}")

    def mismatch(self, entry: snap.FileEntry, why: str) -> None:
        """Stored bytes that are not the file's (a damaged or forged blob): like a sha256 mismatch."""
        log.error("restore: %s does not match the manifest: %s", entry.path, why)
        with self.lock:
            self.result.mismatches.append(entry.path)

    def one(self, entry: snap.FileEntry, data: Iterable[bytes | memoryview]) -> None:
        try:
            got = self.target.write_file(relative_target(entry.path), entry, data)
        except blob.BlobError as exc:
            self.mismatch(entry, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the others
            self.fail(entry.path, f"{type(exc).__name__}: {exc}")
            return
        with self.lock:
            if got != entry.sha256:
                log.error("restore: %s does not match the manifest (sha256 %s, expected %s)", entry.path, got,
                          entry.sha256)
                self.result.mismatches.append(entry.path)
                return
            self.result.files += 1
            self.result.bytes += entry.size

    def span(self, pack: str, entries: list[snap.FileEntry]) -> None:
        start = entries[0].chunks[0][1]
        end = max(e.chunks[0][1] + e.chunks[0][2] for e in entries)
        try:
            body = self.store.get_bytes(object_key(self.customer_id, pack), start, end - start)
        except Exception as exc:  # noqa: BLE001
            for e in entries:
                self.fail(e.path, f"cannot read {pack}: {type(exc).__name__}: {exc}")
            return
        view = memoryview(body)
        for e in entries:
            _, offset, length = e.chunks[0]
            stored = view[offset - start:offset - start + length]
            if not e.sealed:
                self.one(e, [bytes(stored)])
                continue
            try:
                plain = keys.require(self.store, self.customer_id).open(blob.DATA, stored)
            except blob.BlobError as exc:
                self.mismatch(e, f"its blob in {pack} does not open: {exc}")
                continue
            self.one(e, [plain])

    def link(self, entry: snap.FileEntry) -> None:
        try:
            self.target.write_link(relative_target(entry.path), entry)
        except Exception as exc:  # noqa: BLE001
            self.fail(entry.path, f"{type(exc).__name__}: {exc}")
            return
        self.result.files += 1
        self.result.links += 1


def restore(store: ObjectStore, customer_id: str, target: _Target, snapshot_id: str | None = None,
            sub_path: str | None = None) -> RestoreResult:
    """Write the snapshot's files (or those at/below `sub_path`) to `target`, each checked by sha256.

    A file whose bytes do not match the manifest is not left at its final name; it is listed in
    `mismatches`; a file that could not be written at all is listed in `failures`. The restore goes on
    with the others either way, and the caller fails it at the end (`RestoreResult.ok`).
    """
    manifest = manifest_or_fail(store, customer_id, snapshot_id)
    chosen = snap.select(manifest.files, sub_path)
    if not chosen:
        raise RestoreError(f"snapshot {manifest.header.snapshot_id} has no file at or below {sub_path!r}")
    result = RestoreResult(manifest.header.snapshot_id)
    job = _Restore(store, customer_id, target, result)
    shadowed = below_links(chosen)
    packs: dict[str, list[snap.FileEntry]] = defaultdict(list)
    others: list[snap.FileEntry] = []
    links: list[snap.FileEntry] = []
    for entry in chosen:
        if entry.path in shadowed:
            job.fail(entry.path, "lies below a symlink of the snapshot: never written through a link")
        elif entry.is_link:
            links.append(entry)
        elif len(entry.chunks) == 1 and entry.chunks[0][0].startswith(snap.PACKS):
            packs[entry.chunks[0][0]].append(entry)
        else:
            others.append(entry)
    reserved = {e.path.strip("/").split("/", 1)[0] for e in chosen}
    target.begin(reserved)
    try:
        with ThreadPoolExecutor(max(1, target.threads), thread_name_prefix="restore") as pool:
            futures = [pool.submit(job.span, pack, run) for pack, entries in sorted(packs.items())
                       for run in _spans(entries)]
            # Large files: the biggest first, so the pool ends together.
            futures += [pool.submit(lambda e: job.one(e, file_bytes(store, customer_id, e)), e)
                        for e in sorted(others, key=lambda e: -e.size)]
            for fut in futures:
                fut.result()
        for entry in sorted(links, key=lambda e: e.path):    # after every file: nothing is written through them
            job.link(entry)
    finally:
        target.end()
    log.info("restored %d files (%d links, %d bytes) of snapshot %s for %s; %d mismatches, %d failures",
             result.files, result.links, result.bytes, result.snapshot_id, customer_id, len(result.mismatches),
             len(result.failures))
    return result


def restore_to_sftp(store: ObjectStore, customer_id: str, session: AbstractContextManager[SftpSession],
                    root: str, snapshot_id: str | None = None, sub_path: str | None = None) -> RestoreResult:
    with session as sftp:
        return restore(store, customer_id, SftpTarget(sftp, root), snapshot_id, sub_path)
