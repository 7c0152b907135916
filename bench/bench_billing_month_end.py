"""Benchmark: month-end for 100,000 generated contracts on the real path, as the billing_monthly DAG runs it.

Customer files on disk, PostgreSQL (127.0.0.1:5432, a database of its own, dropped afterwards), then
`tasks.issue_invoices` (invoices with numbers, archive rows, queued invoice mails) and `tasks.export_month_csv`
(both CSV files): the DAG's two billing tasks, in a fresh process whose peak memory is reported. A second run
of the same month (nothing to issue) is timed too. Keys: `month_end_100k_s`, `month_end_100k_phases_s`,
`month_end_100k_peak_rss_mb`, `month_end_100k_rerun_s`.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = int(os.environ.get("BENCH_CONTRACTS", "100000"))
MONTH = "2026-10"
ISSUE_DATE = "2026-11-01"
TARGET_S = 60.0
PG = "postgresql+psycopg://postgres@127.0.0.1:5432"


def _yaml_value(value: object) -> str:
    if isinstance(value, date):
        return value.isoformat()
    return json.dumps(value, ensure_ascii=False)   # a JSON string is a YAML string


def _yaml(data: dict, indent: str = "") -> str:
    out = []
    for key, value in data.items():
        if isinstance(value, dict):
            out.append(f"{indent}{key}:\n{_yaml(value, indent + '  ')}")
        elif isinstance(value, list):
            out.append(f"{indent}{key}:")
            for item in value:
                if isinstance(item, dict):
                    body = _yaml(item, indent + "    ")
                    out.append(f"{indent}  - {body.lstrip()}".rstrip("\n"))
                else:
                    out.append(f"{indent}  - {_yaml_value(item)}")
        else:
            out.append(f"{indent}{key}: {_yaml_value(value)}")
    return "\n".join(out) + "\n"


def write_registry(directory: Path, n: int) -> None:
    from bench_billing import generated_timelines

    (directory / "customers").mkdir(parents=True)
    for name in ("catalog.yaml", "operator.yaml", "backup.yaml", "maintenance.yaml"):
        shutil.copy(ROOT / "dags" / "registry" / name, directory / name)
    for timeline in generated_timelines(n):
        (directory / "customers" / f"{timeline['id']}.yaml").write_text(_yaml(timeline), encoding="utf-8")


def child() -> int:
    """The DAG's billing tasks, timed, in this fresh process; prints one JSON line."""
    from cloudbackup import tasks
    from cloudbackup.edges import connections

    def cpu() -> float:   # this process and its finished workers
        return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                   for f in ("ru_utime", "ru_stime"))

    connections.database()   # Airflow's connection machinery loaded, as in a task: not timed
    cpu0 = cpu()
    t0 = time.perf_counter()
    result = tasks.issue_invoices(MONTH, issue_date=ISSUE_DATE)
    t1 = time.perf_counter()
    csv_path = tasks.export_month_csv(MONTH)
    t2 = time.perf_counter()
    cpu_s = cpu() - cpu0
    rerun = tasks.issue_invoices(MONTH, issue_date=ISSUE_DATE)
    t3 = time.perf_counter()
    hwm_kb = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                  if line.startswith("VmHWM:"))
    print(json.dumps({"issue_s": t1 - t0, "csv_s": t2 - t1, "rerun_s": t3 - t2, "cpu_s": cpu_s, "result": result,
                      "rerun": {k: rerun[k] for k in ("issued", "unchanged", "not_due")},
                      "csv": csv_path, "peak_rss_mb": hwm_kb / 1024,
                      "workers_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
    return 0


def main() -> int:
    import sqlalchemy as sa

    from cloudbackup.edges import db

    name = f"cloudbackup_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
    with tempfile.TemporaryDirectory(prefix="cloudbackup-bench-month-end-") as tmp:
        t0 = time.perf_counter()
        write_registry(Path(tmp) / "registry", CONTRACTS)
        print(f"{CONTRACTS:,} customer files written in {time.perf_counter() - t0:.1f} s (not timed)", flush=True)
        with admin.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            engine = db.engine_for(f"{PG}/{name}")
            db.migrate(engine)
            env = {**os.environ, "CLOUDBACKUP_REGISTRY_DIR": str(Path(tmp) / "registry"),
                   "CLOUDBACKUP_EXPORT_DIR": str(Path(tmp) / "exports"),
                   "AIRFLOW_CONN_CLOUDBACKUP_DB": json.dumps({"conn_type": "postgres", "host": "127.0.0.1",
                                                              "port": 5432, "login": "postgres", "schema": name}),
                   "AIRFLOW_HOME": str(Path(tmp) / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                   "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"}
            load0 = os.getloadavg()[0]
            run = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True,
                                 cwd=ROOT)
            if run.returncode != 0:
                print(run.stdout, run.stderr, file=sys.stderr)
                return 1
            figures = json.loads(run.stdout.strip().splitlines()[-1])
            with engine.connect() as conn:
                invoices, top, mails, archived = conn.execute(sa.text(
                    "SELECT (SELECT COUNT(*) FROM invoices WHERE state = 'issued'), "
                    "(SELECT MAX(last_number) FROM invoice_number_sequences), "
                    "(SELECT COUNT(*) FROM notices WHERE kind = 'invoice'), "
                    "(SELECT COUNT(*) FROM invoice_archive)")).one()
            engine.dispose()
        finally:
            db.engine_for.cache_clear()
            with admin.connect() as c:
                c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        csv_rows = len(Path(figures["csv"]).read_text(encoding="utf-8-sig").splitlines()) - 1
    result = figures["result"]
    # What a run must have done: one numbered invoice, one archived document and one queued mail per customer
    # billed, numbers 1..N without gaps, every invoice in the CSV; the re-run issued nothing.
    assert result["issued"] == invoices == top == mails == archived == csv_rows, (result, invoices, top, mails)
    assert not result["failed"] and figures["rerun"]["issued"] == 0, (result["failed"][:5], figures["rerun"])
    total_s = figures["issue_s"] + figures["csv_s"]
    phases = {**result["seconds"], "csv": round(figures["csv_s"], 3)}
    cpu_s = figures["cpu_s"]
    print(f"contracts: {CONTRACTS:,}; invoices issued for {MONTH}: {result['issued']:,} (numbers 1..{top:,}), "
          f"not due: {result['not_due']:,}; mails queued: {mails:,}; CSV rows: {csv_rows:,}")
    print(f"month end: {total_s:.1f} s wall (target ≤ {TARGET_S:.0f} s): issue {figures['issue_s']:.1f} s "
          f"+ CSV {figures['csv_s']:.1f} s; re-run {figures['rerun_s']:.1f} s")
    print("phases (s; load_registry/rules/render_mails are summed over the worker processes, the rest is the "
          "main process's wall time): " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()))
    print(f"CPU of the month end's processes (main + workers, not PostgreSQL's): {cpu_s:.1f} s for "
          f"{total_s:.1f} s wall on {os.cpu_count()} cores; load average before: "
          f"{load0:.1f}; peak RSS: main {figures['peak_rss_mb']:.0f} MiB, largest worker "
          f"{figures['workers_peak_rss_mb']:.0f} MiB")
    write_results({"month_end_100k_s": round(total_s, 1), "month_end_100k_phases_s": phases,
                   "month_end_100k_rerun_s": round(figures["rerun_s"], 1),
                   "month_end_100k_cpu_s": round(cpu_s, 1),
                   "month_end_100k_peak_rss_mb": round(figures["peak_rss_mb"]),
                   "month_end_100k_worker_peak_rss_mb": round(figures["workers_peak_rss_mb"]),
                   "month_end_100k_invoices": int(invoices)} if CONTRACTS == 100_000 else {})
    return 0 if total_s <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(child() if "--child" in sys.argv else main())
