"""DAG parse cost at 10,000 customers: every DAG file of dags/ parsed the way the dag-processor does (target ≤ 2 s).

A temporary registry of 10,000 generated customer files (the real catalog and operator settings) is made the
service's registry. A parent process imports Airflow once, then forks one child per DAG file, as the dag-processor
does; each child times `DagBag(dag_folder=<file>)` (our modules are imported in the child, as in the processor).
Also timed: a task's own parse (Airflow's parsing context names one backup DAG) of that DAG's shard file, and
`cloudbackup registry check` over the whole fleet in a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CUSTOMERS = 10_000
AGENTS = ("kanto-it-sales", "kansai-partners")


def customer_file(n: int, plan: str) -> str:
    cid = f"fleet-{n:05d}"
    return f"""\
id: {cid}
name: ベンチ顧客 {n:05d}
notice_email: {cid}@customer.example.jp
language: {"en" if n % 5 == 0 else "ja"}
sales_agent: {AGENTS[0]}
contract_date: 2026-08-20
service_start_date: 2026-09-01
plans:
  - plan: {plan}
    approved_on: 2026-08-20
    started_using_on: 2026-09-01
sftp:
  connection_id: sftp_{cid.replace('-', '_')}
  paths: [/srv/documents, /srv/accounting]
  excludes: ["*.tmp", "cache/*"]
schedule: "{n % 60} {n % 6} * * *"
status: {"suspended" if n % 97 == 5 else "active"}
"""


def make_registry(directory: Path) -> None:
    from cloudbackup.registry.catalog import load_catalog

    (directory / "customers").mkdir(parents=True)
    for name in ("catalog.yaml", "operator.yaml", "backup.yaml", "maintenance.yaml"):
        source = ROOT / "dags" / "registry" / name
        if source.exists():
            (directory / name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    plans = [p.code for p in load_catalog(directory / "catalog.yaml").plans]
    for n in range(CUSTOMERS):
        (directory / "customers" / f"fleet-{n:05d}.yaml").write_text(customer_file(n, plans[n % len(plans)]),
                                                                     encoding="utf-8")


def parse_in_child(path: Path, dag_id: str | None = None) -> tuple[float, int, int]:
    """Fork (the parent has Airflow imported), parse one file in the child: seconds, DAGs, import errors."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: like a dag-processor's parsing process
        os.close(read)
        try:
            if dag_id:
                os.environ["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = dag_id
            from airflow.dag_processing.dagbag import DagBag

            started = time.perf_counter()
            bag = DagBag(dag_folder=str(path))
            figures = (time.perf_counter() - started, len(bag.dags), len(bag.import_errors))
            os.write(write, json.dumps(figures).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    seconds, dags, errors = json.loads(data)
    return seconds, dags, errors


def main() -> None:
    import logging

    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        registry = Path(tmp) / "registry"
        started = time.perf_counter()
        make_registry(registry)
        print(f"generated {CUSTOMERS} customer files in {time.perf_counter() - started:.1f} s")
        os.environ["CLOUDBACKUP_REGISTRY_DIR"] = str(registry)
        os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

        started = time.perf_counter()
        check = subprocess.run([sys.executable, "-m", "cloudbackup.cli", "registry", "check"], capture_output=True,
                               text=True, cwd=ROOT)
        check_s = time.perf_counter() - started
        print(f"registry check: {check_s:.1f} s, exit {check.returncode}: {check.stdout.strip()}")
        assert check.returncode == 0, check.stderr[-2000:]

        import airflow.sdk  # noqa: F401  - the dag-processor's parent has Airflow imported before it forks
        from airflow.dag_processing.dagbag import DagBag  # noqa: F401

        times: dict[str, float] = {}
        dags = errors = 0
        only = sys.argv[1:]   # e.g. `bench_fleet.py backup_shard_0`: those files only (while tuning; no results)
        for path in sorted((ROOT / "dags").glob("*.py")):
            if only and not any(o in path.name for o in only):
                continue
            seconds, n_dags, n_errors = parse_in_child(path)
            times[path.name] = seconds
            dags += n_dags if path.name.startswith("backup_shard_") else 0
            errors += n_errors
        assert only or dags == CUSTOMERS, f"{dags} backup DAGs parsed, expected {CUSTOMERS}"
        assert errors == 0, f"{errors} import errors"
        worst = max(times, key=lambda k: times[k])
        shards = [v for k, v in times.items() if k.startswith("backup_shard_")]
        checks = [v for k, v in times.items() if k.startswith("registry_check_")]
        print(f"{len(times)} DAG files, {dags} backup DAGs: slowest {worst} {times[worst]:.2f} s; shard files "
              f"mean {sum(shards) / len(shards):.2f} s (max {max(shards):.2f}), check files mean "
              f"{sum(checks) / len(checks):.2f} s (max {max(checks):.2f}); all files {sum(times.values()):.1f} s")

        # The shard of one customer, asked of a fresh process: this one must not hold our modules before it forks.
        shard = int(subprocess.run([sys.executable, "-c", "from cloudbackup.fleetdags import shard_of; "
                                    "print(shard_of('fleet-04242'))"], capture_output=True, text=True,
                                   check=True).stdout)
        task_s, task_dags, _ = parse_in_child(ROOT / "dags" / f"backup_shard_{shard:02d}.py",
                                              dag_id="backup_fleet_04242")
        assert task_dags == 1
        print(f"a task's parse of its shard file (one DAG built, one customer file read): {task_s:.2f} s")
        print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} (other workers share these cores)")
    if only:
        return
    write_results({
        "fleet_10k_parse_max_s": round(times[worst], 2),
        "fleet_10k_parse_max_file": worst,
        "fleet_10k_parse_shard_mean_s": round(sum(shards) / len(shards), 2),
        "fleet_10k_parse_all_files_s": round(sum(times.values()), 1),
        "fleet_10k_task_parse_s": round(task_s, 2),
        "fleet_10k_registry_check_s": round(check_s, 1),
    })


if __name__ == "__main__":
    main()
