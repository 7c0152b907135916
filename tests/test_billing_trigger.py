"""Which month a billing_monthly run bills (art. 20: calendar months), whoever starts it, and the one trigger
that would silently leave a month unbilled."""

from __future__ import annotations

from datetime import datetime

import pytest

from cloudbackup import tasks
from cloudbackup.billing.months import BillingMonth

DEC_1_SLOT = datetime.fromisoformat("2026-12-01T06:00:00+09:00")


def test_the_scheduled_run_on_the_1st_bills_the_month_just_closed() -> None:
    assert tasks.billing_month_for(None, DEC_1_SLOT, DEC_1_SLOT) == BillingMonth(2026, 11)


def test_a_manual_run_without_a_logical_date_bills_the_month_before_its_tokyo_date() -> None:
    # 2026-11-30 16:00 UTC is already 1 December in Tokyo: November is the month just closed.
    assert tasks.billing_month_for(None, datetime.fromisoformat("2026-11-30T16:00:00+00:00"), manual=True) \
        == BillingMonth(2026, 11)
    assert tasks.billing_month_for(None, datetime.fromisoformat("2026-11-30T14:00:00+00:00"), manual=True) \
        == BillingMonth(2026, 10)


def test_the_month_param_is_billed_as_asked() -> None:
    assert tasks.billing_month_for("2026-09", datetime.fromisoformat("2026-11-28T10:00:00+09:00"), manual=True) \
        == BillingMonth(2026, 9)


def test_a_manual_run_on_a_slot_billing_that_slots_month_is_that_run() -> None:
    assert tasks.billing_month_for(None, DEC_1_SLOT, DEC_1_SLOT, manual=True) == BillingMonth(2026, 11)
    assert tasks.billing_month_for("2026-11", DEC_1_SLOT, DEC_1_SLOT, manual=True) == BillingMonth(2026, 11)


def test_a_manual_run_for_another_month_holding_a_slot_is_refused_naming_both_months() -> None:
    with pytest.raises(tasks.BillingRunCollides, match=r"for 2026-10 .* bills 2026-11.*trigger 2026-11 now"):
        tasks.billing_month_for("2026-10", DEC_1_SLOT, DEC_1_SLOT, manual=True)


def test_the_issue_date_is_the_runs_tokyo_date() -> None:
    assert str(tasks.billing_run_date(DEC_1_SLOT, None)) == "2026-12-01"
    assert str(tasks.billing_run_date(datetime.fromisoformat("2026-11-30T16:00:00+00:00"), None)) == "2026-12-01"
