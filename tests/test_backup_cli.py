"""The `cloudbackup backup` commands an operator uses outside Airflow: run, snapshots, verify, restore."""

from __future__ import annotations

import io
import os

import pytest
from backup_support import fresh_store, tree, write_tree

from cloudbackup import cli
from cloudbackup.backup.format import object_key
from cloudbackup.backup.repository import load_manifest
from conftest import customer_yaml

pytestmark = pytest.mark.servers


def test_run_verify_and_restore_from_the_command_line(stack, registry_dir, database, connect_service, tmp_path,
                                                      capsys, request) -> None:
    customer_id = f"cli-{request.node.callspec.id}"
    files = {"請求書/2026-10 最終.pdf": os.urandom(50_000), "a b c.txt": b"spaces"}
    write_tree(stack.sshd.root / "srv" / customer_id, files)
    (registry_dir / "customers" / f"{customer_id}.yaml").write_text(
        customer_yaml(customer_id, paths=[f"/srv/{customer_id}"]), encoding="utf-8")
    store = fresh_store(stack)
    connect_service(database, [f"sftp_{customer_id.replace('-', '_')}"], bucket=store.bucket)

    assert cli.main(["backup", "run", "--customer", customer_id]) == 0
    assert cli.main(["backup", "snapshots", "--customer", customer_id]) == 0
    snapshot_id = capsys.readouterr().out.strip().splitlines()[-1]
    assert cli.main(["backup", "verify", "--customer", customer_id, "--snapshot", snapshot_id]) == 0
    assert cli.main(["backup", "restore", "--customer", customer_id, "--to", str(tmp_path / "out")]) == 0
    assert tree(tmp_path / "out" / "srv" / customer_id) == files

    # Damage one stored pack: verify now fails and names it (art. 18(1): a restore must be checkable).
    ((pack, _offset, _length),) = load_manifest(store, customer_id).by_path()[f"/srv/{customer_id}/a b c.txt"].chunks
    key = object_key(customer_id, pack)
    body = bytearray(store.get_bytes(key))
    body[0] ^= 1
    store.client.put_object(store.bucket, key, io.BytesIO(bytes(body)), len(body),
                            metadata={"x-amz-meta-sha256": store.metadata(key)["sha256"]})
    capsys.readouterr()
    assert cli.main(["backup", "verify", "--customer", customer_id]) == 1
    assert pack in capsys.readouterr().err
