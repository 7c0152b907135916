"""The `cloudbackup` command: operator tasks outside Airflow (database, registry, billing, backups, notices)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from cloudbackup import settings

# Every command imports what it needs when it runs: `cloudbackup --help` stays fast and needs no Airflow.


def _db_migrate(_args: argparse.Namespace) -> int:
    from cloudbackup import tasks

    applied = tasks.migrate_database()
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
    return 0


def _registry_check(args: argparse.Namespace) -> int:
    import os

    from cloudbackup.registry import check

    fleet = check.check_registry(settings.registry_dir())
    registry = fleet.registry
    found = check.problems(fleet)
    print(f"{len(registry.customers)} customer file(s) valid, {len(registry.errors)} with errors")
    in_env, elsewhere = check.connections_in_env(registry, os.environ)
    if in_env or args.require_env_connections:
        print(f"SFTP connections: {len(in_env)} found as AIRFLOW_CONN_<ID> in the environment, {len(elsewhere)} not "
              "there (they may be in Airflow's metadata database or a secrets backend, which this does not read)")
    if args.require_env_connections:
        found += [f"connection {c!r}: no AIRFLOW_CONN_{c.upper()} in the environment" for c in elsewhere]
    for warning in check.warnings(registry):
        print(f"WARNING {warning}", file=sys.stderr)
    for problem in found:
        print(f"ERROR {problem}", file=sys.stderr)
    return 1 if found else 0


def _registry_sync_pools(args: argparse.Namespace) -> int:
    """Create the Airflow pools the backup DAGs use (idempotent: an existing pool and its slots are kept)."""
    from airflow.models.pool import Pool

    from cloudbackup.registry import check

    wanted = check.pools(check.check_registry(settings.registry_dir()).registry)
    created = 0
    for name, customers in wanted.items():
        if Pool.get_pool(name) is None:
            Pool.create_or_update_pool(name, slots=args.slots, include_deferred=False,
                                       description=f"backup runs against one SFTP server: {', '.join(customers)}")
            created += 1
            print(f"created pool {name} ({args.slots} slot(s))")
    print(f"{created} pool(s) created, {len(wanted) - created} already there")
    return 0


class _BillingError(Exception):
    """A billing command that cannot do what was asked: one line on stderr, exit 2 (no traceback)."""


def _billing_command(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Unknown customer, bad month or date, a database not migrated or unreachable: one clear line on stderr and
    exit 2, instead of a traceback."""
    import functools

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        import sqlalchemy as sa

        try:
            return func(args)
        except sa.exc.DBAPIError as exc:
            detail = (str(exc.orig) if exc.orig is not None else str(exc)).strip().splitlines()[0]
            if "no such table" in detail or ("relation" in detail and "does not exist" in detail):
                message = f"the project database is not migrated ({detail}): run `cloudbackup db migrate`"
            else:
                message = f"database error: {detail}"
        except sa.exc.SQLAlchemyError as exc:
            message = f"database error: {str(exc).strip().splitlines()[0]}"
        except KeyError as exc:
            message = str(exc.args[0]) if exc.args else "not found"
        except (_BillingError, LookupError, ValueError, OSError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"cloudbackup billing {args.billing_command}: error: {message}", file=sys.stderr)
        return 2
    return run


def _billing_customer(customer_id: str):  # noqa: ANN202 - a Customer; imported lazily
    """One customer's file, read alone (a fleet's registry is not loaded to look at one customer)."""
    from cloudbackup.registry.customers import load_customer

    folder = settings.registry_dir() / "customers"
    found = [p for p in (folder / f"{customer_id}.yaml", folder / f"{customer_id}.yml") if p.is_file()]
    if not found or "/" in customer_id:
        raise _BillingError(f"no customer {customer_id!r} in the registry ({settings.registry_dir() / 'customers'})")
    return load_customer(found[0])


@_billing_command
def _billing_run(args: argparse.Namespace) -> int:
    from cloudbackup import tasks

    result = tasks.issue_invoices(args.month, issue_date=args.issue_date, dry_run=args.dry_run,
                                  draft_only=args.draft)
    written = None if (args.dry_run or args.draft) else tasks.export_month_csv(args.month)
    if args.json:
        print(json.dumps({**result, "csv": written}, ensure_ascii=False, indent=2))
    else:
        print(json.dumps(result, ensure_ascii=False))
        if written:
            print(written)
    return 1 if result["failed"] else 0


@_billing_command
def _billing_preview(args: argparse.Namespace) -> int:
    from cloudbackup.billing.preview import preview_data, preview_text
    from cloudbackup.registry.catalog import load_catalog

    customer = _billing_customer(args.customer)
    catalog = load_catalog(settings.catalog_path())
    if args.json:
        print(json.dumps(preview_data(customer, catalog, args.month, args.to), ensure_ascii=False, indent=2))
    else:
        print(preview_text(customer, catalog, args.month, args.to), end="")
    return 0


@_billing_command
def _billing_correct(args: argparse.Namespace) -> int:
    from datetime import date

    from cloudbackup.billing import documents
    from cloudbackup.billing.months import BillingMonth
    from cloudbackup.clock import tokyo_date, utcnow
    from cloudbackup.edges import connections
    from cloudbackup.registry.catalog import load_catalog
    from cloudbackup.registry.operator import load_operator

    customer = _billing_customer(args.customer)
    day = date.fromisoformat(args.issue_date) if args.issue_date else tokyo_date(utcnow())
    done = documents.correct(connections.database(), customer, load_catalog(settings.catalog_path()),
                             BillingMonth.parse(args.month), load_operator(), day, args.reason)
    print(f"credit note {done.credit_note_number or '(none: the month was fully credited)'}; "
          f"reissued invoice {done.reissue_number or '(none: nothing due)'}")
    return 0


def _billing_export(args: argparse.Namespace) -> int:
    """The month's sales journal in freee / 弥生 / マネーフォワード layout, or the per-agent summary (art. 23)."""
    from cloudbackup.billing import accounting
    from cloudbackup.billing.months import BillingMonth
    from cloudbackup.edges import connections
    from cloudbackup.registry.operator import load_operator

    try:
        month = BillingMonth.parse(args.month)
        out = Path(args.out) if args.out else settings.export_dir()
        path = accounting.export(connections.database(), month, load_operator(), args.format, out, args.encoding)
    except (ValueError, LookupError) as exc:
        print(f"cloudbackup billing export: error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


def _billing_archive(args: argparse.Namespace) -> int:
    """The archive of issued documents (電子帳簿保存法): search, PDF, audit trail, sha256 verification."""
    from datetime import date

    from cloudbackup.billing import archive
    from cloudbackup.edges import connections

    engine = connections.database()
    try:
        if args.archive_command == "search":
            found = archive.search(engine, date_from=args.date_from and date.fromisoformat(args.date_from),
                                   date_to=args.date_to and date.fromisoformat(args.date_to),
                                   amount_min=args.amount_min, amount_max=args.amount_max,
                                   counterparty=args.counterparty, limit=args.limit)
            if args.json:
                print(json.dumps([a.as_dict() for a in found], ensure_ascii=False, indent=2))
            for a in [] if args.json else found:
                print(f"{a.issue_date}  {a.invoice_number}  {a.document_type:<11}  {a.total:>12,}  {a.customer_id}  "
                      f"{a.counterparty_name}  sha256={a.data_sha256[:16]}…")
            return 0
        if args.archive_command == "pdf":
            content = archive.pdf(engine, args.invoice_number)
            Path(args.out).write_bytes(content)
            print(args.out)
            return 0
        if args.archive_command == "trail":
            for e in archive.trail(engine, args.invoice_number, args.limit):
                when = e.at.isoformat() if e.at else "?"
                print(f"{when}  {e.actor}  {e.action}  {e.invoice_number}  {e.detail or ''}")
            return 0
        damaged = archive.verify(engine)
        for d in damaged:
            print(f"DAMAGED {d.invoice_number}: {d.what}", file=sys.stderr)
        print(f"{len(damaged)} damaged")
        return 1 if damaged else 0
    except (ValueError, LookupError, archive.TamperedError) as exc:
        print(f"cloudbackup billing archive {args.archive_command}: error: {exc}", file=sys.stderr)
        return 2


def _backup_run(args: argparse.Namespace) -> int:
    import uuid
    from datetime import UTC, datetime

    from cloudbackup import tasks

    # Unique per run, even for two runs started in the same second: records are never shared.
    run_key = args.run_key or f"cli-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:12]}"
    try:
        summary = tasks.collect(args.customer, run_key)
    except tasks.CustomerNotCollected as exc:
        print(str(exc))
        return 0
    except tasks.RunInProgress as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(summary, ensure_ascii=False))
    return 2 if summary["collection_errors"] else 0


def _backup_verify(args: argparse.Namespace) -> int:
    from cloudbackup import tasks

    result = tasks.verify(args.customer, args.snapshot)
    for problem in result["problems"]:
        print(f"PROBLEM {problem}", file=sys.stderr)
    print(f"snapshot {result['snapshot_id']}: {result['files']} files, {result['objects']} objects, "
          f"{result['bytes']} bytes re-read, {len(result['problems'])} problem(s)")
    return 1 if result["problems"] else 0


def _backup_restore(args: argparse.Namespace) -> int:
    from cloudbackup import tasks

    target = f"local:{Path(args.to).resolve()}" if args.to else f"sftp:{args.to_sftp}"
    try:
        result = tasks.restore(args.customer, target, args.snapshot, args.path, in_place=args.in_place)
    except tasks.RestoreRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    print(f"restored {result['files']} files ({result['bytes']} bytes) of snapshot {result['snapshot_id']}, "
          "each verified against the manifest")
    return 0


def _backup_sweep(args: argparse.Namespace) -> int:
    from cloudbackup import tasks

    swept = tasks.sweep_dead_runs(args.customer)
    for run in swept:
        print(f"run {run['run_id']} of {run['customer_id']} marked failed: {run['detail']}")
    print(f"{len(swept)} run(s) marked failed")
    return 0


def _backup_prune(args: argparse.Namespace) -> int:
    from cloudbackup import tasks
    from cloudbackup.registry.customers import load_registry

    ids = ([c.id for c in load_registry(settings.registry_dir()).customers] if args.all else [args.customer])
    status = 0
    for customer_id in ids:
        try:
            report = tasks.prune(customer_id, dry_run=args.dry_run)
        except tasks.RunInProgress as exc:
            print(f"refused: {exc}", file=sys.stderr)
            status = 3
            continue
        for line in report.lines():
            print(line)
    return status


def _backup_snapshots(args: argparse.Namespace) -> int:
    from cloudbackup.backup.repository import list_snapshots
    from cloudbackup.edges import connections
    from cloudbackup.edges.s3 import ObjectStore

    for snapshot_id in list_snapshots(ObjectStore(connections.s3_endpoint()), args.customer):
        print(snapshot_id)
    return 0


def _notices_preview(args: argparse.Namespace) -> int:
    from cloudbackup.notices import samples

    written = samples.write_previews(Path(args.out), settings.registry_dir())
    print(f"{len(written)} file(s) written to {args.out}:")
    for path in written:
        print(f"  {path.name}")
    return 0


def _notices_list(args: argparse.Namespace) -> int:
    from cloudbackup.edges import connections
    from cloudbackup.notices import delivery

    engine = connections.database()
    counts = delivery.outbox_counts(engine)
    print(f"outbox: {counts['sent']} sent, {counts['pending']} pending, {counts['stuck']} stuck")
    for n in delivery.list_notices(engine, args.state, args.customer, args.limit):
        when = n.sent_at or n.stuck_at or n.next_attempt_at or n.created_at
        print(f"{n.id:>7}  {n.state:<7}  {when.isoformat(timespec='seconds')}  {n.kind:<17}  {n.customer_id}  "
              f"{n.recipient}  attempts={n.attempts}" + (f"  last_error={n.last_error}" if n.last_error else ""))
    return 0


def _notices_retry(args: argparse.Namespace) -> int:
    from cloudbackup.edges import connections
    from cloudbackup.notices import delivery

    if delivery.retry_stuck(connections.database(), args.id):
        print(f"notice {args.id} queued again; the next delivery run sends it")
        return 0
    print(f"notice {args.id} is not stuck (sent, pending or unknown): nothing changed")
    return 1


def _notices_service_end(args: argparse.Namespace) -> int:
    from datetime import date

    from cloudbackup.clock import tokyo_date, utcnow
    from cloudbackup.edges import connections
    from cloudbackup.notices import service_end
    from cloudbackup.registry.customers import load_registry

    registry = load_registry(settings.registry_dir())
    for broken in registry.errors:   # a customer whose file does not load cannot be told: fix it, run this again
        print(f"WARNING not announced to a customer whose file does not load: {broken}", file=sys.stderr)
    try:
        done = service_end.announce(connections.database(), list(registry.customers),
                                    date.fromisoformat(args.last_day), tokyo_date(utcnow()), scope=args.scope,
                                    scope_en=args.scope_en, only=args.customer, dry_run=args.dry_run)
    except service_end.ServiceEndRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    verb = "would queue" if args.dry_run else "queued"
    print(f"service end {done.end_id!r}, last day of service {done.last_day} (art. 19(2)): {verb} "
          f"{len(done.queued)} notice(s); {len(done.already)} customer(s) told before; "
          f"{len(done.skipped)} not affected")
    for customer_id in done.queued:
        print(f"  {verb}: {customer_id}")
    for customer_id, why in done.skipped:
        print(f"  not affected: {customer_id}: {why}")
    if done.queued and not args.dry_run:
        print("the deliver_notices DAG sends them within 5 minutes (or now: cloudbackup notices deliver)")
    return 2 if registry.errors else 0


def _notices_deliver(_args: argparse.Namespace) -> int:
    from cloudbackup import tasks

    queued = tasks.queue_event_notices()
    try:
        sent = tasks.deliver_notices()
    except tasks.NoticesNotDelivered as exc:
        print(json.dumps({"queued": queued}))
        print(f"not all due notices were sent: {exc}")
        return 1
    print(json.dumps({"queued": queued, **sent}))
    return 0


def _reports_list(_args: argparse.Namespace) -> int:
    from cloudbackup.console import reports

    for name, about in reports.available().items():
        print(f"{name:<28} {about}")
    return 0


def _reports_run(args: argparse.Namespace) -> int:
    from cloudbackup.console import reports
    from cloudbackup.edges import connections

    params = dict(p.partition("=")[::2] for p in args.param)
    try:
        columns, rows = reports.run(connections.database(), args.name, params)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = reports.to_csv(columns, rows)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"{len(rows)} row(s) written to {args.out}")
    else:
        print(text, end="")
    return 0


def _backup_keys_rotate(args: argparse.Namespace) -> int:
    """Re-wrap every customer's data key under the current master key (docs/storage-format.md, "Key rotation")."""
    from cloudbackup.backup import keys

    try:
        result = keys.rotate(_customer_store(), args.customer or None)
    except keys.MasterKeyMissing as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    for customer_id in result.rewrapped:
        print(f"{customer_id}: data key re-wrapped under master key {result.master_key_id}")
    for customer_id, why in sorted(result.failed.items()):
        print(f"FAILED {customer_id}: {why}", file=sys.stderr)
    print(f"master key {result.master_key_id}: {len(result.rewrapped)} re-wrapped, {len(result.current)} already "
          f"current, {len(result.failed)} failed; no data object was read or rewritten")
    return 1 if result.failed else 0


def _customer_store():  # noqa: ANN202 - an ObjectStore; imported lazily
    from cloudbackup.edges import connections
    from cloudbackup.edges.s3 import ObjectStore

    return ObjectStore(connections.s3_endpoint())


def _customer_export(args: argparse.Namespace) -> int:
    """Art. 19(3): every kept snapshot (or the latest) restored for the customer, with a hash manifest."""
    from cloudbackup.backup import offboarding
    from cloudbackup.backup.restorer import RestoreError
    from cloudbackup.edges import connections
    from cloudbackup.edges.sftp import open_sftp
    from cloudbackup.registry.backup_settings import load_backup_settings
    from cloudbackup.registry.customers import load_customer

    store = _customer_store()
    try:
        if args.to.startswith("sftp:"):
            conn_id, _, folder = args.to.removeprefix("sftp:").partition(":")
            if not conn_id or not folder:
                raise offboarding.OffboardingRefused(f"--to {args.to!r}: use sftp:<connection id>:/folder")
            # On the customer's own server, never among its live files (its file, if still in the registry).
            found = settings.registry_dir() / "customers" / f"{args.customer}.yaml"
            customer = load_customer(found) if found.is_file() else None
            live = customer.sftp.paths if customer and customer.sftp.connection_id == conn_id else []
            session = open_sftp(connections.sftp_endpoint(conn_id), timeout=settings.sftp_timeout_seconds())
            result = offboarding.export_sftp(store, args.customer, session, folder, latest_only=args.latest,
                                             live_areas=live)
        else:
            threads = load_backup_settings(settings.registry_dir() / "backup.yaml").engine.restore_threads
            result = offboarding.export_local(store, args.customer, Path(args.to), latest_only=args.latest,
                                              threads=threads)
    except (offboarding.OffboardingRefused, RestoreError) as exc:
        print(f"cloudbackup customer export: error: {exc}", file=sys.stderr)
        return 2
    for snap in result.snapshots:
        print(f"{snap['snapshot_id']}: {snap['files']} files, {snap['bytes']} bytes")
    for failure in result.failures:
        print(f"FAILED {failure}", file=sys.stderr)
    print(f"exported {len(result.snapshots)} snapshot(s) of {args.customer}: {result.files} files, {result.bytes} "
          f"bytes, each verified by sha256; manifest {result.manifest} (sha256 {result.manifest_sha256}); "
          f"{len(result.failures)} failure(s)")
    return 1 if result.failures else 0


def _customer_purge(args: argparse.Namespace) -> int:
    """Art. 19(3): every object of the customer deleted, checked by LIST, and a deletion report recorded."""
    import getpass
    from datetime import timedelta

    from cloudbackup.backup import offboarding
    from cloudbackup.edges import connections

    if args.dry_run:
        try:
            preview = offboarding.purge_preview(_customer_store(), args.customer)
        except offboarding.OffboardingRefused as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(preview, ensure_ascii=False))
        print(f"dry run: a purge would delete {preview['objects']} object version(s), {preview['bytes']} bytes, of "
              f"{preview['snapshot_count']} snapshot(s); {preview['locked']} locked"
              + (f" until {preview['locked_until']}" if preview["locked_until"] else "") + "; nothing deleted")
        return 0
    if not args.confirm:
        print("refused: --confirm ID is required (the customer id again); nothing deleted", file=sys.stderr)
        return 2
    try:
        report = offboarding.purge(connections.database(), _customer_store(), args.customer, args.confirm,
                                   args.operator or getpass.getuser(), via="cli",
                                   lease_ttl=timedelta(seconds=settings.run_lease_seconds()),
                                   bypass_governance=args.bypass_governance)
    except offboarding.OffboardingRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    print(offboarding.report_text(report), end="")
    if args.report_json:
        Path(args.report_json).write_text(json.dumps(report.as_dict(), ensure_ascii=False, indent=2) + "\n",
                                          encoding="utf-8")
        print(f"report written to {args.report_json}")
    return 0 if report.result == offboarding.COMPLETE else 1


def _customer_deletion_report(args: argparse.Namespace) -> int:
    import csv
    import io

    from cloudbackup.backup import offboarding
    from cloudbackup.edges import connections

    found = offboarding.deletion_reports(connections.database(), args.customer)
    for report in found:
        print(offboarding.report_text(report))
    print(f"{len(found)} deletion report(s)" + (f" for {args.customer}" if args.customer else ""))
    rows = [{k: v for k, v in r.as_dict().items() if k != "remaining"} for r in found]
    if args.json:
        Path(args.json).write_text(json.dumps(rows, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if args.csv:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["customer_id"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        Path(args.csv).write_text(out.getvalue(), encoding="utf-8")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloudbackup", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="the project's database").add_subparsers(dest="db_command", required=True)
    db.add_parser("migrate", help="apply pending migrations").set_defaults(func=_db_migrate)

    reg = sub.add_parser("registry", help="customer registry").add_subparsers(dest="reg_command", required=True)
    rcheck = reg.add_parser("check", help="validate every customer file against the catalog and operator settings "
                                          "(exit 1 on any error)")
    rcheck.add_argument("--require-env-connections", action="store_true",
                        help="a customer's SFTP connection missing from AIRFLOW_CONN_* in the environment is an error")
    rcheck.set_defaults(func=_registry_check)
    rpools = reg.add_parser("sync-pools", help="create the Airflow pools of shared customer servers (idempotent)")
    rpools.add_argument("--slots", type=int, default=1, help="slots of a new pool: concurrent runs per server (1)")
    rpools.set_defaults(func=_registry_sync_pools)

    billing = sub.add_parser("billing", help="monthly billing").add_subparsers(dest="billing_command",
                                                                                required=True)
    run = billing.add_parser("run", help="issue a month's invoices and write its CSV")
    run.add_argument("--month", required=True, help="billing month, YYYY-MM")
    run.add_argument("--dry-run", action="store_true", help="show what would be issued; write nothing")
    run.add_argument("--draft", action="store_true",
                     help="write or refresh drafts for review only: no numbers, no emails, no CSV")
    run.add_argument("--issue-date", help="issue date printed on the invoices, YYYY-MM-DD (default: today, Tokyo)")
    run.add_argument("--json", action="store_true", help="print the result (and the CSV written) as one JSON document")
    run.set_defaults(func=_billing_run)
    preview = billing.add_parser("preview", help="print a customer's invoice lines and totals; writes nothing")
    preview.add_argument("--customer", required=True, help="customer id")
    preview.add_argument("--month", required=True, help="billing month, YYYY-MM")
    preview.add_argument("--to", help="last billing month of a range, YYYY-MM (default: --month only)")
    preview.add_argument("--json", action="store_true", help="print the months, lines, tax and notes as JSON")
    preview.set_defaults(func=_billing_preview)
    correct = billing.add_parser("correct", help="credit note + reissue for an issued invoice (never edited)")
    correct.add_argument("--customer", required=True, help="customer id")
    correct.add_argument("--month", required=True, help="billing month, YYYY-MM")
    correct.add_argument("--reason", required=True, help="why, printed on the correction email")
    correct.add_argument("--issue-date", help="issue date, YYYY-MM-DD (default: today, Tokyo)")
    correct.set_defaults(func=_billing_correct)

    export = billing.add_parser("export", help="the month's sales journal for the accounting software (CP932)")
    export.add_argument("--month", required=True, help="month, YYYY-MM")
    export.add_argument("--format", required=True, choices=["freee", "yayoi", "mf", "agents"],
                        help="freee 取引, 弥生 仕訳日記帳, マネーフォワード 仕訳帳, or the per-sales-agent summary")
    export.add_argument("--encoding", choices=["cp932", "utf-8"], help="default: operator.yaml (cp932)")
    export.add_argument("--out", help="folder (default: the export folder)")
    export.set_defaults(func=_billing_export)

    arch = billing.add_parser("archive", help="issued invoices as kept (電子帳簿保存法): search, pdf, trail, verify")
    arch_sub = arch.add_subparsers(dest="archive_command", required=True)
    asearch = arch_sub.add_parser("search", help="by issue date, amount range (tax included) and counterparty")
    asearch.add_argument("--from", dest="date_from", help="issued on or after, YYYY-MM-DD")
    asearch.add_argument("--to", dest="date_to", help="issued on or before, YYYY-MM-DD")
    asearch.add_argument("--min", dest="amount_min", type=int, help="total at least (yen)")
    asearch.add_argument("--max", dest="amount_max", type=int, help="total at most (yen)")
    asearch.add_argument("--counterparty", help="customer id, or part of the recipient's name")
    asearch.add_argument("--limit", type=int, default=1000)
    asearch.add_argument("--json", action="store_true")
    apdf = arch_sub.add_parser("pdf", help="write an archived document's PDF (sha256-checked)")
    apdf.add_argument("invoice_number")
    apdf.add_argument("--out", required=True, help="file to write")
    atrail = arch_sub.add_parser("trail", help="the audit trail: who issued, corrected, stored what, and when")
    atrail.add_argument("--invoice-number")
    atrail.add_argument("--limit", type=int, default=200)
    arch_sub.add_parser("verify", help="recompute every archived sha256; exit 1 if any document was altered")
    arch.set_defaults(func=_billing_archive)

    bk = sub.add_parser("backup", help="snapshots: run, list, verify, restore").add_subparsers(
        dest="backup_command", required=True)
    brun = bk.add_parser("run", help="back up one customer now (exit 2 when there were collection errors)")
    brun.add_argument("--customer", required=True)
    brun.add_argument("--run-key", help="idempotency key of the run (default: cli-<UTC time>-<random>); exit 3 "
                      "when another run of the customer is in progress")
    brun.set_defaults(func=_backup_run)
    bsweep = bk.add_parser("sweep", help="mark runs whose worker died (no heartbeat, lease lapsed) as failed")
    bsweep.add_argument("--customer", help="only this customer (default: all)")
    bsweep.set_defaults(func=_backup_sweep)
    bprune = bk.add_parser("prune", help="apply the retention and free what no kept snapshot uses (exit 3 when a "
                           "backup of the customer is running)")
    who = bprune.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer")
    who.add_argument("--all", action="store_true", help="every customer in the registry, one after the other")
    bprune.add_argument("--dry-run", action="store_true", help="print what would be forgotten, deleted and "
                        "repacked, and the bytes freed; change nothing")
    bprune.set_defaults(func=_backup_prune)
    bkeys = bk.add_parser("keys", help="the customers' data keys (encryption at rest)").add_subparsers(
        dest="keys_command", required=True)
    brot = bkeys.add_parser("rotate", help="re-wrap every customer's data key under the current master key (the "
                            "previous one configured beside it); no data is re-uploaded")
    brot.add_argument("--customer", action="append", help="only this customer (repeatable; default: every "
                      "customer with a key file in the bucket)")
    brot.set_defaults(func=_backup_keys_rotate)
    blist = bk.add_parser("snapshots", help="list a customer's snapshots, oldest first")
    blist.add_argument("--customer", required=True)
    blist.set_defaults(func=_backup_snapshots)
    bver = bk.add_parser("verify", help="re-read a snapshot's stored objects and check every sha256")
    bver.add_argument("--customer", required=True)
    bver.add_argument("--snapshot", help="snapshot id (default: the latest)")
    bver.set_defaults(func=_backup_verify)
    bres = bk.add_parser("restore", help="restore a snapshot or a path in it, verified against the manifest")
    bres.add_argument("--customer", required=True)
    bres.add_argument("--snapshot", help="snapshot id (default: the latest)")
    bres.add_argument("--path", default="/", help="file or folder inside the snapshot (default: everything)")
    where = bres.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", help="local folder")
    where.add_argument("--to-sftp", metavar="CONN_ID[:/FOLDER]",
                       help="an SFTP connection and a folder outside the customer's designated areas "
                            "(default /restore/<snapshot id>)")
    where.add_argument("--in-place", action="store_true",
                       help="onto the customer's own server at the original paths, OVERWRITING its live files")
    bres.set_defaults(func=_backup_restore)

    group = sub.add_parser("notices", help="customer notices: preview, outbox, stuck notices").add_subparsers(
        dest="notices_command", required=True)
    npreview = group.add_parser("preview", help="render every kind in both languages with sample data")
    npreview.add_argument("--out", required=True, help="folder for <kind>.<lang>.txt and .html files")
    npreview.set_defaults(func=_notices_preview)
    listing = group.add_parser("list", help="what was sent to whom and when, what waits, what is stuck")
    listing.add_argument("--state", choices=["sent", "pending", "stuck"])
    listing.add_argument("--customer")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(func=_notices_list)
    deliver = group.add_parser("deliver", help="what the deliver_notices DAG does, once: queue event notices, send")
    deliver.set_defaults(func=_notices_deliver)
    send = group.add_parser("service-end", help="announce the end of the service, or of a part of it, to every "
                            "affected customer (art. 19(2): one month ahead or more); running it again sends nothing")
    send.add_argument("--last-day", required=True, metavar="YYYY-MM-DD",
                      help="the last day the service is provided (Asia/Tokyo); at least one month after today")
    send.add_argument("--scope", default="", help="the part of the service that ends, in Japanese (default: all of it)")
    send.add_argument("--scope-en", default="", help="the same in English, for customers who read English")
    send.add_argument("--customer", action="append", default=[], metavar="ID",
                      help="only this customer (repeat for several); default every customer whose contract runs on")
    send.add_argument("--dry-run", action="store_true", help="list who would be told; queue nothing")
    send.set_defaults(func=_notices_service_end)
    retry = group.add_parser("retry", help="put a stuck notice back in the queue (after fixing its cause)")
    retry.add_argument("id", type=int)
    retry.set_defaults(func=_notices_retry)

    rep = sub.add_parser("reports", help="ops and finance reports as CSV").add_subparsers(
        dest="reports_command", required=True)
    rep.add_parser("list", help="the reports and the parameters each takes").set_defaults(func=_reports_list)
    rrun = rep.add_parser("run", help="run one report and print (or write) its CSV")
    rrun.add_argument("name", help="report name, as `reports list` shows it")
    rrun.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a report parameter")
    rrun.add_argument("--out", help="write the CSV to this file instead of printing it")
    rrun.set_defaults(func=_reports_run)

    cust = sub.add_parser("customer", help="offboarding (art. 19(3)): export, purge, deletion reports").add_subparsers(
        dest="customer_command", required=True)
    cexp = cust.add_parser("export", help="restore every kept snapshot (or the latest) into <to>/<snapshot id>/ with "
                                          "EXPORT-MANIFEST.json and SHA256SUMS (exit 1 naming any file that failed)")
    cexp.add_argument("--customer", required=True)
    cexp.add_argument("--to", required=True, metavar="DIR|sftp:CONN_ID:/FOLDER", help="local folder or SFTP folder")
    which = cexp.add_mutually_exclusive_group()
    which.add_argument("--all", dest="latest", action="store_false", help="every kept snapshot (the default)")
    which.add_argument("--latest", dest="latest", action="store_true", help="only the latest snapshot")
    cexp.set_defaults(func=_customer_export, latest=False)
    cpurge = cust.add_parser("purge", help="delete every object of the customer (all versions), verify by LIST, "
                                           "record a deletion report (exit 1 when something remains, e.g. locked)")
    cpurge.add_argument("--customer", required=True)
    cpurge.add_argument("--confirm", metavar="ID", help="the customer id again: nothing happens unless the two are "
                                                        "equal (required without --dry-run)")
    cpurge.add_argument("--dry-run", action="store_true",
                        help="print what would be deleted and what is locked until when; delete and record nothing")
    cpurge.add_argument("--operator", help="who purges, for the report (default: the OS user)")
    cpurge.add_argument("--report-json", metavar="FILE", help="also write the report as JSON")
    cpurge.add_argument("--bypass-governance", action="store_true",
                        help="also delete versions under GOVERNANCE retention (COMPLIANCE ones stay regardless)")
    cpurge.set_defaults(func=_customer_purge)
    crep = cust.add_parser("deletion-report", help="print the recorded purges (of one customer, or all)")
    crep.add_argument("--customer")
    crep.add_argument("--json", metavar="FILE", help="also write them as JSON")
    crep.add_argument("--csv", metavar="FILE", help="also write them as CSV")
    crep.set_defaults(func=_customer_deletion_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
