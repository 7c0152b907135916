"""Browsing a snapshot for a restore: one folder's sub-folders and files, from the manifest's entries (pure).

A manifest lists files by absolute path as on the customer's server (docs/storage-format.md); folders are
implied by those paths. The console shows one folder at a time, each sub-folder with the number and size of
the files under it, so an operator can pick a file or a whole folder to restore.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """What the listing needs of a manifest entry (backup.format.FileEntry has these fields)."""

    path: str
    size: int
    mtime: int
    kind: str = "file"                  # file | symlink
    target: str | None = None


@dataclass(frozen=True)
class Folder:
    path: str
    name: str
    files: int                          # files (and links) anywhere under it
    bytes: int


@dataclass(frozen=True)
class Listing:
    snapshot_id: str
    path: str                           # the folder shown, "/" for the root
    crumbs: tuple[tuple[str, str], ...]  # (name, path) from "/" down to the folder
    folders: tuple[Folder, ...]
    files: tuple[Entry, ...]
    total_files: int                    # under the folder, at any depth
    total_bytes: int


def normalise(path: str) -> str:
    """An absolute, normalised folder path ("/" for empty); ValueError for anything relative."""
    path = path or "/"
    if not path.startswith("/"):
        raise ValueError(f"path {path!r} must be absolute")
    out = posixpath.normpath(path)
    return "/" if out in ("/", "//") else out


def listing(snapshot_id: str, entries: Iterable[Entry], folder: str = "/") -> Listing:
    """The direct children of `folder`: sub-folders (with their totals) and files, both sorted by name."""
    folder = normalise(folder)
    prefix = folder if folder.endswith("/") else folder + "/"
    folders: dict[str, list[int]] = {}
    files: list[Entry] = []
    total_files = total_bytes = 0
    for e in entries:
        if not e.path.startswith(prefix):
            continue
        total_files += 1
        total_bytes += e.size
        rest = e.path[len(prefix):]
        head, sep, _ = rest.partition("/")
        if sep:
            acc = folders.setdefault(head, [0, 0])
            acc[0] += 1
            acc[1] += e.size
        else:
            files.append(e)
    crumbs = [("/", "/")]
    walked = ""
    for part in [p for p in folder.split("/") if p]:
        walked += "/" + part
        crumbs.append((part, walked))
    return Listing(
        snapshot_id=snapshot_id, path=folder, crumbs=tuple(crumbs),
        folders=tuple(Folder(prefix + name, name, n, size) for name, (n, size) in sorted(folders.items())),
        files=tuple(sorted(files, key=lambda e: e.path)), total_files=total_files, total_bytes=total_bytes)
