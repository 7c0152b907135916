"""Plan catalog: plans, their dated price versions (art. 22(2)) and consumption tax rates (art. 25)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cloudbackup.backup.retention import RetentionPolicy
from cloudbackup.registry.yamlfile import load_model

GB = 1_000_000_000  # contract capacity is sold in decimal gigabytes


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriceVersion(_Strict):
    """Prices of a plan from `effective_from` on, in integer yen before tax."""

    effective_from: date
    monthly_fee: int = Field(ge=0)
    initial_fee: int = Field(ge=0)
    cancellation_penalty: int = Field(default=0, ge=0)


class Retention(_Strict):
    """Which snapshots a prune keeps: restic's `--keep-*` rules on the Asia/Tokyo calendar (docs/registry.md).
    Every count absent or 0 keeps every snapshot; -1 keeps every day (week, month) there is."""

    keep_last: int = Field(default=0, ge=-1)
    keep_daily: int = Field(default=0, ge=-1)
    keep_weekly: int = Field(default=0, ge=-1)
    keep_monthly: int = Field(default=0, ge=-1)

    def policy(self) -> RetentionPolicy:
        return RetentionPolicy(self.keep_last, self.keep_daily, self.keep_weekly, self.keep_monthly)


class Plan(_Strict):
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name_ja: str
    name_en: str
    contract_capacity_gb: Decimal = Field(gt=0)   # decimal GB; a fraction (0.001 = 1 MB) for small trial plans
    prices: Annotated[list[PriceVersion], Field(min_length=1)]
    # Snapshot retention of the plan (a customer file may override it); absent: every snapshot is kept.
    retention: Retention | None = None
    # Days a snapshot's objects stay under S3 object lock (0: no lock; backup.immutability).
    object_lock_days: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _prices_in_order(self) -> Plan:
        days = [p.effective_from for p in self.prices]
        if days != sorted(days) or len(set(days)) != len(days):
            raise ValueError("prices must be in strictly increasing effective_from order")
        return self

    @field_validator("contract_capacity_gb")
    @classmethod
    def _whole_bytes(cls, value: Decimal) -> Decimal:
        if (value * GB) % 1:
            raise ValueError(f"{value} GB is not a whole number of bytes")
        return value

    def retention_policy(self, override: Retention | None = None) -> RetentionPolicy:
        """The customer's retention: its own `retention:` when it has one, else the plan's, else keep all."""
        chosen = override if override is not None else self.retention
        return chosen.policy() if chosen else RetentionPolicy()

    @property
    def contract_capacity_bytes(self) -> int:
        return int(self.contract_capacity_gb * GB)

    def price_on(self, day: date) -> PriceVersion:
        """The price version in effect on `day` (art. 22(2))."""
        current = None
        for version in self.prices:
            if version.effective_from <= day:
                current = version
        if current is None:
            raise LookupError(f"plan {self.code!r} has no price effective on {day}")
        return current


class TaxRate(_Strict):
    effective_from: date
    rate: Decimal = Field(ge=0, lt=1)


class Catalog(_Strict):
    plans: Annotated[list[Plan], Field(min_length=1)]
    tax_rates: Annotated[list[TaxRate], Field(min_length=1)]
    # The penalty for cancelling before the service start (art. 21(3)) compensates for a lost contract: no
    # service is rendered for it, so it is outside the scope of consumption tax (不課税; 消費税法基本通達 5-5-2).
    # Set true only where the operator's tax adviser reads the penalty as consideration for a service.
    cancellation_penalty_taxable: bool = False

    @model_validator(mode="after")
    def _unique_codes(self) -> Catalog:
        codes = [p.code for p in self.plans]
        if len(set(codes)) != len(codes):
            raise ValueError("plan codes must be unique")
        return self

    def plan(self, code: str) -> Plan:
        for p in self.plans:
            if p.code == code:
                return p
        raise KeyError(f"plan {code!r} is not in the catalog")

    def tax_rate_on(self, day: date) -> Decimal:
        current = None
        for t in sorted(self.tax_rates, key=lambda t: t.effective_from):
            if t.effective_from <= day:
                current = t.rate
        if current is None:
            raise LookupError(f"no consumption tax rate effective on {day}")
        return current


def load_catalog(path: Path) -> Catalog:
    """Load the catalog file; raises ValueError naming the file and the field."""
    return load_model(path, Catalog)
