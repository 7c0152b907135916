"""The walking skeleton through the real parts: Airflow dag.test() → sshd → S3, billing → CSV → SMTP."""

from __future__ import annotations

import csv
import hashlib
import os
from datetime import UTC, datetime
from email.header import decode_header, make_header
from pathlib import Path

import pytest
import sqlalchemy as sa
from devtools import devstack

from cloudbackup.backup.repository import load_manifest
from cloudbackup.backup.restorer import LocalTarget, restore
from cloudbackup.edges.s3 import ObjectStore
from conftest import ROOT, customer_yaml

pytestmark = pytest.mark.servers


def _dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags[dag_id]


def _store(stack: devstack.Stack, bucket: str) -> ObjectStore:
    from cloudbackup.edges.connections import S3Endpoint

    return ObjectStore(S3Endpoint(f"127.0.0.1:{stack.s3.port}", False, stack.s3.access_key,
                                  stack.s3.secret_key, bucket))


def test_a_customer_dag_copies_the_designated_areas_into_s3(
        airflow_home: Path, stack: devstack.Stack, registry_dir: Path, database: dict, engine: sa.Engine,
        connect_service, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Art. 16: the designated areas of the customer's server, collected into the operator's storage."""
    customer_id = f"e2e-{request.node.callspec.id}"
    area = stack.sshd.root / "srv" / customer_id
    files = {
        "見積書 2026年度.txt": "御見積書\n".encode() * 500,
        "sub dir/data.bin": os.urandom(5 * 1024 * 1024 + 17),   # more than one multipart part
        "empty.txt": b"",
        "skip.tmp": b"excluded by the customer's pattern",
    }
    for rel, data in files.items():
        (area / rel).parent.mkdir(parents=True, exist_ok=True)
        (area / rel).write_bytes(data)
    (registry_dir / "customers" / f"{customer_id}.yaml").write_text(
        customer_yaml(customer_id, paths=[f"/srv/{customer_id}"]), encoding="utf-8")
    bucket = f"e2e-{request.node.callspec.id}"
    connect_service(database, [f"sftp_{customer_id.replace('-', '_')}"], bucket=bucket)

    run = _dag(f"backup_{customer_id.replace('-', '_')}").test(logical_date=datetime(2026, 11, 2, tzinfo=UTC))

    assert run.state == "success"
    store = _store(stack, bucket)
    # Every stored object sits under the customer's prefix; file contents live in packs and chunks named by
    # hash (docs/storage-format.md), so the proof of the copy is a restore from the manifest.
    assert all(k.startswith(f"customers/{customer_id}/") for k, _ in store.list_keys(""))
    manifest = load_manifest(store, customer_id)
    expected = {rel: data for rel, data in files.items() if not rel.endswith(".tmp")}
    assert {f.path for f in manifest.files} == {f"/srv/{customer_id}/{rel}" for rel in expected}
    target = tmp_path / "restored"
    restore(store, customer_id, LocalTarget(target))
    for rel, data in expected.items():
        got = (target / "srv" / customer_id / rel).read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), rel
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT status, files_collected, bytes_collected, stored_bytes FROM backup_runs "
                                   "WHERE customer_id = :c"), {"c": customer_id}).one()
    assert row.status == "succeeded"
    assert row.files_collected == 3
    assert row.bytes_collected == sum(len(d) for d in expected.values())
    assert row.stored_bytes == sum(size for _k, size in store.list_keys(f"customers/{customer_id}/"))


def test_the_billing_dag_writes_the_month_csv_and_mails_each_customer(
        airflow_home: Path, stack: devstack.Stack, registry_dir: Path, database: dict, engine: sa.Engine,
        connect_service, request: pytest.FixtureRequest) -> None:
    """Art. 22: monthly fee from the month after service start, initial fee on the first invoice."""
    suffix = request.node.callspec.id
    ja, en = f"bill-ja-{suffix}", f"bill-en-{suffix}"
    (registry_dir / "customers" / f"{ja}.yaml").write_text(
        customer_yaml(ja, paths=["/srv/x"], service_start="2026-09-15"), encoding="utf-8")
    (registry_dir / "customers" / f"{en}.yaml").write_text(
        customer_yaml(en, paths=["/srv/x"], language="en", service_start="2026-08-25"), encoding="utf-8")
    connect_service(database, [])
    before = {p.name for p in stack.smtp.maildir.glob("*.eml")}

    # The run of 2026-11-01 06:00 JST covers October: the month just closed.
    run = _dag("billing_monthly").test(logical_date=datetime.fromisoformat("2026-11-01T06:00:00+09:00"))
    assert run.state == "success"

    csv_path = Path(os.environ["CLOUDBACKUP_EXPORT_DIR"]) / "invoices-2026-10.csv"
    raw = csv_path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "UTF-8 BOM for Japanese Excel"
    rows = {r["customer_id"]: r for r in csv.DictReader(raw.decode("utf-8-sig").splitlines())}
    assert set(rows) == {ja, en}
    # ja: service started in September → October is its first billed month: fee 10,000 + initial 30,000.
    assert (rows[ja]["subtotal"], rows[ja]["tax"], rows[ja]["total"]) == ("40000", "4000", "44000")
    assert rows[ja]["customer_name"] == f"テスト顧客 {ja}"
    # en: first billed month was September, so October is the monthly fee alone.
    assert (rows[en]["subtotal"], rows[en]["tax"], rows[en]["total"]) == ("10000", "1000", "11000")
    assert rows[ja]["billing_month"] == "2026-10" and rows[ja]["sales_agent"] == "kanto-it-sales"

    new = [p for p in sorted(stack.smtp.maildir.glob("*.eml")) if p.name not in before]
    messages = [devstack.message_from_bytes(p.read_bytes()) for p in new]
    by_recipient = {m["To"]: m for m in messages}
    assert set(by_recipient) == {f"{ja}@customer.example.jp", f"{en}@customer.example.jp"}
    ja_msg, en_msg = by_recipient[f"{ja}@customer.example.jp"], by_recipient[f"{en}@customer.example.jp"]
    assert "ご請求" in str(make_header(decode_header(ja_msg["Subject"])))
    assert "Invoice for October 2026" in str(make_header(decode_header(en_msg["Subject"])))
    ja_text = ja_msg.get_body(("plain",)).get_content() if hasattr(ja_msg, "get_body") else ""
    if not ja_text:
        from email import policy
        from email.parser import BytesParser

        ja_text = BytesParser(policy=policy.default).parsebytes(ja_msg.as_bytes()).get_body(("plain",)).get_content()
    assert "¥44,000" in ja_text and rows[ja]["invoice_number"] in ja_text

    # A re-run of the same month issues nothing new and sends nothing twice.
    again = _dag("billing_monthly").test(logical_date=datetime.fromisoformat("2026-11-01T06:00:00+09:00"))
    assert again.state == "success"
    assert len([p for p in stack.smtp.maildir.glob("*.eml") if p.name not in before]) == 2
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM invoices")).scalar_one() == 2
        assert conn.execute(sa.text("SELECT COUNT(*) FROM notices WHERE sent_at IS NOT NULL")).scalar_one() == 2
