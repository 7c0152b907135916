"""The repository format: object keys under a customer's prefix, the snapshot manifest and the index files.

Documented in docs/storage-format.md; every reader and writer of the format goes through this module.
"""

from __future__ import annotations

import gzip
import json
import posixpath
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

FORMAT = "cloudbackup-snapshot/3"
# Manifests a reader accepts: /1 (regular files only), /2 (adds symlink lines), /3 (repository format 2: sealed
# blobs, the `sealed` flag on file lines); see docs/storage-format.md.
READABLE_FORMATS = ("cloudbackup-snapshot/1", "cloudbackup-snapshot/2", FORMAT)
FILE = "file"
SYMLINK = "symlink"
INDEX_FORMAT = "cloudbackup-index/1"

# Keys below the customer's prefix (customers/<id>/); see docs/storage-format.md.
SNAPSHOTS = "snapshots/"
INDEX = "index/"
PACKS = "packs/"
DATA = "data/"
KEYS = "keys/"          # the customer's data key, wrapped by a master key: never garbage, never in the clear
# User metadata set on every pack and chunk at upload: the sha256 of the whole object.
SHA256_META = "x-amz-meta-sha256"


class UnsafeKey(ValueError):
    """A remote name that would escape its customer's prefix."""


def customer_prefix(customer_id: str) -> str:
    return f"customers/{customer_id}/"


def object_key(customer_id: str, *parts: str) -> str:
    """A key under the customer's prefix; refuses any part that could climb out of it."""
    segments: list[str] = []
    for part in parts:
        for seg in part.split("/"):
            if seg in ("", "."):
                continue
            if seg == ".." or "\\" in seg or "\x00" in seg:
                raise UnsafeKey(f"unsafe path segment {seg!r} in {part!r}")
            segments.append(seg)
    if not segments:
        raise UnsafeKey(f"empty object path {parts!r}")
    key = customer_prefix(customer_id) + "/".join(segments)
    if posixpath.normpath(key) != key or not key.startswith(customer_prefix(customer_id)):
        raise UnsafeKey(f"object key {key!r} leaves the prefix of {customer_id}")
    return key


def data_key(name: str) -> str:
    """A chunk of a large file, named by the sha256 of its bytes (format 1) or by its keyed hash (format 2)."""
    return f"{DATA}{name[:2]}/{name}"


def key_file_key(master_key_id: str) -> str:
    """The customer's data key wrapped by the master key `master_key_id`."""
    return f"{KEYS}{master_key_id}.json"


def pack_key(pack_id: str) -> str:
    """A pack: many small files' bytes concatenated."""
    return f"{PACKS}{pack_id[:2]}/{pack_id}"


SNAPSHOT_SUFFIX = ".json.gz"


def snapshot_key(snapshot_id: str) -> str:
    return f"{SNAPSHOTS}{snapshot_id}{SNAPSHOT_SUFFIX}"


def snapshot_id_of(key: str) -> str | None:
    """The snapshot id a key (relative to the customer's prefix) names, None for any other key."""
    if key.startswith(SNAPSHOTS) and key.endswith(SNAPSHOT_SUFFIX):
        return key[len(SNAPSHOTS):-len(SNAPSHOT_SUFFIX)]
    return None


def new_snapshot_id(now: datetime) -> str:
    """Sorts by time, to the microsecond (two runs can start in the same second): the latest is the greatest."""
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ") + "-" + secrets.token_hex(4)


@dataclass(frozen=True)
class FileEntry:
    """One collected file: what it was, and where its bytes are (key relative to the customer prefix)."""

    path: str
    size: int
    mtime: int
    mode: int
    sha256: str
    chunks: tuple[tuple[str, int, int], ...]      # (object key, offset, length), in file order
    kind: str = FILE                              # FILE, or SYMLINK: a link, kept as its target, never followed
    target: str | None = None                     # a symlink's target, as the server's readlink gave it
    sealed: bool = False                          # every range in `chunks` is a format-2 blob (else plaintext)

    @property
    def is_link(self) -> bool:
        return self.kind == SYMLINK

    def to_json(self) -> dict:
        d = {"path": self.path, "size": self.size, "mtime": self.mtime, "mode": self.mode,
             "sha256": self.sha256, "chunks": [list(c) for c in self.chunks]}
        if self.is_link:
            d.update(type=SYMLINK, target=self.target)
        if self.sealed:
            d["sealed"] = True
        return d

    @classmethod
    def from_json(cls, d: dict) -> FileEntry:
        kind = d.get("type", FILE)
        if kind not in (FILE, SYMLINK):
            raise ValueError(f"unknown manifest entry type {kind!r} for {d.get('path')!r}")
        return cls(d["path"], int(d["size"]), int(d["mtime"]), int(d["mode"]), d["sha256"],
                   tuple((str(k), int(o), int(n)) for k, o, n in d["chunks"]), kind,
                   str(d["target"]) if kind == SYMLINK else None, d.get("sealed") is True)

    def same_listing(self, size: int, mtime: int) -> bool:
        """A regular file listed with this size and mtime may reuse this entry (a link never stands for a file)."""
        return self.kind == FILE and self.size == size and self.mtime == mtime

    def object_keys(self) -> set[str]:
        return {key for key, _, _ in self.chunks}


@dataclass(frozen=True)
class SnapshotHeader:
    snapshot_id: str
    customer_id: str
    run_key: str
    started_at: str
    finished_at: str
    paths: tuple[str, ...]
    file_count: int
    total_bytes: int
    collection_errors: int
    parent: str | None = None
    format: str = FORMAT


@dataclass
class Manifest:
    header: SnapshotHeader
    files: list[FileEntry] = field(default_factory=list)

    def by_path(self) -> dict[str, FileEntry]:
        return {f.path: f for f in self.files}


def manifest_lines(m: Manifest) -> bytes:
    """JSON lines: the header first, then one file per line in path order (format 2 seals these bytes)."""
    lines = [json.dumps(asdict(m.header), ensure_ascii=False)]
    lines += [json.dumps(f.to_json(), ensure_ascii=False) for f in sorted(m.files, key=lambda f: f.path)]
    return ("\n".join(lines) + "\n").encode("utf-8")


def encode_manifest(m: Manifest) -> bytes:
    """Format 1's container: gzip'd JSON lines (what repositories before format 2 hold)."""
    return gzip.compress(manifest_lines(m), compresslevel=6)


def decode_manifest(blob: bytes) -> Manifest:
    """A format-1 manifest object (gzip'd JSON lines)."""
    return parse_manifest(gzip.decompress(blob))


def parse_manifest(text: bytes) -> Manifest:
    """The JSON lines of a manifest, whatever container they came in."""
    lines = text.decode("utf-8").splitlines()
    head = json.loads(lines[0])
    if head.get("format") not in READABLE_FORMATS:
        raise ValueError(f"unknown snapshot format {head.get('format')!r}")
    head["paths"] = tuple(head["paths"])
    return Manifest(SnapshotHeader(**head), [FileEntry.from_json(json.loads(line)) for line in lines[1:] if line])


def encode_index(entries: Iterable[FileEntry]) -> bytes:
    return json.dumps({"format": INDEX_FORMAT, "files": [e.to_json() for e in entries]},
                      ensure_ascii=False).encode("utf-8")


def decode_index(blob: bytes) -> list[FileEntry]:
    data = json.loads(blob)
    if data.get("format") != INDEX_FORMAT:
        raise ValueError(f"unknown index format {data.get('format')!r}")
    return [FileEntry.from_json(d) for d in data["files"]]


def select(files: list[FileEntry], sub_path: str | None) -> list[FileEntry]:
    """The files of a snapshot at or below `sub_path` (a file or a folder); all when None or '/'."""
    if not sub_path or sub_path == "/":
        return list(files)
    want = "/" + sub_path.strip("/")
    return [f for f in files if f.path == want or f.path.startswith(want + "/")]
