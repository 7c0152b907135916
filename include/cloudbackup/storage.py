"""S3 edge (MinIO in production, SeaweedFS in tests) through the minio client, and safe object keys."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import BinaryIO

from minio import Minio
from minio.error import S3Error

from cloudbackup.connections import S3Endpoint

PART_SIZE = 16 * 1024 * 1024


class UnsafeKey(ValueError):
    """A remote name that would escape its customer's prefix."""


def customer_prefix(customer_id: str) -> str:
    return f"customers/{customer_id}/"


def object_key(customer_id: str, *parts: str) -> str:
    """A key under the customer's prefix; refuses any part that could climb out of it."""
    segments: list[str] = []
    for part in parts:
        for seg in part.split("/"):
            if seg in ("", "."):
                continue
            if seg == ".." or "\\" in seg or "\x00" in seg:
                raise UnsafeKey(f"unsafe path segment {seg!r} in {part!r}")
            segments.append(seg)
    if not segments:
        raise UnsafeKey(f"empty object path {parts!r}")
    key = customer_prefix(customer_id) + "/".join(segments)
    if posixpath.normpath(key) != key or not key.startswith(customer_prefix(customer_id)):
        raise UnsafeKey(f"object key {key!r} leaves the prefix of {customer_id}")
    return key


class ObjectStore:
    """The few S3 operations the service needs, on one bucket."""

    def __init__(self, ep: S3Endpoint) -> None:
        self.bucket = ep.bucket
        self.client = Minio(ep.endpoint, access_key=ep.access_key, secret_key=ep.secret_key,
                            secure=ep.secure, region=ep.region)

    def ensure_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)

    def put_stream(self, key: str, stream: BinaryIO, metadata: dict[str, str] | None = None) -> None:
        """Stream of unknown length: multipart in PART_SIZE pieces, memory bounded by the part size."""
        self.client.put_object(self.bucket, key, stream, length=-1, part_size=PART_SIZE,
                               metadata=metadata)

    def get_bytes(self, key: str) -> bytes:
        resp = self.client.get_object(self.bucket, key)
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def list_keys(self, prefix: str) -> Iterator[tuple[str, int]]:
        for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
            yield obj.object_name, obj.size or 0

    def exists(self, key: str) -> bool:
        try:
            self.client.stat_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise
        return True
