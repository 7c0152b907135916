"""The console's pages: server-rendered Jinja2 HTML from the console queries, and the registry cache."""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlalchemy.engine import Engine

from cloudbackup.billing import exports
from cloudbackup.billing.months import BillingMonth
from cloudbackup.clock import TOKYO, utcnow
from cloudbackup.console import attention, i18n
from cloudbackup.console import queries as console
from cloudbackup.console.attention import Flag
from cloudbackup.console.browse import Listing
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


def epoch(seconds: int | None) -> str:
    """A manifest's mtime (Unix seconds) in Tokyo time."""
    return tokyo(datetime.fromtimestamp(seconds, tz=TOKYO)) if seconds else "—"


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("cloudbackup", "templates"), undefined=StrictUndefined,
                      autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(bytes=human_bytes, tokyo=tokyo, yen=yen, epoch=epoch)
    env.globals.update(prefix=PREFIX, restore_dag_id=RESTORE_DAG_ID, near=console.NEAR_CAPACITY_PERCENT,
                       flag_codes=attention.FLAGS, languages=i18n.LANGUAGES)
    return env


def _context(lang: str) -> dict:
    """What every page's template gets for its language: `_` (the labels) and `reason` (a flag's wording)."""
    _ = i18n.translator(lang)

    def reason(flag: Flag) -> str:
        return _(f"reason:{flag.code}", at=tokyo(flag.at), number=flag.number if flag.number is not None else 0,
                 text=flag.text)
    return {"_": _, "lang": lang, "reason": reason}


ENV = _environment()


# ---- capacity chart (inline SVG geometry) --------------------------------------------------------------

@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int                   # the plot area: x from left to width - pad, y from pad to bottom
    bottom: int
    points: str                 # SVG polyline "x,y x,y …"
    capacity_y: float | None    # the contract capacity line
    y_ticks: tuple[tuple[float, str], ...]   # y, label: 0 at the bottom, growing upwards
    x_ticks: tuple[tuple[float, str], ...]   # x, label: the first of each month, oldest on the left
    markers: tuple[tuple[float, float, str], ...]   # capacity events: x, y, title
    stored_points: str = ""     # the operator's stored bytes, drawn beside the contract figure, never instead


def nice_step(top: float, ticks: int = 5) -> float:
    """A round step (1, 2, 2.5 or 5 × 10^n) giving about `ticks` intervals from 0 to `top`."""
    raw = max(top, 1) / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def capacity_chart(detail: CustomerDetail, now: datetime, days: int = 365,
                   width: int = 760, height: int = 240) -> Chart:
    """The contract figure over the last `days` (and, fainter, the operator's stored bytes), scaled to an SVG box
    with a y axis in bytes (round steps, 0 at the bottom), an x axis of months (Asia/Tokyo, oldest left), and the
    contract capacity line."""
    pad, left, bottom = 8, 64, height - 24
    start = now - timedelta(days=days)
    capacity = detail.row.contract_capacity_bytes or None
    peak = max([p.counted_bytes for p in detail.capacity] + [p.stored_bytes or 0 for p in detail.capacity]
               + [capacity or 0, 1])
    step = nice_step(peak * 1.05)
    top = step * math.ceil(peak * 1.05 / step)
    span = (now - start).total_seconds()

    def x(at: datetime) -> float:
        return round(left + (width - pad - left) * max(0.0, (at - start).total_seconds()) / span, 1)

    def y(value: float) -> float:
        return round(bottom - (bottom - pad) * value / top, 1)

    points = " ".join(f"{x(p.at)},{y(p.counted_bytes)}" for p in detail.capacity)
    stored_points = " ".join(f"{x(p.at)},{y(p.stored_bytes)}" for p in detail.capacity if p.stored_bytes is not None)
    markers = tuple((x(e.recorded_at), y(e.counted_bytes), f"{e.threshold_percent}% {tokyo(e.recorded_at)}")
                    for e in detail.capacity_events if e.recorded_at >= start)
    y_ticks = tuple((y(step * i), human_bytes(int(step * i)) if i else "0")
                    for i in range(int(round(top / step)) + 1))
    months = []
    first = start.astimezone(TOKYO).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while first <= now:
        if first >= start:
            months.append((x(first), first.strftime("%Y-%m")))
        first = (first + timedelta(days=32)).replace(day=1)
    return Chart(width, height, left, bottom, points, y(capacity) if capacity else None, y_ticks, tuple(months),
                 markers, stored_points)


# ---- page rendering (pure: data in, HTML out) ----------------------------------------------------------

FLEET_PARAMS = ("sort", "dir", "q", "state", "status", "attention", "flag", "page")
FLEET_COLUMNS = (("name", "Customer"), ("status", "Last run"), ("errors", "Collection errors"),
                 ("capacity", "Counted / contract"), ("next_run", "Next run"), ("notices", "Notices"))
PAGE_SIZE = 200     # rows per fleet page: 10,000 customers stay a fast page; counts and filters cover all


def sort_direction(params: dict[str, str]) -> str:
    """The direction the rows are in: the requested one, else the column's own first direction."""
    if params.get("dir") in ("asc", "desc"):
        return params["dir"]
    return "desc" if params.get("sort") in console.DESCENDING_FIRST else "asc"


def render_fleet(rows: list[FleetRow], *, total: int, params: dict[str, str], registry_errors: list[str],
                 now: datetime, counts: dict[str, int] | None = None, lang: str = "en", page: int = 1,
                 matching: int | None = None) -> str:
    sort = params.get("sort") or "name"
    direction = sort_direction({**params, "sort": sort})

    def sort_link(key: str) -> str:
        # The shown column toggles; another column starts in its own useful direction.
        if key == sort:
            new_dir = "asc" if direction == "desc" else "desc"
        else:
            new_dir = "desc" if key in console.DESCENDING_FIRST else "asc"
        query = {**{k: v for k, v in params.items() if v and k != "page"}, "sort": key, "dir": new_dir}
        return f"{PREFIX}/?{urlencode(query)}"

    def page_link(n: int) -> str:
        return f"{PREFIX}/?{urlencode({**{k: v for k, v in params.items() if v}, 'page': n})}"

    def flag_link(code: str) -> str:
        return f"{PREFIX}/?{urlencode({'flag': code, 'sort': params.get('sort', ''), 'dir': params.get('dir', '')})}"
    matching = len(rows) if matching is None else matching
    return ENV.get_template("console/fleet.html.j2").render(
        rows=rows, total=total, matching=matching, params=params, columns=FLEET_COLUMNS, sort_link=sort_link,
        sort=sort, direction=direction, registry_errors=registry_errors, now=now, counts=counts or {},
        flag_link=flag_link, page=page, page_link=page_link, first=(page - 1) * PAGE_SIZE + 1,
        pages=max(1, math.ceil(matching / PAGE_SIZE)), title="Fleet", **_context(lang))


def render_customer(detail: CustomerDetail, customer: Customer, now: datetime, lang: str = "en",
                    may_restore: bool = False) -> str:
    return ENV.get_template("console/customer.html.j2").render(
        d=detail, row=detail.row, customer=customer, chart=capacity_chart(detail, now), now=now,
        may_restore=may_restore, title=customer.name, **_context(lang))


def render_finance(months: list[console.MonthSummary], selected: str | None,
                   month_invoices: list[console.InvoiceRow], names: dict[str, str], lang: str = "en") -> str:
    return ENV.get_template("console/finance.html.j2").render(
        months=months, selected=selected, invoices=month_invoices, names=names, csv_files=CSV_FILES,
        title="Finance", **_context(lang))


def render_archive(documents: list[Any], query: dict[str, Any], truncated: bool, lang: str = "en") -> str:
    """The invoice archive's search (電子帳簿保存法: by date, amount range and counterparty, combined)."""
    return ENV.get_template("console/archive.html.j2").render(documents=documents, query=query, truncated=truncated,
                                                              title="Invoice archive", **_context(lang))


def render_reports(reports: list[Report], allowed: set[str], lang: str = "en") -> str:
    """The Reports page: every report, with a download form where the user's role allows it."""
    return ENV.get_template("console/reports.html.j2").render(reports=reports, allowed=allowed, title="Reports",
                                                              **_context(lang))


def render_invoice(invoice: console.InvoiceRow, lines: list[console.InvoiceLineRow], name: str,
                   lang: str = "en") -> str:
    return ENV.get_template("console/invoice.html.j2").render(invoice=invoice, lines=lines, name=name,
                                                              title=invoice.invoice_number or "Invoice",
                                                              **_context(lang))


def render_refused(what: str, lang: str = "en") -> str:
    """403 as a page a person can read: which role the page needs."""
    return ENV.get_template("console/refused.html.j2").render(what=what, title="Not allowed", **_context(lang))


def render_browse(customer: Customer, listing: Listing, targets: list[tuple[str, str]], lang: str = "en",
                  may_restore: bool = False, missing: bool = False) -> str:
    """A snapshot's folder: sub-folders and files from its manifest, each with a restore choice."""
    return ENV.get_template("console/browse.html.j2").render(
        customer=customer, listing=listing, targets=targets, may_restore=may_restore, missing=missing,
        title=customer.name, **_context(lang))


def render_restore_run(run: dict, lang: str = "en") -> str:
    """A restore run started from the console: its state (from Airflow's REST API) and its Airflow page."""
    return ENV.get_template("console/restore_run.html.j2").render(run=run, title="Restore run", **_context(lang))


def restore_targets(customer: Customer, snapshot_id: str, restore_dir: Path) -> list[tuple[str, str]]:
    """The targets the console offers, as (restore DAG `target` param, label key): the customer's own server
    into /restore/<snapshot> (never over its live data), or the worker's restore folder."""
    from cloudbackup.backup.runcontrol import ui_restore_folder

    return [(f"sftp:{customer.sftp.connection_id}", ui_restore_folder(snapshot_id)),
            (f"local:{restore_dir.resolve() / customer.id / snapshot_id}", "")]


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
        key = (str(directory), _files_key(directory / "customers"),
               _files_key(directory, ("catalog.yaml", "maintenance.yaml")))
        if key != self._key or self._value is None:
            self._value = Registered(load_registry(directory), load_catalog(directory / "catalog.yaml"),
                                     tuple(load_windows(directory / "maintenance.yaml")))
            self._key = key
        return self._value


def _files_key(folder: Path, names: tuple[str, ...] | None = None) -> tuple:
    """(name, mtime, size) of the YAML files in `folder` (or of `names`): one scandir, no pathlib per file, so
    checking 10,000 customer files for changes costs milliseconds."""
    try:
        with os.scandir(folder) as entries:
            found = [(e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in entries
                     if (e.name in names if names is not None else e.name.endswith((".yaml", ".yml")))]
    except FileNotFoundError:
        return ()
    return tuple(sorted(found))


REGISTRY = RegistryCache()


def fleet_html(engine: Engine, registry_dir: Path, params: dict[str, str], now: datetime | None = None, *,
               paused: frozenset[str] = frozenset(), run_timeout: timedelta | None = None, lang: str = "en") -> str:
    """The fleet page as served (registry, a few indexed queries, flags, sort/filter, one page of rows, render);
    the benchmark times this. `paused`: the DAG ids Airflow has paused."""
    now = now or utcnow()
    params = {k: params.get(k, "") for k in FLEET_PARAMS}
    reg = REGISTRY.get(registry_dir)
    broken = [(e.file.stem, e.problems) for e in reg.registry.errors]
    rows = console.fleet(engine, reg.registry.customers, reg.catalog, now, reg.windows, broken=broken,
                         paused=paused, run_timeout=run_timeout)
    sort = params.get("sort") or "name"
    shown = console.sort_and_filter(rows, sort=sort, query=params.get("q", ""),
                                    state=params.get("state", ""), status=params.get("status", ""),
                                    attention=params.get("attention") == "1", flag=params.get("flag", ""),
                                    descending=sort_direction({**params, "sort": sort}) == "desc")
    try:
        page = max(1, int(params.get("page") or 1))
    except ValueError:
        page = 1
    return render_fleet(shown[(page - 1) * PAGE_SIZE:page * PAGE_SIZE], total=len(rows), params=params, now=now,
                        registry_errors=[str(e) for e in reg.registry.errors], lang=lang, page=page,
                        counts=attention.counts([r.flags for r in rows]), matching=len(shown))
