"""Object lock applied to a customer's repository: new objects locked at upload, reused ones extended, locks listed.

The rules are `backup.immutability`; what SeaweedFS and MinIO enforce is in docs/object-lock.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from cloudbackup.backup import format as snap
from cloudbackup.backup import immutability
from cloudbackup.backup.format import customer_prefix, object_key
from cloudbackup.backup.repository import load_manifest
from cloudbackup.clock import utcnow
from cloudbackup.edges.s3 import ObjectStore

log = logging.getLogger(__name__)

KEYS = "keys/"      # the customer's wrapped data keys (format 2): locked with the data they open


class ObjectLockUnavailable(RuntimeError):
    """A plan asks for object lock, but the bucket has none (it can only be enabled when the bucket is created)."""


class LockingStore(ObjectStore):
    """The same bucket, but every object PUT (except index files) carries a COMPLIANCE retention until `until`.

    Wrapping the store, not changing the archiver: whatever writes through it, in whatever format, is locked in the
    very PUT that creates the version, so no window exists in which a new object could be deleted.
    """

    def __init__(self, inner: ObjectStore, until: datetime, mode: str = immutability.COMPLIANCE) -> None:
        # Shares the inner store's client and settings (no second connection pool); nothing else is changed.
        self.__dict__.update(inner.__dict__)
        self.until, self.mode = until, mode
        self.locked_puts = 0

    def put_bytes(self, key: str, data: bytes | bytearray, metadata: dict[str, str] | None = None, *,
                  unsigned_payload: bool = False) -> None:
        relative = key.split("/", 2)[2] if key.count("/") >= 2 else key
        if not immutability.locked_part(relative):
            super().put_bytes(key, data, metadata, unsigned_payload=unsigned_payload)
            return
        # A PUT that sets a retention stays signed with its body's hash (minio computes it when none is recorded):
        # the servers' object-lock paths are the ones tested that way (docs/object-lock.md).
        self.put_retained(key, data, self.until, self.mode, metadata)
        self.locked_puts += 1


def for_run(store: ObjectStore, lock_days: int, at: datetime | None = None,
            mode: str = immutability.COMPLIANCE) -> ObjectStore:
    """The store a backup run of a plan with `object_lock_days` writes through (the same store when 0).

    New objects are locked until `lock_days` after the run's start plus one extension step, so `lock_snapshot`
    after the run finds them long enough already and touches only the reused ones.
    """
    if lock_days <= 0:
        return store
    if not store.object_lock_enabled():
        raise ObjectLockUnavailable(
            f"the plan keeps snapshots immutable for {lock_days} days, but bucket {store.bucket!r} has no object lock; "
            "S3 enables it only at creation: create a bucket with object lock (docs/object-lock.md) and point the "
            "connection cloudbackup_s3 at it")
    until = immutability.retain_until((at or utcnow()) + immutability.EXTEND_STEP, lock_days)
    return LockingStore(store, until, mode)


@dataclass(frozen=True)
class LockResult:
    snapshot_id: str
    required_until: datetime       # every object of the snapshot is locked at least until then
    objects: int                   # objects the snapshot depends on
    extended: int                  # of which this call extended (or locked for the first time)


def snapshot_objects(store: ObjectStore, customer_id: str, manifest: snap.Manifest) -> set[str]:
    """Full keys of every object a snapshot needs to be restored: its manifest, packs and chunks, the key objects."""
    keys = {object_key(customer_id, snap.snapshot_key(manifest.header.snapshot_id))}
    for entry in manifest.files:
        keys.update(object_key(customer_id, k) for k in entry.object_keys())
    keys.update(k for k, _ in store.list_keys(customer_prefix(customer_id) + KEYS))
    return keys


def current_locks(store: ObjectStore, keys: Iterable[str], threads: int = 8) -> dict[str, datetime | None]:
    """Each key's present retain-until (its latest version), None when it has none; one request per key."""
    def one(key: str) -> tuple[str, datetime | None]:
        found = store.retention(key)
        return key, found[1] if found else None

    with ThreadPoolExecutor(threads, thread_name_prefix="retention") as pool:
        return dict(pool.map(one, sorted(keys)))


def lock_snapshot(store: ObjectStore, customer_id: str, snapshot_id: str, lock_days: int,
                  mode: str = immutability.COMPLIANCE, threads: int = 8) -> LockResult:
    """Make sure every object `snapshot_id` uses stays locked until `lock_days` after the snapshot's start:
    objects reused from earlier snapshots get their locks extended (in steps, `immutability.extensions`)."""
    manifest = load_manifest(store, customer_id, snapshot_id)
    if manifest is None:
        raise LookupError(f"{customer_id}: no snapshot {snapshot_id}")
    required = immutability.retain_until(datetime.fromisoformat(manifest.header.started_at), lock_days)
    used = snapshot_objects(store, customer_id, manifest)
    todo = immutability.extensions(current_locks(store, used, threads), used, required)

    def extend(item: tuple[str, datetime]) -> None:
        store.retain(item[0], item[1], mode)

    with ThreadPoolExecutor(threads, thread_name_prefix="retain") as pool:
        list(pool.map(extend, sorted(todo.items())))
    log.info("%s: snapshot %s locked until %s: %d objects, %d locks extended", customer_id, snapshot_id,
             required.isoformat(), len(used), len(todo))
    return LockResult(snapshot_id, required, len(used), len(todo))


def locked_objects(store: ObjectStore, customer_id: str, now: datetime | None = None,
                   threads: int = 8) -> dict[str, datetime]:
    """Key → retain-until of every object of the customer still locked at `now` (its latest version), for prune
    (skip them: S3 would refuse the delete, or, on a versioned bucket, only hide them behind a delete marker)
    and for purge. Empty on a bucket without object lock."""
    if not store.object_lock_enabled():
        return {}
    keys = [k for k, _ in store.list_keys(customer_prefix(customer_id))]
    found = current_locks(store, keys, threads)
    return immutability.still_locked({k: v for k, v in found.items() if v is not None}, now or utcnow())


def version_lock(store: ObjectStore, key: str, version_id: str | None, now: datetime | None = None) -> str:
    """Why a version cannot be deleted, for the deletion report: its retention or legal hold, or neither."""
    why = []
    try:
        found = store.retention(key, version_id)
        if found and found[1] > (now or utcnow()):
            why.append(f"{found[0]} retention until {found[1].isoformat()}")
        if store.legal_hold(key, version_id):
            why.append("legal hold")
    except Exception as exc:  # noqa: BLE001 - the question is for a report line: say it could not be asked
        why.append(f"lock unknown ({type(exc).__name__}: {exc})")
    return "; ".join(why)



def locked_relative(store: ObjectStore, customer_id: str, now: datetime | None = None) -> dict[str, datetime]:
    """`locked_objects` with keys relative to the customer's prefix: what `pruner.prune(locked=…)` takes."""
    prefix = customer_prefix(customer_id)
    return {key.removeprefix(prefix): until for key, until in locked_objects(store, customer_id, now).items()}
