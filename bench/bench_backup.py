"""Backup engine vs `rclone copy` (sftp → s3) vs the raw limits (OpenSSH sftp read, S3 PUT), on one machine.

Run by `make bench` (not by the test suite). Starts its own sshd and SeaweedFS S3 on loopback, generates the
data sets in a temporary directory on this machine's disk and removes everything afterwards.
BENCH_SCALE=0.1 shrinks every data set for a quick look (the figures written are then not comparable).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))   # the dev-only devtools package
from common import write_results  # noqa: E402
from devtools import devstack  # noqa: E402

from cloudbackup.backup.archiver import run_backup  # noqa: E402
from cloudbackup.backup.options import EngineOptions  # noqa: E402
from cloudbackup.backup.repository import stored_bytes  # noqa: E402
from cloudbackup.edges.connections import S3Endpoint, SftpEndpoint  # noqa: E402
from cloudbackup.edges.s3 import ObjectStore  # noqa: E402
from cloudbackup.edges.sftp import open_sftp  # noqa: E402

MiB = 1024 * 1024
SCALE = float(os.environ.get("BENCH_SCALE", "1"))
LARGE = (4, int(256 * MiB * SCALE))
LARGE_ROUNDS = int(os.environ.get("BENCH_LARGE_ROUNDS", "3"))
SMALL = (int(20_000 * SCALE), 8 * 1024, 20)
UNCHANGED = (int(100_000 * SCALE), 1024, 100)
HUGE = int(2048 * MiB * SCALE)
TEXT = (max(40, int(400 * SCALE)), 20)     # compressible text: files, folders (2 KiB - 2 MiB each, ~120 MiB at 1)


def say(text: str) -> None:
    print(text, flush=True)


def use_bench_master_key() -> None:
    """Repository format 2 needs a master key: a throwaway one for the benchmark (and its child processes)."""
    import base64

    if not os.environ.get("CLOUDBACKUP_MASTER_KEY"):
        os.environ["CLOUDBACKUP_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode()
        os.environ["CLOUDBACKUP_MASTER_KEY_ID"] = "bench"


class Bench:
    def __init__(self, work: Path) -> None:
        use_bench_master_key()
        self.work = work
        self.sshd = devstack.start_sshd(work / "sshd")
        try:
            self.s3 = devstack.start_s3(work / "s3")
        except BaseException:
            self.sshd.stop()
            raise
        try:
            self._prepare()
        except BaseException:
            self.stop()
            raise

    def _prepare(self) -> None:
        work = self.work
        self.sftp_ep = SftpEndpoint("127.0.0.1", self.sshd.port, self.sshd.user, self.sshd.host_key_line,
                                    private_key=self.sshd.client_private_key)
        (work / "known_hosts").write_text(f"[127.0.0.1]:{self.sshd.port} {self.sshd.host_key_line}\n")
        # One bucket for everything: SeaweedFS allocates volumes for a new bucket on its first writes, which
        # would penalise whichever tool writes first. Warm it up before measuring anything.
        self.bucket = ObjectStore(S3Endpoint(f"127.0.0.1:{self.s3.port}", False, self.s3.access_key,
                                             self.s3.secret_key, "bench"))
        self.bucket.ensure_bucket()
        self.s3_put([os.urandom(4 * MiB) for _ in range(16)], prefix="warmup")

    def stop(self) -> None:
        self.s3.stop()
        self.sshd.stop()

    # -- the engine ---------------------------------------------------------------------------------------
    def ours(self, remote: str, customer: str) -> float:
        started = time.perf_counter()
        result = run_backup(partial(open_sftp, self.sftp_ep), self.bucket, customer, "bench", [remote], [])
        elapsed = time.perf_counter() - started
        if result.errors:
            raise RuntimeError(f"collection errors in the benchmark: {result.errors[:3]}")
        return elapsed

    # -- rclone -------------------------------------------------------------------------------------------
    def rclone_env(self) -> dict[str, str]:
        """rclone's remotes from the environment: `src` the sshd, `dst` the S3 server (used by the restore
        benchmark too)."""
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}   # rclone 1.60: LoadCustomCABundleError
        env.update({
            "RCLONE_CONFIG_SRC_TYPE": "sftp", "RCLONE_CONFIG_SRC_HOST": "127.0.0.1",
            "RCLONE_CONFIG_SRC_PORT": str(self.sshd.port), "RCLONE_CONFIG_SRC_USER": self.sshd.user,
            "RCLONE_CONFIG_SRC_KEY_FILE": str(self.sshd.client_key_path),
            "RCLONE_CONFIG_SRC_KNOWN_HOSTS_FILE": str(self.work / "known_hosts"),
            "RCLONE_CONFIG_DST_TYPE": "s3", "RCLONE_CONFIG_DST_PROVIDER": "Other",
            "RCLONE_CONFIG_DST_ENDPOINT": f"http://127.0.0.1:{self.s3.port}",
            "RCLONE_CONFIG_DST_ACCESS_KEY_ID": self.s3.access_key,
            "RCLONE_CONFIG_DST_SECRET_ACCESS_KEY": self.s3.secret_key, "RCLONE_CONFIG_DST_REGION": "us-east-1",
            "RCLONE_CONFIG_DST_FORCE_PATH_STYLE": "true",
        })
        return env

    def rclone(self, remote: str, prefix: str) -> float:
        env = self.rclone_env()
        started = time.perf_counter()
        subprocess.run(["rclone", "copy", f"src:{remote}", f"dst:{self.bucket.bucket}/{prefix}",
                        "--config", "/dev/null"], env=env, check=True, capture_output=True)
        return time.perf_counter() - started

    # -- raw limits ---------------------------------------------------------------------------------------
    def sftp_read(self, remote: str, files: list[str]) -> float:
        """OpenSSH `sftp` fetching the files to /dev/null (large) or a scratch folder (small)."""
        scratch = self.work / "sftp-scratch"
        scratch.mkdir(exist_ok=True)
        if len(files) <= 8:
            batch = "".join(f"get {remote}/{f} /dev/null\n" for f in files)
        else:
            batch = f"get -r {remote} {scratch}/\n"
        started = time.perf_counter()
        subprocess.run(["sftp", "-q", "-b", "-", "-i", str(self.sshd.client_key_path), "-P", str(self.sshd.port),
                        "-o", f"UserKnownHostsFile={self.work / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
                        f"{self.sshd.user}@127.0.0.1"], input=batch.encode(), check=True, capture_output=True)
        elapsed = time.perf_counter() - started
        shutil.rmtree(scratch, ignore_errors=True)
        return elapsed

    def s3_put(self, blobs: list[bytes], prefix: str, threads: int = 8) -> float:
        """PUT each buffer as its own object from memory, `threads` at a time."""
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda ib: self.bucket.put_bytes(f"{prefix}/{ib[0]}", ib[1]), enumerate(blobs)))
        return time.perf_counter() - started


def make_files(root: Path, count: int, size: int, folders: int) -> list[str]:
    names = []
    for i in range(count):
        rel = f"d{i % folders:03}/f{i:06}.bin" if folders > 1 else f"f{i:03}.bin"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            left = size
            while left:
                n = min(left, 64 * MiB)
                out.write(os.urandom(n))
                left -= n
        # Files an hour old, as most of a customer's files are: the engine reads a file changed in the last
        # `settle_seconds` only after a wait (issue 11), which a benchmark of freshly made files would measure.
        os.utime(path, (time.time() - 3600, time.time() - 3600))
        names.append(rel)
    return names


WORDS = ("請求書", "invoice", "payment", "支払", "amount", "customer", "order", "注文", "delivery", "shipped", "backup",
         "server", "report", "total", "tax", "yen", "account", "口座", "status", "pending", "done", "error",
         "warning", "info", "debug", "user", "admin", "file", "folder", "2026", "november")


def make_text_files(root: Path, count: int, folders: int) -> int:
    """Office-like text (CSV ledgers, logs, notes): words from a small vocabulary with random numbers, sizes
    spread from 2 KiB to 2 MiB (a few large files, many small). Returns the bytes written."""
    import random

    rng = random.Random(12)
    total = 0
    for i in range(count):
        size = int(2048 * (1024 ** rng.random()))                 # log-uniform 2 KiB … 2 MiB
        lines, n = [], 0
        while n < size:
            line = (f"{rng.randrange(10**9):09},{'-'.join(rng.choices(WORDS, k=rng.randint(3, 9)))},"
                    f"{rng.randrange(10**6)},{rng.random():.6f}\n")
            lines.append(line)
            n += len(line.encode())
        data = "".join(lines).encode()
        path = root / f"t{i % folders:03}" / f"doc{i:05}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (time.time() - 3600, time.time() - 3600))
        total += len(data)
    return total


def rss_child(args: dict) -> None:
    """Run the engine over one file in this (fresh) process and print its peak RSS in MiB.

    VmHWM, not getrusage: Linux carries ru_maxrss across fork+exec, so the child would report the
    benchmark parent's own peak (it held the large files in memory for the raw PUT figure).
    """
    logging.basicConfig(level=logging.WARNING)
    ep = SftpEndpoint(**args["sftp"])
    store = ObjectStore(S3Endpoint(**args["s3"]))
    run_backup(partial(open_sftp, ep), store, "bench-rss", "bench", [args["remote"]], [])
    status = Path("/proc/self/status").read_text()
    hwm_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    print(json.dumps({"peak_rss_mib": hwm_kib / 1024}))


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    verbose = bool(os.environ.get("BENCH_VERBOSE"))
    logging.getLogger("cloudbackup.backup.archiver").setLevel(logging.INFO if verbose else logging.WARNING)
    figures: dict[str, float | list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="cloudbackup-bench-", dir=os.environ.get("BENCH_TMPDIR")) as tmp:
        bench = Bench(Path(tmp))
        try:
            root = bench.sshd.root
            only = os.environ.get("BENCH_ONLY", "large,small,unchanged,huge,text").split(",")
            if "large" in only:
                count, size = LARGE
                names = make_files(root / "large", count, size, 1)
                total = count * size
                # The median of LARGE_ROUNDS alternated rounds (each to a fresh customer / prefix, so nothing is
                # de-duplicated): on 2 shared cores one run of either tool moves by ±10 % minutes apart.
                ours_times, rclone_times = [], []
                for r in range(LARGE_ROUNDS):
                    ours_times.append(bench.ours("/large", f"large-{r}"))
                    rclone_times.append(bench.rclone("/large", f"rclone-large-{r}"))
                ours, rcl = statistics.median(ours_times), statistics.median(rclone_times)
                rounds = [b / a for a, b in zip(ours_times, rclone_times, strict=True)]
                figures["large_files_rounds_vs_rclone"] = [round(x, 3) for x in rounds]
                raw_sftp = bench.sftp_read("/large", names)
                raw_put = bench.s3_put([(root / "large" / n).read_bytes() for n in names[:1]], "raw-large", 1) * count
                figures.update(large_files_ours_mb_s=total / ours / 1e6, large_files_rclone_mb_s=total / rcl / 1e6,
                               large_files_sftp_read_mb_s=total / raw_sftp / 1e6,
                               large_files_s3_put_mb_s=total / raw_put / 1e6, large_files_vs_rclone=rcl / ours)
                say(f"large files {count} x {size // MiB} MiB: ours {total / ours / 1e6:.0f} MB/s, rclone "
                    f"{total / rcl / 1e6:.0f} MB/s, sftp read {total / raw_sftp / 1e6:.0f} MB/s, S3 PUT (one stream) "
                    f"{total / raw_put / 1e6:.0f} MB/s -> large_files_vs_rclone {rcl / ours:.2f} (medians of "
                    f"{LARGE_ROUNDS} rounds; each round: {', '.join(f'{x:.2f}' for x in rounds)})")
                shutil.rmtree(root / "large")

            if "small" in only:
                count, size, folders = SMALL
                names = make_files(root / "small", count, size, folders)
                ours = bench.ours("/small", "small")
                rcl = bench.rclone("/small", "rclone-small")
                raw_sftp = bench.sftp_read("/small", names)
                sample = names[: max(1, count // 10)]
                raw_put = bench.s3_put([(root / "small" / n).read_bytes() for n in sample], "raw-small") \
                    * count / len(sample)
                figures.update(small_files_ours_files_s=count / ours, small_files_rclone_files_s=count / rcl,
                               small_files_sftp_read_files_s=count / raw_sftp,
                               small_files_s3_put_files_s=count / raw_put,
                               small_files_vs_rclone=rcl / ours)
                say(f"small files {count} x {size // 1024} KiB: ours {count / ours:.0f} files/s, rclone "
                    f"{count / rcl:.0f} files/s, sftp read {count / raw_sftp:.0f} files/s, S3 PUT (8 threads) "
                    f"{count / raw_put:.0f} files/s -> small_files_vs_rclone {rcl / ours:.2f}")
                shutil.rmtree(root / "small")

            if "unchanged" in only:
                count, size, folders = UNCHANGED
                make_files(root / "unchanged", count, size, folders)
                first_ours = bench.ours("/unchanged", "unchanged")
                first_rclone = bench.rclone("/unchanged", "rclone-unchanged")
                ours = bench.ours("/unchanged", "unchanged")
                rcl = bench.rclone("/unchanged", "rclone-unchanged")
                figures.update(unchanged_rerun_ours_s=ours, unchanged_rerun_rclone_s=rcl,
                               unchanged_first_run_ours_s=first_ours, unchanged_first_run_rclone_s=first_rclone,
                               unchanged_rerun_time_vs_rclone=ours / rcl)
                say(f"unchanged re-run over {count} x {size // 1024} KiB: ours {ours:.1f} s, rclone {rcl:.1f} s "
                    f"(first runs: ours {first_ours:.1f} s, rclone {first_rclone:.1f} s) -> "
                    f"unchanged_rerun_time_vs_rclone {ours / rcl:.2f}")
                shutil.rmtree(root / "unchanged")

            if "text" in only:  # what compression saves: stored bytes (all of the customer's objects) / source bytes
                count, folders = TEXT
                source = make_text_files(root / "text", count, folders)
                elapsed = bench.ours("/text", "text")
                stored = stored_bytes(bench.bucket, "text")
                figures.update(stored_bytes_ratio_text=stored / source, text_files_ours_mb_s=source / elapsed / 1e6)
                say(f"text {count} files, {source / MiB:.1f} MiB: stored {stored / MiB:.1f} MiB in "
                    f"{elapsed:.1f} s ({source / elapsed / 1e6:.0f} MB/s) -> stored_bytes_ratio_text "
                    f"{stored / source:.3f}")
                shutil.rmtree(root / "text")

            if "huge" in only:  # peak memory on one 2 GiB file, in a fresh process
                make_files(root / "huge", 1, HUGE, 1)
                args = {"sftp": {"host": "127.0.0.1", "port": bench.sshd.port, "username": bench.sshd.user,
                                 "host_key": bench.sshd.host_key_line, "private_key": bench.sshd.client_private_key},
                        "s3": {"endpoint": f"127.0.0.1:{bench.s3.port}", "secure": False,
                               "access_key": bench.s3.access_key, "secret_key": bench.s3.secret_key,
                               "bucket": bench.bucket.bucket},
                        "remote": "/huge"}
                started = time.perf_counter()
                out = subprocess.run([sys.executable, __file__, "--rss-child", json.dumps(args)], check=True,
                                     capture_output=True, text=True).stdout
                elapsed = time.perf_counter() - started
                peak = json.loads(out.strip().splitlines()[-1])["peak_rss_mib"]
                figures.update(peak_rss_mb_2gib_file=peak, huge_file_ours_mb_s=HUGE / elapsed / 1e6)
                say(f"one {HUGE // MiB} MiB file: peak RSS {peak:.0f} MiB, {HUGE / elapsed / 1e6:.0f} MB/s "
                    f"(incl. process start) -> peak_rss_mb_2gib_file {peak:.0f}")
        finally:
            bench.stop()
    if SCALE != 1:
        say("BENCH_SCALE is set: figures printed only, bench/results.json left alone")
        return
    figures["bench_backup_engine"] = json.dumps(EngineOptions().__dict__)
    write_results({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()})


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--rss-child":
        rss_child(json.loads(sys.argv[2]))
    else:
        main()
