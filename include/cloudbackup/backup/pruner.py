"""Prune, the shell over S3: retention applied (manifests forgotten), garbage deleted, mostly unused packs repacked.

Planning is `backup.pruneplan` (pure); the order of the steps and why a prune killed anywhere loses nothing a kept
snapshot needs is in docs/storage-format.md ("Prune"). The caller holds the customer's run lease (`tasks.prune`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from cloudbackup.backup import format as snap
from cloudbackup.backup import pruneplan, repository
from cloudbackup.backup.format import SHA256_META, customer_prefix, object_key
from cloudbackup.backup.pruneplan import PruneSettings, StoredObject
from cloudbackup.backup.retention import RetentionPolicy
from cloudbackup.clock import utcnow
from cloudbackup.edges.s3 import ObjectStore

log = logging.getLogger(__name__)

PHASES = ("list", "load", "plan", "forget", "delete", "repack", "versions")
BATCH = 1000       # keys per DeleteObjects request (the S3 maximum)


def _no_step(_step: str) -> None:
    pass


@dataclass
class PruneReport:
    """What a prune did (or, dry, would do); keys relative to the customer's prefix."""

    customer_id: str
    dry_run: bool
    policy: str
    snapshots: int = 0
    kept: dict[str, list[str]] = field(default_factory=dict)        # snapshot id → why
    forgotten: list[str] = field(default_factory=list)
    deleted_index: list[str] = field(default_factory=list)
    deleted_objects: list[str] = field(default_factory=list)
    repacked: list[str] = field(default_factory=list)               # old packs whose kept ranges moved
    new_packs: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)              # manifests pointed at the new packs
    young: list[str] = field(default_factory=list)                  # unused, but inside the grace period
    held: dict[str, str] = field(default_factory=dict)              # key → "locked until …" / the refusal
    old_versions: int = 0                                           # hidden versions and markers removed
    objects_before: int = 0
    bytes_before: int = 0
    bytes_freed: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        """Counts only (a DAG task's return value: no key lists)."""
        return {"customer_id": self.customer_id, "dry_run": self.dry_run, "policy": self.policy,
                "snapshots": self.snapshots, "kept": len(self.kept), "forgotten": len(self.forgotten),
                "deleted_objects": len(self.deleted_index) + len(self.deleted_objects),
                "repacked_packs": len(self.repacked), "new_packs": len(self.new_packs),
                "held": len(self.held), "young": len(self.young), "old_versions": self.old_versions,
                "bytes_before": self.bytes_before,
                "bytes_freed": self.bytes_freed, "seconds": self.seconds}

    def lines(self) -> list[str]:
        delete, repack = ("would delete", "would repack") if self.dry_run else ("deleted", "repacked")
        out = [f"{self.customer_id}: {self.policy}; {self.snapshots} snapshot(s), {self.objects_before} object(s), "
               f"{self.bytes_before} bytes stored"]
        out += [f"keep    {sid}  ({', '.join(why)})" for sid, why in sorted(self.kept.items())]
        out += [f"forget  {sid}" for sid in sorted(self.forgotten)]
        out += [f"delete  {key}" for key in [*self.deleted_index, *self.deleted_objects]]
        out += [f"repack  {key}" for key in self.repacked]
        out += [f"kept    {key}: {why}" for key, why in sorted(self.held.items())]
        out.append(f"{'Would forget' if self.dry_run else 'Forgot'} {len(self.forgotten)} snapshot(s), "
                   f"{delete} {len(self.deleted_index) + len(self.deleted_objects)} object(s), {repack} "
                   f"{len(self.repacked)} pack(s) into {len(self.new_packs)}"
                   + (f", {'would remove' if self.dry_run else 'removed'} {self.old_versions} hidden version(s) "
                      "and delete marker(s)" if self.old_versions else "")
                   + f"; {self.bytes_freed} bytes "
                   f"{'would be ' if self.dry_run else ''}freed; {len(self.young)} unused object(s) younger than "
                   "the grace period kept")
        return out


def _listing(store: ObjectStore, customer_id: str) -> list[StoredObject]:
    prefix = customer_prefix(customer_id)
    return [StoredObject(key[len(prefix):], size, modified) for key, size, modified in store.list_detailed(prefix)]


def _snapshot_ids(objects: Iterable[StoredObject]) -> list[str]:
    return sorted(sid for o in objects if (sid := snap.snapshot_id_of(o.key)) is not None)


def _load(store: ObjectStore, customer_id: str, snapshot_ids: Sequence[str],
          threads: int) -> dict[str, list[snap.FileEntry]]:
    """The files of each snapshot; any manifest that cannot be read stops the prune before it deletes anything
    (its objects would otherwise look unused)."""
    def one(sid: str) -> list[snap.FileEntry]:
        manifest = repository.load_manifest(store, customer_id, sid)
        if manifest is None:
            raise RuntimeError(f"{customer_id}: manifest of snapshot {sid} vanished during the prune")
        return manifest.files

    with ThreadPoolExecutor(threads, thread_name_prefix="prune-load") as pool:
        return dict(zip(snapshot_ids, pool.map(one, snapshot_ids), strict=True))


def _delete(store: ObjectStore, customer_id: str, keys: Sequence[str], held: dict[str, str],
            locked: Mapping[str, datetime], step: Callable[[str], None], name: str) -> list[str]:
    """DELETE the keys in batches; a refusal (object lock) is reported as kept, not an error. Returns the deleted."""
    deleted = []
    for start in range(0, len(keys), BATCH):
        batch = keys[start:start + BATCH]
        refused = store.remove_many(object_key(customer_id, k) for k in batch)
        prefix = customer_prefix(customer_id)
        refused_rel = {k.removeprefix(prefix): why for k, why in refused.items()}
        for key in batch:
            if key in refused_rel:
                code, message = refused_rel[key]
                until = locked.get(key)
                held[key] = (f"locked until {until.isoformat()}" if until else
                             f"the server refused the delete ({code}: {message})")
            else:
                deleted.append(key)
        step(name)
    return deleted


def prune(store: ObjectStore, customer_id: str, policy: RetentionPolicy, settings: PruneSettings | None = None, *,
          dry_run: bool = False, locked: Mapping[str, datetime] | None = None, now: datetime | None = None,
          step: Callable[[str], None] = _no_step, threads: int = 8) -> PruneReport:
    """Apply `policy` to the customer's snapshots, then delete what no kept snapshot uses and repack mostly
    unused packs. `locked` (keys relative to the prefix → lock end) are never deleted. `step(name)` is called
    after every change made to the repository (tests kill the prune there). Dry: plans and reports, changes
    nothing."""
    settings = settings or PruneSettings()
    now = now or utcnow()
    locked = dict(locked or {})
    report = PruneReport(customer_id, dry_run, policy.describe())
    clock = time.monotonic()

    def lap(phase: str) -> None:
        nonlocal clock
        report.seconds[phase] = round(report.seconds.get(phase, 0) + time.monotonic() - clock, 3)
        clock = time.monotonic()

    objects = _listing(store, customer_id)
    sizes = {o.key: o.size for o in objects}
    report.objects_before, report.bytes_before = len(objects), sum(sizes.values())
    snapshot_ids = _snapshot_ids(objects)
    report.snapshots = len(snapshot_ids)
    lap("list")

    forget = pruneplan.plan_forget(snapshot_ids, policy, locked, now)
    kept = _load(store, customer_id, sorted(forget.keep), threads)
    young_index = {key: repository.read_index(store, customer_id, object_key(customer_id, key))
                   for key in pruneplan.young_index_keys(objects, now, settings.grace)}
    lap("load")

    report.kept = forget.keep
    report.held.update({snap.snapshot_key(sid): f"locked until {until.isoformat()}"
                        for sid, until in forget.locked.items()})
    if not dry_run:
        # 1. Forget: one manifest at a time. A refused delete keeps that snapshot, and so every object it uses.
        for sid in forget.forget:
            gone = _delete(store, customer_id, [snap.snapshot_key(sid)], report.held, locked, step, "forget")
            if gone:
                report.forgotten.append(sid)
            else:
                kept[sid] = _load(store, customer_id, [sid], 1)[sid]
                report.kept[sid] = [report.held[snap.snapshot_key(sid)]]
        lap("forget")
    else:
        report.forgotten = list(forget.forget)

    garbage = pruneplan.plan_garbage(objects, kept, young_index, now, settings, locked)
    report.young = garbage.young
    report.held.update({k: f"locked until {t.isoformat()}" for k, t in garbage.locked.items()})
    lap("plan")
    freed_manifests = sum(sizes[snap.snapshot_key(sid)] for sid in report.forgotten)
    if dry_run:
        report.deleted_index, report.deleted_objects = garbage.delete_index, garbage.delete_objects
        report.repacked, report.new_packs, report.rewritten = (garbage.repack, [p.key for p in garbage.new_packs],
                                                               garbage.rewrite)
        report.bytes_freed = freed_manifests + garbage.bytes_freed + (
            _versions(store, customer_id, now, settings, report, dry_run=True) or 0)
        return report

    # 2. Index files first, then the objects: an index naming a deleted object would let the next backup reuse
    #    bytes that are gone. Deleting an index alone only makes a later run read its files again.
    report.deleted_index = _delete(store, customer_id, garbage.delete_index, report.held, locked, step,
                                   "delete-index")
    report.deleted_objects = _delete(store, customer_id, garbage.delete_objects, report.held, locked, step,
                                     "delete-objects")
    lap("delete")

    # 3. Repack: every new pack is stored first, then each manifest that used an old pack is rewritten (one PUT:
    #    it names the old ranges or the new ones, both present), and only then are the old packs deleted.
    for pack in garbage.new_packs:
        body = b"".join(_copy(store, customer_id, pack.blobs))
        store.put_bytes(object_key(customer_id, pack.key), body,
                        metadata={SHA256_META: hashlib.sha256(body).hexdigest()})
        report.new_packs.append(pack.key)
        step("repack-write")
    remap = garbage.remap()
    for sid in garbage.rewrite:
        manifest = repository.load_manifest(store, customer_id, sid)
        assert manifest is not None
        manifest.files = pruneplan.remap_files(manifest.files, remap)
        repository.write_manifest(store, customer_id, manifest)
        report.rewritten.append(sid)
        step("repack-rewrite")
    report.repacked = _delete(store, customer_id, garbage.repack, report.held, locked, step, "repack-delete")
    lap("repack")

    gone = [*report.deleted_index, *report.deleted_objects, *report.repacked]
    added = sum(p.size for p in garbage.new_packs) + _growth(store, customer_id, report.rewritten, sizes)
    report.bytes_freed = freed_manifests + sum(sizes[k] for k in gone) - added
    # 4. On a versioned bucket the deletes above only hid objects: their bytes are freed with their versions, here
    #    (the ones just hidden and any hidden before), so that is what the prune freed.
    hidden = _versions(store, customer_id, now, settings, report, dry_run=False)
    if hidden is not None:
        report.bytes_freed = hidden - added
    step("versions")
    lap("versions")
    log.info("%s: prune done: %d snapshot(s) forgotten, %d object(s) deleted, %d pack(s) repacked, %d bytes freed, "
             "%d kept under lock; seconds %s", customer_id, len(report.forgotten),
             len(report.deleted_index) + len(report.deleted_objects), len(report.repacked), report.bytes_freed,
             len(report.held), report.seconds)
    return report


def _versions(store: ObjectStore, customer_id: str, now: datetime, settings: PruneSettings, report: PruneReport, *,
              dry_run: bool) -> int | None:
    """Remove the hidden history of a versioned bucket (`pruneplan.plan_versions`): the noncurrent versions, then
    the delete markers with nothing left behind them; a refused (locked) version is reported and keeps its marker.
    Returns the bytes of the versions removed (dry: of those already hidden); None on a bucket without versioning."""
    if not store.versioned():
        return None
    prefix = customer_prefix(customer_id)
    plan = pruneplan.plan_versions(
        (pruneplan.StoredVersion(key[len(prefix):], vid, size, modified, latest, marker)
         for key, vid, size, modified, latest, marker in store.list_version_details(prefix)), now, settings.grace)
    if dry_run:
        report.old_versions = len(plan.noncurrent) + len(plan.markers)
        return sum(v.size for v in plan.noncurrent if not v.delete_marker)
    refused = store.remove_versions((object_key(customer_id, v.key), v.version_id) for v in plan.noncurrent)
    kept_keys = {key[len(prefix):] for key, _vid in refused}
    for (key, vid), (code, message) in refused.items():
        report.held[f"{key[len(prefix):]}@{vid}"] = f"hidden version kept: the server refused ({code}: {message})"
    markers = [v for v in plan.markers if v.key not in kept_keys]
    refused_markers = store.remove_versions((object_key(customer_id, v.key), v.version_id) for v in markers)
    removed = [v for v in plan.noncurrent if (object_key(customer_id, v.key), v.version_id) not in refused]
    report.old_versions = len(removed) + len(markers) - len(refused_markers)
    return sum(v.size for v in removed if not v.delete_marker)


def _growth(store: ObjectStore, customer_id: str, rewritten: Sequence[str], sizes: Mapping[str, int]) -> int:
    """How many bytes the rewritten manifests grew by (their new sizes, from one LIST of snapshots/)."""
    if not rewritten:
        return 0
    wanted = {snap.snapshot_key(sid) for sid in rewritten}
    prefix = customer_prefix(customer_id)
    now_sizes = {k[len(prefix):]: size for k, size in store.list_keys(prefix + snap.SNAPSHOTS)}
    return sum(now_sizes.get(k, 0) - sizes.get(k, 0) for k in wanted)


def _copy(store: ObjectStore, customer_id: str, blobs: Sequence[pruneplan.Range]) -> list[bytes]:
    """The kept ranges, verbatim (never decrypted): one GET per old pack, sliced."""
    parts, cache_key, body = [], None, b""
    for key, offset, length in blobs:
        if key != cache_key:
            cache_key, body = key, store.get_bytes(object_key(customer_id, key))
        if offset + length > len(body):
            raise RuntimeError(f"{customer_id}: pack {key} is shorter than a range a kept snapshot uses "
                               f"({offset}+{length} > {len(body)}); run verify, nothing was repacked from it")
        parts.append(body[offset:offset + length])
    return parts
