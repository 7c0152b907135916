"""The imperative shell the DAGs call: resolve connections, load the registry, run the core, record."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime

from sqlalchemy.engine import Engine

from cloudbackup import settings
from cloudbackup.backup import records, repository, runcontrol
from cloudbackup.backup.outcomes import SkipReason
from cloudbackup.billing import documents, exports
from cloudbackup.billing.months import BillingMonth
from cloudbackup.clock import TOKYO, tokyo_date, utcnow
from cloudbackup.edges import connections
from cloudbackup.edges.s3 import ObjectStore
from cloudbackup.edges.sftp import open_sftp
from cloudbackup.notices import delivery, outbox
from cloudbackup.registry.catalog import load_catalog
from cloudbackup.registry.customers import Customer, CustomerStatus, load_registry

log = logging.getLogger(__name__)


class RestoreRefused(ValueError):
    """A restore target that is not allowed: fix the request; retrying cannot help."""


class CustomerNotCollected(Exception):
    """The run was recorded as skipped (suspension, maintenance); Airflow shows it skipped."""


@dataclass(frozen=True)
class CollectSummary:
    customer_id: str
    status: str
    snapshot_id: str
    files: int                 # files in the snapshot
    bytes: int
    files_read: int            # of which read over SFTP this run (new or changed)
    bytes_uploaded: int
    collection_errors: int
    stored_bytes: int           # the operator's figure: every object under the customer's prefix in S3
    counted_bytes: int          # the contract figure (art. 6, 17(3)) on capacity_basis
    capacity_basis: str
    contract_capacity_bytes: int
    capacity_thresholds_crossed: list[int]


def _customer(customer_id: str) -> Customer:
    # Only this customer's file is read: at 10,000 customers the whole registry costs seconds per run.
    return load_registry(settings.registry_dir(), select=lambda found: found == customer_id).get(customer_id)


def _backup_settings():  # noqa: ANN202 - imported lazily: DAG parsing does not need the engine
    from cloudbackup.registry.backup_settings import load_backup_settings

    return load_backup_settings(settings.registry_dir() / "backup.yaml")


def not_collected_reason(customer: Customer, moment: datetime) -> tuple[SkipReason, str] | None:
    """Why a run at `moment` is not collected (contract ended or cancelled before the start, art. 11, 12, 19,
    21(3); suspension art. 14; operational stop art. 13), with the operator's explanation; None when collected."""
    from cloudbackup.registry.maintenance import active_window, load_windows

    stopped = runcontrol.service_stop(customer, tokyo_date(moment))
    if stopped:
        return stopped
    if customer.status is CustomerStatus.SUSPENDED or customer.suspended_on(tokyo_date(moment)):
        return SkipReason.SUSPENDED, "customer suspended (art. 14); not re-collected (art. 18(3))"
    window = active_window(load_windows(settings.registry_dir() / "maintenance.yaml"), customer.id, moment)
    return (SkipReason.MAINTENANCE, window.describe()) if window else None


class RunInProgress(RuntimeError):
    """Another run of the same customer holds the lease: this one collected nothing and recorded nothing."""


def _holder() -> str:
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def _run_lease(engine: Engine, customer_id: str, run_key: str) -> Iterator[Callable[[int], None]]:
    """Hold the customer's lease for the whole run, renewed by a heartbeat thread; waits up to
    settings.run_wait_seconds() for another run to end, then refuses. Yields `attach(run_id)`: the heartbeat
    then also stamps that run's record (the sweeper's sign of life)."""
    import threading
    import time
    from datetime import timedelta

    ttl = timedelta(seconds=settings.run_lease_seconds())
    deadline = time.monotonic() + settings.run_wait_seconds()
    while (holder := records.acquire_lease(engine, customer_id, run_key, _holder(), ttl)) is not None:
        if time.monotonic() >= deadline:
            raise RunInProgress(f"{customer_id}: another backup run is in progress, so run {run_key!r} is refused "
                                f"and records nothing: {holder.describe()}. One run per customer at a time; a dead "
                                "worker's lease lapses by itself (`cloudbackup backup sweep`)")
        time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
    run: dict[str, int] = {}
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(ttl.total_seconds() / 3):
            try:
                if not records.renew_lease(engine, customer_id, run_key, run.get("id"), ttl):
                    log.error("%s: run %s lost its lease (another run took it over after a stall)", customer_id,
                              run_key)
            except Exception:  # noqa: BLE001 - a DB hiccup: the next beat tries again, the lease outlives two
                log.exception("%s: heartbeat of run %s failed", customer_id, run_key)

    heartbeat = threading.Thread(target=beat, name=f"lease-{customer_id}", daemon=True)
    heartbeat.start()
    try:
        yield lambda run_id: run.update(id=run_id)
    finally:
        stop.set()
        heartbeat.join(5)
        records.release_lease(engine, customer_id, run_key)


def sweep_dead_runs(customer_id: str | None = None) -> list[dict]:
    """Mark runs whose worker died (no heartbeat, no live lease) or that outlived the run timeout as failed."""
    from datetime import timedelta

    swept = records.sweep_dead_runs(connections.database(), timedelta(seconds=settings.run_lease_seconds()),
                                    timedelta(seconds=settings.run_timeout_seconds()), customer_id)
    for run_id, customer, why in swept:
        log.warning("%s: run %d marked failed: %s", customer, run_id, why)
    return [{"run_id": run_id, "customer_id": customer, "detail": why} for run_id, customer, why in swept]


def collect(customer_id: str, run_key: str, at: datetime | None = None) -> dict:
    """One backup run of one customer; connection failures raise (the run fails, a retry is safe).

    `at` is the run's scheduled time (now for manual runs): it decides contract-end, suspension and maintenance
    skips. `run_key` must be unique per run (Airflow: run id and try number). Only one run per customer collects at
    a time (the lease); once the record is started, every way out of this function ends it.
    """
    customer = _customer(customer_id)
    engine = connections.database()
    skipped = not_collected_reason(customer, at or utcnow())
    if skipped:
        reason, detail = skipped
        records.record_skipped(engine, customer.id, run_key, reason, detail)
        raise CustomerNotCollected(f"{customer.id} not collected: {detail}")
    with _run_lease(engine, customer.id, run_key) as attach:
        sweep_dead_runs(customer.id)   # an earlier run of this customer whose worker died ends as failed now
        run_id = records.start_run(engine, customer.id, run_key)
        attach(run_id)
        try:
            return _collect_run(engine, customer, run_id, run_key, at)
        except BaseException as exc:   # Airflow's timeout and a kill by signal too: the record never stays running
            try:
                records.fail_run(engine, run_id, f"{type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001 - the database itself is down: the sweeper ends the record later
                log.exception("%s: could not record run %s as failed", customer.id, run_key)
            raise


def _collect_run(engine: Engine, customer: Customer, run_id: int, run_key: str, at: datetime | None) -> dict:
    from functools import partial

    from cloudbackup.backup import format as snapshot
    from cloudbackup.backup.archiver import run_backup

    options = _backup_settings()
    # Configuration the end of the run needs is resolved before anything is written to S3: an unknown plan code
    # fails the run here, never after the snapshot's manifest is stored.
    plan = customer.plan_in_use(tokyo_date(at or utcnow()))
    plan_spec = load_catalog(settings.catalog_path()).plan(plan)
    cap = plan_spec.contract_capacity_bytes
    store = ObjectStore(connections.s3_endpoint())
    store.ensure_bucket()
    # A plan with object_lock_days writes every object locked (docs/object-lock.md); a bucket without object lock
    # fails the run here, before anything is written, rather than store backups it would call immutable.
    from cloudbackup.backup import locks
    writer = locks.for_run(store, plan_spec.object_lock_days)
    endpoint = connections.sftp_endpoint(customer.sftp.connection_id)
    # Self-healing (issue 11): objects known damaged are not reused; their files are read again.
    from cloudbackup.backup import health
    damaged = health.open_damage(engine, customer.id)
    result = run_backup(partial(open_sftp, endpoint, timeout=settings.sftp_timeout_seconds()), writer, customer.id,
                        run_key, customer.sftp.paths, customer.sftp.excludes, options.name_policy, options.engine,
                        damaged=damaged)
    if plan_spec.object_lock_days:
        # Objects this snapshot reuses keep their older locks until extended to the new snapshot's date.
        locks.lock_snapshot(store, customer.id, result.snapshot_id, plan_spec.object_lock_days)
    held = repository.stored_bytes(store, customer.id)
    # What counts against the contract (art. 6, 17(3), 18(5)): by default the customer's data as of this snapshot.
    counted = options.capacity_basis.counted_bytes(result.bytes, held)
    # The run's outcome and the notices it causes (art. 17(2), 17(3)) commit together or not at all.
    with engine.begin() as conn:
        healing = health.settle_run(conn, customer.id, run_id, result)    # ops read it in the run's detail
        status = records.finish_run(conn, run_id, customer.id, files=result.files, bytes_=result.bytes,
                                    errors=result.errors, stored_bytes=held, detail=healing,
                                    counted_bytes=counted, capacity_basis=options.capacity_basis)
        records.record_snapshot(conn, run_id, customer.id, result.snapshot_id,
                                snapshot.object_key(customer.id, snapshot.snapshot_key(result.snapshot_id)),
                                file_count=result.files, total_bytes=result.bytes, files_read=result.files_read,
                                bytes_uploaded=result.bytes_uploaded)
        crossed = records.record_crossings(conn, customer.id, run_id, counted, cap, options.capacity_thresholds,
                                           basis=options.capacity_basis, stored_bytes=held)
        queued = outbox.queue_run_notices(conn, customer, run_id)
    log.info("%s: %d bytes count against %d contracted (%.1f %%, %s); %d bytes stored in S3%s", customer.id,
             counted, cap, counted * 100 / cap, options.capacity_basis, held,
             f"; capacity thresholds crossed: {crossed}" if crossed else "")
    if queued:
        log.info("%s: %d notice(s) queued for delivery by the deliver_notices DAG", customer.id, queued)
    for error in result.errors:
        log.warning("collection error [%s] %s: %s", error.reason, error.path, error.detail)
    return asdict(CollectSummary(customer.id, status.value, result.snapshot_id, result.files, result.bytes,
                                 result.files_read, result.bytes_uploaded, len(result.errors), held, counted,
                                 options.capacity_basis.value, cap, crossed))


def restore(customer_id: str, target: str, snapshot_id: str | None = None, sub_path: str | None = None,
            confined: bool = False, in_place: bool = False) -> dict:
    """Restore (art. 18(1)) to `local:<folder>` or `sftp:<connection id>[:<folder>]`; mismatches raise.

    Live data is never overwritten by default: an SFTP folder inside (or above) the customer's designated areas
    (art. 16) is refused, and `sftp:<conn>` without a folder restores to `/restore/<snapshot id>` on that server.
    `in_place` (the CLI's `--in-place`, never the DAG) restores onto the customer's own connection at `/`, over
    the live files. `confined` (restores triggered from Airflow's UI): a local folder must lie under
    settings.restore_dir(), and an SFTP target must be the customer's own connection, so no one restores a
    customer's data onto another customer's server (art. 33) or over the worker's files.
    """
    from pathlib import Path

    from cloudbackup.backup import restorer as restoring

    customer = _customer(customer_id)
    if in_place:
        if confined:
            raise RestoreRefused("an in-place restore (over the customer's live files) is for the CLI only")
        target = f"sftp:{customer.sftp.connection_id}:/"
    kind, _, rest = target.partition(":")
    conn_id, _, folder = rest.partition(":")
    if confined:
        if kind == "local" and not Path(rest).resolve().is_relative_to(settings.restore_dir().resolve()):
            raise RestoreRefused(f"restore target {target!r}: a local folder must be under {settings.restore_dir()}")
        if kind == "sftp" and conn_id != customer.sftp.connection_id:
            raise RestoreRefused(f"restore target {target!r}: only the customer's own connection "
                                 f"{customer.sftp.connection_id!r} may receive its data")
    store = ObjectStore(connections.s3_endpoint())
    if kind == "sftp" and conn_id and not in_place:
        if not folder:
            snapshot_id = snapshot_id or repository.latest_snapshot_id(store, customer_id)
            if snapshot_id is None:
                raise restoring.RestoreError(f"{customer_id} has no snapshot to restore")
            folder = runcontrol.ui_restore_folder(snapshot_id)
        if runcontrol.inside_designated_areas(folder, customer.sftp.paths):
            raise RestoreRefused(
                f"restore target {target!r}: folder {folder!r} would write into the customer's designated areas "
                f"{customer.sftp.paths} (its live data); restore to a folder outside them, e.g. "
                f"sftp:{conn_id}:{runcontrol.RESTORE_ROOT}/<snapshot id>, or overwrite in place from the shell with "
                "`cloudbackup backup restore --in-place`")
    if kind == "local" and rest:
        local = restoring.LocalTarget(Path(rest), threads=_backup_settings().engine.restore_threads)
        result = restoring.restore(store, customer_id, local, snapshot_id, sub_path)
    elif kind == "sftp" and conn_id:
        result = restoring.restore_to_sftp(store, customer_id, open_sftp(connections.sftp_endpoint(conn_id),
                                                                         timeout=settings.sftp_timeout_seconds()),
                                           folder or "/", snapshot_id, sub_path)
        log.info("%s: restored to %s:%s", customer_id, conn_id, folder or "/ (in place)")
    else:
        raise ValueError(f"restore target {target!r}: use local:<folder> or sftp:<connection id>[:<folder>]")
    if result.mismatches:
        raise restoring.RestoreError(f"{len(result.mismatches)} restored file(s) do not match the manifest: "
                                     + ", ".join(result.mismatches[:10]))
    if result.failures:   # every other file was restored; each failure was logged
        raise restoring.RestoreError(f"{len(result.failures)} file(s) could not be restored: "
                                     + "; ".join(result.failures[:10]))
    return asdict(result)


def verify(customer_id: str, snapshot_id: str | None = None) -> dict:
    """Re-read a snapshot's stored objects and check every hash."""
    from cloudbackup.backup.checker import verify as check

    result = check(ObjectStore(connections.s3_endpoint()), customer_id, snapshot_id)
    if result.damaged:   # recorded: the next backup run reads their files again (self-healing, issue 11)
        from cloudbackup.backup import health
        health.record_damage(connections.database(), customer_id, result.damaged, health.VERIFY)
    return asdict(result)


class BillingRunCollides(ValueError):
    """A manual billing run holds the logical date of a scheduled one, which the scheduler then skips."""


def billing_month_for(requested: str | None, run_after: datetime, logical_date: datetime | None = None,
                      manual: bool = False) -> BillingMonth:
    """The month a billing run closes: the `month` param, else the month before the run's Tokyo date
    (billing_run_date).

    A manual run given the logical date of a scheduled slot (06:00 JST on a 1st) takes that slot: Airflow
    holds it until that time and then never creates the scheduled run. Billing the slot's month, it simply
    is that run; asked for another month, it would leave the slot's month unbilled without a word, so it
    is refused, naming the month and what to do.
    """
    slot_month = None
    if manual and logical_date is not None:
        slot = logical_date.astimezone(TOKYO)
        if (slot.day, slot.hour, slot.minute, slot.second, slot.microsecond) == (1, 6, 0, 0, 0):
            slot_month = BillingMonth.of(slot.date()).previous()
    month = BillingMonth.parse(requested) if requested else BillingMonth.of(
        billing_run_date(run_after, logical_date)).previous()
    if slot_month is not None and month != slot_month:
        raise BillingRunCollides(
            f"this manual run for {month} holds the logical date {logical_date.astimezone(TOKYO).isoformat()} "  # type: ignore[union-attr]
            f"of the scheduled run that bills {slot_month}, which the scheduler therefore never creates: "
            f"trigger {slot_month} now (month param {slot_month}, no logical date), and trigger {month} "
            "without a logical date")
    return month


def billing_run_date(run_after: datetime, logical_date: datetime | None) -> date:
    """A billing run's Tokyo date: its logical date (a scheduled slot, or the date a run was given), else
    when it was triggered. It is the issue date of what the run issues."""
    return tokyo_date(logical_date or run_after)


def issue_invoices(month: str, issue_date: str | None = None, dry_run: bool = False, draft_only: bool = False) -> dict:
    """Issue the month's invoices (or only draft them). The DAG passes the run's Tokyo date (billing_run_date)
    as the issue date; the CLI defaults to today. Customers not billed are listed under `failed`."""
    from datetime import date

    from cloudbackup.registry.operator import load_operator

    day = date.fromisoformat(issue_date) if issue_date else tokyo_date(utcnow())
    # The customer files (as load_registry lists them) are read by the billing workers, both cores at month end;
    # a broken file is logged and listed under `failed`, and each customer's timeline warnings are logged.
    files = [p for p in sorted((settings.registry_dir() / "customers").glob("*.y*ml")) if p.suffix in (".yaml", ".yml")]
    result = documents.issue_month(connections.database(), files,
                                  load_catalog(settings.catalog_path()), BillingMonth.parse(month), load_operator(),
                                  day, dry_run=dry_run, draft_only=draft_only)
    log.info("billing %s: %d issued, %d unchanged, %d not due, %d failed; seconds: %s", month, result.issued,
             result.unchanged, result.not_due, len(result.failed), result.seconds)
    return asdict(result)


def export_month_csv(month: str) -> str:
    """Both month-end CSV files; returns the per-invoice one."""
    per_invoice, per_line = exports.write_month_csvs(connections.database(), BillingMonth.parse(month),
                                                     settings.export_dir())
    log.info("month-end invoice CSVs for %s written to %s and %s", month, per_invoice, per_line)
    return str(per_invoice)


class NoticesNotDelivered(Exception):
    """Some due notices were not sent this time (SMTP down or refusing); they wait, and the task retries."""


def deliver_notices() -> dict:
    """Send the outbox's due notices, each once; raise so Airflow retries if SMTP was down or refused some."""
    report = delivery.deliver_pending(connections.database(), connections.smtp_endpoint())
    log.info("notices: %d sent, %d refused this time (retried later), %d pending, %d stuck (flagged after %d "
             "attempts; `cloudbackup notices list --state stuck`)", report.sent, report.failed, report.pending,
             report.stuck, delivery.DeliveryPolicy.from_env().max_attempts)
    if report.unavailable or report.failed:
        raise NoticesNotDelivered(report.unavailable or f"{report.failed} notice(s) refused; they wait in the outbox")
    return {"sent": report.sent, "pending": report.pending, "stuck": report.stuck,
            "sent_notice_ids": [o.id for o in report.outcomes if o.error is None]}


def queue_event_notices() -> dict:
    """Queue notices not queued where their event was recorded: run digests, capacity events (backstop),
    declared maintenance windows still ahead (art. 13(2)) and registry suspensions (art. 14(2))."""
    from cloudbackup.notices import sweep
    from cloudbackup.registry.maintenance import load_windows

    registry = load_registry(settings.registry_dir())
    customers = list(registry.customers)
    engine = connections.database()
    now = utcnow()
    events = sweep.queue_recorded_events(engine, customers, now)
    result = {"collection_errors": events.collection_errors, "capacity": events.capacity,
              "suspension": sweep.announce_suspensions(engine, customers, tokyo_date(now))}
    # A broken maintenance.yaml must not hold back the other notices: queue them, then fail loudly.
    windows = load_windows(settings.registry_dir() / "maintenance.yaml")
    result["maintenance"] = sweep.announce_maintenance(engine, customers, windows, now)
    log.info("notices queued: %s", result)
    return result


def migrate_database() -> list[str]:
    from cloudbackup.edges import db

    return db.migrate(connections.database())


def prune(customer_id: str, dry_run: bool = False, run_key: str | None = None):  # noqa: ANN201 - a PruneReport
    """Apply the customer's retention (its plan's, or its own) and free what no kept snapshot uses
    (docs/storage-format.md, "Prune"). A real prune holds the customer's run lease, so no backup of the same
    customer runs meanwhile (RunInProgress after settings.run_wait_seconds()); a dry run reads only."""
    import uuid
    from datetime import timedelta

    from cloudbackup.backup import pruner
    from cloudbackup.backup.pruneplan import settings_for

    customer = _customer(customer_id)
    plan = load_catalog(settings.catalog_path()).plan(customer.plan_in_use(tokyo_date(utcnow())))
    policy = plan.retention_policy(customer.retention)
    options = settings_for(timedelta(hours=settings.prune_grace_hours()), settings.prune_repack_unused(),
                           _backup_settings().engine.pack_target, plan.object_lock_days)
    store = ObjectStore(connections.s3_endpoint())
    # On a bucket with object lock (versioned), a plain DELETE of a locked object is not refused: it hides the
    # object behind a delete marker. So the locks are read first and those keys are never deleted.
    from cloudbackup.backup import locks

    if dry_run:
        return pruner.prune(store, customer.id, policy, options, dry_run=True,
                            locked=locks.locked_relative(store, customer.id))
    from cloudbackup.backup import prunerecords

    run_key = run_key or f"prune-{utcnow():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:12]}"
    engine = connections.database()
    with _run_lease(engine, customer.id, run_key):
        prune_id = prunerecords.start_prune(engine, customer.id, run_key, policy.describe())
        try:
            report = pruner.prune(store, customer.id, policy, options, locked=locks.locked_relative(store, customer.id))
        except BaseException as exc:   # a kill by signal too: the record never stays running
            try:
                prunerecords.fail_prune(engine, prune_id, f"{type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001 - the database itself is down: the prune's own error matters more
                log.exception("%s: could not record prune %s as failed", customer.id, run_key)
            raise
        prunerecords.finish_prune(engine, prune_id, report)
        return report
