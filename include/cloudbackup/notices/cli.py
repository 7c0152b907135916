"""`cloudbackup notices …`: preview every kind, list the outbox, deliver now, retry a stuck notice."""

from __future__ import annotations

import argparse
from pathlib import Path


def _preview(args: argparse.Namespace) -> int:
    from cloudbackup import settings
    from cloudbackup.notices import samples

    written = samples.write_previews(Path(args.out), settings.registry_dir())
    print(f"{len(written)} file(s) written to {args.out}:")
    for path in written:
        print(f"  {path.name}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from cloudbackup import connections
    from cloudbackup.notices import delivery

    engine = connections.database()
    counts = delivery.outbox_counts(engine)
    print(f"outbox: {counts['sent']} sent, {counts['pending']} pending, {counts['stuck']} stuck")
    for n in delivery.list_notices(engine, args.state, args.customer, args.limit):
        when = n.sent_at or n.stuck_at or n.next_attempt_at or n.created_at
        print(f"{n.id:>7}  {n.state:<7}  {when.isoformat(timespec='seconds')}  {n.kind:<17}  {n.customer_id}  "
              f"{n.recipient}  attempts={n.attempts}" + (f"  last_error={n.last_error}" if n.last_error else ""))
    return 0


def _retry(args: argparse.Namespace) -> int:
    from cloudbackup import connections
    from cloudbackup.notices import delivery

    if delivery.retry_stuck(connections.database(), args.id):
        print(f"notice {args.id} queued again; the next delivery run sends it")
        return 0
    print(f"notice {args.id} is not stuck (sent, pending or unknown): nothing changed")
    return 1


def _deliver(_args: argparse.Namespace) -> int:
    import json

    from cloudbackup import tasks

    queued = tasks.queue_event_notices()
    try:
        sent = tasks.deliver_notices()
    except tasks.NoticesNotDelivered as exc:
        print(json.dumps({"queued": queued}))
        print(f"not all due notices were sent: {exc}")
        return 1
    print(json.dumps({"queued": queued, **sent}))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `notices` command group to the `cloudbackup` parser."""
    group = sub.add_parser("notices", help="customer notices: preview, outbox, stuck notices").add_subparsers(
        dest="notices_command", required=True)
    preview = group.add_parser("preview", help="render every kind in both languages with sample data")
    preview.add_argument("--out", required=True, help="folder for <kind>.<lang>.txt and .html files")
    preview.set_defaults(func=_preview)
    listing = group.add_parser("list", help="what was sent to whom and when, what waits, what is stuck")
    listing.add_argument("--state", choices=["sent", "pending", "stuck"])
    listing.add_argument("--customer")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(func=_list)
    deliver = group.add_parser("deliver", help="what the deliver_notices DAG does, once: queue event notices, send")
    deliver.set_defaults(func=_deliver)
    retry = group.add_parser("retry", help="put a stuck notice back in the queue (after fixing its cause)")
    retry.add_argument("id", type=int)
    retry.set_defaults(func=_retry)
