"""The walk: list a designated area over SFTP, applying excludes and the file-name policy (art. 16, 18(2))."""

from __future__ import annotations

import fnmatch
import posixpath
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from cloudbackup.backup.names import NamePolicy, check_name, printable
from cloudbackup.backup.outcomes import CollectionError, CollectionErrorReason
from cloudbackup.edges.sftp import RemoteStat, SftpSession


@dataclass(frozen=True)
class RemoteFile:
    path: str          # absolute path on the customer's server
    size: int
    mtime: int
    mode: int
    link_target: str | None = None   # set for a symlink: its target, recorded as is and never followed

    @property
    def is_link(self) -> bool:
        return self.link_target is not None


def special_kind(mode: int) -> str:
    """What a non-regular, non-directory, non-link entry is, in words for the collection error."""
    for test, words in ((stat.S_ISFIFO, "named pipe (fifo)"), (stat.S_ISSOCK, "socket"),
                        (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return words
    return f"not a regular file (mode {mode:o})"


def excluded(relative: str, patterns: list[str]) -> bool:
    """Exclude patterns are shell globs matched against the path relative to its designated area."""
    name = posixpath.basename(relative)
    return any(fnmatch.fnmatchcase(relative, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def walk(sftp: SftpSession, root: str, excludes: list[str], policy: NamePolicy,
         errors: list[CollectionError]) -> Iterator[RemoteFile]:
    """Regular files and symlinks under `root`; refused names and special files are collection errors.

    A symlink is yielded as a link (its target read with readlink), never followed: it could point anywhere
    on the server. Fifos, sockets and devices have no contents to keep: each is a `special_file` error.
    """
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
                link = _link(sftp, path, attr, errors)
                if link is not None:
                    yield link
            elif attr.is_dir:
                subdirs.append(path)
            elif attr.is_file:
                yield RemoteFile(path, attr.size, attr.mtime, attr.permissions)
            else:
                errors.append(CollectionError(path, CollectionErrorReason.SPECIAL_FILE, special_kind(attr.mode)))
        stack.extend(reversed(subdirs))


def _link(sftp: SftpSession, path: str, attr: RemoteStat, errors: list[CollectionError]) -> RemoteFile | None:
    try:
        raw = sftp.readlink(path)
    except FileNotFoundError as exc:
        errors.append(CollectionError(path, CollectionErrorReason.VANISHED, str(exc)))
        return None
    except PermissionError as exc:
        errors.append(CollectionError(path, CollectionErrorReason.PERMISSION_DENIED, str(exc)))
        return None
    except OSError as exc:
        errors.append(CollectionError(path, CollectionErrorReason.UNREADABLE, f"readlink: {exc}"))
        return None
    try:
        target = raw.decode("utf-8")
    except UnicodeDecodeError:
        errors.append(CollectionError(path, CollectionErrorReason.NAME_POLICY,
                                      f"symlink target is not valid UTF-8: {printable(raw)}"))
        return None
    if not target or "\x00" in target:
        errors.append(CollectionError(path, CollectionErrorReason.UNREADABLE, "empty or NUL symlink target"))
        return None
    return RemoteFile(path, len(raw), attr.mtime, attr.permissions, link_target=target)
