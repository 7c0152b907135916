"""Notice throughput: queue (render + insert), delivery through a real aiosmtpd, and a digest of a run
with 100,000 collection errors (SQLite). Prints its figures and merges them into bench/results.json."""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))   # the dev-only devtools package

import sqlalchemy as sa  # noqa: E402
from common import write_results  # noqa: E402
from devtools import devstack  # noqa: E402

from cloudbackup.edges import db  # noqa: E402
from cloudbackup.edges.connections import SmtpEndpoint  # noqa: E402
from cloudbackup.edges.db import insert_returning_id, to_db_time  # noqa: E402
from cloudbackup.notices import (  # noqa: E402
    delivery,
    outbox,
    samples,  # noqa: E402
)
from cloudbackup.registry.customers import Suspension  # noqa: E402

NOTICES = 2000
ERRORS = 100_000


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-notices-") as tmp:
        engine = db.engine_for(f"sqlite:///{tmp}/bench.db")
        db.migrate(engine)
        customers = [samples.sample_customer("ja" if n % 2 else "en", f"bench-{n:05d}") for n in range(NOTICES)]
        effective = datetime.now(UTC) + timedelta(days=3)

        t0 = time.perf_counter()
        with engine.begin() as conn:
            for c in customers:
                suspension = Suspension.model_validate({"from": effective.date(), "reason": "non_payment"})
                outbox.queue_suspension(conn, c.model_copy(update={"suspensions": [suspension]}), suspension)
        queue_s = time.perf_counter() - t0

        smtp = devstack.start_smtp(Path(tmp) / "smtp")
        try:
            t0 = time.perf_counter()
            report = delivery.deliver_pending(engine, SmtpEndpoint("127.0.0.1", smtp.port, "bench@example.jp"),
                                             delivery.DeliveryPolicy(batch=NOTICES))
            deliver_s = time.perf_counter() - t0
            received = len(list(smtp.maildir.glob("*.eml")))
        finally:
            smtp.stop()
        assert report.sent == received == NOTICES, (report, received)

        customer = customers[0]
        start = to_db_time(datetime.now(UTC))
        with engine.begin() as conn:
            run_id = insert_returning_id(conn, (
                "INSERT INTO backup_runs (customer_id, run_key, status, started_at, finished_at, "
                "collection_error_count) VALUES (:c, 'big', 'succeeded_with_errors', :t, :t, :n)"),
                {"c": customer.id, "t": start, "n": ERRORS})
            conn.execute(sa.text("INSERT INTO collection_errors (backup_run_id, customer_id, path, reason, "
                                 "recorded_at) VALUES (:r, :c, :p, :reason, :t)"),
                         [{"r": run_id, "c": customer.id, "p": f"/srv/share/d{n % 100}/f{n:06d}.dat",
                           "reason": ("permission_denied", "name_policy", "vanished")[n % 3], "t": start}
                          for n in range(ERRORS)])
        t0 = time.perf_counter()
        with engine.begin() as conn:
            outbox.queue_collection_errors(conn, customer, run_id)
        digest_s = time.perf_counter() - t0
        with engine.connect() as conn:
            body = conn.execute(sa.text("SELECT body_text FROM notices WHERE kind = 'collection_errors'")).scalar_one()

    figures = {
        "notices_queued_per_s": round(NOTICES / queue_s),
        "notices_delivered_per_s": round(NOTICES / deliver_s),
        "notices_digest_of_100k_errors_ms": round(digest_s * 1000),
        "notices_digest_of_100k_errors_text_lines": len(body.splitlines()),
    }
    for key, value in figures.items():
        print(f"{key}: {value}")
    write_results(figures)


if __name__ == "__main__":
    main()
