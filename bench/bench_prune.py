"""Prune of a repository of ~100,000 objects on the real S3 (SeaweedFS on loopback), end to end, with its phases.

The repository is written directly (no SFTP): 100 daily snapshots; each adds ~1,000 small chunks (256 bytes) held
by large-file lines that the next 9 snapshots keep using, and one pack of 32 blobs of which the next snapshot keeps
8; plus a crashed run's index files and pack. Retention keep_daily 7, keep_weekly 4, keep_monthly 3 keeps ~13
snapshots: the prune lists everything, loads the kept manifests, forgets ~87, deletes the chunks and packs no kept
snapshot uses (tens of thousands) and repacks the packs only a kept neighbour still uses a quarter of. The clock is
moved two days ahead so that the grace period (1 day) lets all of it go.

Key: `prune_100k_objects_s` (seconds, lower is better) and `prune_100k_objects_phases` (list, load, forget, plan,
delete, repack). BENCH_SCALE=0.1 shrinks the object count (then bench/results.json is left alone). Run by
`make bench`; starts its own SeaweedFS in a temporary directory and removes it afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import write_results  # noqa: E402
from devtools import devstack  # noqa: E402

from cloudbackup.backup import format as snap  # noqa: E402
from cloudbackup.backup.format import SHA256_META, object_key  # noqa: E402
from cloudbackup.backup.pruneplan import PruneSettings  # noqa: E402
from cloudbackup.backup.pruner import prune  # noqa: E402
from cloudbackup.backup.repository import list_snapshots, load_manifest, write_manifest  # noqa: E402
from cloudbackup.backup.retention import RetentionPolicy  # noqa: E402
from cloudbackup.edges.connections import S3Endpoint  # noqa: E402
from cloudbackup.edges.s3 import ObjectStore  # noqa: E402

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
SNAPSHOTS = 100
WINDOW = 10                    # a chunk group is used by the snapshot that wrote it and the next WINDOW - 1
CHUNKS_PER_FILE = 10
BLOBS, BLOB = 32, 512          # per pack
CHUNK = 256
POLICY = RetentionPolicy(keep_daily=7, keep_weekly=4, keep_monthly=3)
CUSTOMER = "bench-prune"


def say(text: str) -> None:
    print(text, flush=True)


def _put_all(store: ObjectStore, objects: list[tuple[str, bytes]]) -> None:
    def put(item: tuple[str, bytes]) -> None:
        key, body = item
        store.put_bytes(object_key(CUSTOMER, key), body, metadata={SHA256_META: hashlib.sha256(body).hexdigest()})

    with ThreadPoolExecutor(16) as pool:   # the client keeps 16 connections
        list(pool.map(put, objects))


def build(store: ObjectStore, chunks_per_snapshot: int) -> int:
    """The repository; returns its object count."""
    groups: list[list[snap.FileEntry]] = []
    packs: list[str] = []
    written = 0
    start = datetime(2026, 8, 1, 1, 0, tzinfo=UTC)
    for i in range(SNAPSHOTS):
        objects: list[tuple[str, bytes]] = []
        files = []
        for f in range(chunks_per_snapshot // CHUNKS_PER_FILE):
            chunks = []
            for _c in range(CHUNKS_PER_FILE):
                body = os.urandom(CHUNK)
                key = snap.data_key(hashlib.sha256(body).hexdigest())
                objects.append((key, body))
                chunks.append((key, 0, CHUNK))
            files.append(snap.FileEntry(f"/srv/big/{i:03}/{f:04}.bin", CHUNK * CHUNKS_PER_FILE, 1_700_000_000 + i,
                                        0o644, hashlib.sha256(str((i, f)).encode()).hexdigest(), tuple(chunks)))
        groups.append(files)
        pack = snap.pack_key(hashlib.sha256(f"pack-{i}".encode()).hexdigest()[:32])
        objects.append((pack, os.urandom(BLOBS * BLOB)))
        packs.append(pack)
        _put_all(store, objects)
        written += len(objects)
        lines = [e for g in groups[max(0, i - WINDOW + 1):] for e in g]
        lines += [snap.FileEntry(f"/srv/small/{b:02}.txt", BLOB, 1_700_000_000, 0o644, "0" * 64,
                                 ((pack, b * BLOB, BLOB),)) for b in range(BLOBS)]
        if i:   # a quarter of the previous pack's files are still there, unchanged
            lines += [snap.FileEntry(f"/srv/kept/{b:02}.txt", BLOB, 1_700_000_000, 0o644, "1" * 64,
                                     ((packs[i - 1], b * BLOB, BLOB),)) for b in range(BLOBS // 4)]
        moment = start + timedelta(days=i)
        header = snap.SnapshotHeader(snap.new_snapshot_id(moment), CUSTOMER, f"bench-{i}", moment.isoformat(),
                                     moment.isoformat(), ("/srv",), len(lines), sum(e.size for e in lines), 0,
                                     None)
        write_manifest(store, CUSTOMER, snap.Manifest(header, lines))
        written += 1
    # A crashed run: a pack and its index file, no manifest.
    crashed = snap.pack_key("c" * 32)
    _put_all(store, [(crashed, os.urandom(4096))])
    store.put_bytes(object_key(CUSTOMER, f"{snap.INDEX}{'c' * 32}.json"),
                    snap.encode_index([snap.FileEntry("/srv/crashed.bin", 4096, 1, 0o644, "2" * 64,
                                                      ((crashed, 0, 4096),))]))
    return written + 2


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    if not os.environ.get("CLOUDBACKUP_MASTER_KEY"):     # repository format 2 seals manifests with a data key
        os.environ["CLOUDBACKUP_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode()
        os.environ["CLOUDBACKUP_MASTER_KEY_ID"] = "bench"
    chunks_per_snapshot = max(CHUNKS_PER_FILE, round(990 * SCALE / CHUNKS_PER_FILE) * CHUNKS_PER_FILE)
    with tempfile.TemporaryDirectory(prefix="cloudbackup-bench-prune-", dir=os.environ.get("BENCH_TMPDIR")) as tmp:
        s3 = devstack.start_s3(Path(tmp) / "s3")
        try:
            store = ObjectStore(S3Endpoint(f"127.0.0.1:{s3.port}", False, s3.access_key, s3.secret_key, "bench"))
            store.ensure_bucket()
            started = time.perf_counter()
            objects = build(store, chunks_per_snapshot)
            say(f"repository: {objects} objects, {SNAPSHOTS} snapshots, written in "
                f"{time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            report = prune(store, CUSTOMER, POLICY, PruneSettings(),
                           now=datetime.now(UTC) + timedelta(days=2))
            elapsed = time.perf_counter() - started
            say("\n".join(report.lines()[-1:]))
            say(f"prune_100k_objects_s = {elapsed:.1f} s for {report.objects_before} objects; phases {report.seconds}")
            # Sanity: every object a kept snapshot uses is still there.
            left = {k for k, _ in store.list_keys(snap.customer_prefix(CUSTOMER))}
            for sid in list_snapshots(store, CUSTOMER):
                manifest = load_manifest(store, CUSTOMER, sid)
                assert manifest is not None
                missing = {object_key(CUSTOMER, k) for e in manifest.files for k, _, _ in e.chunks} - left
                if missing:
                    raise RuntimeError(f"snapshot {sid} lost {len(missing)} object(s) to the prune")
            say(f"kept {len(report.kept)} snapshot(s), forgot {len(report.forgotten)}, deleted "
                f"{len(report.deleted_index) + len(report.deleted_objects)} object(s), repacked "
                f"{len(report.repacked)} pack(s); every kept snapshot's objects are present")
        finally:
            s3.stop()
    if SCALE != 1:
        say("BENCH_SCALE is set: figures printed only, bench/results.json left alone")
        return
    write_results({"prune_100k_objects_s": round(elapsed, 1),
                   "prune_100k_objects_phases": {k: round(v, 1) for k, v in report.seconds.items()},
                   "prune_100k_objects_count": report.objects_before})


if __name__ == "__main__":
    main()
