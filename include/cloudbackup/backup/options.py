"""Tuning of the backup engine (backup.yaml's `engine:` section): parallelism, chunk and pack sizes, memory."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class EngineOptions:
    """Tuning of one run; the defaults suit a 2-core worker on a LAN (docs/development.md, "Benchmarks")."""

    connections: int = 4                 # parallel SFTP sessions (Transports), one per reader thread
    upload_threads: int = 4
    chunk_size: int = 8 * MiB            # large files are stored as content-addressed chunks of this size
    small_file_max: int = 1 * MiB        # files up to this size go into packs
    pack_target: int = 16 * MiB
    in_flight_bytes: int = 48 * MiB      # read but not yet stored: bounds memory whatever the file sizes
    # Bytes per SFTP read request, cut to what the server says it serves (OpenSSH: 255 KiB): fewer, larger requests
    # cost sshd and the engine less CPU (1 GiB of large files: 3-13 % faster than with 128 KiB in three paired runs).
    read_request: int = 255 * 1024
    read_window: int = 16                # read requests in flight per file (4 MiB)
    progress_interval: float = 10.0
    # A file is read only once its mtime is this many seconds behind the worker's clock (SFTP mtimes are whole
    # seconds, plus 1 s for the worker's and the server's clocks to differ): a read that starts after the
    # mtime's second has ended and finds size and mtime unchanged afterwards is a copy of one real version
    # (docs/storage-format.md, "Consistent copies"). Files changed more recently are read last, after a wait.
    settle_seconds: float = 2.0
    # Self-healing: the share of the stored objects (packs, chunks) each run re-reads and checks; 1/30 re-reads
    # everything about monthly with daily runs. 0 turns the sample off.
    verify_sample_fraction: float = 1 / 30
    restore_threads: int = 4             # parallel GETs (and local writes) of a restore


