"""The business calendar: Asia/Tokyo for days and months, UTC for instants, and calendar-month arithmetic."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

TOKYO = ZoneInfo("Asia/Tokyo")


def utcnow() -> datetime:
    return datetime.now(UTC)


def tokyo_date(moment: datetime) -> date:
    """The Tokyo calendar day of an instant; a naive datetime is refused rather than guessed."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: times must be timezone-aware")
    return moment.astimezone(TOKYO).date()


def add_months(year: int, month: int, months: int) -> tuple[int, int]:
    """(year, month) `months` calendar months later (earlier when negative)."""
    i = year * 12 + month - 1 + months
    return i // 12, i % 12 + 1


def month_last_day(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])
