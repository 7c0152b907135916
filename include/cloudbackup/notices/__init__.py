"""Notices to customers (art. 28): rendered from templates, kept in an outbox, each sent once by SMTP."""

from cloudbackup.notices.delivery import (
    MAX_ATTEMPTS,
    DeliveryPolicy,
    DeliveryReport,
    NoticeRecord,
    Outcome,
    deliver_pending,
    list_notices,
    outbox_counts,
    retry_stuck,
)
from cloudbackup.notices.kinds import CapacityNotice, CollectionErrorDigest
from cloudbackup.notices.outbox import (
    message_id,
    queue,
    queue_capacity,
    queue_collection_errors,
    queue_maintenance,
    queue_run_notices,
    queue_suspension,
)
from cloudbackup.notices.templating import KINDS, LANGUAGES, RenderedNotice, render, yen

__all__ = [
    "KINDS", "LANGUAGES", "MAX_ATTEMPTS", "CapacityNotice", "CollectionErrorDigest", "DeliveryPolicy",
    "DeliveryReport", "NoticeRecord", "Outcome", "RenderedNotice", "deliver_pending", "list_notices", "message_id",
    "outbox_counts", "queue", "queue_capacity", "queue_collection_errors", "queue_maintenance", "queue_run_notices",
    "queue_suspension", "render", "retry_stuck", "yen",
]
