"""The words a backup run is recorded with: run status, why a file was not collected, why a run was skipped.

One vocabulary for the engine, the `backup_runs` / `collection_errors` tables, the console and the notice
templates (notices/labels.py words each value for customers; a test checks none is missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RunStatus(StrEnum):
    """backup_runs.status."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    SUCCEEDED_WITH_ERRORS = "succeeded_with_errors"   # a snapshot was written; some files were not collected
    FAILED = "failed"                                 # no snapshot (server unreachable, S3 down, …)
    SKIPPED = "skipped"                               # not collected on purpose: see SkipReason


class CollectionErrorReason(StrEnum):
    """collection_errors.reason: why one path of a run was not collected (art. 17(2), 18(2))."""

    NAME_POLICY = "name_policy"                   # the file-name policy refused the name (art. 18(2))
    PERMISSION_DENIED = "permission_denied"
    VANISHED = "vanished"                         # listed, then gone when read
    CHANGED_DURING_READ = "changed_during_read"   # size or mtime moved while read: collected next run
    UNREADABLE = "unreadable"                     # any other read failure on a live session
    SPECIAL_FILE = "special_file"                 # a fifo, socket or device: not a file's contents to keep


class SkipReason(StrEnum):
    """backup_runs.skip_reason of a skipped run; never caught up later (art. 18(3))."""

    SUSPENDED = "suspended"       # art. 14
    MAINTENANCE = "maintenance"   # art. 13
    CONTRACT_ENDED = "contract_ended"                   # after the last day of service (art. 11, 12, 19)
    CANCELLED_BEFORE_START = "cancelled_before_start"   # cancelled before the service start (art. 21(3))


@dataclass(frozen=True)
class CollectionError:
    """A file the run could not collect, and why (art. 17(2), 18(2))."""

    path: str
    reason: CollectionErrorReason
    detail: str = ""
