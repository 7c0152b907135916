"""Prune planning as rules over plain data (issue 12, deliverable 2): what is garbage, what waits for the grace
period, what a lock or a young index file protects, how repack groups the kept ranges. No S3 here: the order in
which these plans are applied is tested against the real S3 in tests/test_prune.py.

Terms: art. 17(1) (kept snapshots' bytes stay on the operator's devices), 18(1) (they stay restorable).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cloudbackup.backup.format import FileEntry
from cloudbackup.backup.pruneplan import (
    PruneSettings,
    StoredObject,
    plan_forget,
    plan_garbage,
    remap_files,
    settings_for,
)
from cloudbackup.backup.retention import RetentionPolicy

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=3)
YOUNG = NOW - timedelta(hours=1)
SETTINGS = PruneSettings(grace=timedelta(days=1), repack_unused=0.5, pack_target=1000)


def _file(path: str, *chunks: tuple[str, int, int]) -> FileEntry:
    return FileEntry(path, sum(c[2] for c in chunks), 0, 0o644, "0" * 64, tuple(chunks))


def test_unused_objects_go_after_the_grace_period_and_nothing_outside_packs_and_chunks_is_touched() -> None:
    objects = [StoredObject("packs/aa/used", 100, OLD), StoredObject("packs/bb/unused-old", 100, OLD),
               StoredObject("packs/cc/unused-young", 100, YOUNG), StoredObject("data/dd/unused", 50, OLD),
               StoredObject("keys/master.json", 300, OLD), StoredObject("snapshots/s1.json.gz", 10, OLD),
               StoredObject("index/old.json", 5, OLD), StoredObject("index/young.json", 5, YOUNG)]
    kept = {"s1": [_file("/a", ("packs/aa/used", 0, 100))]}
    plan = plan_garbage(objects, kept, {"index/young.json": []}, NOW, SETTINGS)
    assert plan.delete_objects == ["data/dd/unused", "packs/bb/unused-old"]
    assert plan.delete_index == ["index/old.json"]
    assert plan.young == ["packs/cc/unused-young"]
    assert plan.bytes_freed == 155 and plan.repack == []


def test_a_young_index_file_protects_what_it_names_even_when_old_and_unused() -> None:
    """An interrupted run's index (younger than the grace period) will be reused by the next backup."""
    objects = [StoredObject("packs/aa/crashed", 100, OLD), StoredObject("index/aa.json", 5, YOUNG)]
    plan = plan_garbage(objects, {}, {"index/aa.json": [_file("/x", ("packs/aa/crashed", 0, 100))]}, NOW, SETTINGS)
    assert plan.delete_objects == [] and plan.delete_index == []


def test_locked_objects_are_kept_and_a_locked_manifest_is_not_forgotten() -> None:
    until = NOW + timedelta(days=10)
    objects = [StoredObject("packs/aa/unused", 100, OLD), StoredObject("index/old.json", 5, OLD)]
    plan = plan_garbage(objects, {}, {}, NOW, SETTINGS, locked={"packs/aa/unused": until, "index/old.json": until})
    assert (plan.delete_objects, plan.delete_index) == ([], [])
    assert plan.locked == {"packs/aa/unused": until, "index/old.json": until}
    # A lock that has ended protects nothing.
    expired = plan_garbage(objects, {}, {}, NOW, SETTINGS, locked={"packs/aa/unused": NOW - timedelta(seconds=1)})
    assert expired.delete_objects == ["packs/aa/unused"]

    ids = ["20261101T010000.000000Z-00000001", "20261102T010000.000000Z-00000002"]
    forget = plan_forget(ids, RetentionPolicy(keep_last=1), {f"snapshots/{ids[0]}.json.gz": until}, NOW)
    assert forget.forget == [] and forget.locked == {ids[0]: until} and set(forget.keep) == set(ids)


def test_mostly_unused_packs_are_repacked_into_new_packs_of_at_most_pack_target_bytes() -> None:
    """Two packs 60 % and 80 % unused, one 40 % unused: the first two are repacked, their kept ranges in order,
    a new pack closed before it would exceed pack_target; the third stays. A pack a young index names does not
    move (the next backup may reuse its ranges)."""
    objects = [StoredObject("packs/aa/a", 1000, OLD), StoredObject("packs/bb/b", 1000, OLD),
               StoredObject("packs/cc/c", 1000, OLD), StoredObject("packs/dd/d", 1000, OLD)]
    kept = {"s2": [_file("/a1", ("packs/aa/a", 0, 300)), _file("/a2", ("packs/aa/a", 500, 100)),
                   _file("/b1", ("packs/bb/b", 0, 200)), _file("/c1", ("packs/cc/c", 0, 600)),
                   _file("/d1", ("packs/dd/d", 0, 100))],
            "s1": [_file("/a1-again", ("packs/aa/a", 0, 300))]}
    young_index = {"index/dd.json": [_file("/d1", ("packs/dd/d", 0, 100))]}
    ids = iter(["new1", "new2"])
    plan = plan_garbage(objects, kept, young_index, NOW, PruneSettings(grace=timedelta(days=1), pack_target=500),
                        new_pack_id=lambda: next(ids))
    assert plan.repack == ["packs/aa/a", "packs/bb/b"]
    assert [(p.key, p.blobs) for p in plan.new_packs] == [
        ("packs/ne/new1", (("packs/aa/a", 0, 300), ("packs/aa/a", 500, 100))),
        ("packs/ne/new2", (("packs/bb/b", 0, 200),))]
    assert plan.rewrite == ["s1", "s2"]
    assert plan.bytes_freed == 2000 - 600
    moved = remap_files(kept["s2"], plan.remap())
    assert [f.chunks for f in moved] == [(("packs/ne/new1", 0, 300),), (("packs/ne/new1", 300, 100),),
                                         (("packs/ne/new2", 0, 200),), (("packs/cc/c", 0, 600),),
                                         (("packs/dd/d", 0, 100),)]


def test_a_plan_under_object_lock_is_pruned_by_deletes_only() -> None:
    """Repacking a locked pack would copy kept bytes into an unlocked one and leave the old one (its delete is
    refused): a plan with object_lock_days never repacks, whatever the threshold."""
    objects = [StoredObject("packs/aa/a", 1000, OLD)]
    kept = {"s1": [_file("/a", ("packs/aa/a", 0, 10))]}                       # 99 % unused
    locked_plan = settings_for(timedelta(days=1), 0.5, 1000, object_lock_days=30)
    assert plan_garbage(objects, kept, {}, NOW, locked_plan).repack == []
    assert plan_garbage(objects, kept, {}, NOW, settings_for(timedelta(days=1), 0.5, 1000, 0)).repack == ["packs/aa/a"]


def test_hidden_versions_go_first_and_a_marker_only_once_nothing_stays_behind_it() -> None:
    """On a versioned bucket a prune removes noncurrent versions older than the grace period, then the delete
    markers with no version left behind them; a young hidden version keeps its marker (removing the marker would
    bring the deleted object back), and keys/ is never touched."""
    from cloudbackup.backup.pruneplan import StoredVersion, plan_versions

    now = datetime(2026, 11, 28, tzinfo=UTC)
    old, young = now - timedelta(days=3), now - timedelta(hours=1)
    versions = [
        StoredVersion("data/ab/old", "v1", 100, old, False, False),
        StoredVersion("data/ab/old", "m1", 0, old, True, True),           # hidden by a prune's DELETE
        StoredVersion("packs/cd/young", "v2", 50, young, False, False),
        StoredVersion("packs/cd/young", "m2", 0, now, True, True),         # its version is inside the grace
        StoredVersion("snapshots/s.json.gz", "v3", 10, old, False, False),
        StoredVersion("snapshots/s.json.gz", "v4", 12, old, True, False),  # rewritten by a repack: kept
        StoredVersion("keys/k.json", "v5", 5, old, False, False),           # a rotated key file: never a prune's
    ]
    plan = plan_versions(versions, now, timedelta(days=1))
    assert [(v.key, v.version_id) for v in plan.noncurrent] == [("data/ab/old", "v1"), ("snapshots/s.json.gz", "v3")]
    assert [(v.key, v.version_id) for v in plan.markers] == [("data/ab/old", "m1")]
