"""Helpers for the backup tests: endpoints for the real sshd and S3, a private bucket, a source tree."""

from __future__ import annotations

import secrets
from functools import partial
from pathlib import Path

from devtools import devstack

from cloudbackup.backup.options import EngineOptions
from cloudbackup.edges.connections import S3Endpoint, SftpEndpoint
from cloudbackup.edges.s3 import ObjectStore
from cloudbackup.edges.sftp import open_sftp

KiB = 1024
MiB = 1024 * KiB

# Small limits so a few MiB exercise everything: several packs, multi-chunk files, the memory budget.
SMALL_OPTIONS = EngineOptions(connections=3, upload_threads=3, chunk_size=1 * MiB, small_file_max=64 * KiB,
                              pack_target=256 * KiB, in_flight_bytes=4 * MiB, read_request=64 * KiB, read_window=8,
                              progress_interval=0.5)


def sftp_endpoint(sshd: devstack.Sshd, host_key: str | None = None) -> SftpEndpoint:
    return SftpEndpoint("127.0.0.1", sshd.port, sshd.user, host_key or sshd.host_key_line,
                        private_key=sshd.client_private_key)


def connector(sshd: devstack.Sshd, host_key: str | None = None):  # noqa: ANN201
    return partial(open_sftp, sftp_endpoint(sshd, host_key))


def fresh_store(stack: devstack.Stack) -> ObjectStore:
    store = ObjectStore(S3Endpoint(f"127.0.0.1:{stack.s3.port}", False, stack.s3.access_key, stack.s3.secret_key,
                                   "t-" + secrets.token_hex(6)))
    store.ensure_bucket()
    return store


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file below `root` by relative path (restore output)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}
