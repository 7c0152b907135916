"""Restore vs `rclone copy` (s3 → local disk), on one machine: the engine restoring a snapshot from its packs
and chunks, and rclone downloading the same files from the one-object-per-file copy `rclone copy` sftp→s3
made of them (what a user of rclone as a backup tool restores from).

Run by `make bench` (not by the test suite). Starts its own sshd and SeaweedFS S3 on loopback (bench_backup's
`Bench`), generates the data sets in a temporary directory and removes everything afterwards.
Keys: `restore_small_vs_rclone`, `restore_large_vs_rclone` = rclone's time / ours (higher is better).
BENCH_SCALE=0.1 shrinks the data sets for a quick look (then bench/results.json is left alone).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_backup import LARGE, SCALE, SMALL, Bench, make_files, say  # noqa: E402
from common import write_results  # noqa: E402

from cloudbackup.backup.options import EngineOptions  # noqa: E402
from cloudbackup.backup.restorer import LocalTarget, restore  # noqa: E402

MiB = 1024 * 1024


def rclone_download(bench: Bench, prefix: str, local: Path) -> float:
    env = bench.rclone_env()
    started = time.perf_counter()
    subprocess.run(["rclone", "copy", f"dst:{bench.bucket.bucket}/{prefix}", str(local), "--config", "/dev/null"],
                   env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def ours(bench: Bench, customer: str, local: Path) -> float:
    started = time.perf_counter()
    result = restore(bench.bucket, customer, LocalTarget(local, threads=EngineOptions().restore_threads))
    elapsed = time.perf_counter() - started
    if not result.ok:
        raise RuntimeError(f"restore failed: {result.failures[:3]} {result.mismatches[:3]}")
    return elapsed


def same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all((a / p).stat().st_size == (b / p).stat().st_size for p in files_a)


def one_set(bench: Bench, name: str, count: int, size: int, folders: int) -> tuple[float, float]:
    root = bench.sshd.root
    make_files(root / name, count, size, folders)
    bench.ours(f"/{name}", f"restore-{name}")                  # the snapshot restored below
    bench.rclone(f"/{name}", f"rclone-restore-{name}")         # rclone's own copy, one object per file
    shutil.rmtree(root / name)
    work = bench.work
    # rclone first, then ours, then each once more; the better of two runs each (the machine is shared).
    times: dict[str, list[float]] = {"rclone": [], "ours": []}
    for attempt in range(2):
        out_r, out_o = work / f"rclone-out-{attempt}", work / f"ours-out-{attempt}"
        times["rclone"].append(rclone_download(bench, f"rclone-restore-{name}", out_r))
        times["ours"].append(ours(bench, f"restore-{name}", out_o))
        if not same_tree(out_r, out_o / name):
            raise RuntimeError(f"{name}: the two restores differ")
        shutil.rmtree(out_r)
        shutil.rmtree(out_o)
    return min(times["ours"]), min(times["rclone"])


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="cloudbackup-bench-restore-", dir=os.environ.get("BENCH_TMPDIR")) as tmp:
        bench = Bench(Path(tmp))
        try:
            only = os.environ.get("BENCH_ONLY", "large,small").split(",")
            if "small" in only:
                count, size, folders = SMALL
                mine, rcl = one_set(bench, "small", count, size, folders)
                figures.update(restore_small_ours_files_s=count / mine, restore_small_rclone_files_s=count / rcl,
                               restore_small_vs_rclone=rcl / mine)
                say(f"restore {count} x {size // 1024} KiB to local disk: ours {count / mine:.0f} files/s "
                    f"({mine:.1f} s), rclone s3->local {count / rcl:.0f} files/s ({rcl:.1f} s) -> "
                    f"restore_small_vs_rclone {rcl / mine:.2f}")
            if "large" in only:
                count, size = LARGE
                total = count * size
                mine, rcl = one_set(bench, "large", count, size, 1)
                figures.update(restore_large_ours_mb_s=total / mine / 1e6, restore_large_rclone_mb_s=total / rcl / 1e6,
                               restore_large_vs_rclone=rcl / mine)
                say(f"restore {count} x {size // MiB} MiB to local disk: ours {total / mine / 1e6:.0f} MB/s, rclone "
                    f"s3->local {total / rcl / 1e6:.0f} MB/s -> restore_large_vs_rclone {rcl / mine:.2f}")
        finally:
            bench.stop()
    if SCALE != 1:
        say("BENCH_SCALE is set: figures printed only, bench/results.json left alone")
        return
    figures["bench_restore_engine"] = json.dumps({"restore_threads": EngineOptions().restore_threads})
    write_results({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()})


if __name__ == "__main__":
    main()
