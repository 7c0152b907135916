"""The end of the service (art. 19): who is told, checked one month ahead (19(2)), queued once per customer."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cloudbackup.notices.kinds import ServiceEnd, one_month_after
from cloudbackup.notices.outbox import queue
from cloudbackup.registry.customers import Customer

log = logging.getLogger(__name__)

WHOLE_SERVICE = "service"    # the end id when the whole service ends (no scope)


class ServiceEndRefused(ValueError):
    """The declaration cannot be announced as given (too late for art. 19(2), an unknown customer): nothing queued."""


def end_id(scope: str, scope_en: str) -> str:
    """A stable name for what ends: the same declaration run again is the same notice, never a second one."""
    if not scope and not scope_en:
        return WHOLE_SERVICE
    return "part-" + hashlib.sha256(f"{scope}\n{scope_en}".encode()).hexdigest()[:12]


def notice_key(identity: str, last_day: date, customer_id: str) -> str:
    # The last day is part of the key: a postponed end is news and is announced again; the same one never is.
    return f"service_end:{identity}:{last_day.isoformat()}:{customer_id}"


def not_affected(customer: Customer, last_day: date, today: date) -> str | None:
    """Why a customer in the registry needs no notice of an end of service on `last_day`; None when it does.

    Every customer whose contract still runs past `last_day` is told, suspended ones included: a suspension
    (art. 14) does not end the contract, and the end of service changes what they can expect when it is lifted.
    """
    if customer.cancelled_before_start_on is not None and customer.cancelled_before_start_on <= today:
        return f"contract cancelled before the service start on {customer.cancelled_before_start_on} (art. 21(3))"
    end = customer.contract_end
    if end is not None and end <= last_day:
        return f"its own last day of service is {end}, not after {last_day} (art. 11, 12)"
    return None


@dataclass(frozen=True)
class Announcement:
    """What one `notices service-end` did (or, dry, would do)."""

    end_id: str
    last_day: date
    queued: tuple[str, ...] = ()             # customer ids given a notice now
    already: tuple[str, ...] = ()            # customer ids told before (the same end id and last day)
    skipped: tuple[tuple[str, str], ...] = field(default=())   # (customer id, why no notice)


def announce(engine: Engine, customers: Sequence[Customer], last_day: date, today: date, *, scope: str = "",
             scope_en: str = "", only: Sequence[str] = (), dry_run: bool = False) -> Announcement:
    """Queue the service-end notice (art. 19(2)) for each affected customer (all, or `only`), once.

    `today` is the announcement's Tokyo date. A notice not yet queued goes out only when `last_day` is at least one
    month after it (ServiceEnd checks); otherwise the whole call is refused and nothing is queued, since the terms
    allow no shorter notice. Customers already told of this end are skipped, so running it again sends nothing.
    """
    by_id = {c.id: c for c in customers}
    unknown = sorted(set(only) - set(by_id))
    if unknown:
        raise ServiceEndRefused(f"unknown customer(s) {unknown}: not in the registry (or their file does not load); "
                                "nothing queued")
    chosen = [by_id[i] for i in sorted(set(only))] if only else sorted(customers, key=lambda c: c.id)
    identity = end_id(scope, scope_en)
    skipped = [(c.id, why) for c in chosen if (why := not_affected(c, last_day, today))]
    affected = [c for c in chosen if not not_affected(c, last_day, today)]
    with engine.connect() as conn:
        told = {row.idempotency_key for row in conn.execute(
            sa.text("SELECT idempotency_key FROM notices WHERE kind = 'service_end' AND idempotency_key LIKE :p"),
            {"p": notice_key(identity, last_day, "%")})}
    new = [c for c in affected if notice_key(identity, last_day, c.id) not in told]
    already = tuple(c.id for c in affected if notice_key(identity, last_day, c.id) in told)
    if not new:   # everyone affected was told already (in time, when it was queued): nothing to check or send
        return Announcement(identity, last_day, (), already, tuple(skipped))
    try:
        end = ServiceEnd(identity, last_day, today, scope, scope_en)
    except ValueError as exc:
        raise ServiceEndRefused(
            f"{exc}. The terms (art. 19(2)) require at least one month's notice and name no exception: choose a "
            f"last day on or after {one_month_after(today)}; nothing queued "
            f"({len(new)} customer(s) not yet told: {', '.join(c.id for c in new[:10])})") from None
    if dry_run:
        return Announcement(identity, last_day, tuple(c.id for c in new), already, tuple(skipped))
    with engine.begin() as conn:
        queued = tuple(c.id for c in new if queue(conn, "service_end", c, notice_key(identity, last_day, c.id),
                                                  {"service_end": end}))
    log.info("service end %s on %s: %d notice(s) queued, %d already told, %d not affected", identity, last_day,
             len(queued), len(already), len(skipped))
    return Announcement(identity, last_day, queued, already, tuple(skipped))
