"""Seed a realistic fleet (registry files + a year of daily runs) for the console's benchmark, test and screenshots."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from croniter import croniter
from sqlalchemy.engine import Engine

from cloudbackup.clock import TOKYO
from cloudbackup.edges.db import to_db_time
from cloudbackup.registry.catalog import GB

PLANS = (("standard-100", 100), ("business-500", 500))
STORED_OVER_SOURCE = 1.3    # the operator's stored bytes (snapshot history included) over the data of the snapshot
_COMPANIES = ("田中商事株式会社", "さくら物流株式会社", "山本製作所", "北斗会計事務所", "Globex Japan K.K.",
              "みなと歯科クリニック", "青葉設計株式会社", "東都印刷株式会社", "かもめ不動産", "Initech Tokyo")


@dataclass(frozen=True)
class SeededCustomer:
    id: str
    name: str
    plan: str
    capacity_gb: int


def customer_file(c: SeededCustomer, *, status: str = "active", schedule: str = "0 2 * * *") -> str:
    return f"""\
id: {c.id}
name: {_yaml_str(c.name)}
notice_email: backup@{c.id}.example.jp
language: ja
sales_agent: kanto-it-sales
contract_date: 2025-09-20
service_start_date: 2025-10-01
plans:
  - plan: {c.plan}
    approved_on: 2025-09-20
    started_using_on: 2025-10-01
sftp:
  connection_id: sftp_{c.id.replace('-', '_')}
  paths: [/srv/data]
schedule: "{schedule}"
status: {status}
"""


def _yaml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def schedule_of(n: int) -> str:
    return f"{n % 60} {n % 6} * * *"


def seed_fleet(engine: Engine, registry_dir: Path, *, customers: int, days: int, now: datetime,
               seed: int = 6) -> list[SeededCustomer]:
    """`customers` registry files and `days` daily runs each, started a few minutes after each slot of the
    customer's cron in Asia/Tokyo (some with collection errors), plus notices."""
    rng = random.Random(seed)
    (registry_dir / "customers").mkdir(parents=True, exist_ok=True)
    seeded = []
    for n in range(customers):
        plan, gb = PLANS[n % 7 == 0]
        c = SeededCustomer(f"cust-{n:04d}", f"{_COMPANIES[n % len(_COMPANIES)]} {n:04d}", plan, gb)
        status = "suspended" if n % 97 == 5 else "active"
        (registry_dir / "customers" / f"{c.id}.yaml").write_text(
            customer_file(c, status=status, schedule=schedule_of(n)), encoding="utf-8")
        seeded.append(c)
    with engine.begin() as conn:
        for n, c in enumerate(seeded):
            last_slot = croniter(schedule_of(n), now.astimezone(TOKYO)).get_prev(datetime)
            # Most customers stay well inside their contract; one in eight grows past 80 % of it.
            heavy = n % 8 == 3
            growth = (rng.uniform(0.35, 0.6) if heavy else rng.uniform(0.02, 0.3)) * c.capacity_gb * GB / days
            stored = (rng.uniform(0.45, 0.6) if heavy else rng.uniform(0.05, 0.4)) * c.capacity_gb * GB
            runs, crossed = [], []
            for d in range(days - 1, -1, -1):
                started = last_slot - timedelta(days=d) + timedelta(minutes=rng.uniform(0.1, 3))
                stored += growth * rng.uniform(0.2, 1.8)
                roll = rng.random()
                status = ("failed" if roll < 0.01 else "succeeded_with_errors" if roll < 0.08 else "succeeded")
                errors = rng.randint(1, 40) if status == "succeeded_with_errors" else 0
                for threshold in (80, 90, 100):
                    if stored >= threshold / 100 * c.capacity_gb * GB and threshold not in {t for t, _, _ in crossed}:
                        crossed.append((threshold, int(stored), started))
                runs.append({"c": c.id, "k": f"scheduled__{to_db_time(started)}", "s": status,
                             "st": to_db_time(started), "f": to_db_time(started + timedelta(minutes=7)),
                             "n": 0 if status == "failed" else rng.randint(100, 50_000),
                             "b": 0 if status == "failed" else int(growth * rng.uniform(1, 4)), "e": errors,
                             # The walk is the contract figure (the data as of each snapshot); the operator's
                             # stored bytes hold the history besides (README "What counts against the contract").
                             "cb": None if status == "failed" else int(stored),
                             "basis": None if status == "failed" else "source_bytes",
                             "sb": None if status == "failed" else int(stored * STORED_OVER_SOURCE)})
            conn.execute(sa.text(
                "INSERT INTO backup_runs (customer_id, run_key, status, started_at, finished_at, files_collected, "
                "bytes_collected, collection_error_count, stored_bytes, counted_bytes, capacity_basis) "
                "VALUES (:c, :k, :s, :st, :f, :n, :b, :e, :sb, :cb, :basis)"), runs)
            if crossed:
                conn.execute(sa.text(
                    "INSERT INTO capacity_events (customer_id, threshold_percent, counted_bytes, capacity_basis, "
                    "stored_bytes, contract_capacity_bytes, recorded_at) "
                    "VALUES (:c, :t, :cb, 'source_bytes', :s, :cap, :at)"),
                    [{"c": c.id, "t": t, "cb": b, "s": int(b * STORED_OVER_SOURCE), "cap": c.capacity_gb * GB,
                      "at": to_db_time(at)} for t, b, at in crossed])
        last = conn.execute(sa.text(
            "SELECT r.id, r.customer_id, r.collection_error_count, r.started_at FROM backup_runs r JOIN "
            "(SELECT customer_id, MAX(started_at) AS m FROM backup_runs GROUP BY customer_id) l "
            "ON r.customer_id = l.customer_id AND r.started_at = l.m WHERE r.collection_error_count > 0")).all()
        errors = [{"r": row.id, "c": row.customer_id, "p": f"/srv/data/経理/{i:03d} 請求書.xlsx",
                   "reason": ("permission_denied", "vanished", "name_policy")[i % 3], "d": "seeded",
                   "t": to_db_time(now)} for row in last for i in range(row.collection_error_count)]
        if errors:
            conn.execute(sa.text(
                "INSERT INTO collection_errors (backup_run_id, customer_id, path, reason, detail, recorded_at) "
                "VALUES (:r, :c, :p, :reason, :d, :t)"), errors)
        notices = [{"k": "capacity", "c": c.id, "r": f"backup@{c.id}.example.jp", "s": f"容量のお知らせ {c.id}",
                    "key": f"seed:{c.id}:{i}", "m": f"<seed-{c.id}-{i}@cloudbackup.notices>",
                    "at": to_db_time(now - timedelta(hours=i + 1)), "a": 5 if i == 0 and n % 50 == 3 else i,
                    "stuck": to_db_time(now) if i == 0 and n % 50 == 3 else None,
                    "e": "SMTPRecipientsRefused: seeded" if i or n % 50 == 3 else None}
                   for n, c in enumerate(seeded) if n % 10 == 3 for i in range(2)]
        if notices:
            conn.execute(sa.text(
                "INSERT INTO notices (kind, customer_id, recipient, subject, body_text, idempotency_key, message_id, "
                "created_at, attempts, last_error, stuck_at) "
                "VALUES (:k, :c, :r, :s, 'seeded', :key, :m, :at, :a, :e, :stuck)"),
                notices)
    return seeded



ATTENTION_CASES = {            # customer id → the flag its seeded state raises (the e2e test pauses "held-co")
    "late-co": "overdue", "new-co": "never_run", "slow-co": "long_running", "held-co": "paused",
    "broken-co": "broken", "failed-co": "failed", "stuck-co": "stuck_notices", "full-co": "near_capacity",
}


def seed_attention_cases(engine: Engine, registry_dir: Path, now: datetime) -> dict[str, str]:
    """One customer in each state the fleet page flags (bar "paused", which is Airflow's state, and "with
    errors", which the fleet has plenty of): its file and runs. Returns ATTENTION_CASES."""
    names = {"late-co": "遅延テスト株式会社", "new-co": "新規テスト株式会社", "slow-co": "長時間テスト株式会社",
             "held-co": "一時停止テスト株式会社", "failed-co": "失敗テスト株式会社", "stuck-co": "通知テスト株式会社",
             "full-co": "満杯テスト株式会社"}
    for cid, name in names.items():
        c = SeededCustomer(cid, name, "standard-100", 100)
        (registry_dir / "customers" / f"{cid}.yaml").write_text(customer_file(c), encoding="utf-8")
    # A file that does not load: an unknown language (the field is named on the page).
    broken = customer_file(SeededCustomer("broken-co", "設定エラー株式会社", "standard-100", 100))
    (registry_dir / "customers" / "broken-co.yaml").write_text(broken.replace("language: ja", "language: xx"),
                                                               encoding="utf-8")
    slot = croniter("0 2 * * *", now.astimezone(TOKYO)).get_prev(datetime)
    runs = []

    def run(cid: str, key: str, started: datetime, status: str = "succeeded", minutes: float | None = 6,
            stored: int | None = 30 * GB) -> None:
        runs.append({"c": cid, "k": key, "s": status, "st": to_db_time(started),
                     "f": None if minutes is None else to_db_time(started + timedelta(minutes=minutes)),
                     "n": 0 if status != "succeeded" else 1200, "b": 0 if stored is None else 10**8, "e": 0,
                     "cb": stored, "basis": None if stored is None else "source_bytes",
                     "sb": None if stored is None else int(stored * STORED_OVER_SOURCE)})
    for d in range(1, 8):
        for cid in ("slow-co", "held-co", "failed-co", "stuck-co", "full-co"):
            run(cid, f"scheduled__{d}", slot - timedelta(days=d) + timedelta(minutes=1),
                stored=(95 if cid == "full-co" else 30) * GB)
    for d in range(3, 9):       # late-co: nothing since three days ago
        run("late-co", f"scheduled__{d}", slot - timedelta(days=d) + timedelta(minutes=1))
    run("slow-co", "scheduled__now", now - timedelta(hours=2), status="running", minutes=None, stored=None)
    run("failed-co", "scheduled__now", slot + timedelta(minutes=1), status="failed", minutes=1, stored=None)
    for cid in ("held-co", "stuck-co", "full-co"):
        run(cid, "scheduled__now", slot + timedelta(minutes=1), stored=(95 if cid == "full-co" else 30) * GB)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO backup_runs (customer_id, run_key, status, started_at, finished_at, files_collected, "
            "bytes_collected, collection_error_count, stored_bytes, counted_bytes, capacity_basis) "
            "VALUES (:c, :k, :s, :st, :f, :n, :b, :e, :sb, :cb, :basis)"), runs)
        conn.execute(sa.text(
            "INSERT INTO notices (kind, customer_id, recipient, subject, body_text, idempotency_key, message_id, "
            "created_at, attempts, last_error, stuck_at) VALUES ('capacity', 'stuck-co', 'x@stuck.example.jp', "
            "'容量のお知らせ', 'seeded', 'seed:stuck-co', '<seed-stuck-co@cloudbackup.notices>', :at, 5, "
            "'SMTPRecipientsRefused: seeded', :at)"), {"at": to_db_time(now - timedelta(hours=3))})
    return dict(ATTENTION_CASES)
