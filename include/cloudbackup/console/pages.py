"""The console's pages: server-rendered Jinja2 HTML from the console queries, and the registry cache."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlalchemy.engine import Engine

from cloudbackup.billing import exports
from cloudbackup.billing.months import BillingMonth
from cloudbackup.clock import TOKYO, utcnow
from cloudbackup.console import queries as console
from cloudbackup.console.queries import CustomerDetail, FleetRow
from cloudbackup.console.reports import Report
from cloudbackup.notices.templating import yen
from cloudbackup.registry.catalog import GB, Catalog, load_catalog
from cloudbackup.registry.customers import Customer, Registry, load_registry
from cloudbackup.registry.maintenance import Window, load_windows

PREFIX = "/cloudbackup"
BILLING_DAG_ID = "billing_monthly"
RESTORE_DAG_ID = "restore"


# ---- formatting ----------------------------------------------------------------------------------------

def human_bytes(value: int | None) -> str:
    """Decimal units, as contract capacity is sold (art. 6): 1 GB = 10^9 bytes."""
    if value is None:
        return "—"
    for unit, size in (("TB", 10**12), ("GB", GB), ("MB", 10**6), ("kB", 10**3)):
        if abs(value) >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value} B"


def tokyo(moment: datetime | None) -> str:
    return moment.astimezone(TOKYO).strftime("%Y-%m-%d %H:%M JST") if moment else "—"


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("cloudbackup", "templates"), undefined=StrictUndefined,
                      autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(bytes=human_bytes, tokyo=tokyo, yen=yen)
    env.globals.update(prefix=PREFIX, restore_dag_id=RESTORE_DAG_ID, near=console.NEAR_CAPACITY_PERCENT)
    return env


ENV = _environment()


# ---- capacity chart (inline SVG geometry) --------------------------------------------------------------

@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    points: str                 # SVG polyline "x,y x,y …"
    capacity_y: float | None    # the contract capacity line
    top_label: str
    first_label: str
    last_label: str
    markers: tuple[tuple[float, float, str], ...]   # capacity events: x, y, title


def capacity_chart(detail: CustomerDetail, now: datetime, days: int = 365,
                   width: int = 760, height: int = 220) -> Chart:
    """Stored bytes over the last `days`, scaled to an SVG box, with the contract capacity line."""
    pad = 8
    start = now - timedelta(days=days)
    capacity = detail.row.contract_capacity_bytes or None
    peak = max([p.stored_bytes for p in detail.capacity] + [capacity or 0, 1])
    top = peak * 1.1
    span = (now - start).total_seconds()

    def x(at: datetime) -> float:
        return round(pad + (width - 2 * pad) * max(0.0, (at - start).total_seconds()) / span, 1)

    def y(value: int) -> float:
        return round(height - pad - (height - 2 * pad) * value / top, 1)

    points = " ".join(f"{x(p.at)},{y(p.stored_bytes)}" for p in detail.capacity)
    markers = tuple((x(e.recorded_at), y(e.stored_bytes), f"{e.threshold_percent}% at {tokyo(e.recorded_at)}")
                    for e in detail.capacity_events if e.recorded_at >= start)
    return Chart(width, height, points, y(capacity) if capacity else None, human_bytes(int(top)),
                 tokyo(start)[:10], tokyo(now)[:10], markers)


# ---- page rendering (pure: data in, HTML out) ----------------------------------------------------------

FLEET_PARAMS = ("sort", "dir", "q", "state", "status", "attention")
FLEET_COLUMNS = (("name", "Customer"), ("status", "Last run"), ("errors", "Collection errors"),
                 ("capacity", "Stored / contract"), ("next_run", "Next run"), ("notices", "Notices"))


def render_fleet(rows: list[FleetRow], *, total: int, params: dict[str, str], registry_errors: list[str],
                 now: datetime) -> str:
    def sort_link(key: str) -> str:
        descending = params.get("sort") == key and params.get("dir") != "desc"
        query = {**{k: v for k, v in params.items() if v}, "sort": key, "dir": "desc" if descending else "asc"}
        return f"{PREFIX}/?{urlencode(query)}"
    return ENV.get_template("console/fleet.html.j2").render(
        rows=rows, total=total, params=params, columns=FLEET_COLUMNS, sort_link=sort_link,
        registry_errors=registry_errors, now=now, title="Fleet")


def render_customer(detail: CustomerDetail, customer: Customer, now: datetime) -> str:
    return ENV.get_template("console/customer.html.j2").render(
        d=detail, row=detail.row, customer=customer, chart=capacity_chart(detail, now), now=now,
        title=customer.name)


def render_finance(months: list[console.MonthSummary], selected: str | None,
                   month_invoices: list[console.InvoiceRow], names: dict[str, str]) -> str:
    return ENV.get_template("console/finance.html.j2").render(
        months=months, selected=selected, invoices=month_invoices, names=names, csv_files=CSV_FILES,
        title="Finance")


def render_reports(reports: list[Report], allowed: set[str]) -> str:
    """The Reports page: every report, with a download form where the user's role allows it."""
    return ENV.get_template("console/reports.html.j2").render(reports=reports, allowed=allowed, title="Reports")


def render_invoice(invoice: console.InvoiceRow, lines: list[console.InvoiceLineRow], name: str) -> str:
    return ENV.get_template("console/invoice.html.j2").render(invoice=invoice, lines=lines, name=name,
                                                              title=invoice.invoice_number or "Invoice")


CSV_FILES = ("invoices", "invoice-lines")     # finance's month-end files, as the billing DAG names them


def month_csvs(engine: Engine, month: BillingMonth) -> dict[str, bytes]:
    """Finance's month-end files, generated from the DB by the billing DAG's own writer (same bytes)."""
    with tempfile.TemporaryDirectory(prefix="cloudbackup-csv-") as tmp:
        paths = exports.write_month_csvs(engine, month, Path(tmp))
        return {p.name: p.read_bytes() for p in paths}


# ---- the imperative shell: registry cache, engine, FastAPI app ------------------------------------------

@dataclass(frozen=True)
class Registered:
    """What the console reads from the registry folder: customers, catalog, maintenance windows."""

    registry: Registry
    catalog: Catalog
    windows: tuple[Window, ...]


class RegistryCache:
    """The registry re-read only when one of its files changes (1,000 YAML files take most of a second)."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: Registered | None = None

    def get(self, directory: Path) -> Registered:
        files = sorted((directory / "customers").glob("*.y*ml")) + [directory / "catalog.yaml",
                                                                   directory / "maintenance.yaml"]
        key = (str(directory), tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files if p.exists()))
        if key != self._key or self._value is None:
            self._value = Registered(load_registry(directory), load_catalog(directory / "catalog.yaml"),
                                     tuple(load_windows(directory / "maintenance.yaml")))
            self._key = key
        return self._value


REGISTRY = RegistryCache()


def fleet_html(engine: Engine, registry_dir: Path, params: dict[str, str], now: datetime | None = None) -> str:
    """The fleet page as served (registry, a few indexed queries, sort/filter, render); the benchmark times this."""
    now = now or utcnow()
    params = {k: params.get(k, "") for k in FLEET_PARAMS}
    reg = REGISTRY.get(registry_dir)
    rows = console.fleet(engine, reg.registry.customers, reg.catalog, now, reg.windows)
    shown = console.sort_and_filter(rows, sort=params.get("sort", "name"), query=params.get("q", ""),
                                    state=params.get("state", ""), status=params.get("status", ""),
                                    attention=params.get("attention") == "1", descending=params.get("dir") == "desc")
    return render_fleet(shown, total=len(rows), params=params, now=now,
                        registry_errors=[str(e) for e in reg.registry.errors])
