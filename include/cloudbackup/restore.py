"""Restore (art. 18(1)) and verify: read a snapshot's bytes back from S3, checked against its manifest."""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
from collections import defaultdict
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import paramiko

from cloudbackup import snapshot as snap
from cloudbackup.backup import load_manifest
from cloudbackup.storage import SHA256_META, ObjectStore, object_key

log = logging.getLogger(__name__)


class RestoreError(RuntimeError):
    """The snapshot or path asked for does not exist, or the target is unusable."""


@dataclass
class RestoreResult:
    snapshot_id: str
    files: int = 0
    bytes: int = 0
    mismatches: list[str] = field(default_factory=list)    # paths whose bytes did not match the manifest


@dataclass
class VerifyResult:
    snapshot_id: str
    files: int = 0
    objects: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _file_bytes(store: ObjectStore, customer_id: str, entry: snap.FileEntry) -> Iterator[bytes]:
    for key, offset, length in entry.chunks:
        yield from store.iter_range(object_key(customer_id, key), offset, length)


def _manifest(store: ObjectStore, customer_id: str, snapshot_id: str | None) -> snap.Manifest:
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


class _Writer(Protocol):
    def write_file(self, relative: str, entry: snap.FileEntry, data: Iterator[bytes]) -> str: ...


class LocalTarget:
    """Restores into a local folder; each file is written under a temporary name and renamed when verified."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def write_file(self, relative: str, entry: snap.FileEntry, data: Iterator[bytes]) -> str:
        final = (self.root / relative).resolve()
        if self.root not in final.parents:
            raise RestoreError(f"refusing to write {final} outside {self.root}")
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.cloudbackup-restore")
        digest = hashlib.sha256()
        with open(tmp, "wb") as out:
            for piece in data:
                digest.update(piece)
                out.write(piece)
        if digest.hexdigest() != entry.sha256:
            tmp.unlink()
            return digest.hexdigest()
        os.chmod(tmp, entry.mode & 0o7777 or 0o644)
        os.utime(tmp, (entry.mtime, entry.mtime))
        os.replace(tmp, final)
        return digest.hexdigest()


class SftpTarget:
    """Restores onto an SFTP server below `root` (e.g. back to the customer's server)."""

    def __init__(self, sftp: paramiko.SFTPClient, root: str) -> None:
        self.sftp, self.root = sftp, root.rstrip("/") or "/"
        self.made: set[str] = set()

    def _mkdirs(self, directory: str) -> None:
        if directory in self.made or directory in ("", "/"):
            return
        self._mkdirs(posixpath.dirname(directory))
        try:
            self.sftp.stat(directory)
        except FileNotFoundError:
            self.sftp.mkdir(directory)
        self.made.add(directory)

    def write_file(self, relative: str, entry: snap.FileEntry, data: Iterator[bytes]) -> str:
        final = posixpath.join(self.root, relative)
        self._mkdirs(posixpath.dirname(final))
        tmp = posixpath.join(posixpath.dirname(final), f".{posixpath.basename(final)}.cloudbackup-restore")
        digest = hashlib.sha256()
        with self.sftp.open(tmp, "wb") as out:
            out.set_pipelined(True)
            for piece in data:
                digest.update(piece)
                out.write(piece)
        if digest.hexdigest() != entry.sha256:
            self.sftp.remove(tmp)
            return digest.hexdigest()
        self.sftp.chmod(tmp, entry.mode & 0o7777 or 0o644)
        self.sftp.utime(tmp, (entry.mtime, entry.mtime))
        self.sftp.posix_rename(tmp, final)
        return digest.hexdigest()


def restore(store: ObjectStore, customer_id: str, target: _Writer, snapshot_id: str | None = None,
            sub_path: str | None = None) -> RestoreResult:
    """Write the snapshot's files (or those at/below `sub_path`) to `target`, each checked by sha256.

    A file whose bytes do not match the manifest is not left at its final name; it is listed in
    `mismatches`, and the caller fails the restore.
    """
    manifest = _manifest(store, customer_id, snapshot_id)
    chosen = snap.select(manifest.files, sub_path)
    if not chosen:
        raise RestoreError(f"snapshot {manifest.header.snapshot_id} has no file at or below {sub_path!r}")
    result = RestoreResult(manifest.header.snapshot_id)
    for entry in chosen:
        got = target.write_file(relative_target(entry.path), entry, _file_bytes(store, customer_id, entry))
        if got != entry.sha256:
            log.error("restore: %s does not match the manifest (sha256 %s, expected %s)", entry.path, got,
                      entry.sha256)
            result.mismatches.append(entry.path)
            continue
        result.files += 1
        result.bytes += entry.size
    log.info("restored %d files (%d bytes) of snapshot %s for %s, %d mismatches", result.files, result.bytes,
             result.snapshot_id, customer_id, len(result.mismatches))
    return result


def restore_to_sftp(store: ObjectStore, customer_id: str, session: AbstractContextManager[paramiko.SFTPClient],
                    root: str, snapshot_id: str | None = None, sub_path: str | None = None) -> RestoreResult:
    with session as sftp:
        return restore(store, customer_id, SftpTarget(sftp, root), snapshot_id, sub_path)


def verify(store: ObjectStore, customer_id: str, snapshot_id: str | None = None) -> VerifyResult:
    """Re-read every object the snapshot uses: each object's sha256, and each file's sha256 from its pieces."""
    manifest = _manifest(store, customer_id, snapshot_id)
    result = VerifyResult(manifest.header.snapshot_id)
    by_pack: dict[str, list[snap.FileEntry]] = defaultdict(list)
    large: list[snap.FileEntry] = []
    for entry in manifest.files:
        if len(entry.chunks) == 1 and entry.chunks[0][0].startswith("packs/"):
            by_pack[entry.chunks[0][0]].append(entry)
        else:
            large.append(entry)
    checked_chunks: set[str] = set()
    for pack, entries in sorted(by_pack.items()):
        key = object_key(customer_id, pack)
        try:
            body = store.get_bytes(key)
            expected = store.metadata(key).get(SHA256_META.removeprefix("x-amz-meta-"))
        except Exception as exc:  # noqa: BLE001 - every unreadable object is reported, the check goes on
            result.problems.append(f"{pack}: cannot read: {exc}")
            continue
        result.objects += 1
        result.bytes += len(body)
        if hashlib.sha256(body).hexdigest() != expected:
            result.problems.append(f"{pack}: object sha256 differs from the one recorded at upload")
        for e in entries:
            _, offset, length = e.chunks[0]
            if hashlib.sha256(body[offset:offset + length]).hexdigest() != e.sha256:
                result.problems.append(f"{e.path}: sha256 differs from the manifest")
            result.files += 1
    for e in large:
        file_digest = hashlib.sha256()
        try:
            for key, offset, length in e.chunks:
                chunk_digest = hashlib.sha256()
                for piece in store.iter_range(object_key(customer_id, key), offset, length):
                    chunk_digest.update(piece)
                    file_digest.update(piece)
                if key.startswith("data/") and key not in checked_chunks:
                    checked_chunks.add(key)
                    result.objects += 1
                    result.bytes += length
                    if chunk_digest.hexdigest() != key.rsplit("/", 1)[1]:
                        result.problems.append(f"{key}: chunk sha256 differs from its name")
        except Exception as exc:  # noqa: BLE001
            result.problems.append(f"{e.path}: cannot read: {exc}")
            continue
        if file_digest.hexdigest() != e.sha256:
            result.problems.append(f"{e.path}: sha256 differs from the manifest")
        result.files += 1
    log.info("verify %s/%s: %d files, %d objects, %d bytes, %d problems", customer_id, result.snapshot_id,
             result.files, result.objects, result.bytes, len(result.problems))
    return result
