"""The restorer (art. 18(1)): write a snapshot's files to a local folder or an SFTP server, each checked by sha256."""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cloudbackup.backup import format as snap
from cloudbackup.backup.format import object_key
from cloudbackup.backup.repository import load_manifest
from cloudbackup.edges.s3 import ObjectStore
from cloudbackup.edges.sftp import SftpSession

log = logging.getLogger(__name__)


class RestoreError(RuntimeError):
    """The snapshot or path asked for does not exist, or the target is unusable."""


@dataclass
class RestoreResult:
    snapshot_id: str
    files: int = 0
    bytes: int = 0
    mismatches: list[str] = field(default_factory=list)    # paths whose bytes did not match the manifest


def file_bytes(store: ObjectStore, customer_id: str, entry: snap.FileEntry) -> Iterator[bytes]:
    for key, offset, length in entry.chunks:
        yield from store.iter_range(object_key(customer_id, key), offset, length)


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

    def __init__(self, sftp: SftpSession, root: str) -> None:
        self.sftp, self.root = sftp, root.rstrip("/") or "/"
        self.made: set[str] = set()

    def _mkdirs(self, directory: str) -> None:
        if directory in self.made or directory in ("", "/"):
            return
        self._mkdirs(posixpath.dirname(directory))
        if not self.sftp.exists(directory):
            self.sftp.mkdir(directory)
        self.made.add(directory)

    def write_file(self, relative: str, entry: snap.FileEntry, data: Iterator[bytes]) -> str:
        final = posixpath.join(self.root, relative)
        self._mkdirs(posixpath.dirname(final))
        tmp = posixpath.join(posixpath.dirname(final), f".{posixpath.basename(final)}.cloudbackup-restore")
        digest = hashlib.sha256()
        with self.sftp.writer(tmp) as out:
            for piece in data:
                digest.update(piece)
                out.write(piece)
        if digest.hexdigest() != entry.sha256:
            self.sftp.remove(tmp)
            return digest.hexdigest()
        self.sftp.chmod(tmp, entry.mode & 0o7777 or 0o644)
        self.sftp.utime(tmp, entry.mtime)
        self.sftp.rename_over(tmp, final)
        return digest.hexdigest()


def restore(store: ObjectStore, customer_id: str, target: _Writer, snapshot_id: str | None = None,
            sub_path: str | None = None) -> RestoreResult:
    """Write the snapshot's files (or those at/below `sub_path`) to `target`, each checked by sha256.

    A file whose bytes do not match the manifest is not left at its final name; it is listed in
    `mismatches`, and the caller fails the restore.
    """
    manifest = manifest_or_fail(store, customer_id, snapshot_id)
    chosen = snap.select(manifest.files, sub_path)
    if not chosen:
        raise RestoreError(f"snapshot {manifest.header.snapshot_id} has no file at or below {sub_path!r}")
    result = RestoreResult(manifest.header.snapshot_id)
    for entry in chosen:
        got = target.write_file(relative_target(entry.path), entry, file_bytes(store, customer_id, entry))
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


def restore_to_sftp(store: ObjectStore, customer_id: str, session: AbstractContextManager[SftpSession],
                    root: str, snapshot_id: str | None = None, sub_path: str | None = None) -> RestoreResult:
    with session as sftp:
        return restore(store, customer_id, SftpTarget(sftp, root), snapshot_id, sub_path)
