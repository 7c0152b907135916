"""Prune planning over plain data (pure): which snapshots to forget, which objects are garbage, which packs to repack.

The order in which `backup.pruner` applies a plan, and why a prune killed at any point loses nothing a kept
snapshot needs, is in docs/storage-format.md ("Prune").
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from cloudbackup.backup import format as snap
from cloudbackup.backup.retention import RetentionPolicy, apply_policy, snapshot_time

DEFAULT_GRACE = timedelta(days=1)
DEFAULT_REPACK_UNUSED = 0.5          # repack a pack once more than half of its bytes are used by no kept snapshot
DEFAULT_PACK_TARGET = 16 * 1024 * 1024
NEVER_REPACK = 1.0                   # no pack is ever more than 100 % unused

Range = tuple[str, int, int]         # (object key relative to the customer's prefix, offset, length)


@dataclass(frozen=True)
class StoredObject:
    """One object under the customer's prefix as LIST showed it (key relative to `customers/<id>/`)."""

    key: str
    size: int
    modified: datetime               # S3 LastModified (UTC)


@dataclass(frozen=True)
class PruneSettings:
    grace: timedelta = DEFAULT_GRACE                 # objects younger than this are never deleted
    repack_unused: float = DEFAULT_REPACK_UNUSED     # fraction of a pack's bytes unused above which it is repacked
    pack_target: int = DEFAULT_PACK_TARGET           # the size new packs are filled to


def settings_for(grace: timedelta, repack_unused: float, pack_target: int, object_lock_days: int) -> PruneSettings:
    """A plan's prune settings. Under object lock no pack is repacked: the kept bytes would move into a new,
    unlocked pack and the old one could not be deleted anyway; its unused objects go once their locks end."""
    return PruneSettings(grace, NEVER_REPACK if object_lock_days else repack_unused, pack_target)


@dataclass(frozen=True)
class ForgetPlan:
    keep: dict[str, list[str]]       # snapshot id → why it is kept
    forget: list[str]                # snapshot ids whose manifests are deleted, newest first
    locked: dict[str, datetime]      # snapshot ids retention would forget, kept: their manifest is locked until …


def plan_forget(snapshot_ids: Iterable[str], policy: RetentionPolicy, locked: Mapping[str, datetime],
                now: datetime) -> ForgetPlan:
    """Retention over the snapshot ids (their times are in the ids); a manifest under object lock is kept.

    `locked` maps keys relative to the customer's prefix (here `snapshots/<id>.json.gz`) to their lock's end."""
    decision = apply_policy([(sid, snapshot_time(sid)) for sid in snapshot_ids], policy)
    keep, forget, held = dict(decision.keep), [], {}
    for sid in decision.forget:
        until = locked.get(snap.snapshot_key(sid))
        if until is not None and until > now:
            held[sid] = until
            keep[sid] = [f"locked until {until.isoformat()}"]
        else:
            forget.append(sid)
    return ForgetPlan(keep, forget, held)


@dataclass(frozen=True)
class NewPack:
    """A pack written by repack: the kept ranges of old packs, copied verbatim, in this order."""

    key: str
    blobs: tuple[Range, ...]

    @property
    def size(self) -> int:
        return sum(length for _, _, length in self.blobs)

    def layout(self) -> dict[Range, Range]:
        """Old range → its range in this pack."""
        out, offset = {}, 0
        for blob in self.blobs:
            out[blob] = (self.key, offset, blob[2])
            offset += blob[2]
        return out


@dataclass
class GarbagePlan:
    delete_index: list[str] = field(default_factory=list)       # index files older than the grace period
    delete_objects: list[str] = field(default_factory=list)     # packs and chunks no kept snapshot uses, old enough
    repack: list[str] = field(default_factory=list)             # mostly unused packs, deleted after the rewrite
    new_packs: list[NewPack] = field(default_factory=list)
    rewrite: list[str] = field(default_factory=list)            # kept snapshots whose manifests use a repacked pack
    young: list[str] = field(default_factory=list)              # unused, but younger than the grace period: kept
    locked: dict[str, datetime] = field(default_factory=dict)   # unused or repackable, but locked until …
    bytes_freed: int = 0

    def remap(self) -> dict[Range, Range]:
        out: dict[Range, Range] = {}
        for pack in self.new_packs:
            out.update(pack.layout())
        return out


def young_index_keys(objects: Iterable[StoredObject], now: datetime, grace: timedelta) -> list[str]:
    """Index files a prune must read: those younger than the grace period protect the objects they name."""
    return sorted(o.key for o in objects if o.key.startswith(snap.INDEX) and now - o.modified < grace)


def _prunable(key: str) -> bool:
    # Only what backups write is ever garbage: packs and chunks. Manifests go by retention alone; anything else
    # under the prefix (per-customer keys, objects of a newer format) is never touched by a prune.
    return key.startswith((snap.PACKS, snap.DATA))


def plan_garbage(objects: Iterable[StoredObject], kept: Mapping[str, Sequence[snap.FileEntry]],
                 young_index: Mapping[str, Sequence[snap.FileEntry]], now: datetime, settings: PruneSettings,
                 locked: Mapping[str, datetime] | None = None,
                 new_pack_id: Callable[[], str] = lambda: secrets.token_hex(16)) -> GarbagePlan:
    """What to delete and repack, given every stored object, the files of every kept snapshot (by snapshot id)
    and of every index file younger than the grace period (by key). Nothing younger than the grace period or
    under lock is deleted; a pack an index file names is never repacked (the next backup may reuse its ranges)."""
    locked = {k: t for k, t in (locked or {}).items() if t > now}
    listed = {o.key: o for o in objects}
    old = {k for k, o in listed.items() if now - o.modified >= settings.grace}
    used: dict[str, set[tuple[int, int]]] = {}           # object → the ranges kept snapshots use
    users: dict[str, set[str]] = {}                      # pack → the kept snapshots that use it
    for sid, files in kept.items():
        for entry in files:
            for key, offset, length in entry.chunks:
                used.setdefault(key, set()).add((offset, length))
                if key.startswith(snap.PACKS):
                    users.setdefault(key, set()).add(sid)
    named_by_index = {key for files in young_index.values() for e in files for key, _, _ in e.chunks}

    plan = GarbagePlan()
    for key in sorted(listed):
        if key.startswith(snap.INDEX):
            if key in locked:
                plan.locked[key] = locked[key]
            elif key in old:
                plan.delete_index.append(key)
            continue
        if not _prunable(key) or key in used or key in named_by_index:
            continue
        if key in locked:
            plan.locked[key] = locked[key]
        elif key in old:
            plan.delete_objects.append(key)
        else:
            plan.young.append(key)

    candidates = []
    for key in sorted(users):
        obj = listed.get(key)
        if obj is None or obj.size <= 0 or key not in old or key in named_by_index:
            continue   # a missing pack is verify's business; a young one may be in use by something unseen
        unused = obj.size - sum(length for _, length in used[key])
        if unused / obj.size > settings.repack_unused:
            if key in locked:
                plan.locked[key] = locked[key]
            else:
                candidates.append(key)
    blobs: list[Range] = [(key, offset, length) for key in candidates for offset, length in sorted(used[key])]
    current: list[Range] = []
    for blob in blobs:
        if current and sum(b[2] for b in current) + blob[2] > settings.pack_target:
            plan.new_packs.append(NewPack(snap.pack_key(new_pack_id()), tuple(current)))
            current = []
        current.append(blob)
    if current:
        plan.new_packs.append(NewPack(snap.pack_key(new_pack_id()), tuple(current)))
    plan.repack.extend(candidates)
    plan.rewrite.extend(sorted({sid for key in candidates for sid in users[key]}))
    freed = sum(listed[k].size for k in [*plan.delete_index, *plan.delete_objects, *plan.repack])
    plan.bytes_freed = freed - sum(p.size for p in plan.new_packs)
    return plan


def remap_files(files: Sequence[snap.FileEntry], remap: Mapping[Range, Range]) -> list[snap.FileEntry]:
    """A manifest's file lines pointing at the new packs wherever a range was repacked."""
    out = []
    for entry in files:
        chunks = tuple(remap.get(c, c) for c in entry.chunks)
        out.append(entry if chunks == entry.chunks else replace(entry, chunks=chunks))
    return out


@dataclass(frozen=True)
class StoredVersion:
    """One version of an object on a versioned bucket (object lock turns versioning on); key relative to the prefix."""

    key: str
    version_id: str | None
    size: int
    modified: datetime | None
    latest: bool
    delete_marker: bool


@dataclass(frozen=True)
class VersionPlan:
    noncurrent: list[StoredVersion]      # deleted first: no snapshot reads them (a reader gets the current version)
    markers: list[StoredVersion]         # then the delete markers that hide nothing once those are gone


def plan_versions(versions: Iterable[StoredVersion], now: datetime, grace: timedelta) -> VersionPlan:
    """What a prune removes of the hidden history on a versioned bucket, where a DELETE only hides an object behind
    a delete marker and its bytes stay stored: every noncurrent version older than the grace period, then each
    latest delete marker with no other version left behind it. A marker is never removed while a version stays
    behind it (that would bring a deleted manifest or object back); a refused (locked) version keeps its marker."""
    by_key: dict[str, list[StoredVersion]] = {}
    for v in versions:
        if _prunable(v.key) or v.key.startswith((snap.SNAPSHOTS, snap.INDEX)):
            by_key.setdefault(v.key, []).append(v)
    noncurrent: list[StoredVersion] = []
    markers: list[StoredVersion] = []
    for vs in by_key.values():
        old = [v for v in vs if not v.latest and (v.modified is None or now - v.modified >= grace)]
        noncurrent += old
        rest = [v for v in vs if v not in old]
        if len(rest) == 1 and rest[0].latest and rest[0].delete_marker:
            markers.append(rest[0])
    return VersionPlan(sorted(noncurrent, key=lambda v: (v.key, v.version_id or "")),
                       sorted(markers, key=lambda v: v.key))
