"""The contract timeline in the registry: minimum term, notice, legal end, and timelines that cannot be (art. 8,
11, 12, 14, 21(3))."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from billing_fixtures import contract
from pydantic import ValidationError

from cloudbackup.registry.customers import load_customer, load_registry, one_month_period_end
from cloudbackup.registry.operator import load_operator
from conftest import ROOT, customer_yaml


@pytest.mark.parametrize(("start", "end", "end_counting_the_first_day"), [
    # Civil Code art. 140: a contract or notice is made during a day, so the period begins the next day; art.
    # 143(2): it ends the day before the corresponding day of the next month ...
    (date(2026, 8, 20), date(2026, 9, 20), date(2026, 9, 19)),
    # ... or on that month's last day when it has no corresponding day
    (date(2026, 1, 31), date(2026, 2, 28), date(2026, 2, 28)),
    (date(2024, 1, 30), date(2024, 2, 29), date(2024, 2, 29)),
    # art. 143(1): a period beginning on the 1st (a contract on the last day of a month) ends at the month's end
    (date(2026, 11, 30), date(2026, 12, 31), date(2026, 12, 29)),
    (date(2026, 12, 1), date(2027, 1, 1), date(2026, 12, 31)),
])
def test_civil_code_art140_143_a_one_month_period_does_not_count_its_first_day(
        start: date, end: date, end_counting_the_first_day: date) -> None:
    assert one_month_period_end(start) == end
    assert one_month_period_end(start, count_first_day=True) == end_counting_the_first_day


def test_art8_the_minimum_term_is_one_month_from_the_contract_date() -> None:
    assert contract(contract_date=date(2026, 8, 20)).minimum_term_end == date(2026, 9, 20)


def test_art11_a_cancellation_needs_one_month_notice() -> None:
    customer = contract(cancellation={"notice_date": date(2027, 1, 5), "requested_end": date(2027, 2, 10)})
    assert customer.earliest_legal_end == date(2027, 2, 5)
    assert customer.contract_end == date(2027, 2, 10)
    assert customer.timeline_warnings == ()


def test_art11_an_earlier_end_is_moved_to_the_earliest_legal_end_with_a_clear_message() -> None:
    customer = contract(cancellation={"notice_date": date(2027, 1, 20), "requested_end": date(2027, 1, 31)})
    assert customer.contract_end == date(2027, 2, 20)
    (warning,) = customer.timeline_warnings
    assert "customer acme" in warning and "field 'cancellation.requested_end'" in warning
    assert "2027-01-31 is earlier than the earliest legal end 2027-02-20" in warning
    assert "one month's notice from 2027-01-20" in warning


def test_art8_11_a_cancellation_takes_effect_no_earlier_than_the_end_of_the_minimum_term() -> None:
    customer = contract(contract_date=date(2026, 8, 20), service_start=date(2026, 8, 20),
                        cancellation={"notice_date": date(2026, 8, 20), "requested_end": date(2026, 8, 31)})
    assert customer.contract_end == date(2026, 9, 20)


@pytest.mark.parametrize(("setting", "minimum_term_end", "legal_end"), [
    ("", date(2026, 9, 20), date(2027, 2, 20)),                                  # default: art. 140
    ("periods:\n  count_first_day: false\n", date(2026, 9, 20), date(2027, 2, 20)),
    ("periods:\n  count_first_day: true\n", date(2026, 9, 19), date(2027, 2, 19)),   # the operator's choice
])
def test_art8_11_the_operator_setting_counts_the_first_day_or_not(
        tmp_path: Path, setting: str, minimum_term_end: date, legal_end: date) -> None:
    (tmp_path / "customers").mkdir()
    operator = (ROOT / "dags" / "registry" / "operator.yaml").read_text(encoding="utf-8")
    operator = operator.replace("periods:\n  count_first_day: false\n", "")
    (tmp_path / "operator.yaml").write_text(operator + setting, encoding="utf-8")
    load_operator(tmp_path / "operator.yaml")   # the file stays valid with or without the key
    path = tmp_path / "customers" / "leaving-co.yaml"
    path.write_text(customer_yaml("leaving-co", paths=["/srv/a"], extra="cancellation:\n  notice_date: 2027-01-20\n"
                                                                     "  requested_end: 2027-01-31\n"), encoding="utf-8")
    customer = load_customer(path)
    assert customer.minimum_term_end == minimum_term_end     # contract date 2026-08-20
    assert customer.contract_end == legal_end                 # notice 2027-01-20, end asked 2027-01-31
    assert load_registry(tmp_path).customers[0].contract_end == legal_end


def test_art12_an_operator_termination_ends_the_contract_before_a_later_cancellation() -> None:
    customer = contract(cancellation={"notice_date": date(2027, 1, 5), "requested_end": date(2027, 3, 31)},
                        operator_termination={"date": date(2027, 2, 14), "reason": "art. 12(1)(1)"})
    assert customer.contract_end == date(2027, 2, 14)


def _error(**timeline) -> str:
    with pytest.raises(ValidationError) as excinfo:
        contract(**timeline)
    return str(excinfo.value)


@pytest.mark.parametrize(("timeline", "field", "words"), [
    ({"cancellation": {"notice_date": date(2026, 8, 25), "requested_end": date(2026, 9, 10)}},
     "cancellation.requested_end", "before the service start"),
    ({"cancellation": {"notice_date": date(2026, 8, 1), "requested_end": date(2026, 12, 31)}},
     "cancellation.notice_date", "before the contract date"),
    ({"operator_termination": {"date": date(2026, 9, 1)}}, "operator_termination.date", "before the service start"),
    ({"suspensions": [{"from": date(2026, 10, 5), "to": date(2026, 10, 1)}]}, "suspensions.0.to", "before its 'from'"),
    ({"suspensions": [{"from": date(2026, 10, 1), "to": date(2026, 10, 20)},
                      {"from": date(2026, 10, 15), "to": date(2026, 11, 1)}]}, "suspensions.1.from", "overlaps"),
    ({"suspensions": [{"from": date(2026, 10, 1)}, {"from": date(2026, 12, 1)}]}, "suspensions.1.from", "overlaps"),
    ({"suspensions": [{"from": date(2026, 9, 1)}]}, "suspensions.0.from", "before the service start"),
    ({"operator_termination": {"date": date(2026, 12, 31)},
      "suspensions": [{"from": date(2027, 1, 10)}]}, "suspensions.0.from", "after the contract end"),
    ({"operator_termination": {"date": date(2026, 12, 31)},
      "plans": [{"plan": "standard-100", "approved_on": date(2026, 8, 20), "started_using_on": date(2026, 9, 15)},
                {"plan": "business-500", "approved_on": date(2027, 1, 5), "started_using_on": date(2027, 1, 6)}]},
     "plans.1.started_using_on", "after the contract end"),
    ({"plans": [{"plan": "standard-100", "approved_on": date(2026, 8, 20), "started_using_on": date(2026, 9, 15)},
                {"plan": "business-500", "approved_on": date(2026, 8, 1), "started_using_on": date(2026, 10, 1)}]},
     "plans.1.approved_on", "before the contract date"),
    ({"cancelled_before_start_on": date(2026, 9, 20)}, "cancelled_before_start_on", "before the service start"),
    ({"cancelled_before_start_on": date(2026, 9, 1),
      "cancellation": {"notice_date": date(2026, 9, 1), "requested_end": date(2026, 12, 31)}},
     "cancellation", "cancelled before the service start"),
])
def test_impossible_timelines_are_errors_naming_the_customer_and_the_field(timeline: dict, field: str,
                                                                          words: str) -> None:
    message = _error(**timeline)
    assert f"field '{field}'" in message and "customer acme" in message and words in message


def test_a_registry_file_with_a_timeline_loads_and_its_errors_name_file_and_field(tmp_path: Path) -> None:
    timeline = """\
suspensions:
  - from: 2026-10-01
    to: 2026-10-20
    reason: non-payment (art. 14(1)(4))
cancellation:
  notice_date: 2026-11-02
  requested_end: 2026-12-31
"""
    good = tmp_path / "good-co.yaml"
    good.write_text(customer_yaml("good-co", paths=["/srv/a"], extra=timeline), encoding="utf-8")
    customer = load_customer(good)
    assert customer.suspensions[0].from_ == date(2026, 10, 1) and customer.contract_end == date(2026, 12, 31)

    bad = tmp_path / "bad-co.yaml"
    broken = timeline.replace("to: 2026-10-20", "to: 2026-09-20")
    bad.write_text(customer_yaml("bad-co", paths=["/srv/a"], extra=broken), encoding="utf-8")
    with pytest.raises(ValueError) as excinfo:
        load_customer(bad)
    assert str(bad) in str(excinfo.value)
    assert "field 'suspensions.0.to': customer bad-co: 2026-09-20 is before its 'from' 2026-10-01" in str(excinfo.value)


def test_a_customer_file_without_a_timeline_still_loads() -> None:
    customer = contract()
    assert customer.suspensions == [] and customer.cancellation is None and customer.contract_end is None
