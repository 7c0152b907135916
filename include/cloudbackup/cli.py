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
    print(f"{len(registry.customers)} customer file(s) valid, {len(registry.errors)} broken")
    for p in problems:
        print(f"ERROR {p}", file=sys.stderr)
    return 1 if problems else 0


def _billing_run(args: argparse.Namespace) -> int:
    from cloudbackup import tasks

    print(json.dumps(tasks.issue_invoices(args.month)))
    print(tasks.export_month_csv(args.month))
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
    run.set_defaults(func=_billing_run)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
