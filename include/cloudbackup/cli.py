"""The `cloudbackup` command: operator tasks outside Airflow (migrations, registry check, billing)."""

from __future__ import annotations

import argparse
import json
import sys

from cloudbackup import settings


def _db_migrate(_args: argparse.Namespace) -> int:
    from cloudbackup import tasks

    applied = tasks.migrate_database()
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
    return 0


def _billing_settings_problems(customers) -> list[str]:  # noqa: ANN001
    """The operator settings load, and every customer's sales agent is in them (else it cannot be billed)."""
    from cloudbackup.operator_settings import load_operator

    try:
        operator = load_operator()
    except ValueError as exc:
        return [str(exc)]
    return [f"customers/{c.id}.yaml: field 'sales_agent': {c.sales_agent!r} is not in operator.yaml"
            for c in customers if c.sales_agent not in operator.sales_agents]


def _registry_check(_args: argparse.Namespace) -> int:
    from cloudbackup.catalog import load_catalog
    from cloudbackup.registry import load_registry

    registry = load_registry(settings.registry_dir())
    catalog = load_catalog(settings.catalog_path())
    problems = [str(e) for e in registry.errors]
    for customer in registry.customers:
        for change in customer.plans:
            try:
                catalog.plan(change.plan)
            except KeyError as exc:
                problems.append(f"customers/{customer.id}.yaml: field 'plans': {exc.args[0]}")
    problems += _billing_settings_problems(registry.customers)
    print(f"{len(registry.customers)} customer file(s) valid, {len(registry.errors)} broken")
    for customer in registry.customers:
        for warning in customer.timeline_warnings:
            print(f"WARNING {warning}", file=sys.stderr)
    for p in problems:
        print(f"ERROR {p}", file=sys.stderr)
    return 1 if problems else 0


def _billing_run(args: argparse.Namespace) -> int:
    from cloudbackup import tasks

    result = tasks.issue_invoices(args.month, issue_date=args.issue_date, dry_run=args.dry_run,
                                  draft_only=args.draft)
    print(json.dumps(result, ensure_ascii=False))
    if not (args.dry_run or args.draft):
        print(tasks.export_month_csv(args.month))
    return 1 if result["failed"] else 0


def _billing_preview(args: argparse.Namespace) -> int:
    from cloudbackup.billing.preview import preview_text
    from cloudbackup.catalog import load_catalog
    from cloudbackup.registry import load_registry

    customer = load_registry(settings.registry_dir()).get(args.customer)
    print(preview_text(customer, load_catalog(settings.catalog_path()), args.month, args.to), end="")
    return 0


def _billing_correct(args: argparse.Namespace) -> int:
    from datetime import date, datetime

    from cloudbackup import connections, invoices, tasks
    from cloudbackup.billing import BillingMonth
    from cloudbackup.catalog import load_catalog
    from cloudbackup.operator_settings import load_operator
    from cloudbackup.registry import load_registry

    customer = load_registry(settings.registry_dir()).get(args.customer)
    day = date.fromisoformat(args.issue_date) if args.issue_date else datetime.now(tasks.TOKYO).date()
    done = invoices.correct(connections.database(), customer, load_catalog(settings.catalog_path()),
                            BillingMonth.parse(args.month), load_operator(), day, args.reason)
    print(f"credit note {done.credit_note_number or '(none: the month was fully credited)'}; "
          f"reissued invoice {done.reissue_number or '(none: nothing due)'}")
    return 0


def _backup_run(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from cloudbackup import tasks

    run_key = args.run_key or "cli-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        summary = tasks.collect(args.customer, run_key)
    except tasks.CustomerNotCollected as exc:
        print(str(exc))
        return 0
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
    from pathlib import Path

    from cloudbackup import tasks

    target = f"local:{Path(args.to).resolve()}" if args.to else f"sftp:{args.to_sftp}"
    result = tasks.restore(args.customer, target, args.snapshot, args.path)
    print(f"restored {result['files']} files ({result['bytes']} bytes) of snapshot {result['snapshot_id']}, "
          "each verified against the manifest")
    return 0


def _backup_snapshots(args: argparse.Namespace) -> int:
    from cloudbackup import backup, connections
    from cloudbackup.storage import ObjectStore

    for snapshot_id in backup.list_snapshots(ObjectStore(connections.s3_endpoint()), args.customer):
        print(snapshot_id)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cloudbackup", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    db = sub.add_parser("db", help="the project's database").add_subparsers(dest="db_command", required=True)
    db.add_parser("migrate", help="apply pending sql/migrations").set_defaults(func=_db_migrate)
    reg = sub.add_parser("registry", help="customer registry").add_subparsers(dest="reg_command", required=True)
    reg.add_parser("check", help="validate every customer file and the catalog").set_defaults(func=_registry_check)
    billing = sub.add_parser("billing", help="monthly billing").add_subparsers(dest="billing_command",
                                                                                required=True)
    run = billing.add_parser("run", help="issue a month's invoices and write its CSV")
    run.add_argument("--month", required=True, help="billing month, YYYY-MM")
    run.add_argument("--dry-run", action="store_true", help="show what would be issued; write nothing")
    run.add_argument("--draft", action="store_true",
                     help="write or refresh drafts for review only: no numbers, no emails, no CSV")
    run.add_argument("--issue-date", help="issue date printed on the invoices, YYYY-MM-DD (default: today, Tokyo)")
    run.set_defaults(func=_billing_run)
    preview = billing.add_parser("preview", help="print a customer's invoice lines and totals; writes nothing")
    preview.add_argument("--customer", required=True, help="customer id")
    preview.add_argument("--month", required=True, help="billing month, YYYY-MM")
    preview.add_argument("--to", help="last billing month of a range, YYYY-MM (default: --month only)")
    preview.set_defaults(func=_billing_preview)
    correct = billing.add_parser("correct", help="credit note + reissue for an issued invoice (never edited)")
    correct.add_argument("--customer", required=True, help="customer id")
    correct.add_argument("--month", required=True, help="billing month, YYYY-MM")
    correct.add_argument("--reason", required=True, help="why, printed on the correction email")
    correct.add_argument("--issue-date", help="issue date, YYYY-MM-DD (default: today, Tokyo)")
    correct.set_defaults(func=_billing_correct)
    bk = sub.add_parser("backup", help="snapshots: run, list, verify, restore").add_subparsers(
        dest="backup_command", required=True)
    brun = bk.add_parser("run", help="back up one customer now (exit 2 when there were collection errors)")
    brun.add_argument("--customer", required=True)
    brun.add_argument("--run-key", help="idempotency key of the run (default: cli-<UTC time>)")
    brun.set_defaults(func=_backup_run)
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
    where.add_argument("--to-sftp", metavar="CONN_ID:/FOLDER", help="an SFTP connection and folder")
    bres.set_defaults(func=_backup_restore)
    from cloudbackup.notices.cli import register as register_notices

    register_notices(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
