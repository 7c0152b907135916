"""`make demo`: back up the demo customers, bill the month just closed and send the emails, end to end.

Everything runs on this machine: real OpenSSH sshd, SeaweedFS S3, aiosmtpd, SQLite and Airflow's own
`airflow dags test`. Results stay in var/demo/ and the script prints where to look at each.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path
from zoneinfo import ZoneInfo

from cloudbackup import settings
from cloudbackup.backup.format import customer_prefix
from cloudbackup.edges.connections import S3Endpoint
from cloudbackup.edges.s3 import ObjectStore
from cloudbackup.registry.customers import load_registry
from devtools import devstack

TOKYO = ZoneInfo("Asia/Tokyo")
ROOT = settings.PROJECT_ROOT
DEMO = ROOT / "var" / "demo"

# What the demo customers' servers hold in their designated areas.
DEMO_FILES = {
    "/srv/documents/見積書 2026年11月.txt": "御見積書\n品名: クラウドバックアップ 100GB\n".encode() * 200,
    "/srv/documents/契約書/基本契約書.pdf": b"%PDF-1.4 demo contract\n" + bytes(range(256)) * 400,
    "/srv/documents/cache/thumbnail.db": b"excluded by the customer's pattern cache/*",
    "/srv/documents/draft.tmp": b"excluded by the customer's pattern *.tmp",
    "/srv/accounting/2026/仕訳帳 10月.csv": "日付,勘定科目,金額\n2026-10-01,売上,120000\n".encode() * 300,
    "/srv/projects/roadmap.md": b"# Roadmap\n" * 1000,
    "/srv/projects/assets/logo.png": bytes(range(256)) * 2048,
}

# Only `make demo` adds these to demo-tanaka (on the 1 MB trial plan), so that the run shows more than the clean
# path: a file name in Shift_JIS, which the file-name policy refuses (art. 18(2)) → a collection-error digest;
# and scanned drawings large enough to pass 80 % of the contract capacity → a capacity notice (art. 17(3)).
# (`make up` and its tests seed DEMO_FILES alone: their tanaka run stays clean.)
SHIFT_JIS_NAME = "/srv/documents/" + "旧見積書.txt".encode("cp932").decode("utf-8", "surrogateescape")
DEMO_ONLY_FILES = {
    SHIFT_JIS_NAME: "旧見積書（Shift_JIS のファイル名）\n".encode(),
    "/srv/documents/図面/scan-2026-11.bin": hashlib.shake_256(b"demo drawings").digest(760_000),
}


def _run(cmd: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("w") as out:
        result = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise SystemExit(f"demo step failed: {' '.join(cmd)} (exit {result.returncode}); log {log}:\n{tail}")


def _dag_succeeded(log: Path, dag_id: str) -> None:
    finished = [line for line in log.read_text(errors="replace").splitlines() if "DagRun Finished" in line]
    if not finished or "state=success" not in finished[-1]:
        raise SystemExit(f"{dag_id} did not succeed; see {log}")


def main() -> int:
    if DEMO.exists():
        shutil.rmtree(DEMO)
    (DEMO / "logs").mkdir(parents=True)
    bin_dir = Path(sys.executable).parent
    registry = load_registry(settings.registry_dir())
    if registry.errors:
        raise SystemExit("registry has broken files:\n" + "\n".join(str(e) for e in registry.errors))

    print("starting the servers (sshd, SeaweedFS S3, SMTP capture) on free loopback ports …", flush=True)
    with devstack.running_stack(DEMO / "stack") as stack:
        for remote, data in {**DEMO_FILES, **DEMO_ONLY_FILES}.items():
            target = stack.sshd.root / remote.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        db_path = DEMO / "cloudbackup.db"
        env = {**os.environ,
               "AIRFLOW_HOME": str(DEMO / "airflow"),
               "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
               "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
               "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
               "CLOUDBACKUP_EXPORT_DIR": str(DEMO / "exports"),
               "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
               **devstack.connection_env(stack, {"conn_type": "sqlite", "host": str(db_path)},
                                         sorted({c.sftp.connection_id for c in registry.customers}))}
        print("preparing Airflow's metadata DB and the project DB (SQLite) …", flush=True)
        _run([str(bin_dir / "airflow"), "db", "migrate"], env, DEMO / "logs" / "airflow-db-migrate.log")
        _run([str(bin_dir / "cloudbackup"), "db", "migrate"], env, DEMO / "logs" / "cloudbackup-db-migrate.log")

        now = datetime.now(TOKYO)
        for customer in registry.customers:
            print(f"backing up {customer.id}: airflow dags test {customer.dag_id} …", flush=True)
            log = DEMO / "logs" / f"{customer.dag_id}.log"
            _run([str(bin_dir / "airflow"), "dags", "test", customer.dag_id, now.isoformat()], env, log)
            _dag_succeeded(log, customer.dag_id)

        # The run on the 1st of this month at 06:00 JST bills the month just closed.
        billing_run = now.replace(day=1, hour=6, minute=0, second=0, microsecond=0)
        closed = (billing_run - timedelta(days=1)).strftime("%Y-%m")
        print(f"billing {closed}: airflow dags test billing_monthly {billing_run.isoformat()} …", flush=True)
        log = DEMO / "logs" / "billing_monthly.log"
        _run([str(bin_dir / "airflow"), "dags", "test", "billing_monthly", billing_run.isoformat()], env, log)
        _dag_succeeded(log, "billing_monthly")

        s3 = stack.s3.connection()
        store = ObjectStore(S3Endpoint(f"127.0.0.1:{stack.s3.port}", False, s3["login"], s3["password"],
                                       s3["extra"]["bucket"]))
        listing = {c.id: sorted(store.list_keys(customer_prefix(c.id))) for c in registry.customers}

    (DEMO / "s3-objects.json").write_text(json.dumps(listing, indent=2, ensure_ascii=False))
    _report(listing, closed, stack.smtp.maildir, db_path)
    return 0


def _report(listing: dict[str, list[tuple[str, int]]], month: str, maildir: Path, db_path: Path) -> None:
    print("\n=== 1. Backups in S3 (bucket 'cloudbackup', SeaweedFS data in var/demo/stack/s3/) ===")
    for customer_id, objects in listing.items():
        print(f"{customer_id}: {len(objects)} objects, {sum(s for _k, s in objects):,} bytes")
        for key, size in objects[:12]:
            print(f"  {size:>10,}  {key}")
    print("  (full listing: var/demo/s3-objects.json)")

    csv_path = DEMO / "exports" / f"invoices-{month}.csv"
    print(f"\n=== 2. Month-end invoice CSV for finance: {csv_path.relative_to(ROOT)} ===")
    print(csv_path.read_text(encoding="utf-8-sig") if csv_path.exists() else "  (no invoices due this month)")

    mails = sorted(maildir.glob("*.eml"))
    print(f"=== 3. Emails captured by the SMTP server: {maildir.relative_to(ROOT)}/*.eml ({len(mails)}) ===")
    by_kind: dict[str, list[str]] = {}
    for path in mails:
        msg = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        by_kind.setdefault(str(msg["X-Cloudbackup-Notice"]), []).append(f"{path.relative_to(ROOT)} → {msg['To']}")
        print(f"--- {path.name}  [{msg['X-Cloudbackup-Notice']}]\nFrom: {msg['From']}\nTo: {msg['To']}\n"
              f"Date: {msg['Date']}\nSubject: {msg['Subject']}\n")
        body = msg.get_body(("plain",))
        print(body.get_content() if body else "")

    print("=== Where to look ===")
    kinds = {"collection_errors": "collection-error digest (art. 17(2))", "capacity": "capacity notice (art. 17(3))",
             "invoice": "invoice (art. 20-26)"}
    for kind, what in kinds.items():
        found = by_kind.pop(kind, [])
        print(f"{what}: " + ("; ".join(found) if found else "none captured (see the step logs)"))
    for kind, found in by_kind.items():
        print(f"{kind}: " + "; ".join(found))
    logs = sorted(p.name for p in (DEMO / "logs").glob("*.log"))
    print(f"S3 objects: var/demo/s3-objects.json · finance CSV: {DEMO.relative_to(ROOT)}/exports/ · records: SQLite "
          f"{db_path.relative_to(ROOT)} (tables backup_runs, collection_errors, capacity_events, invoices, notices)")
    print(f"task logs of each step (airflow dags test): var/demo/logs/ ({', '.join(logs)})")

if __name__ == "__main__":
    sys.exit(main())
