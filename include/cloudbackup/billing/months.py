"""Billing months: calendar months of the Asia/Tokyo business calendar, closed at month end (art. 22(1))."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from cloudbackup.clock import add_months, month_last_day


@dataclass(frozen=True, order=True)
class BillingMonth:
    """A calendar month of the Asia/Tokyo business calendar; invoices close at its end (art. 22(1))."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise ValueError(f"billing month {self.year}-{self.month}: month must be 1..12")

    @classmethod
    def parse(cls, text: str) -> BillingMonth:
        m = re.fullmatch(r"(\d{4})-(\d{2})", text)
        if not m or not 1 <= int(m.group(2)) <= 12:
            raise ValueError(f"billing month {text!r} must be YYYY-MM")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def of(cls, day: date) -> BillingMonth:
        return cls(day.year, day.month)

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return month_last_day(self.year, self.month)

    @property
    def index(self) -> int:
        """Months since year 0: lets rules compare and count months with integers."""
        return self.year * 12 + self.month - 1

    def plus(self, months: int) -> BillingMonth:
        return BillingMonth(*add_months(self.year, self.month, months))

    def next(self) -> BillingMonth:
        return self.plus(1)

    def previous(self) -> BillingMonth:
        return self.plus(-1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"
