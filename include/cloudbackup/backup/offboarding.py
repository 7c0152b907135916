"""Offboarding (art. 19(3)): a customer's snapshots exported with a hash manifest, and the purge of its repository.

`export` restores every kept snapshot (or the latest) into `<destination>/<snapshot id>/`, each file checked by
sha256 by the restorer, and writes `EXPORT-MANIFEST.json` (every file: snapshot, path, size, mtime, sha256),
`SHA256SUMS` (`sha256sum -c SHA256SUMS` in the export folder re-checks every file) and the manifest's own sha256.
`purge` deletes every object version under `customers/<id>/`, lists the prefix again to prove nothing is left, and
records a deletion report (table `deletion_reports`, migration 0010) that outlives the data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cloudbackup.backup import locks, records
from cloudbackup.backup import restorer as restoring
from cloudbackup.backup.format import customer_prefix
from cloudbackup.backup.repository import list_snapshots, load_manifest
from cloudbackup.backup.runcontrol import inside_designated_areas
from cloudbackup.clock import utcnow
from cloudbackup.edges.db import from_db_time, insert_returning_id, to_db_time
from cloudbackup.edges.s3 import ObjectStore
from cloudbackup.edges.sftp import SftpSession
from cloudbackup.registry.customers import CUSTOMER_ID

log = logging.getLogger(__name__)

MANIFEST_NAME = "EXPORT-MANIFEST.json"
SUMS_NAME = "SHA256SUMS"
EXPORT_FORMAT = "cloudbackup-export/1"


class OffboardingRefused(ValueError):
    """The request cannot be carried out as asked (ids differ, a run holds the customer, a bad id or target)."""


# --- export ----------------------------------------------------------------------------------------------------

@dataclass
class ExportResult:
    customer_id: str
    destination: str
    snapshots: list[dict] = field(default_factory=list)   # snapshot id, folder, files, bytes, links
    files: int = 0
    bytes: int = 0
    failures: list[str] = field(default_factory=list)     # "<snapshot>: <path>: why", files not exported intact
    manifest: str = ""
    manifest_sha256: str = ""

    @property
    def ok(self) -> bool:
        return not self.failures


class _Destination:
    """Where an export goes: a local folder, or a folder on an SFTP server over one session."""

    def __init__(self, local: Path | None = None, sftp: SftpSession | None = None, root: str = "") -> None:
        self.local, self.sftp, self.root = local, sftp, root

    def describe(self) -> str:
        return str(self.local) if self.local is not None else f"sftp:{self.root}"

    def target(self, folder: str, threads: int) -> restoring.LocalTarget | restoring.SftpTarget:
        if self.local is not None:
            return restoring.LocalTarget(self.local / folder, threads=threads)
        assert self.sftp is not None
        return restoring.SftpTarget(self.sftp, posixpath.join(self.root, folder))

    def mkdir(self, folder: str) -> None:
        if self.local is not None:
            (self.local / folder).mkdir(parents=True, exist_ok=True)
            return
        assert self.sftp is not None
        path = ""
        for part in posixpath.join(self.root, folder).strip("/").split("/"):
            path += "/" + part
            if self.sftp.lstat(path) is None:
                self.sftp.mkdir(path)

    def write(self, name: str, data: bytes) -> str:
        if self.local is not None:
            self.local.mkdir(parents=True, exist_ok=True)
            (self.local / name).write_bytes(data)
            return str(self.local / name)
        assert self.sftp is not None
        self.mkdir("")
        path = posixpath.join(self.root, name)
        with self.sftp.writer(path) as out:
            out.write(data)
        return f"sftp:{path}"


def _sums_line(digest: str, path: str) -> str:
    """One `sha256sum` line; a name with a backslash or newline is escaped the way coreutils does."""
    if "\\" in path or "\n" in path or "\r" in path:
        escaped = path.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        return f"\\{digest}  {escaped}\n"
    return f"{digest}  {path}\n"


def _export_into(store: ObjectStore, customer_id: str, dest: _Destination, snapshot_ids: list[str],
                 threads: int) -> ExportResult:
    result = ExportResult(customer_id, dest.describe())
    lines: list[dict] = []
    sums: list[str] = []
    for sid in snapshot_ids:
        manifest = load_manifest(store, customer_id, sid)
        if manifest is None:
            result.failures.append(f"{sid}: the snapshot's manifest is gone")
            continue
        done: dict = {"snapshot_id": sid, "folder": sid, "started_at": manifest.header.started_at,
                "finished_at": manifest.header.finished_at, "files": 0, "bytes": 0, "links": 0}
        bad: set[str] = set()
        if manifest.files:
            restored = restoring.restore(store, customer_id, dest.target(sid, threads), sid)
            done.update(files=restored.files, bytes=restored.bytes, links=restored.links)
            for path in restored.mismatches:
                bad.add(path)
                result.failures.append(f"{sid}: {path}: bytes differ from the manifest's sha256")
            for failure in restored.failures:
                bad.add(failure.split(": ", 1)[0])
                result.failures.append(f"{sid}: {failure}")
        else:
            dest.mkdir(sid)      # an empty snapshot is an empty folder, not a missing one
        for entry in manifest.files:
            relative = f"{sid}/{restoring.relative_target(entry.path)}"
            line: dict = {"snapshot": sid, "path": relative, "original_path": entry.path,
                    "type": "symlink" if entry.is_link else "file", "size": entry.size, "mtime": entry.mtime,
                    "mtime_utc": datetime.fromtimestamp(entry.mtime, tz=UTC).isoformat(),
                    "mode": entry.mode, "sha256": entry.sha256, "exported": entry.path not in bad}
            if entry.is_link:
                line["target"] = entry.target
            elif entry.path not in bad:
                sums.append(_sums_line(entry.sha256, relative))
            lines.append(line)
        result.snapshots.append(done)
        result.files += int(done["files"])
        result.bytes += int(done["bytes"])
    document = {"format": EXPORT_FORMAT, "customer_id": customer_id, "exported_at": utcnow().isoformat(),
                "bucket": store.bucket, "snapshots": result.snapshots, "failed": result.failures, "files": lines}
    body = json.dumps(document, ensure_ascii=False, indent=1).encode() + b"\n"
    result.manifest_sha256 = hashlib.sha256(body).hexdigest()
    result.manifest = dest.write(MANIFEST_NAME, body)
    dest.write(SUMS_NAME, "".join(sums).encode())
    dest.write(MANIFEST_NAME + ".sha256", _sums_line(result.manifest_sha256, MANIFEST_NAME).encode())
    return result


def chosen_snapshots(store: ObjectStore, customer_id: str, latest_only: bool) -> list[str]:
    """Every kept snapshot, oldest first (what prune kept is what exists), or only the latest one."""
    found = list_snapshots(store, customer_id)
    if not found:
        raise OffboardingRefused(f"{customer_id} has no snapshot to export")
    return found[-1:] if latest_only else found


def export_local(store: ObjectStore, customer_id: str, folder: Path, latest_only: bool = False,
                 threads: int = 4) -> ExportResult:
    """Export into a local folder: `<folder>/<snapshot id>/<original path>` plus the manifest files."""
    return _export_into(store, customer_id, _Destination(local=folder.resolve()),
                        chosen_snapshots(store, customer_id, latest_only), threads)


def export_sftp(store: ObjectStore, customer_id: str, session: AbstractContextManager[SftpSession], folder: str,
                latest_only: bool = False, live_areas: Sequence[str] = ()) -> ExportResult:
    """Export onto an SFTP server below `folder` (one session), laid out as `export_local`. `live_areas`: the
    customer's designated areas when the server is the customer's own; a folder inside one is refused (art. 16:
    the export must not write among, or over, the customer's live files)."""
    if not folder.startswith("/") or posixpath.normpath(folder) == "/":
        raise OffboardingRefused(f"export folder {folder!r}: give an absolute folder other than /")
    if live_areas and inside_designated_areas(folder, list(live_areas)):
        raise OffboardingRefused(f"export folder {folder!r} lies in the customer's designated areas {list(live_areas)} "
                                 "(its live data): export to a folder outside them")
    snapshot_ids = chosen_snapshots(store, customer_id, latest_only)
    with session as sftp:
        return _export_into(store, customer_id, _Destination(sftp=sftp, root=posixpath.normpath(folder)),
                            snapshot_ids, 1)


# --- purge and the deletion report -------------------------------------------------------------------------------

COMPLETE, PARTIAL, FAILED = "complete", "partial", "failed"
_BATCH = 1000          # one S3 DeleteObjects request; the lease is renewed between batches
_REASONS = 20          # remaining versions whose lock is spelled out in the report's detail


@dataclass
class DeletionReport:
    customer_id: str
    bucket: str
    operator: str
    via: str
    started_at: datetime
    finished_at: datetime
    result: str                      # complete | partial | failed
    objects_deleted: int             # object versions holding data
    bytes_deleted: int
    markers_deleted: int             # delete markers (no data) removed too
    objects_remaining: int           # versions the verifying LIST still found (markers included)
    bytes_remaining: int
    locked_until: datetime | None    # the latest retention among what remains: when a new purge can finish
    snapshot_count: int
    first_snapshot_id: str | None
    last_snapshot_id: str | None
    keys_sha256: str                 # sha256 of the sorted "key<TAB>version<TAB>size\n" lines deleted
    detail: str = ""
    id: int | None = None
    remaining: list[str] = field(default_factory=list)    # "key (version): why" of the first few; in detail too

    def as_dict(self) -> dict:
        out = asdict(self)
        for name in ("started_at", "finished_at", "locked_until"):
            out[name] = out[name].isoformat() if out[name] else None
        return out


def _keys_digest(lines: list[tuple[str, str | None, int]]) -> str:
    digest = hashlib.sha256()
    for key, version, size in sorted(lines, key=lambda t: (t[0], t[1] or "", t[2])):
        digest.update(f"{key}\t{version or 'null'}\t{size}\n".encode())
    return digest.hexdigest()


def _held_lease(engine: Engine, customer_id: str, ttl: timedelta) -> tuple[str, Callable[[], None]]:
    """Take the customer's run lease for the purge (no backup run starts while its objects are deleted); returns
    the lease's key and its renewal. Refuses while a run holds it."""
    import os
    import socket

    key = f"purge-{secrets.token_hex(6)}"
    holder = records.acquire_lease(engine, customer_id, key, f"{socket.gethostname()}:{os.getpid()}", ttl)
    if holder is not None:
        raise OffboardingRefused(f"{customer_id}: a backup run holds the customer ({holder.describe()}); purge "
                                 "refused, nothing deleted. Try again when it has ended")

    def renew() -> None:
        records.renew_lease(engine, customer_id, key, None, ttl)

    return key, renew


def purge(engine: Engine, store: ObjectStore, customer_id: str, confirm: str, operator: str, via: str = "cli",
          lease_ttl: timedelta = timedelta(minutes=10), bypass_governance: bool = False) -> DeletionReport:
    """Delete every object version under the customer's prefix, verify by LIST, record the deletion report.

    Refused (nothing deleted, nothing recorded) unless `confirm` equals `customer_id`, or while a backup run
    holds the customer's lease. Versions S3 refuses to delete (object lock, legal hold) stay, and the report says
    `partial`, how many, and until when the locks last; it never says `complete` while anything is listed.
    """
    if confirm != customer_id:
        raise OffboardingRefused(f"--confirm {confirm!r} is not the customer id {customer_id!r}: nothing deleted")
    if not re.fullmatch(CUSTOMER_ID, customer_id):
        raise OffboardingRefused(f"{customer_id!r} is not a customer id: nothing deleted")
    prefix = customer_prefix(customer_id)
    started = utcnow()
    lease_key, renew = _held_lease(engine, customer_id, lease_ttl)
    try:
        report = _purge(store, customer_id, prefix, started, operator, via, renew, bypass_governance)
    except Exception as exc:
        # What was deleted before the failure is unknown in detail: the report says failed and why; run it again.
        report = DeletionReport(customer_id, store.bucket, operator, via, started, utcnow(), FAILED, 0, 0, 0, 0, 0,
                                None, 0, None, None, "",
                                f"purge interrupted, counts unknown: {type(exc).__name__}: {exc}"[:2000])
        record_report(engine, report)
        raise
    finally:
        records.release_lease(engine, customer_id, lease_key)
    record_report(engine, report)
    # The run and snapshot rows stay (billing and the runs' history need them); what is gone is marked forgotten,
    # so the console no longer lists or offers those snapshots.
    records.mark_forgotten(engine, customer_id, set(list_snapshots(store, customer_id)))
    log.info("%s: purge %s by %s: %d objects (%d bytes) deleted, %d remaining", customer_id, report.result, operator,
             report.objects_deleted, report.bytes_deleted, report.objects_remaining)
    return report


def purge_preview(store: ObjectStore, customer_id: str, now: datetime | None = None) -> dict:
    """What a purge would delete now, and what it could not (locks): nothing is deleted or recorded."""
    if not re.fullmatch(CUSTOMER_ID, customer_id):
        raise OffboardingRefused(f"{customer_id!r} is not a customer id")
    now = now or utcnow()
    snapshots = list_snapshots(store, customer_id)
    versions = list(store.list_versions(customer_prefix(customer_id)))
    data = [(k, v) for k, v, _, marker in versions if not marker]
    with ThreadPoolExecutor(8, thread_name_prefix="retention") as pool:
        dates = list(pool.map(lambda kv: _retention(store, kv[0], kv[1]), data))
    locked = [d for d in dates if d is not None and d > now]
    return {"customer_id": customer_id, "bucket": store.bucket, "objects": len(data),
            "bytes": sum(size for _, _, size, marker in versions if not marker),
            "markers": len(versions) - len(data), "locked": len(locked),
            "locked_until": max(locked).isoformat() if locked else None, "snapshot_count": len(snapshots),
            "first_snapshot_id": snapshots[0] if snapshots else None,
            "last_snapshot_id": snapshots[-1] if snapshots else None}


def _batches(items: list[tuple[str, str | None, int, bool]]) -> Iterator[list[tuple[str, str | None, int, bool]]]:
    for at in range(0, len(items), _BATCH):
        yield items[at:at + _BATCH]


def _purge(store: ObjectStore, customer_id: str, prefix: str, started: datetime, operator: str, via: str,
           renew: Callable[[], None], bypass_governance: bool) -> DeletionReport:
    snapshots = list_snapshots(store, customer_id)
    versions = list(store.list_versions(prefix))
    refused: dict[tuple[str, str | None], tuple[str, str]] = {}
    for batch in _batches(versions):
        refused.update(store.remove_versions([(k, v) for k, v, _, _ in batch], bypass_governance))
        renew()
    remaining = list(store.list_versions(prefix))      # the proof: what S3 still lists under the prefix
    renew()
    # Deleted is what was listed before and is not listed now (not merely what S3 did not refuse).
    still = {(k, v) for k, v, _, _ in remaining}
    gone = [(k, v, size, marker) for k, v, size, marker in versions if (k, v) not in still]
    now = utcnow()
    held = [(k, v) for k, v, _, marker in remaining if not marker]
    with ThreadPoolExecutor(8, thread_name_prefix="retention") as pool:
        dates = dict(zip(held, pool.map(lambda kv: _retention(store, kv[0], kv[1]), held), strict=True))
    renew()
    until = max((d for d in dates.values() if d is not None and d > now), default=None)
    why: list[str] = []
    for key, version, _size, marker in remaining[:_REASONS]:
        # The first few are explained (retention, legal hold); the date above covers them all.
        reason = "delete marker" if marker else locks.version_lock(store, key, version, now)
        code = refused.get((key, version))
        why.append(f"{key} ({version or 'null'}): {reason or (code[0] if code else 'still listed')}")
    result = COMPLETE if not remaining else PARTIAL
    detail = ("nothing left under " + prefix) if not remaining else (
        f"{len(remaining)} version(s) remain under {prefix}"
        + (f", locked until {until.isoformat()}: purge again after that date" if until else "")
        + "; " + "; ".join(why) + (" …" if len(remaining) > len(why) else ""))
    return DeletionReport(
        customer_id, store.bucket, operator, via, started, utcnow(), result,
        objects_deleted=sum(1 for *_, marker in gone if not marker),
        bytes_deleted=sum(size for _, _, size, marker in gone if not marker),
        markers_deleted=sum(1 for *_, marker in gone if marker),
        objects_remaining=len(remaining), bytes_remaining=sum(size for _, _, size, _ in remaining),
        locked_until=until, snapshot_count=len(snapshots),
        first_snapshot_id=snapshots[0] if snapshots else None, last_snapshot_id=snapshots[-1] if snapshots else None,
        keys_sha256=_keys_digest([(k, v, size) for k, v, size, _ in gone]), detail=detail, remaining=why)


def _retention(store: ObjectStore, key: str, version: str | None) -> datetime | None:
    try:
        found = store.retention(key, version)
    except Exception:  # noqa: BLE001 - a bucket without object lock answers an error: no retention
        return None
    return found[1] if found else None


_COLUMNS = ("customer_id", "started_at", "finished_at", "operator", "via", "bucket", "result", "objects_deleted",
            "bytes_deleted", "markers_deleted", "objects_remaining", "bytes_remaining", "locked_until",
            "snapshot_count", "first_snapshot_id", "last_snapshot_id", "keys_sha256", "detail")


def record_report(engine: Engine, report: DeletionReport) -> int:
    """Insert the report (once; the table refuses changes); returns its id."""
    values = {c: getattr(report, c) for c in _COLUMNS}
    for name in ("started_at", "finished_at", "locked_until"):
        values[name] = to_db_time(values[name]) if values[name] else None
    with engine.begin() as conn:
        names, params = ", ".join(_COLUMNS), ", ".join(":" + c for c in _COLUMNS)
        report.id = insert_returning_id(conn, f"INSERT INTO deletion_reports ({names}) VALUES ({params})", values)
    return report.id


def deletion_reports(engine: Engine, customer_id: str | None = None) -> list[DeletionReport]:
    """The recorded purges (of one customer, or all), oldest first."""
    where, params = ("WHERE customer_id = :c", {"c": customer_id}) if customer_id else ("", {})
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT id, {', '.join(_COLUMNS)} FROM deletion_reports {where} "
                                    "ORDER BY finished_at, id"), params).mappings().all()
    out = []
    for row in rows:
        values = dict(row)
        for name in ("started_at", "finished_at", "locked_until"):
            values[name] = from_db_time(values[name])
        out.append(DeletionReport(**values))
    return out


def report_text(report: DeletionReport) -> str:
    """The report as the operator (and the customer, on request) reads it."""
    lines = [
        f"deletion report #{report.id} — customer {report.customer_id} (art. 19(3))",
        f"  result:      {report.result.upper()}",
        f"  when (UTC):  {report.started_at.isoformat()} → {report.finished_at.isoformat()}",
        f"  by:          {report.operator} (via {report.via})",
        f"  bucket:      {report.bucket}, prefix customers/{report.customer_id}/",
        f"  deleted:     {report.objects_deleted} object version(s), {report.bytes_deleted} bytes "
        f"(+{report.markers_deleted} delete marker(s))",
        f"  remaining:   {report.objects_remaining} version(s), {report.bytes_remaining} bytes"
        + (f", locked until {report.locked_until.isoformat()}" if report.locked_until else ""),
        f"  snapshots:   {report.snapshot_count}"
        + (f" ({report.first_snapshot_id} … {report.last_snapshot_id})" if report.snapshot_count else ""),
        f"  keys sha256: {report.keys_sha256}",
        f"  detail:      {report.detail}",
    ]
    return "\n".join(lines) + "\n"
