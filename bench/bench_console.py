"""Console fleet page at fleet size: 1,000 customers with a year of daily runs (target < 1 s), SQLite and PG."""

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
CATALOG = Path(__file__).resolve().parents[1] / "dags" / "registry" / "catalog.yaml"


def measure(engine: sa.Engine, registry: Path, label: str) -> dict[str, float]:
    now = utcnow()
    started = time.perf_counter()
    seed_fleet(engine, registry, customers=CUSTOMERS, days=DAYS, now=now)
    print(f"{label}: seeded {CUSTOMERS} customers x {DAYS} runs in {time.perf_counter() - started:.1f} s")
    console_web.REGISTRY.__init__()        # cold: the registry is read from 1,000 files
    started = time.perf_counter()
    html = console_web.fleet_html(engine, registry, {})
    cold = (time.perf_counter() - started) * 1000
    assert html.count('data-customer="') == CUSTOMERS, "fleet page must list every customer"
    warm = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        console_web.fleet_html(engine, registry, {"sort": "capacity", "dir": "desc"})
        warm.append((time.perf_counter() - started) * 1000)
    median = statistics.median(warm)
    print(f"{label}: fleet page cold {cold:.0f} ms (registry parse included), warm median {median:.0f} ms "
          f"(min {min(warm):.0f}, max {max(warm):.0f}), {len(html) // 1024} KiB of HTML")
    return {"cold": round(cold, 1), "warm": round(median, 1)}


def main() -> None:
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


if __name__ == "__main__":
    main()
