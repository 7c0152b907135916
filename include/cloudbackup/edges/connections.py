"""Airflow connections → the plain endpoint settings the edges take (secrets never logged)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from cloudbackup.edges import db

DB_CONN_ID = os.environ.get("CLOUDBACKUP_DB_CONN_ID", "cloudbackup_db")
S3_CONN_ID = os.environ.get("CLOUDBACKUP_S3_CONN_ID", "cloudbackup_s3")
SMTP_CONN_ID = os.environ.get("CLOUDBACKUP_SMTP_CONN_ID", "cloudbackup_smtp")


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
