"""Offboarding (art. 19(3)) against the real sshd and SeaweedFS S3: export of every kept snapshot with a hash
manifest, and the purge of a customer's repository with its deletion report (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from backup_support import SMALL_OPTIONS, MiB, connector, fresh_store, tree, write_tree

from cloudbackup import cli
from cloudbackup.backup import offboarding, records
from cloudbackup.backup.archiver import run_backup
from cloudbackup.backup.checker import verify
from cloudbackup.backup.format import customer_prefix
from cloudbackup.backup.repository import list_snapshots
from conftest import customer_yaml

pytestmark = pytest.mark.servers

OLD = time.time() - 3600      # mtimes well in the past: no settle wait, and a change is always a new mtime


def _write(root: Path, files: dict[str, bytes], mtime: float = OLD) -> None:
    write_tree(root, files)
    for rel in files:
        os.utime(root / rel, (mtime, mtime))


def _two_snapshots(stack, name: str):  # noqa: ANN202 - (store, [tree at run 1, tree at run 2], [snapshot ids])
    """A tree with Japanese names, an empty file and a multi-chunk file; backed up, changed, backed up again."""
    local = stack.sshd.root / "srv" / name
    first = {"契約書/見積書 2026.txt": "見積".encode() * 500, "empty.dat": b"",
             "big/動画.bin": os.urandom(3 * MiB + 17), "notes/メモ.md": b"# memo\n" * 100,
             "gone-later.txt": b"deleted before run 2"}
    _write(local, first)
    store = fresh_store(stack)
    one = run_backup(connector(stack.sshd), store, name, "run-1", [f"/srv/{name}"], [], options=SMALL_OPTIONS)
    (local / "gone-later.txt").unlink()
    second = {k: v for k, v in first.items() if k != "gone-later.txt"}
    changed = {"契約書/見積書 2026.txt": "改訂".encode() * 700, "new/追加.csv": b"a,b\n1,2\n",
               "big/動画.bin": first["big/動画.bin"][:MiB] + os.urandom(2 * MiB)}
    _write(local, changed, OLD + 600)
    second.update(changed)
    two = run_backup(connector(stack.sshd), store, name, "run-2", [f"/srv/{name}"], [], options=SMALL_OPTIONS)
    assert (one.errors, two.errors) == ([], [])
    return store, [first, second], [one.snapshot_id, two.snapshot_id]


def _check_manifest(out: Path, snapshot_ids: list[str], trees: list[dict[str, bytes]], name: str) -> dict:
    body = (out / offboarding.MANIFEST_NAME).read_bytes()
    # The manifest's own hash, in sha256sum form beside it.
    assert (out / (offboarding.MANIFEST_NAME + ".sha256")).read_text() == \
        f"{hashlib.sha256(body).hexdigest()}  {offboarding.MANIFEST_NAME}\n"
    manifest = json.loads(body)
    assert [s["snapshot_id"] for s in manifest["snapshots"]] == snapshot_ids and manifest["failed"] == []
    for line in manifest["files"]:
        exported = (out / line["path"]).read_bytes()
        assert hashlib.sha256(exported).hexdigest() == line["sha256"] and len(exported) == line["size"]
        assert int((out / line["path"]).stat().st_mtime) == line["mtime"]
    for sid, expected in zip(snapshot_ids, trees, strict=True):
        assert len([f for f in manifest["files"] if f["snapshot"] == sid]) == len(expected)
    # The customer's own check, with coreutils, in the export folder: every file of every snapshot.
    checked = subprocess.run(["sha256sum", "--check", "--strict", offboarding.SUMS_NAME], cwd=out,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(": OK") == sum(len(t) for t in trees)
    return manifest


def test_export_all_restores_each_snapshot_as_it_was_art_19_3(stack, tmp_path) -> None:
    """Art. 19(3): the data is returned: every kept snapshot, each file byte-identical to its moment's tree."""
    store, trees, ids = _two_snapshots(stack, "off-exp")
    result = offboarding.export_local(store, "off-exp", tmp_path / "export", threads=3)
    assert result.ok and [s["snapshot_id"] for s in result.snapshots] == ids
    for sid, expected in zip(ids, trees, strict=True):
        # The empty file is there (an empty file is still a file of the snapshot).
        assert tree(tmp_path / "export" / sid / "srv" / "off-exp") == expected
    assert (tmp_path / "export" / ids[0] / "srv" / "off-exp" / "empty.dat").stat().st_size == 0
    _check_manifest(tmp_path / "export", ids, trees, "off-exp")


def test_export_latest_over_sftp_through_the_cli_art_19_3(stack, tmp_path, connect_service) -> None:
    """`cloudbackup customer export --latest --to sftp:<conn>:/folder`: only the latest snapshot, on the server."""
    store, trees, ids = _two_snapshots(stack, "off-sftp")
    connect_service({"conn_type": "sqlite", "host": str(tmp_path / "unused.db")}, ["sftp_export"], bucket=store.bucket)
    code = cli.main(["customer", "export", "--customer", "off-sftp", "--to", "sftp:sftp_export:/exports/off-sftp",
                     "--latest"])
    assert code == 0
    out = stack.sshd.root / "exports" / "off-sftp"
    assert sorted(p.name for p in out.iterdir()) == sorted([ids[1], offboarding.MANIFEST_NAME, offboarding.SUMS_NAME,
                                                           offboarding.MANIFEST_NAME + ".sha256"])
    assert tree(out / ids[1] / "srv" / "off-sftp") == trees[1]
    _check_manifest(out, ids[1:], trees[1:], "off-sftp")


def test_export_names_the_file_it_could_not_export_and_fails(stack, tmp_path, capsys) -> None:
    """A damaged object: the export goes on with the other files, then names the broken one (and exits 1)."""
    store, _trees, ids = _two_snapshots(stack, "off-bad")
    big = [k for k, _ in store.list_keys(customer_prefix("off-bad") + "data/")]
    store.put_bytes(big[0], b"not the chunk that was stored")         # rot: a chunk of the large file
    result = offboarding.export_local(store, "off-bad", tmp_path / "export", threads=2)
    assert not result.ok
    assert all("/srv/off-bad/big/動画.bin" in f for f in result.failures), result.failures
    manifest = json.loads((tmp_path / "export" / offboarding.MANIFEST_NAME).read_bytes())
    assert manifest["failed"] == result.failures
    broken = {f.split(": ", 1)[0] for f in result.failures}       # the snapshots whose large file uses the chunk
    assert broken and {(f["snapshot"], f["exported"]) for f in manifest["files"] if f["path"].endswith("動画.bin")} \
        == {(sid, sid not in broken) for sid in ids}
    # The other files of both snapshots are there and check out.
    assert (tmp_path / "export" / ids[1] / "srv" / "off-bad" / "new" / "追加.csv").read_bytes() == b"a,b\n1,2\n"
    assert subprocess.run(["sha256sum", "--check", "--quiet", offboarding.SUMS_NAME],
                          cwd=tmp_path / "export").returncode == 0


def _backed_up(stack, store, name: str, files: dict[str, bytes]) -> None:
    _write(stack.sshd.root / "srv" / name, files)
    result = run_backup(connector(stack.sshd), store, name, "run-1", [f"/srv/{name}"], [], options=SMALL_OPTIONS)
    assert result.errors == []


def _versions(store, customer_id: str) -> list[tuple[str, str | None, int, bool]]:
    return list(store.list_versions(customer_prefix(customer_id)))


def test_purge_deletes_everything_and_records_the_report_art_19_3(stack, engine, database, tmp_path,
                                                                  connect_service, capsys) -> None:
    """Art. 19(3) deletion: zero objects left (LIST), one report row with the right count and bytes, kept after
    the data is gone; another customer in the same bucket untouched (art. 33); a second purge reports zero."""
    store = fresh_store(stack)
    _backed_up(stack, store, "off-gone", {"a/請求書.pdf": os.urandom(90_000), "b.bin": os.urandom(2 * MiB + 3)})
    # Its id starts with the purged one's: only the prefix's trailing slash keeps it apart.
    _backed_up(stack, store, "off-gone-2", {"keep/台帳.xlsx": os.urandom(50_000)})
    before = _versions(store, "off-gone")
    other = sorted(store.list_keys(customer_prefix("off-gone-2")))
    snapshots = list_snapshots(store, "off-gone")
    run_id = records.start_run(engine, "off-gone", "r-1")       # as the DAG records it
    records.record_snapshot(engine, run_id, "off-gone", snapshots[0], "m", file_count=2, total_bytes=1,
                            files_read=2, bytes_uploaded=1)
    connect_service(database, [], bucket=store.bucket)
    assert cli.main(["customer", "purge", "--customer", "off-gone", "--confirm", "off-gone-2"]) == 2
    assert cli.main(["customer", "purge", "--customer", "off-gone"]) == 2
    capsys.readouterr()
    assert cli.main(["customer", "purge", "--customer", "off-gone", "--dry-run"]) == 0
    preview = json.loads(capsys.readouterr().out.splitlines()[0])
    assert (preview["objects"], preview["bytes"], preview["locked"]) == (len(before), sum(s for *_, s, _ in before), 0)
    assert _versions(store, "off-gone") == before and offboarding.deletion_reports(engine, "off-gone") == []

    code = cli.main(["customer", "purge", "--customer", "off-gone", "--confirm", "off-gone", "--operator", "yamada",
                     "--report-json", str(tmp_path / "report.json")])

    assert code == 0
    assert _versions(store, "off-gone") == []
    assert sorted(store.list_keys(customer_prefix("off-gone-2"))) == other and verify(store, "off-gone-2").ok
    [report] = offboarding.deletion_reports(engine, "off-gone")
    assert (report.result, report.operator, report.via) == ("complete", "yamada", "cli")
    assert report.objects_deleted == len(before) and report.bytes_deleted == sum(s for _, _, s, _ in before)
    assert (report.objects_remaining, report.bytes_remaining, report.locked_until) == (0, 0, None)
    assert (report.snapshot_count, report.first_snapshot_id, report.last_snapshot_id) == (1, snapshots[0],
                                                                                          snapshots[-1])
    digest = hashlib.sha256("".join(f"{k}\t{v or 'null'}\t{s}\n" for k, v, s, _ in
                                    sorted(before, key=lambda t: (t[0], t[1] or "", t[2]))).encode()).hexdigest()
    assert report.keys_sha256 == digest
    assert json.loads((tmp_path / "report.json").read_text())["objects_deleted"] == len(before)
    # The run and snapshot rows stay (history, billing), but the snapshot is marked forgotten: the console no
    # longer lists or offers a snapshot whose data is gone.
    with engine.connect() as conn:
        forgotten = conn.execute(sa.text("SELECT forgotten_at FROM snapshots WHERE customer_id = 'off-gone'")).all()
    assert len(forgotten) == 1 and forgotten[0].forgotten_at is not None

    assert cli.main(["customer", "purge", "--customer", "off-gone", "--confirm", "off-gone"]) == 0
    first, again = offboarding.deletion_reports(engine, "off-gone")
    assert (again.result, again.objects_deleted, again.bytes_deleted, again.snapshot_count) == ("complete", 0, 0, 0)

    # The report outlives the data and cannot be rewritten.
    with pytest.raises(sa.exc.DBAPIError, match="deletion report"), engine.begin() as conn:
        conn.execute(sa.text("UPDATE deletion_reports SET objects_deleted = 0 WHERE id = :i"), {"i": first.id})
    with pytest.raises(sa.exc.DBAPIError, match="deletion report"), engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM deletion_reports"))
    assert cli.main(["customer", "deletion-report", "--customer", "off-gone", "--csv", str(tmp_path / "r.csv")]) == 0
    assert (tmp_path / "r.csv").read_text().count("\noff-gone,") == 2


def test_purge_refuses_a_wrong_confirmation_and_a_running_backup(stack, engine) -> None:
    """Nothing is deleted (and nothing recorded) unless --confirm repeats the id, nor while a run holds the lease."""
    store = fresh_store(stack)
    _backed_up(stack, store, "off-held", {"x.txt": b"x" * 1000})
    before = _versions(store, "off-held")
    with pytest.raises(offboarding.OffboardingRefused, match="not the customer id"):
        offboarding.purge(engine, store, "off-held", "off-hold", "tester")
    assert records.acquire_lease(engine, "off-held", "run-live", "worker:1", timedelta(minutes=5)) is None
    with pytest.raises(offboarding.OffboardingRefused, match="run-live"):
        offboarding.purge(engine, store, "off-held", "off-held", "tester")
    assert _versions(store, "off-held") == before and offboarding.deletion_reports(engine, "off-held") == []
    records.release_lease(engine, "off-held", "run-live")
    assert offboarding.purge(engine, store, "off-held", "off-held", "tester").result == "complete"
    # The purge released its own lease: the next backup run may start.
    assert records.current_lease(engine, "off-held") is None


def test_export_never_writes_among_the_customers_live_files_art_16(stack, tmp_path, registry_dir,
                                                                   connect_service, capsys) -> None:
    """On the customer's own server, an export folder inside a designated area is refused; outside, it goes."""
    name = "off-live"
    _write(stack.sshd.root / "srv" / name, {"台帳.txt": b"live data"})
    store = fresh_store(stack)
    run_backup(connector(stack.sshd), store, name, "run-1", [f"/srv/{name}"], [], options=SMALL_OPTIONS)
    (registry_dir / "customers" / f"{name}.yaml").write_text(
        customer_yaml(name, paths=[f"/srv/{name}"], conn_id="sftp_off_live"), encoding="utf-8")
    connect_service({"conn_type": "sqlite", "host": str(tmp_path / "unused.db")}, ["sftp_off_live"],
                    bucket=store.bucket)
    assert cli.main(["customer", "export", "--customer", name, "--to", f"sftp:sftp_off_live:/srv/{name}/out"]) == 2
    assert "designated areas" in capsys.readouterr().err
    assert sorted(p.name for p in (stack.sshd.root / "srv" / name).iterdir()) == ["台帳.txt"]
    assert cli.main(["customer", "export", "--customer", name, "--to", "sftp:sftp_off_live:/handover/off-live"]) == 0


@pytest.mark.parametrize("name", ["plain 名前.txt", "back\\slash.txt", "new\nline.txt"])
def test_sha256sums_lines_check_with_coreutils_even_for_odd_names(tmp_path, name: str) -> None:
    """SHA256SUMS must be what `sha256sum -c` reads, also for a name with a backslash or a newline."""
    (tmp_path / name).write_bytes(b"content")
    line = offboarding._sums_line(hashlib.sha256(b"content").hexdigest(), name)
    (tmp_path / "SUMS").write_text(line, encoding="utf-8")
    checked = subprocess.run(["sha256sum", "--check", "--strict", "SUMS"], cwd=tmp_path, capture_output=True)
    assert checked.returncode == 0, checked.stderr


def test_the_deletion_reports_are_an_ops_report_too(stack, engine) -> None:
    """`cloudbackup reports run deletion_reports` (and the console's reports) list the recorded purges."""
    from cloudbackup.console import reports

    store = fresh_store(stack)
    _backed_up(stack, store, "off-rep", {"r.txt": b"r" * 5000})
    done = offboarding.purge(engine, store, "off-rep", "off-rep", "suzuki")
    columns, rows = reports.run(engine, "deletion_reports", {})
    row = dict(zip(columns, rows[-1], strict=True))
    assert (row["customer_id"], row["result"], row["operator"]) == ("off-rep", "complete", "suzuki")
    assert (row["objects_deleted"], row["bytes_deleted"]) == (done.objects_deleted, done.bytes_deleted) != (0, 0)


def test_a_format_1_snapshot_exports_beside_format_2_ones_and_the_purge_takes_the_keys_too(stack, engine,
                                                                                           tmp_path) -> None:
    """Art. 19(3) on a repository written before format 2 and continued after it: the plaintext snapshot and the
    sealed one both export byte-identical; the purge leaves nothing, the wrapped data key included."""
    from test_encryption import _write_format_1  # the repository exactly as the code before format 2 wrote it

    name = "off-v1"
    local = stack.sshd.root / "srv" / name
    old = {"帳簿.txt": "帳簿".encode() * 300, "big.bin": os.urandom(2 * MiB + 5)}
    _write(local, old)
    store = fresh_store(stack)
    v1 = _write_format_1(store, name, local, f"/srv/{name}", old)
    new = {**old, "帳簿.txt": "改訂".encode() * 400}
    _write(local, {"帳簿.txt": new["帳簿.txt"]}, OLD + 60)
    v2 = run_backup(connector(stack.sshd), store, name, "run-2", [f"/srv/{name}"], [], options=SMALL_OPTIONS)
    assert list(store.list_keys(customer_prefix(name) + "keys/"))      # format 2 wrote the customer's key

    result = offboarding.export_local(store, name, tmp_path / "export")
    assert result.ok and [s["snapshot_id"] for s in result.snapshots] == [v1, v2.snapshot_id]
    assert tree(tmp_path / "export" / v1 / "srv" / name) == old
    assert tree(tmp_path / "export" / v2.snapshot_id / "srv" / name) == new
    _check_manifest(tmp_path / "export", [v1, v2.snapshot_id], [old, new], name)

    report = offboarding.purge(engine, store, name, name, "tester")
    assert (report.result, report.snapshot_count) == ("complete", 2)
    assert _versions(store, name) == [] and list(store.list_keys(customer_prefix(name) + "keys/")) == []
