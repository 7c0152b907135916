"""S3 edge (MinIO in production, SeaweedFS in tests): the few bucket operations the service needs, via minio."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import BinaryIO, cast

import urllib3
from minio import Minio
from minio import api as minio_api
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from cloudbackup.edges.connections import S3Endpoint

PART_SIZE = 16 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024
# The user metadata by which callers record the sha256 (hex) of the body they PUT.
SHA256_METADATA = "x-amz-meta-sha256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"

# Over plain HTTP minio signs the payload: it hashes every body once more (x-amz-content-sha256). A caller
# that records the body's sha256 in the metadata has just computed it; the signature reuses it (one sha256
# pass less per 8 MiB chunk). AWS and MinIO check it against the body [docs]; SeaweedFS 4.48 does not (tested),
# so the value must be, as the callers make it, the sha256 of exactly these bytes. A sealed chunk, which its GCM
# tag authenticates, is not hashed at all: `put_bytes(..., unsigned_payload=True)`.
_signing = threading.local()
_minio_sha256_hash = minio_api.sha256_hash


def _sha256_hash(data: str | bytes | bytearray | None) -> str:
    known = getattr(_signing, "known", None)
    if known is not None and data is known[0]:
        return known[1]
    return _minio_sha256_hash(cast(bytes | None, data))   # hashlib takes a bytearray too


minio_api.sha256_hash = _sha256_hash


class _Whole:
    """A reader handing out its buffer itself: io.BytesIO.read would copy every part once more."""

    def __init__(self, data: bytes | bytearray) -> None:
        self.data: bytes | bytearray | None = data

    def read(self, size: int = -1) -> bytes | bytearray:
        data, self.data = self.data, None
        if data is None:
            return b""
        if 0 <= size < len(data):
            raise ValueError("_Whole is read in one piece")
        return data


def is_missing(exc: BaseException) -> bool:
    """The error says the object does not exist (as opposed to S3 being down or refusing)."""
    return isinstance(exc, S3Error) and exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound")


class ObjectStore:
    """The few S3 operations the service needs, on one bucket."""

    def __init__(self, ep: S3Endpoint) -> None:
        self.bucket = ep.bucket
        # Several upload threads share the client: a pool as large as the parallelism avoids reconnects.
        http = urllib3.PoolManager(maxsize=16, retries=urllib3.Retry(total=3, backoff_factor=0.2,
                                                                     status_forcelist=[500, 502, 503, 504]),
                                   timeout=urllib3.Timeout(connect=30, read=300))
        self.client = Minio(ep.endpoint, access_key=ep.access_key, secret_key=ep.secret_key,
                            secure=ep.secure, region=ep.region, http_client=http)

    def ensure_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)

    def put_bytes(self, key: str, data: bytes | bytearray, metadata: dict[str, str] | None = None, *,
                  unsigned_payload: bool = False) -> None:
        """One PUT (no multipart) of a buffer the caller already holds, without copying it again.

        `unsigned_payload` signs the request without hashing the body (x-amz-content-sha256: UNSIGNED-PAYLOAD, what
        minio itself sends over TLS): for bodies that carry their own authentication (a sealed blob's GCM tag, checked
        by every read), so no sha256 pass over them is spent on the request.
        """
        # minio only calls read() on the body; its metadata type (values str | list | tuple) rejects a dict[str, str].
        recorded = UNSIGNED_PAYLOAD if unsigned_payload else (metadata or {}).get(SHA256_METADATA)
        _signing.known = (data, recorded) if recorded else None
        try:
            self.client.put_object(self.bucket, key, cast(BinaryIO, _Whole(data)), len(data),
                                   part_size=max(MIN_PART_SIZE, len(data)), metadata=metadata)  # type: ignore[arg-type]
        finally:
            _signing.known = None

    def get_bytes(self, key: str, offset: int = 0, length: int = 0) -> bytes:
        return b"".join(self.iter_range(key, offset, length))

    def iter_range(self, key: str, offset: int = 0, length: int = 0, piece: int = 1024 * 1024) -> Iterator[bytes]:
        """The object's bytes (or `length` bytes from `offset`; 0 = to the end) in bounded pieces."""
        resp = self.client.get_object(self.bucket, key, offset=offset, length=length)
        try:
            yield from resp.stream(piece)
        finally:
            resp.close()
            resp.release_conn()

    def iter_views(self, key: str, offset: int = 0, length: int = 0, piece: int = 256 * 1024) -> Iterator[memoryview]:
        """Like `iter_range`, but every piece is read straight from the socket into one reused buffer.

        Each view is valid only until the next one is asked for (consume it, or copy it). No allocation per
        piece: a new bytes object of 1 MiB per read is an mmap, page faults and munmap each time, which cost
        a restore more CPU than the download itself.
        """
        resp = self.client.get_object(self.bucket, key, offset=offset, length=length)
        try:
            raw = getattr(resp, "_fp", None)       # http.client.HTTPResponse: readinto from the socket
            if raw is None or resp.headers.get("content-encoding") or not hasattr(raw, "readinto"):
                for data in resp.stream(piece):
                    yield memoryview(data)
                return
            view = memoryview(bytearray(piece))
            while n := raw.readinto(view):
                yield view[:n]
        finally:
            resp.close()
            resp.release_conn()

    def remove(self, key: str) -> None:
        self.client.remove_object(self.bucket, key)

    def list_folders(self, prefix: str) -> list[str]:
        """The "folders" right below `prefix` (common prefixes of a non-recursive LIST), e.g. each customer's."""
        return sorted(o.object_name for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=False)
                      if o.is_dir)

    def metadata(self, key: str) -> dict[str, str]:
        """User metadata of the object, lower-cased names without the x-amz-meta- prefix."""
        stat = self.client.stat_object(self.bucket, key)
        out = {}
        for name, value in (stat.metadata or {}).items():
            lower = name.lower()
            if lower.startswith("x-amz-meta-"):
                out[lower.removeprefix("x-amz-meta-")] = value
        return out

    def list_keys(self, prefix: str) -> Iterator[tuple[str, int]]:
        for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
            yield obj.object_name, obj.size or 0

    # -- listing with times, and deletes in batches (prune) ---------------------------------------------------
    def list_detailed(self, prefix: str) -> Iterator[tuple[str, int, datetime]]:
        """Every object under `prefix`: key, size and LastModified (UTC), as the server lists them."""
        for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
            modified = obj.last_modified or datetime.now(UTC)   # a server without it: treated as brand new
            yield obj.object_name, obj.size or 0, modified.astimezone(UTC)

    def remove_many(self, keys: Iterable[str]) -> dict[str, tuple[str, str]]:
        """DELETE the keys, up to 1,000 per request (S3 DeleteObjects); returns the refused ones as
        key → (S3 error code, message). A key already gone counts as deleted (S3 answers success)."""
        refused: dict[str, tuple[str, str]] = {}
        for error in self.client.remove_objects(self.bucket, (DeleteObject(k) for k in keys)):
            refused[error.name or ""] = (error.code, error.message or "")
        return refused

    # -- object lock and versions (immutability, customer purge; docs/object-lock.md) --------------------------
    def ensure_locked_bucket(self) -> None:
        """Create the bucket with object lock enabled (which turns versioning on for good) if it is missing.
        An existing bucket is left as it is: `object_lock_enabled` says what it supports."""
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket, object_lock=True)

    def object_lock_enabled(self) -> bool:
        """Whether the bucket has object lock enabled (S3 answers an error for a bucket without it)."""
        try:
            self.client.get_object_lock_config(self.bucket)
        except S3Error as exc:
            if exc.code in ("ObjectLockConfigurationNotFoundError", "InvalidRequest", "NoSuchObjectLockConfiguration"):
                return False
            raise
        return True

    def put_retained(self, key: str, data: bytes | bytearray, until: datetime, mode: str = "COMPLIANCE",
                     metadata: dict[str, str] | None = None) -> str | None:
        """`put_bytes` with an object-lock retention set in the same PUT (no moment where the version is unlocked);
        returns the new version id."""
        from minio.retention import Retention

        recorded = (metadata or {}).get(SHA256_METADATA)
        _signing.known = (data, recorded) if recorded else None     # as put_bytes: no second sha256 of the body
        try:
            written = self.client.put_object(self.bucket, key, cast(BinaryIO, _Whole(data)), len(data),
                                             part_size=max(MIN_PART_SIZE, len(data)),
                                             metadata=metadata,  # type: ignore[arg-type]
                                             retention=Retention(mode, until.astimezone(UTC)))
        finally:
            _signing.known = None
        return written.version_id

    def retain(self, key: str, until: datetime, mode: str = "COMPLIANCE", version_id: str | None = None) -> None:
        """Set (or extend) a version's retention; the latest version without `version_id`. S3 refuses to shorten
        a COMPLIANCE retention or to weaken its mode (403 AccessDenied)."""
        from minio.retention import Retention

        self.client.set_object_retention(self.bucket, key, Retention(mode, until.astimezone(UTC)),
                                         version_id=version_id)

    def retention(self, key: str, version_id: str | None = None) -> tuple[str, datetime] | None:
        """(mode, retain-until in UTC) of a version (the latest without `version_id`), None when it has none."""
        try:
            found = self.client.get_object_retention(self.bucket, key, version_id=version_id)
        except S3Error as exc:
            if exc.code in ("NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError"):
                return None
            raise
        if found is None or found.retain_until_date is None or found.mode is None:
            return None
        return str(found.mode), found.retain_until_date.astimezone(UTC)

    def legal_hold(self, key: str, version_id: str | None = None) -> bool:
        """Whether a version is under legal hold (SeaweedFS answers NoSuchObjectLegalHold for one never held)."""
        try:
            return bool(self.client.is_object_legal_hold_enabled(self.bucket, key, version_id=version_id))
        except S3Error as exc:
            if exc.code in ("NoSuchObjectLegalHold", "NoSuchObjectLockConfiguration"):
                return False
            raise

    def list_versions(self, prefix: str) -> Iterator[tuple[str, str | None, int, bool]]:
        """Every version under `prefix`, delete markers included: (key, version id, size, is delete marker). On a
        bucket without versioning each object is one version (id None or "null")."""
        for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True, include_version=True):
            yield obj.object_name, obj.version_id, obj.size or 0, bool(obj.is_delete_marker)

    def remove_versions(self, versions: Iterable[tuple[str, str | None]],
                        bypass_governance: bool = False) -> dict[tuple[str, str | None], tuple[str, str]]:
        """DELETE exact versions, up to 1,000 per request; returns the refused ones as (key, version id) →
        (S3 error code, message): a version under retention or legal hold is refused (AccessDenied)."""
        refused: dict[tuple[str, str | None], tuple[str, str]] = {}
        wanted = (DeleteObject(k, v if v and v != "null" else None) for k, v in versions)
        for error in self.client.remove_objects(self.bucket, wanted, bypass_governance_mode=bypass_governance):
            refused[(error.name or "", error.version_id)] = (error.code or "", error.message or "")
        return refused

    def versioned(self) -> bool:
        """Whether the bucket keeps versions (versioning enabled or suspended; object lock turns it on): a plain
        DELETE there only hides an object behind a delete marker, and the bytes stay."""
        status = self.client.get_bucket_versioning(self.bucket).status
        return status in ("Enabled", "Suspended")

    def list_version_details(self, prefix: str) -> Iterator[tuple[str, str | None, int, datetime | None, bool, bool]]:
        """Every version under `prefix`: (key, version id, size, last modified, is latest, is delete marker)."""
        for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True, include_version=True):
            yield (obj.object_name or "", obj.version_id, obj.size or 0, obj.last_modified,
                   (obj.is_latest or "").lower() == "true", bool(obj.is_delete_marker))
