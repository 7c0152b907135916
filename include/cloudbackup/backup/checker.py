"""The checker: re-read stored objects and check their sha256s and (format 2) their GCM tags — a whole snapshot
(`verify`), or the rolling sample each backup run takes (self-healing, docs/storage-format.md)."""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from cloudbackup.backup import blob, keys
from cloudbackup.backup import format as snap
from cloudbackup.backup.format import SHA256_META, object_key
from cloudbackup.backup.restorer import manifest_or_fail
from cloudbackup.edges.s3 import ObjectStore, is_missing

log = logging.getLogger(__name__)

MISSING = "missing"                  # the object is gone
HASH_MISMATCH = "hash_mismatch"      # its bytes do not have the sha256 recorded at upload (or its name)


@dataclass(frozen=True)
class DamagedObject:
    """A stored object (key relative to the customer's prefix) whose bytes are not what was stored."""

    key: str
    reason: str          # MISSING or HASH_MISMATCH
    detail: str = ""


@dataclass
class VerifyResult:
    snapshot_id: str
    files: int = 0
    objects: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    damaged: list[DamagedObject] = field(default_factory=list)   # recorded by the caller; healed by the next run

    @property
    def ok(self) -> bool:
        return not self.problems


def referenced_objects(files: Iterable[snap.FileEntry]) -> set[str]:
    """Every pack and chunk the entries use."""
    return {key for e in files for key, _, _ in e.chunks}


def sample_keys(keys: Iterable[str], fraction: float, turn: int) -> list[str]:
    """The share of `keys` one run re-reads: keys fall in round(1/fraction) slots by a hash of the key, and run
    number `turn` takes slot `turn mod slots`, so consecutive runs cover every key once per cycle."""
    if fraction <= 0:
        return []
    slots = max(1, round(1 / fraction))
    return sorted(k for k in keys
                  if int(hashlib.sha256(k.encode("utf-8")).hexdigest()[:8], 16) % slots == turn % slots)


def _recorded(store: ObjectStore, key: str) -> str | None:
    return store.metadata(key).get(SHA256_META.removeprefix("x-amz-meta-"))


def check_chunk(store: ObjectStore, customer_id: str, relative: str, body: bytes) -> tuple[str | None, bytes | None]:
    """A whole `data/` chunk as stored: (what is wrong or None, its plaintext).

    Format 2: a sealed blob whose GCM tag must match and whose plaintext's keyed hash must be its name (the tag
    authenticates the body: no sha256 of it is recorded or needed). Format 1: plaintext named by its sha256.
    """
    name = relative.rsplit("/", 1)[1]
    if blob.is_blob(body):
        try:
            data_key = keys.require(store, customer_id)
            plain = data_key.open(blob.DATA, body)
        except blob.BlobError as exc:
            if hashlib.sha256(body).hexdigest() == name:     # a format-1 chunk that happens to start like a blob
                return None, body
            return str(exc), None
        if data_key.chunk_name(hashlib.sha256(plain).digest()) != name:
            return "its plaintext does not have the keyed hash it is named by", None
        return None, plain
    digest = hashlib.sha256(body).hexdigest()
    if digest == name:
        return None, body
    return f"sha256 {digest}, expected {name} (not a format-2 blob either)", None


def check_object(store: ObjectStore, customer_id: str, relative: str) -> tuple[DamagedObject | None, int]:
    """Re-read one pack or chunk: a pack's sha256 against the one recorded at upload, a chunk by `check_chunk`.

    Returns the damage (or None) and the bytes read; S3 errors other than a missing object raise.
    """
    key = object_key(customer_id, relative)
    try:
        if relative.startswith(snap.DATA):
            body = store.get_bytes(key)
            problem, _ = check_chunk(store, customer_id, relative, body)
            return (DamagedObject(relative, HASH_MISMATCH, problem) if problem else None), len(body)
        expected = _recorded(store, key)
        digest, n = hashlib.sha256(), 0
        for piece in store.iter_range(key):
            digest.update(piece)
            n += len(piece)
    except Exception as exc:
        if is_missing(exc):
            return DamagedObject(relative, MISSING, f"{type(exc).__name__}: {exc}"), 0
        raise
    if expected and digest.hexdigest() != expected:
        return DamagedObject(relative, HASH_MISMATCH, f"sha256 {digest.hexdigest()}, recorded {expected}"), n
    return None, n


def check_objects(store: ObjectStore, customer_id: str, keys: list[str], threads: int = 4) -> list[DamagedObject]:
    """Re-read the objects (in parallel); the damaged ones, in key order."""
    if not keys:
        return []
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="sample") as pool:
        found = list(pool.map(lambda k: check_object(store, customer_id, k), keys))
    total = sum(n for _, n in found)
    damaged = [d for d, _ in found if d is not None]
    log.info("%s: sample of %d stored object(s) re-read (%d bytes): %d damaged", customer_id, len(keys), total,
             len(damaged))
    return damaged


def _sealed_chunk(store: ObjectStore, customer_id: str, e: snap.FileEntry, key: str, offset: int, length: int,
                  file_digest: hashlib._Hash, checked: set[str], result: VerifyResult,
                  damaged: dict[str, DamagedObject]) -> bool:
    """One range of a sealed large file: read, checked (stored sha256, GCM tag, keyed name), fed to the file's
    digest. False when the file cannot be checked further."""
    try:
        body = store.get_bytes(object_key(customer_id, key), offset, length)
        problem, plain = check_chunk(store, customer_id, key, body)
    except Exception as exc:  # noqa: BLE001
        result.problems.append(f"{e.path}: cannot read {key}: {exc}")
        if is_missing(exc):
            damaged[key] = DamagedObject(key, MISSING, str(exc))
        return False
    if key not in checked:
        checked.add(key)
        result.objects += 1
        result.bytes += len(body)
    if problem or plain is None:
        result.problems.append(f"{key}: {problem}")
        damaged[key] = DamagedObject(key, HASH_MISMATCH, problem or "")
        return False
    file_digest.update(plain)
    return True


def verify(store: ObjectStore, customer_id: str, snapshot_id: str | None = None) -> VerifyResult:
    """Re-read every object the snapshot uses: each object's sha256, and each file's sha256 from its pieces."""
    manifest = manifest_or_fail(store, customer_id, snapshot_id)
    result = VerifyResult(manifest.header.snapshot_id)
    by_pack: dict[str, list[snap.FileEntry]] = defaultdict(list)
    large: list[snap.FileEntry] = []
    for entry in manifest.files:
        if entry.is_link:
            result.files += 1          # a link holds no stored bytes: its target is in the manifest itself
        elif len(entry.chunks) == 1 and entry.chunks[0][0].startswith(snap.PACKS):
            by_pack[entry.chunks[0][0]].append(entry)
        else:
            large.append(entry)
    checked_chunks: set[str] = set()
    damaged: dict[str, DamagedObject] = {}
    for pack, entries in sorted(by_pack.items()):
        key = object_key(customer_id, pack)
        try:
            body = store.get_bytes(key)
            expected = store.metadata(key).get(SHA256_META.removeprefix("x-amz-meta-"))
        except Exception as exc:  # noqa: BLE001 - every unreadable object is reported, the check goes on
            result.problems.append(f"{pack}: cannot read: {exc}")
            if is_missing(exc):
                damaged[pack] = DamagedObject(pack, MISSING, str(exc))
            continue
        result.objects += 1
        result.bytes += len(body)
        if hashlib.sha256(body).hexdigest() != expected:
            result.problems.append(f"{pack}: object sha256 differs from the one recorded at upload")
            damaged[pack] = DamagedObject(pack, HASH_MISMATCH, "object sha256 differs from the one recorded at upload")
        for e in entries:
            _, offset, length = e.chunks[0]
            plain: bytes | memoryview = memoryview(body)[offset:offset + length]
            if e.sealed:
                try:
                    plain = keys.require(store, customer_id).open(blob.DATA, plain)
                except blob.BlobError as exc:
                    result.problems.append(f"{e.path}: its blob in {pack} does not open: {exc}")
                    damaged[pack] = DamagedObject(pack, HASH_MISMATCH, f"a blob does not open: {exc}")
                    result.files += 1
                    continue
            if hashlib.sha256(plain).hexdigest() != e.sha256:
                result.problems.append(f"{e.path}: sha256 differs from the manifest")
            result.files += 1
    for e in large:
        file_digest = hashlib.sha256()
        unreadable = False
        for key, offset, length in e.chunks:
            if e.sealed:
                if not _sealed_chunk(store, customer_id, e, key, offset, length, file_digest, checked_chunks, result,
                                     damaged):
                    unreadable = True
                    break
                continue
            chunk_digest = hashlib.sha256()
            try:
                for piece in store.iter_range(object_key(customer_id, key), offset, length):
                    chunk_digest.update(piece)
                    file_digest.update(piece)
            except Exception as exc:  # noqa: BLE001
                result.problems.append(f"{e.path}: cannot read {key}: {exc}")
                if is_missing(exc):
                    damaged[key] = DamagedObject(key, MISSING, str(exc))
                unreadable = True
                break
            if key.startswith(snap.DATA) and key not in checked_chunks:
                checked_chunks.add(key)
                result.objects += 1
                result.bytes += length
                if chunk_digest.hexdigest() != key.rsplit("/", 1)[1]:
                    result.problems.append(f"{key}: chunk sha256 differs from its name")
                    damaged[key] = DamagedObject(key, HASH_MISMATCH, "chunk sha256 differs from its name")
        if unreadable:
            continue
        if file_digest.hexdigest() != e.sha256:
            result.problems.append(f"{e.path}: sha256 differs from the manifest")
        result.files += 1
    result.damaged = sorted(damaged.values(), key=lambda d: d.key)
    log.info("verify %s/%s: %d files, %d objects, %d bytes, %d problems, %d damaged objects", customer_id,
             result.snapshot_id, result.files, result.objects, result.bytes, len(result.problems),
             len(result.damaged))
    return result
