"""The checker: re-read every object a snapshot uses and check each object's and each file's sha256."""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from cloudbackup.backup import format as snap
from cloudbackup.backup.format import SHA256_META, object_key
from cloudbackup.backup.restorer import manifest_or_fail
from cloudbackup.edges.s3 import ObjectStore

log = logging.getLogger(__name__)


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


def verify(store: ObjectStore, customer_id: str, snapshot_id: str | None = None) -> VerifyResult:
    """Re-read every object the snapshot uses: each object's sha256, and each file's sha256 from its pieces."""
    manifest = manifest_or_fail(store, customer_id, snapshot_id)
    result = VerifyResult(manifest.header.snapshot_id)
    by_pack: dict[str, list[snap.FileEntry]] = defaultdict(list)
    large: list[snap.FileEntry] = []
    for entry in manifest.files:
        if len(entry.chunks) == 1 and entry.chunks[0][0].startswith(snap.PACKS):
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
                if key.startswith(snap.DATA) and key not in checked_chunks:
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
