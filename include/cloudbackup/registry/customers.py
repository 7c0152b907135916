"""Customer registry: one YAML file per customer, validated into plain models (the contract timeline)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from croniter import CroniterBadCronError, CroniterBadDateError, croniter  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from cloudbackup.clock import TOKYO, add_months, month_last_day
from cloudbackup.registry.catalog import Retention
from cloudbackup.registry.yamlfile import load_model, read_yaml

CUSTOMER_ID = r"^[a-z0-9][a-z0-9-]{1,62}$"
SERVER_NAME = r"^[a-z0-9][a-z0-9.-]{0,62}$"
_CRON_FIELDS = 5
CURE_PERIOD = timedelta(days=14)  # art. 12: a suspension not cured within 14 days may end the contract


class Language(StrEnum):
    JA = "ja"
    EN = "en"


class CustomerStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class SuspensionReason(StrEnum):
    """Why the operator suspends a customer (art. 14(1)); notices word each code for the customer."""

    NON_PAYMENT = "non_payment"
    TERMS_VIOLATION = "terms_violation"
    UNAUTHORIZED_ACCESS = "unauthorized_access"
    OTHER = "other"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlanChange(_Strict):
    """One entry of the plan history (art. 9): which plan, approved when, used from when."""

    plan: str
    approved_on: date
    started_using_on: date


class Suspension(_Strict):
    """A suspension of the service (art. 14), `from` to `to` inclusive; `to` absent while it lasts."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: date = Field(alias="from")
    to: date | None = None
    reason: str = ""                 # the operator's note, for operators only: never mailed
    reason_code: SuspensionReason | None = None   # what the notice names, in the customer's words
    customer_message: str = ""       # optional words for the customer, printed in the notice as written
    emergency: bool = False          # art. 14(2): no advance notice was possible

    @property
    def effective_at(self) -> datetime:
        """The suspension starts at 00:00 Tokyo on its first day."""
        return datetime.combine(self.from_, time(0, 0), tzinfo=TOKYO)

    @property
    def cure_by(self) -> date:
        """Last day (Tokyo calendar) to cure the cause before the operator may terminate (art. 12)."""
        return self.from_ + CURE_PERIOD

    @property
    def notice_reason(self) -> SuspensionReason:
        """The reason code the notice names (labelled): `reason_code`; else a `reason` that is exactly a code
        (files written before `reason_code`); else `other`. Free text in `reason` is never a customer's."""
        if self.reason_code is not None:
            return self.reason_code
        if self.reason in {r.value for r in SuspensionReason}:
            return SuspensionReason(self.reason)
        return SuspensionReason.OTHER


class Cancellation(_Strict):
    """The customer's cancellation (art. 11): when notice was given and the last day of service asked for."""

    notice_date: date
    requested_end: date


class OperatorTermination(_Strict):
    """Termination by the operator (art. 12); `date` is the last day of service."""

    date: date
    reason: str = ""


class SftpSource(_Strict):
    """The areas the customer designated on its own server (art. 16)."""

    connection_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,250}$")
    paths: Annotated[list[str], Field(min_length=1)]
    excludes: list[str] = []
    # The customer's server, named when several customers' files live on one server: their backups then share
    # the Airflow pool `sftp_server_<server>`, which bounds the concurrent runs (SFTP sessions) against it.
    server: str | None = Field(default=None, pattern=SERVER_NAME)

    @property
    def pool(self) -> str | None:
        """The Airflow pool of this customer's backups (None: Airflow's default pool)."""
        return f"sftp_server_{self.server}" if self.server else None

    @field_validator("paths")
    @classmethod
    def _absolute_paths(cls, paths: list[str]) -> list[str]:
        for p in paths:
            if not p.startswith("/"):
                raise ValueError(f"designated path {p!r} must be absolute")
            if any(part == ".." for part in p.split("/")):
                raise ValueError(f"designated path {p!r} must not contain '..'")
        if len(set(paths)) != len(paths):
            raise ValueError("designated paths must not repeat")
        for p in paths:
            for q in paths:
                if p != q and q.rstrip("/").startswith(p.rstrip("/") + "/"):
                    raise ValueError(f"designated path {q!r} is inside {p!r}: its files would be collected twice")
        return paths


class Customer(_Strict):
    """A customer's contract as the registry file states it."""

    id: str = Field(pattern=CUSTOMER_ID)
    name: str = Field(min_length=1)
    notice_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    language: Language = Language.JA
    sales_agent: str
    contract_date: date
    service_start_date: date
    plans: Annotated[list[PlanChange], Field(min_length=1)]
    sftp: SftpSource
    schedule: str
    status: CustomerStatus = CustomerStatus.ACTIVE
    # How long after its scheduled start a backup should have finished: past it, the run's deadline alert fires.
    window_hours: int = Field(default=6, ge=1, le=24)
    # The contract timeline beyond start and plan changes (art. 8, 11, 12, 14, 21(3)); all optional.
    suspensions: list[Suspension] = []
    cancellation: Cancellation | None = None
    operator_termination: OperatorTermination | None = None
    cancelled_before_start_on: date | None = None
    # Overrides the plan's snapshot retention as a whole (docs/registry.md); `{}` keeps every snapshot.
    retention: Retention | None = None

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != _CRON_FIELDS:
            raise ValueError(f"schedule {value!r} must be a 5-field cron expression (Asia/Tokyo)")
        try:   # croniter is what Airflow's CronTriggerTimetable checks the expression with when the DAG loads
            croniter(value, datetime(2000, 1, 1)).get_next(datetime)
        except CroniterBadCronError as exc:
            raise ValueError(f"schedule {value!r} is not a valid cron expression: {exc}") from None
        except CroniterBadDateError:
            raise ValueError(f"schedule {value!r} never fires (e.g. the 30th of February)") from None
        return value

    # How the one-month periods of art. 8 and 11 count their first day (operator.yaml `periods.count_first_day`,
    # given by load_customer as validation context): False is Civil Code art. 140, the first day not counted.
    _count_first_day: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _dates_in_order(self, info: ValidationInfo) -> Customer:
        if info.context and "count_first_day" in info.context:
            self._count_first_day = bool(info.context["count_first_day"])
        if self.service_start_date < self.contract_date:
            raise ValueError("service_start_date is before contract_date")
        previous = None
        for change in self.plans:
            if previous and change.started_using_on <= previous.started_using_on:
                raise ValueError("plans must be listed in order of started_using_on")
            previous = change
        _check_timeline(self)
        return self

    @property
    def minimum_term_end(self) -> date:
        """Last day of the minimum term: one month from the contract date (art. 8(1)), counted per the Civil Code
        (art. 140, 143; see `one_month_period_end`)."""
        return one_month_period_end(self.contract_date, self._count_first_day)

    @property
    def earliest_legal_end(self) -> date | None:
        """Earliest last day of service a cancellation can have: one month's notice, and not inside the
        minimum term (art. 8, 11(1)). None without a cancellation."""
        if self.cancellation is None:
            return None
        return max(self.minimum_term_end, one_month_period_end(self.cancellation.notice_date, self._count_first_day))

    @property
    def cancellation_end(self) -> date | None:
        """The last day of service the cancellation takes effect on: the requested end, moved to the
        earliest legal end when it asks for an earlier day (see `timeline_warnings`)."""
        if self.cancellation is None or self.earliest_legal_end is None:
            return None
        return max(self.cancellation.requested_end, self.earliest_legal_end)

    @property
    def contract_end(self) -> date | None:
        """Last day of service (the 利用終了日 of art. 22(1)), or None while the contract runs on."""
        ends = [d for d in (self.cancellation_end,
                            self.operator_termination.date if self.operator_termination else None) if d]
        return min(ends) if ends else None

    @property
    def timeline_warnings(self) -> tuple[str, ...]:
        """Corrections the registry applied to this customer's timeline, worded for the operator."""
        c = self.cancellation
        if c is None or self.earliest_legal_end is None or c.requested_end >= self.earliest_legal_end:
            return ()
        why = (f"one month's notice from {c.notice_date}" if self.earliest_legal_end > self.minimum_term_end
               else f"the minimum term from the contract date {self.contract_date}")
        return (f"customer {self.id}: field 'cancellation.requested_end': {c.requested_end} is earlier than the "
                f"earliest legal end {self.earliest_legal_end} ({why}, art. 8, 11); the contract ends on "
                f"{self.earliest_legal_end}",)

    def plan_in_use(self, day: date) -> str:
        """The plan whose capacity applies on `day`: the last change the customer has started using (the first
        plan before its start)."""
        code = self.plans[0].plan
        for change in self.plans:
            if change.started_using_on <= day:
                code = change.plan
        return code

    def suspended_on(self, day: date) -> bool:
        """Whether `day` falls in a suspension (art. 14); suspended days are still charged (art. 21(2))."""
        return any(s.from_ <= day and (s.to is None or day <= s.to) for s in self.suspensions)

    @property
    def dag_id(self) -> str:
        return f"backup_{self.id.replace('-', '_')}"


def one_month_period_end(start: date, count_first_day: bool = False) -> date:
    """Last day of a one-month period from `start` (a contract date, a notice date), per the Civil Code.

    Art. 140: a period that starts during a day does not count that day (a contract or a notice is made during
    a day), so the period begins the next day; `count_first_day` counts it instead (an operator setting). Art.
    143: a period in months follows the calendar; one that does not begin at the start of a month ends the day
    before the corresponding day of the last month, or on that month's last day when it has no such day (143(2)).
    Contract 2026-08-20: the period begins 08-21 and ends 09-20 (09-19 counting the first day).
    """
    first = start if count_first_day else start + timedelta(days=1)
    year, month = add_months(first.year, first.month, 1)
    last = month_last_day(year, month)
    if first.day > last.day:
        return last
    return date(year, month, first.day) - timedelta(days=1)


_period_settings: dict[tuple[str, int], bool] = {}


def count_first_day_setting(registry_dir: Path) -> bool:
    """operator.yaml's `periods.count_first_day` in this registry (False, art. 140, when absent); only that key is
    read here, cached while the file is unchanged: the whole file is checked by `cloudbackup registry check`."""
    path = registry_dir / "operator.yaml"
    try:
        key = (str(path), path.stat().st_mtime_ns)
    except OSError:
        return False
    if key not in _period_settings:
        data = read_yaml(path)
        periods = data.get("periods") if isinstance(data, dict) else None
        _period_settings[key] = bool(periods.get("count_first_day", False)) if isinstance(periods, dict) else False
    return _period_settings[key]


def _timeline_error(field: str, message: str) -> ValueError:
    return ValueError(f"field '{field}': {message}")


def _check_timeline(c: Customer) -> None:
    """Refuse timelines that cannot happen; the message names the customer and the field at fault."""
    who = f"customer {c.id}"
    for i, change in enumerate(c.plans[1:], start=1):
        if change.approved_on < c.contract_date:
            raise _timeline_error(f"plans.{i}.approved_on",
                                  f"{who}: {change.approved_on} is before the contract date {c.contract_date}")
    if c.cancelled_before_start_on is not None:
        if not c.contract_date <= c.cancelled_before_start_on < c.service_start_date:
            raise _timeline_error("cancelled_before_start_on",
                                  f"{who}: {c.cancelled_before_start_on} must be on or after the contract date "
                                  f"{c.contract_date} and before the service start {c.service_start_date}")
        for field in ("cancellation", "operator_termination"):
            if getattr(c, field) is not None:
                raise _timeline_error(field, f"{who}: cancelled before the service start, so no {field} is possible")
        if len(c.plans) > 1 or c.suspensions:
            field = "plans" if len(c.plans) > 1 else "suspensions"
            raise _timeline_error(field, f"{who}: cancelled before the service start, so no {field} is possible")
        return
    if c.cancellation is not None:
        if c.cancellation.notice_date < c.contract_date:
            raise _timeline_error("cancellation.notice_date",
                                  f"{who}: {c.cancellation.notice_date} is before the contract date {c.contract_date}")
        if c.cancellation.requested_end < c.service_start_date:
            raise _timeline_error("cancellation.requested_end",
                                  f"{who}: {c.cancellation.requested_end} is before the service start "
                                  f"{c.service_start_date}; record a cancellation before the service start "
                                  "as 'cancelled_before_start_on'")
    if c.operator_termination is not None and c.operator_termination.date < c.service_start_date:
        raise _timeline_error("operator_termination.date",
                              f"{who}: {c.operator_termination.date} is before the service start "
                              f"{c.service_start_date}")
    end = c.contract_end
    if end is not None:
        for i, change in enumerate(c.plans[1:], start=1):
            if change.started_using_on > end:
                raise _timeline_error(f"plans.{i}.started_using_on",
                                      f"{who}: {change.started_using_on} is after the contract end {end}")
    previous: Suspension | None = None
    for i, s in sorted(enumerate(c.suspensions), key=lambda pair: pair[1].from_):   # i: index in the file
        if s.to is not None and s.to < s.from_:
            raise _timeline_error(f"suspensions.{i}.to", f"{who}: {s.to} is before its 'from' {s.from_}")
        if s.from_ < c.service_start_date:
            raise _timeline_error(f"suspensions.{i}.from",
                                  f"{who}: {s.from_} is before the service start {c.service_start_date}")
        if end is not None and s.from_ > end:
            raise _timeline_error(f"suspensions.{i}.from", f"{who}: {s.from_} is after the contract end {end}")
        if previous is not None and (previous.to is None or s.from_ <= previous.to):
            raise _timeline_error(f"suspensions.{i}.from",
                                  f"{who}: the suspension from {s.from_} overlaps the one from {previous.from_}")
        previous = s


@dataclass(frozen=True)
class RegistryError:
    """A customer file that could not be loaded, with the fields at fault."""

    file: Path
    problems: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.file}: " + "; ".join(self.problems)


@dataclass(frozen=True)
class Registry:
    customers: tuple[Customer, ...]
    errors: tuple[RegistryError, ...]

    def get(self, customer_id: str) -> Customer:
        for c in self.customers:
            if c.id == customer_id:
                return c
        raise KeyError(f"no customer {customer_id!r} in the registry")


def load_customer(path: Path) -> Customer:
    """Load one customer file; raises ValueError naming the file and the field."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of fields, got {type(data).__name__}")
    periods = {"count_first_day": count_first_day_setting(path.parent.parent)}   # registry/customers/x.yaml
    customer = load_model(path, Customer, data, context=periods)
    if customer.id != path.stem:
        raise ValueError(f"{path}: field 'id': {customer.id!r} must match the file name {path.stem!r}")
    return customer


def customer_files(directory: Path, select: Callable[[str], bool] | None = None) -> list[Path]:
    """The customer files under `directory` (sorted by name), those whose id (file stem) `select` accepts. Plain
    names are listed and filtered before any Path is made: at 10,000 customers a DAG file lists them all."""
    folder = directory / "customers"
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith((".yaml", ".yml")) and not n.startswith("."))
    except FileNotFoundError:
        return []
    return [folder / n for n in names if select is None or select(n.rsplit(".", 1)[0])]


def load_registry(directory: Path, select: Callable[[str], bool] | None = None) -> Registry:
    """Load every `customers/*.yaml` under `directory` (only the ids `select` accepts, when given: the others are
    not read); a broken file never hides the others. Two files of one id (`x.yaml`, `x.yml`) or of one DAG id:
    the first loads, the other is an error naming both."""
    customers: list[Customer] = []
    errors: list[RegistryError] = []
    seen: dict[str, Path] = {}
    for path in customer_files(directory, select):
        try:
            customer = load_customer(path)
        except ValueError as exc:
            problems = str(exc).removeprefix(f"{path}: ")
            errors.append(RegistryError(path, tuple(re.split(r"; (?=field )", problems))))
            continue
        if customer.dag_id in seen:
            errors.append(RegistryError(path, (f"field 'id': {customer.id!r} (DAG {customer.dag_id}) is already "
                                               f"defined by {seen[customer.dag_id].name}",)))
            continue
        seen[customer.dag_id] = path
        customers.append(customer)
    return Registry(tuple(customers), tuple(errors))
