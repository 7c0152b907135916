"""The imperative shell the DAGs call: resolve connections, load the registry, run the core, record."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from cloudbackup import backup, connections, invoices, notices, records, settings
from cloudbackup.billing import BillingMonth
from cloudbackup.catalog import load_catalog
from cloudbackup.registry import Customer, CustomerStatus, load_registry
from cloudbackup.sftp import open_sftp
from cloudbackup.storage import ObjectStore

log = logging.getLogger(__name__)
TOKYO = ZoneInfo("Asia/Tokyo")


class CustomerNotCollected(Exception):
    """The run was recorded as skipped (suspension, maintenance); Airflow shows it skipped."""


@dataclass(frozen=True)
class CollectSummary:
    customer_id: str
    status: str
    files: int
    bytes: int
    collection_errors: int
    stored_bytes: int


def _customer(customer_id: str) -> Customer:
    return load_registry(settings.registry_dir()).get(customer_id)


def collect(customer_id: str, run_key: str) -> dict:
    """One backup run of one customer; connection failures raise (the run fails, a retry is safe)."""
    customer = _customer(customer_id)
    engine = connections.database()
    if customer.status is CustomerStatus.SUSPENDED:
        records.record_skipped(engine, customer.id, run_key, "customer suspended (art. 14)")
        raise CustomerNotCollected(f"{customer.id} is suspended: not collected, not caught up later")
    store = ObjectStore(connections.s3_endpoint())
    store.ensure_bucket()
    run_id = records.start_run(engine, customer.id, run_key)
    try:
        with open_sftp(connections.sftp_endpoint(customer.sftp.connection_id)) as sftp:
            result = backup.full_copy(sftp, store, customer.id, customer.sftp.paths, customer.sftp.excludes)
    except Exception as exc:
        records.finish_run(engine, run_id, customer.id, files=0, bytes_=0, errors=[], stored_bytes=None,
                           status=records.RunStatus.FAILED, skip_reason=str(exc)[:500])
        raise
    held = backup.stored_bytes(store, customer.id)
    status = records.finish_run(engine, run_id, customer.id, files=result.files, bytes_=result.bytes,
                                errors=result.errors, stored_bytes=held)
    return asdict(CollectSummary(customer.id, status.value, result.files, result.bytes, len(result.errors), held))


def billing_month_for(data_interval_start: datetime) -> BillingMonth:
    """The month a billing run closes: the one its data interval starts in, on the Tokyo calendar."""
    return BillingMonth.of(data_interval_start.astimezone(TOKYO).date())


def issue_invoices(month: str) -> dict:
    registry = load_registry(settings.registry_dir())
    for error in registry.errors:
        log.error("customer file not billed until fixed: %s", error)
    result = invoices.issue_month(connections.database(), list(registry.customers),
                                  load_catalog(settings.catalog_path()), BillingMonth.parse(month))
    return asdict(result)


def export_month_csv(month: str) -> str:
    registry = load_registry(settings.registry_dir())
    path = invoices.write_month_csv(connections.database(), list(registry.customers),
                                    BillingMonth.parse(month), settings.export_dir())
    log.info("month-end invoice CSV for %s written to %s", month, path)
    return str(path)


def deliver_notices() -> dict:
    report = notices.deliver_pending(connections.database(), connections.smtp_endpoint())
    log.info("notices: %d sent, %d failed this time, %d stuck after %d attempts", report.sent, report.failed,
             report.stuck, notices.MAX_ATTEMPTS)
    return asdict(report)


def migrate_database() -> list[str]:
    from cloudbackup import db

    return db.migrate(connections.database())
