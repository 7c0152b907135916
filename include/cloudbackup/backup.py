"""Backup runs: walk the customer's designated areas over SFTP and copy them into S3."""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import posixpath
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

import paramiko

from cloudbackup.records import CollectionError
from cloudbackup.storage import ObjectStore, UnsafeKey, customer_prefix, object_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteFile:
    path: str          # absolute path on the customer's server
    size: int
    mtime: int
    mode: int


@dataclass
class CopyResult:
    files: int = 0
    bytes: int = 0
    errors: list[CollectionError] = field(default_factory=list)


def excluded(relative: str, patterns: list[str]) -> bool:
    """Exclude patterns are shell globs matched against the path relative to its designated area."""
    name = posixpath.basename(relative)
    return any(fnmatch.fnmatchcase(relative, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def walk(sftp: paramiko.SFTPClient, root: str, excludes: list[str],
         errors: list[CollectionError]) -> Iterator[RemoteFile]:
    """Regular files under `root`, depth first in name order; symlinks are never followed."""
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = sorted(sftp.listdir_attr(directory), key=lambda a: a.filename)
        except PermissionError as exc:
            errors.append(CollectionError(directory, "permission_denied", str(exc)))
            continue
        except FileNotFoundError as exc:
            errors.append(CollectionError(directory, "vanished", str(exc)))
            continue
        subdirs = []
        for attr in entries:
            path = posixpath.join(directory, attr.filename)
            relative = posixpath.relpath(path, root)
            if excluded(relative, excludes):
                continue
            mode = attr.st_mode or 0
            if stat.S_ISLNK(mode):
                continue  # a link could point anywhere on the server: never followed (issue #3)
            if stat.S_ISDIR(mode):
                subdirs.append(path)
            elif stat.S_ISREG(mode):
                yield RemoteFile(path, attr.st_size or 0, int(attr.st_mtime or 0), mode)
        stack.extend(reversed(subdirs))


def copy_file(sftp: paramiko.SFTPClient, store: ObjectStore, customer_id: str, f: RemoteFile) -> str:
    """Stream one file into S3 (prefetched reads, multipart upload); returns its sha256."""
    key = object_key(customer_id, "files", f.path)
    digest = hashlib.sha256()
    with sftp.open(f.path, "rb") as remote:
        remote.prefetch(f.size)

        class _Hashing:
            def read(self, n: int = -1) -> bytes:
                chunk = remote.read(n)
                digest.update(chunk)
                return chunk

        store.put_stream(key, _Hashing(), metadata={"x-amz-meta-mtime": str(f.mtime)})  # type: ignore[arg-type]
    return digest.hexdigest()


def full_copy(sftp: paramiko.SFTPClient, store: ObjectStore, customer_id: str,
              paths: list[str], excludes: list[str]) -> CopyResult:
    """Copy every designated area; a file that fails is a collection error and the run goes on."""
    result = CopyResult()
    for root in paths:
        for f in walk(sftp, root, excludes, result.errors):
            try:
                copy_file(sftp, store, customer_id, f)
            except UnsafeKey as exc:
                result.errors.append(CollectionError(f.path, "name_policy", str(exc)))
                continue
            except PermissionError as exc:
                result.errors.append(CollectionError(f.path, "permission_denied", str(exc)))
                continue
            except FileNotFoundError as exc:
                result.errors.append(CollectionError(f.path, "vanished", str(exc)))
                continue
            result.files += 1
            result.bytes += f.size
    log.info("collected %d files, %d bytes, %d collection errors", result.files, result.bytes,
             len(result.errors))
    return result


def stored_bytes(store: ObjectStore, customer_id: str) -> int:
    """Bytes held for the customer: the sum of its object sizes under its prefix."""
    return sum(size for _key, size in store.list_keys(customer_prefix(customer_id)))
