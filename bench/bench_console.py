"""Console fleet page at fleet size (target < 1 s): 1,000 customers with a year of daily runs, SQLite and PG; and
10,000 customers (`console_fleet_10k_ms`, issue 14) with 30 days of runs each on SQLite: the page reads each
customer's latest run by one index seek, so its cost follows the fleet's size, not the history's length.

`python bench/bench_console.py 10k` runs only the 10,000-customer case."""

from __future__ import annotations

import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))   # the dev-only devtools package
from common import write_results  # noqa: E402
from devtools.console_seed import seed_fleet  # noqa: E402

from cloudbackup.clock import utcnow  # noqa: E402
from cloudbackup.console import pages as console_web  # noqa: E402
from cloudbackup.edges import db  # noqa: E402

CUSTOMERS, DAYS, REPEATS = 1000, 365, 7
FLEET_10K, DAYS_10K = 10_000, 30
CATALOG = Path(__file__).resolve().parents[1] / "dags" / "registry" / "catalog.yaml"


def measure(engine: sa.Engine, registry: Path, label: str, customers: int = CUSTOMERS,
            days: int = DAYS) -> dict[str, float]:
    now = utcnow()
    started = time.perf_counter()
    seed_fleet(engine, registry, customers=customers, days=days, now=now)
    print(f"{label}: seeded {customers} customers x {days} runs in {time.perf_counter() - started:.1f} s")
    console_web.REGISTRY.__init__()        # cold: the registry is read from its files
    started = time.perf_counter()
    html = console_web.fleet_html(engine, registry, {"page": "1"})
    cold = (time.perf_counter() - started) * 1000
    # Every customer is read, flagged and counted; one page of rows is rendered.
    assert html.count('data-customer="') == min(customers, console_web.PAGE_SIZE)
    assert f"of {customers:,} customers" in html, "the page must count every customer"
    warm = []
    for n in range(REPEATS):
        started = time.perf_counter()
        console_web.fleet_html(engine, registry, [{"sort": "capacity"}, {"attention": "1", "sort": "attention"},
                                                  {"sort": "name"}][n % 3])
        warm.append((time.perf_counter() - started) * 1000)
    median = statistics.median(warm)
    print(f"{label}: fleet page cold {cold:.0f} ms (registry parse included), warm median {median:.0f} ms "
          f"(min {min(warm):.0f}, max {max(warm):.0f}), {len(html) // 1024} KiB of HTML")
    return {"cold": round(cold, 1), "warm": round(median, 1)}


def fleet_10k() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-console-10k-") as tmp:
        registry = Path(tmp) / "registry"
        (registry / "customers").mkdir(parents=True)
        (registry / "catalog.yaml").write_text(CATALOG.read_text(encoding="utf-8"), encoding="utf-8")
        engine = db.engine_for(f"sqlite:///{tmp}/console.db")
        db.migrate(engine)
        result = measure(engine, registry, "sqlite 10k", FLEET_10K, DAYS_10K)
        engine.dispose()
    write_results({"console_fleet_10k_ms": result["warm"], "console_fleet_10k_cold_ms": result["cold"]})
    return result


def main() -> None:
    if sys.argv[1:] == ["10k"]:
        fleet_10k()
        return
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        registry = Path(tmp) / "registry"
        (registry / "customers").mkdir(parents=True)
        (registry / "catalog.yaml").write_text(CATALOG.read_text(encoding="utf-8"), encoding="utf-8")
        engine = db.engine_for(f"sqlite:///{tmp}/console.db")
        db.migrate(engine)
        sqlite = measure(engine, registry, "sqlite")
        engine.dispose()

        name = f"bench_console_{secrets.token_hex(4)}"
        admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            pg = db.engine_for(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
            db.migrate(pg)
            for p in (registry / "customers").glob("*.yaml"):
                p.unlink()
            with pg.connect() as c:
                c.execute(sa.text("ANALYZE"))
            postgres = measure(pg, registry, "postgres")
            pg.dispose()
        finally:
            with admin.connect() as c:
                c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    write_results({
        "console_fleet_1000_ms": sqlite["warm"],
        "console_fleet_1000_cold_ms": sqlite["cold"],
        "console_fleet_1000_pg_ms": postgres["warm"],
        "console_fleet_1000_pg_cold_ms": postgres["cold"],
    })
    fleet_10k()


if __name__ == "__main__":
    main()
