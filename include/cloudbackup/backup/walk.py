"""The walk: list a designated area over SFTP, applying excludes and the file-name policy (art. 16, 18(2))."""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

from cloudbackup.backup.names import NamePolicy, check_name, printable
from cloudbackup.backup.outcomes import CollectionError, CollectionErrorReason
from cloudbackup.edges.sftp import SftpSession


@dataclass(frozen=True)
class RemoteFile:
    path: str          # absolute path on the customer's server
    size: int
    mtime: int
    mode: int


def excluded(relative: str, patterns: list[str]) -> bool:
    """Exclude patterns are shell globs matched against the path relative to its designated area."""
    name = posixpath.basename(relative)
    return any(fnmatch.fnmatchcase(relative, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def walk(sftp: SftpSession, root: str, excludes: list[str], policy: NamePolicy,
         errors: list[CollectionError]) -> Iterator[RemoteFile]:
    """Regular files under `root`; symlinks are never followed, refused names are collection errors."""
    stack = [root.rstrip("/") or "/"]
    while stack:
        directory = stack.pop()
        try:
            entries = sorted(sftp.listdir(directory), key=lambda e: e[0])
        except PermissionError as exc:
            errors.append(CollectionError(directory, CollectionErrorReason.PERMISSION_DENIED, str(exc)))
            continue
        except FileNotFoundError as exc:
            errors.append(CollectionError(directory, CollectionErrorReason.VANISHED, str(exc)))
            continue
        subdirs = []
        for raw, attr in entries:
            raw_path = directory.encode("utf-8").rstrip(b"/") + b"/" + raw
            reason = check_name(policy, raw, raw_path)
            if reason:
                errors.append(CollectionError(printable(raw_path), CollectionErrorReason.NAME_POLICY, reason))
                continue
            path = raw_path.decode("utf-8")
            if excluded(posixpath.relpath(path, root), excludes):
                continue
            if attr.is_link:
                continue  # a link could point anywhere on the server: never followed
            if attr.is_dir:
                subdirs.append(path)
            elif attr.is_file:
                yield RemoteFile(path, attr.size, attr.mtime, attr.permissions)
        stack.extend(reversed(subdirs))
