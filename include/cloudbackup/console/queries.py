"""Operations console queries: the fleet, one customer, billing months — read from the project's DB only."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from statistics import median

import sqlalchemy as sa
from croniter import croniter
from sqlalchemy.engine import Engine

from cloudbackup.backup.outcomes import RunStatus, SkipReason
from cloudbackup.clock import TOKYO, tokyo_date
from cloudbackup.console import attention
from cloudbackup.console.attention import Flag
from cloudbackup.edges.db import from_db_time, to_db_time
from cloudbackup.notices.delivery import NoticeRecord, list_notices
from cloudbackup.registry.catalog import Catalog
from cloudbackup.registry.customers import Customer, CustomerStatus
from cloudbackup.registry.maintenance import Window

NEAR_CAPACITY_PERCENT = attention.NEAR_CAPACITY_PERCENT   # flagged at or above this share of the contract
# Only these columns are read, by name, so columns other issues add to the tables never break the console.
_RUN_COLUMNS = ("id, customer_id, run_key, status, skip_reason, detail, started_at, finished_at, files_collected, "
                "bytes_collected, collection_error_count, stored_bytes, counted_bytes, capacity_basis")


@dataclass(frozen=True)
class Run:
    """One backup run as recorded in backup_runs."""

    id: int
    customer_id: str
    run_key: str
    status: str                         # a RunStatus value
    skip_reason: str | None             # a SkipReason value, for skipped runs
    detail: str | None                  # the operator's explanation: which window, why it failed
    started_at: datetime
    finished_at: datetime | None
    files_collected: int
    bytes_collected: int
    collection_error_count: int
    stored_bytes: int | None            # the operator's figure: the customer's objects in S3
    counted_bytes: int | None = None    # the contract figure (art. 6, 17(3)), on capacity_basis
    capacity_basis: str | None = None   # a CapacityBasis value


@dataclass(frozen=True)
class Measure:
    """A customer's latest capacity measurement: the contract figure on its basis, and the stored bytes."""

    counted_bytes: int | None
    capacity_basis: str | None
    stored_bytes: int | None


@dataclass(frozen=True)
class FleetRow:
    """A customer's line on the fleet page."""

    customer_id: str
    name: str
    dag_id: str
    plan: str
    state: str                          # active | suspended | maintenance
    contract_capacity_bytes: int
    stored_bytes: int | None
    last_run: Run | None
    next_run: datetime | None
    notices_pending: int
    notices_stuck: int
    schedule: str = ""
    flags: tuple[Flag, ...] = ()        # why it needs attention (console.attention), in display order
    counted_bytes: int | None = None    # the contract figure: what counts against the capacity (art. 6, 17(3))
    capacity_basis: str | None = None   # what counted_bytes measured (a CapacityBasis value)

    @property
    def capacity_percent(self) -> float | None:
        """The contract figure's share of the contract capacity (never the stored bytes, unless that is the
        basis): what capacity notices and the near-capacity flag follow."""
        if self.counted_bytes is None or not self.contract_capacity_bytes:
            return None
        return 100.0 * self.counted_bytes / self.contract_capacity_bytes

    @property
    def attention(self) -> bool:
        """Something an operator should look at: any flag of console.attention."""
        return bool(self.flags)


@dataclass(frozen=True)
class CollectionErrorRow:
    path: str
    reason: str
    detail: str | None
    recorded_at: datetime
    run_key: str


@dataclass(frozen=True)
class CapacityPoint:
    at: datetime
    counted_bytes: int              # the contract figure
    stored_bytes: int | None        # the operator's figure, drawn beside it
    capacity_basis: str


@dataclass(frozen=True)
class CapacityEvent:
    threshold_percent: int
    counted_bytes: int
    contract_capacity_bytes: int
    recorded_at: datetime


@dataclass(frozen=True)
class Snapshot:
    """A complete snapshot the restore DAG can restore from (table `snapshots`)."""

    snapshot_id: str
    created_at: datetime
    file_count: int
    total_bytes: int
    run_key: str | None


@dataclass(frozen=True)
class CustomerDetail:
    row: FleetRow
    capacity: tuple[CapacityPoint, ...]
    capacity_events: tuple[CapacityEvent, ...]
    runs: tuple[Run, ...]
    open_errors: tuple[CollectionErrorRow, ...]
    open_error_count: int
    snapshots: tuple[Snapshot, ...]
    notices: tuple[NoticeRecord, ...]


@dataclass(frozen=True)
class RateTax:
    """One consumption-tax rate's block of a month (art. 25, 26: tax per invoice per rate, summed)."""

    rate: str          # e.g. "0.10"
    subtotal: int
    tax: int

    @property
    def percent(self) -> str:
        return f"{(Decimal(self.rate) * 100).normalize():f}%"


@dataclass(frozen=True)
class MonthSummary:
    billing_month: str
    invoice_count: int
    subtotal: int
    tax: int
    total: int
    tax_by_rate: tuple[RateTax, ...] = ()


@dataclass(frozen=True)
class InvoiceRow:
    id: int
    invoice_number: str | None
    customer_id: str
    billing_month: str
    state: str
    sales_agent: str
    subtotal: int
    tax: int
    total: int
    issued_at: datetime | None
    issue_date: date | None = None           # the date the invoice states (Asia/Tokyo), what the console shows
    payment_due_date: date | None = None


@dataclass(frozen=True)
class InvoiceLineRow:
    line_no: int
    kind: str
    description: str
    amount: int
    tax_rate: str


# ---- pure rules ----------------------------------------------------------------------------------------

def next_run(schedule: str, after: datetime) -> datetime | None:
    """Next fire time of a customer's cron, read in Asia/Tokyo (as the DAG's timetable does); None if not a cron."""
    try:
        return _next_fire(schedule, after.astimezone(TOKYO).replace(second=0, microsecond=0))
    except (ValueError, KeyError):
        return None


@lru_cache(maxsize=4096)
def _next_fire(schedule: str, minute: datetime) -> datetime:
    # Many customers share a schedule and one page asks at one instant: parse each cron once.
    return croniter(schedule, minute).get_next(datetime)


def customer_state(customer: Customer, last: Run | None, now: datetime, windows: Sequence[Window] = ()) -> str:
    """'suspended' per the registry (status, or a suspension covering today, art. 14); 'maintenance' inside a
    declared window (art. 13) or when the last run was skipped for one; else 'active'."""
    if customer.status == CustomerStatus.SUSPENDED or customer.suspended_on(tokyo_date(now)):
        return "suspended"
    if any(w.covers(customer.id, now) for w in windows):
        return "maintenance"
    if last and last.status == RunStatus.SKIPPED and last.skip_reason == SkipReason.MAINTENANCE:
        return "maintenance"
    return "active"


# Each key sorts ascending (smallest, earliest, A first); "desc" reverses it. Rows without a value sort as
# the smallest, so a descending sort puts the fullest / latest / most first and the empty ones last.
SORT_KEYS = {
    "name": lambda r: (r.name.casefold(), r.customer_id),
    "customer": lambda r: r.customer_id,
    "capacity": lambda r: (r.capacity_percent is not None, r.capacity_percent or 0, r.customer_id),
    "last_run": lambda r: (r.last_run is not None, r.last_run.started_at.timestamp() if r.last_run else 0),
    "status": lambda r: (r.last_run.status if r.last_run else "~", r.customer_id),
    "errors": lambda r: (r.last_run.collection_error_count if r.last_run else 0, r.customer_id),
    "next_run": lambda r: (r.next_run is not None, r.next_run.timestamp() if r.next_run else 0),
    "notices": lambda r: (r.notices_stuck * 1_000_000 + r.notices_pending, r.customer_id),
    "attention": lambda r: (len(r.flags), r.customer_id),
}
DESCENDING_FIRST = frozenset({"capacity", "last_run", "errors", "notices", "attention"})


def sort_and_filter(rows: Iterable[FleetRow], *, sort: str = "name", query: str = "", state: str = "",
                    status: str = "", attention: bool = False, descending: bool = False,
                    flag: str = "") -> list[FleetRow]:
    """The fleet page's sorting and filtering; an unknown sort key falls back to the name."""
    needle = query.strip().casefold()
    out = [r for r in rows
           if (not needle or needle in r.customer_id.casefold() or needle in r.name.casefold())
           and (not state or r.state == state)
           and (not status or (r.last_run.status if r.last_run else "never") == status)
           and (not attention or r.attention)
           and (not flag or any(f.code == flag for f in r.flags))]
    out.sort(key=SORT_KEYS.get(sort, SORT_KEYS["name"]), reverse=descending)
    return out


# ---- queries -------------------------------------------------------------------------------------------

def _run(row: sa.Row) -> Run:
    return Run(id=int(row.id), customer_id=row.customer_id, run_key=row.run_key, status=row.status,
               skip_reason=row.skip_reason, detail=row.detail, started_at=from_db_time(row.started_at),
               finished_at=from_db_time(row.finished_at), files_collected=int(row.files_collected),
               bytes_collected=int(row.bytes_collected), collection_error_count=int(row.collection_error_count),
               stored_bytes=None if row.stored_bytes is None else int(row.stored_bytes),
               counted_bytes=None if row.counted_bytes is None else int(row.counted_bytes),
               capacity_basis=row.capacity_basis)


def _latest_runs(conn: sa.Connection, customer_ids: Sequence[str]) -> dict[str, Run]:
    """Each customer's latest run: one (customer_id, started_at) index seek per customer, so the cost follows
    the fleet's size, not the length of its history."""
    columns = ", ".join("r." + c.strip() for c in _RUN_COLUMNS.split(","))
    latest_id = ("(SELECT x.id FROM backup_runs x WHERE x.customer_id = c.customer_id "
                 "ORDER BY x.started_at DESC, x.id DESC LIMIT 1)")
    if conn.dialect.name == "postgresql":
        sql = (f"SELECT {columns} FROM unnest(CAST(:ids AS text[])) AS c(customer_id) "
               f"JOIN backup_runs r ON r.id = {latest_id}")
        params: dict = {"ids": list(customer_ids)}
    else:
        sql = (f"SELECT {columns} FROM (SELECT value AS customer_id FROM json_each(:ids)) c "
               f"JOIN backup_runs r ON r.id = {latest_id}")
        params = {"ids": json.dumps(list(customer_ids))}
    return {row.customer_id: _run(row) for row in conn.execute(sa.text(sql), params).all()}


def _measure(run: Run) -> Measure:
    return Measure(run.counted_bytes, run.capacity_basis, run.stored_bytes)


def _measures(conn: sa.Connection, latest: dict[str, Run]) -> dict[str, Measure]:
    """Each customer's last capacity measurement: usually its last run's; a skipped or failed last run
    records none, so those few customers look further back (one index seek each, 0011's partial index)."""
    found = {cid: _measure(run) for cid, run in latest.items() if run.counted_bytes is not None}
    for cid in sorted(set(latest) - set(found)):
        row = conn.execute(sa.text(
            "SELECT counted_bytes, capacity_basis, stored_bytes FROM backup_runs WHERE customer_id = :c "
            "AND counted_bytes IS NOT NULL ORDER BY started_at DESC LIMIT 1"), {"c": cid}).first()
        if row is not None:
            found[cid] = Measure(int(row.counted_bytes), row.capacity_basis,
                                 None if row.stored_bytes is None else int(row.stored_bytes))
    return found


NO_MEASURE = Measure(None, None, None)


def _notice_counts(conn: sa.Connection) -> dict[str, tuple[int, int]]:
    rows = conn.execute(sa.text(
        "SELECT customer_id, SUM(CASE WHEN stuck_at IS NULL THEN 1 ELSE 0 END) AS pending, "
        "SUM(CASE WHEN stuck_at IS NULL THEN 0 ELSE 1 END) AS stuck "
        "FROM notices WHERE sent_at IS NULL GROUP BY customer_id")).all()
    return {r.customer_id: (int(r.pending or 0), int(r.stuck or 0)) for r in rows}


def _usual_runs(conn: sa.Connection, latest: dict[str, Run], recent: int = 10) -> dict[str, timedelta]:
    """For the customers whose last run is still running (few), the median duration of their recent finished
    runs: what "longer than usual" is measured against."""
    out: dict[str, timedelta] = {}
    for cid in sorted(c for c, run in latest.items() if run.status == RunStatus.RUNNING):
        rows = conn.execute(sa.text(
            "SELECT started_at, finished_at FROM backup_runs WHERE customer_id = :c AND finished_at IS NOT NULL "
            "AND status IN ('succeeded', 'succeeded_with_errors') ORDER BY started_at DESC LIMIT :n"),
            {"c": cid, "n": recent}).all()
        durations = [(from_db_time(r.finished_at) - from_db_time(r.started_at)).total_seconds() for r in rows]
        if durations:
            out[cid] = timedelta(seconds=median(durations))
    return out


def _fleet_row(customer: Customer, catalog: Catalog, now: datetime, last: Run | None, measure: Measure,
               notice_counts: tuple[int, int], windows: Sequence[Window], *, paused: bool = False,
               usual_run: timedelta | None = None, run_timeout: timedelta | None = None) -> FleetRow:
    code = customer.plan_in_use(tokyo_date(now))
    try:
        capacity = catalog.plan(code).contract_capacity_bytes
    except KeyError:
        capacity = 0            # shown as "unknown plan"; the registry check reports the file
    state = customer_state(customer, last, now, windows)
    facts = attention.Facts(state=state, schedule=customer.schedule, service_start=customer.service_start_date,
                            paused=paused, last_status=last.status if last else None,
                            last_started_at=last.started_at if last else None,
                            capacity_percent=None if measure.counted_bytes is None or not capacity
                            else 100.0 * measure.counted_bytes / capacity,
                            notices_stuck=notice_counts[1], usual_run=usual_run, run_timeout=run_timeout)
    return FleetRow(customer_id=customer.id, name=customer.name, dag_id=customer.dag_id, plan=code, state=state,
                    contract_capacity_bytes=capacity, stored_bytes=measure.stored_bytes, last_run=last,
                    next_run=None if state == "suspended" or paused else next_run(customer.schedule, now),
                    notices_pending=notice_counts[0], notices_stuck=notice_counts[1], schedule=customer.schedule,
                    flags=attention.flags(facts, now), counted_bytes=measure.counted_bytes,
                    capacity_basis=measure.capacity_basis)


def broken_row(customer_id: str, problems: tuple[str, ...], last: Run | None, measure: Measure,
               notice_counts: tuple[int, int]) -> FleetRow:
    """A customer whose registry file does not load: shown, flagged "broken" with the file's problems."""
    return FleetRow(customer_id=customer_id, name=customer_id, dag_id=f"backup_{customer_id.replace('-', '_')}",
                    plan="—", state="broken", contract_capacity_bytes=0, stored_bytes=measure.stored_bytes,
                    counted_bytes=measure.counted_bytes, capacity_basis=measure.capacity_basis, last_run=last,
                    next_run=None, notices_pending=notice_counts[0], notices_stuck=notice_counts[1],
                    flags=attention.broken_file(problems))


def fleet(engine: Engine, customers: Sequence[Customer], catalog: Catalog, now: datetime,
          windows: Sequence[Window] = (), *, broken: Sequence[tuple[str, tuple[str, ...]]] = (),
          paused: frozenset[str] = frozenset(), run_timeout: timedelta | None = None) -> list[FleetRow]:
    """Every registry customer with its last run, stored bytes, next run, notice counts and attention flags;
    `broken` (customer id, problems) are the files that did not load, `paused` the DAG ids paused in Airflow."""
    with engine.connect() as conn:
        last = _latest_runs(conn, [c.id for c in customers] + [cid for cid, _ in broken])
        measures = _measures(conn, last)
        counts = _notice_counts(conn)
        usual = _usual_runs(conn, last)
    rows = [_fleet_row(c, catalog, now, last.get(c.id), measures.get(c.id, NO_MEASURE), counts.get(c.id, (0, 0)),
                       windows,
                       paused=c.dag_id in paused, usual_run=usual.get(c.id), run_timeout=run_timeout)
            for c in customers]
    rows += [broken_row(cid, problems, last.get(cid), measures.get(cid, NO_MEASURE), counts.get(cid, (0, 0)))
             for cid, problems in broken]
    return rows


def customer_detail(engine: Engine, customer: Customer, catalog: Catalog, now: datetime,
                    windows: Sequence[Window] = (), *, paused: bool = False, run_timeout: timedelta | None = None,
                    days: int = 365, recent: int = 30, error_limit: int = 500) -> CustomerDetail:
    """One customer's page: capacity history, recent runs, open collection errors, snapshots, notices."""
    since = now - timedelta(days=days)
    with engine.connect() as conn:
        cid = {"c": customer.id}
        runs = [_run(r) for r in conn.execute(sa.text(
            f"SELECT {_RUN_COLUMNS} FROM backup_runs WHERE customer_id = :c "
            "ORDER BY started_at DESC, id DESC LIMIT :n"), {**cid, "n": recent}).all()]
        capacity = [CapacityPoint(from_db_time(r.started_at), int(r.counted_bytes),
                                  None if r.stored_bytes is None else int(r.stored_bytes), r.capacity_basis)
                    for r in conn.execute(sa.text(
                        "SELECT started_at, counted_bytes, stored_bytes, capacity_basis FROM backup_runs "
                        "WHERE customer_id = :c AND counted_bytes IS NOT NULL AND started_at >= :since "
                        "ORDER BY started_at"), {**cid, "since": to_db_time(since)}).all()]
        events = [CapacityEvent(int(r.threshold_percent), int(r.counted_bytes), int(r.contract_capacity_bytes),
                                from_db_time(r.recorded_at)) for r in conn.execute(sa.text(
                  "SELECT threshold_percent, counted_bytes, contract_capacity_bytes, recorded_at FROM capacity_events "
                  "WHERE customer_id = :c ORDER BY recorded_at DESC LIMIT 50"), cid).all()]
        # Open collection errors: those of the latest run that actually collected (a later run that
        # reads the file again closes them; a skipped run says nothing about them).
        collected = conn.execute(sa.text(
            "SELECT id, run_key FROM backup_runs WHERE customer_id = :c AND status IN "
            "('succeeded', 'succeeded_with_errors', 'failed') ORDER BY started_at DESC, id DESC LIMIT 1"),
            cid).first()
        errors: list[CollectionErrorRow] = []
        error_count = 0
        if collected:
            rid = {"r": collected.id}
            error_count = int(conn.execute(sa.text(
                "SELECT COUNT(*) FROM collection_errors WHERE backup_run_id = :r"), rid).scalar_one())
            errors = [CollectionErrorRow(r.path, r.reason, r.detail, from_db_time(r.recorded_at), collected.run_key)
                      for r in conn.execute(sa.text(
                          "SELECT path, reason, detail, recorded_at FROM collection_errors WHERE backup_run_id = :r "
                          "ORDER BY path LIMIT :n"), {**rid, "n": error_limit}).all()]
        snapshots = [Snapshot(r.snapshot_id, from_db_time(r.created_at), int(r.file_count), int(r.total_bytes),
                              r.run_key) for r in conn.execute(sa.text(
            "SELECT s.snapshot_id, s.created_at, s.file_count, s.total_bytes, r.run_key FROM snapshots s "
            "LEFT JOIN backup_runs r ON r.id = s.backup_run_id WHERE s.customer_id = :c AND s.forgotten_at IS NULL "
            "ORDER BY s.created_at DESC, s.id DESC LIMIT :n"), {**cid, "n": recent}).all()]
    notices = list_notices(engine, customer_id=customer.id, limit=20)
    last = runs[0] if runs else None
    measure = next((_measure(r) for r in runs if r.counted_bytes is not None),
                   Measure(capacity[-1].counted_bytes, capacity[-1].capacity_basis, capacity[-1].stored_bytes)
                   if capacity else NO_MEASURE)
    pending = sum(1 for n in notices if n.state == "pending")
    stuck = sum(1 for n in notices if n.state == "stuck")
    usual = None
    if last and last.status == RunStatus.RUNNING:
        with engine.connect() as conn:
            usual = _usual_runs(conn, {customer.id: last}).get(customer.id)
    row = _fleet_row(customer, catalog, now, last, measure, (pending, stuck), windows, paused=paused,
                     usual_run=usual, run_timeout=run_timeout)
    return CustomerDetail(row, tuple(capacity), tuple(events), tuple(runs), tuple(errors), error_count,
                          tuple(snapshots), tuple(notices))


def billing_months(engine: Engine) -> list[MonthSummary]:
    """Each billing month with issued invoices: count and totals in yen, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT billing_month, COUNT(*) AS n, SUM(subtotal) AS subtotal, SUM(tax) AS tax, SUM(total) AS total "
            "FROM invoices WHERE state = 'issued' GROUP BY billing_month ORDER BY billing_month DESC")).all()
        rates = conn.execute(sa.text(
            "SELECT i.billing_month, t.tax_rate, SUM(t.subtotal) AS subtotal, SUM(t.tax) AS tax "
            "FROM invoice_tax_summaries t JOIN invoices i ON i.id = t.invoice_id WHERE i.state = 'issued' "
            "GROUP BY i.billing_month, t.tax_rate ORDER BY i.billing_month, t.tax_rate")).all()
    by_month: dict[str, list[RateTax]] = {}
    for r in rates:
        by_month.setdefault(r.billing_month, []).append(RateTax(r.tax_rate, int(r.subtotal), int(r.tax)))
    return [MonthSummary(r.billing_month, int(r.n), int(r.subtotal), int(r.tax), int(r.total),
                         tuple(by_month.get(r.billing_month, ()))) for r in rows]


_INVOICE_COLUMNS = ("id, invoice_number, customer_id, billing_month, state, sales_agent, subtotal, tax, total, "
                    "issued_at, issue_date, payment_due_date")


def _invoice(r: sa.Row) -> InvoiceRow:
    return InvoiceRow(int(r.id), r.invoice_number, r.customer_id, r.billing_month, r.state, r.sales_agent,
                      int(r.subtotal), int(r.tax), int(r.total), from_db_time(r.issued_at),
                      date.fromisoformat(r.issue_date) if r.issue_date else None,
                      date.fromisoformat(r.payment_due_date) if r.payment_due_date else None)


def month_invoices(engine: Engine, billing_month: str) -> list[InvoiceRow]:
    with engine.connect() as conn:
        return [_invoice(r) for r in conn.execute(sa.text(
            f"SELECT {_INVOICE_COLUMNS} FROM invoices WHERE billing_month = :m "
            "ORDER BY invoice_number, customer_id"), {"m": billing_month}).all()]


def invoice_detail(engine: Engine, invoice_number: str) -> tuple[InvoiceRow, list[InvoiceLineRow]] | None:
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"SELECT {_INVOICE_COLUMNS} FROM invoices WHERE invoice_number = :n"),
                           {"n": invoice_number}).first()
        if row is None:
            return None
        lines = [InvoiceLineRow(int(r.line_no), r.kind, r.description, int(r.amount), r.tax_rate)
                 for r in conn.execute(sa.text(
                     "SELECT line_no, kind, description, amount, tax_rate FROM invoice_lines "
                     "WHERE invoice_id = :i ORDER BY line_no"), {"i": row.id}).all()]
    return _invoice(row), lines
