"""Customer registry: one YAML file per customer, validated into plain models."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CUSTOMER_ID = r"^[a-z0-9][a-z0-9-]{1,62}$"
_CRON_FIELDS = 5


class Language(StrEnum):
    JA = "ja"
    EN = "en"


class CustomerStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlanChange(_Strict):
    """One entry of the plan history (art. 9): which plan, approved when, used from when."""

    plan: str
    approved_on: date
    started_using_on: date


class SftpSource(_Strict):
    """The areas the customer designated on its own server (art. 16)."""

    connection_id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    paths: Annotated[list[str], Field(min_length=1)]
    excludes: list[str] = []

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

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != _CRON_FIELDS:
            raise ValueError(f"schedule {value!r} must be a 5-field cron expression (Asia/Tokyo)")
        return value

    @model_validator(mode="after")
    def _dates_in_order(self) -> Customer:
        if self.service_start_date < self.contract_date:
            raise ValueError("service_start_date is before contract_date")
        previous = None
        for change in self.plans:
            if previous and change.started_using_on <= previous.started_using_on:
                raise ValueError("plans must be listed in order of started_using_on")
            previous = change
        return self

    @property
    def dag_id(self) -> str:
        return f"backup_{self.id.replace('-', '_')}"


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


def _describe(exc: ValidationError) -> tuple[str, ...]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(file)"
        out.append(f"field '{loc}': {err['msg']}")
    return tuple(out)


def load_customer(path: Path) -> Customer:
    """Load one customer file; raises ValueError naming the file and the field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of fields, got {type(data).__name__}")
    try:
        customer = Customer.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{path}: " + "; ".join(_describe(exc))) from exc
    if customer.id != path.stem:
        raise ValueError(f"{path}: field 'id': {customer.id!r} must match the file name {path.stem!r}")
    return customer


def load_registry(directory: Path) -> Registry:
    """Load every `customers/*.yaml` under `directory`; a broken file never hides the others."""
    customers: list[Customer] = []
    errors: list[RegistryError] = []
    for path in sorted((directory / "customers").glob("*.y*ml")):
        try:
            customers.append(load_customer(path))
        except ValueError as exc:
            problems = str(exc).removeprefix(f"{path}: ")
            errors.append(RegistryError(path, tuple(re.split(r"; (?=field )", problems))))
    return Registry(tuple(customers), tuple(errors))
