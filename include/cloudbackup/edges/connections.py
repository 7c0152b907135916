"""Airflow connections → the plain endpoint settings the edges take (secrets never logged)."""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from cloudbackup.edges import db

DB_CONN_ID = os.environ.get("CLOUDBACKUP_DB_CONN_ID", "cloudbackup_db")
S3_CONN_ID = os.environ.get("CLOUDBACKUP_S3_CONN_ID", "cloudbackup_s3")
SMTP_CONN_ID = os.environ.get("CLOUDBACKUP_SMTP_CONN_ID", "cloudbackup_smtp")
MASTER_KEY_CONN_ID = os.environ.get("CLOUDBACKUP_MASTER_KEY_CONN_ID", "cloudbackup_master_key")


@dataclass(frozen=True)
class SftpEndpoint:
    host: str
    port: int
    username: str
    host_key: str = field(repr=False)          # "ssh-ed25519 AAAA…": the only key accepted
    private_key: str | None = field(default=None, repr=False)
    key_file: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class S3Endpoint:
    endpoint: str                               # host:port
    secure: bool
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    bucket: str = "cloudbackup"
    region: str = "us-east-1"


@dataclass(frozen=True)
class SmtpEndpoint:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    ssl: bool = False


@dataclass(frozen=True)
class MasterKey:
    """The key that wraps every customer's data key: an id (named in each key file) and 32 secret bytes."""

    key_id: str
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class MasterKeys:
    """The current master key (wraps new and rotated data keys) and older ones still accepted for reading."""

    current: MasterKey
    previous: tuple[MasterKey, ...] = ()

    def by_id(self, key_id: str) -> MasterKey | None:
        return next((k for k in (self.current, *self.previous) if k.key_id == key_id), None)


class MasterKeyMissing(RuntimeError):
    """No master key is configured: the service refuses to store customer data unencrypted."""


_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _master_key(key_id: str, b64: str, where: str) -> MasterKey:
    if not _KEY_ID.match(key_id or ""):
        raise ValueError(f"{where}: the master key id must be 1-64 of A-Z a-z 0-9 . _ - (got {key_id!r})")
    try:
        key = base64.b64decode(b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where}: master key {key_id!r} is not valid base64") from None
    if len(key) != 32:
        raise ValueError(f"{where}: master key {key_id!r} must be 32 bytes (base64 of 32 random bytes), "
                         f"got {len(key)}")
    return MasterKey(key_id, key)


def master_keys(conn_id: str = MASTER_KEY_CONN_ID) -> MasterKeys:
    """The master keys: environment CLOUDBACKUP_MASTER_KEY (+ _ID, _PREVIOUS) when set, else the connection.

    Connection `cloudbackup_master_key`: password = base64 of 32 random bytes, extra `key_id` (required) and
    `previous` (a list of {"key_id", "key"}: keys still accepted for unwrapping, e.g. during a rotation).
    Environment: CLOUDBACKUP_MASTER_KEY (base64), CLOUDBACKUP_MASTER_KEY_ID, and CLOUDBACKUP_MASTER_KEY_PREVIOUS
    as `id:base64,id:base64`. Neither → MasterKeyMissing (never a silent fall-back to plaintext).
    """
    env = os.environ.get("CLOUDBACKUP_MASTER_KEY")
    if env:
        where = "environment CLOUDBACKUP_MASTER_KEY"
        current = _master_key(os.environ.get("CLOUDBACKUP_MASTER_KEY_ID", ""), env, where)
        from_env: list[MasterKey] = []
        for item in filter(None, os.environ.get("CLOUDBACKUP_MASTER_KEY_PREVIOUS", "").split(",")):
            key_id, _, b64 = item.strip().partition(":")
            from_env.append(_master_key(key_id, b64, "environment CLOUDBACKUP_MASTER_KEY_PREVIOUS"))
        return MasterKeys(current, tuple(from_env))
    try:
        c = _connection(conn_id)
    except Exception as exc:  # noqa: BLE001 - Airflow raises its own NotFound type; any failure means "none"
        raise MasterKeyMissing(
            f"no master key: set the Airflow connection {conn_id!r} (password = base64 of 32 random bytes, "
            "extra key_id) or CLOUDBACKUP_MASTER_KEY and CLOUDBACKUP_MASTER_KEY_ID; customer data is never "
            f"stored unencrypted ({type(exc).__name__})") from None
    where = f"connection {conn_id!r}"
    extra = c.extra_dejson
    if not c.password:
        raise MasterKeyMissing(f"{where}: the password (base64 master key) is empty")
    current = _master_key(str(extra.get("key_id", "")), c.password, where)
    previous = tuple(_master_key(str(p.get("key_id", "")), str(p.get("key", "")), where + " extra previous")
                     for p in extra.get("previous", []) or [])
    return MasterKeys(current, previous)


def _connection(conn_id: str) -> Any:
    # Imported here so the package imports without Airflow configured (unit tests, CLI help).
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


def sftp_endpoint(conn_id: str) -> SftpEndpoint:
    c = _connection(conn_id)
    extra = c.extra_dejson
    host_key = extra.get("host_key")
    if not host_key:
        raise ValueError(f"connection {conn_id!r}: extra field 'host_key' is required; "
                         "host keys are verified, never accepted blindly")
    if str(extra.get("no_host_key_check", "false")).lower() == "true":
        raise ValueError(f"connection {conn_id!r}: no_host_key_check is not allowed")
    if not (extra.get("private_key") or extra.get("key_file") or c.password):
        raise ValueError(f"connection {conn_id!r}: needs extra 'private_key' or 'key_file', or a password")
    return SftpEndpoint(host=c.host or "", port=int(c.port or 22), username=c.login or "",
                        host_key=host_key, private_key=extra.get("private_key"),
                        key_file=extra.get("key_file"), password=c.password or None)


def s3_endpoint(conn_id: str = S3_CONN_ID) -> S3Endpoint:
    """Same connection shape as Airflow's amazon provider uses for MinIO (endpoint_url in extra)."""
    c = _connection(conn_id)
    extra = c.extra_dejson
    url = extra.get("endpoint_url")
    if not url or "://" not in url:
        raise ValueError(f"connection {conn_id!r}: extra 'endpoint_url' (http[s]://host:port) is required")
    scheme, _, hostport = url.partition("://")
    return S3Endpoint(endpoint=hostport.rstrip("/"), secure=scheme == "https",
                      access_key=c.login or "", secret_key=c.password or "",
                      bucket=extra.get("bucket", "cloudbackup"), region=extra.get("region_name", "us-east-1"))


def smtp_endpoint(conn_id: str = SMTP_CONN_ID) -> SmtpEndpoint:
    """Same fields as Airflow's smtp provider connection (from_email, disable_tls, disable_ssl)."""
    c = _connection(conn_id)
    extra = c.extra_dejson
    sender = extra.get("from_email")
    if not sender:
        raise ValueError(f"connection {conn_id!r}: extra 'from_email' is required")
    return SmtpEndpoint(host=c.host or "127.0.0.1", port=int(c.port or 25), sender=sender,
                        username=c.login or None, password=c.password or None,
                        starttls=not _true(extra.get("disable_tls", True)),
                        ssl=not _true(extra.get("disable_ssl", True)))


def _true(value: object) -> bool:
    return str(value).lower() in ("1", "true", "yes")


def database(conn_id: str = DB_CONN_ID) -> Engine:
    c = _connection(conn_id)
    url = db.url_from_connection(c.conn_type, c.host, c.port, c.login, c.password, c.schema)
    return db.engine_for(url.render_as_string(hide_password=False))
