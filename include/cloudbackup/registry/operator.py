"""Operator settings: the invoice issuer (qualified-invoice registration) and the sales agents (art. 23)."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from cloudbackup import settings
from cloudbackup.clock import add_months, month_last_day
from cloudbackup.registry.yamlfile import load_model

_REGISTRATION = re.compile(r"^T(\d{13})$")


def corporate_number_check_digit(base12: str) -> int:
    """Check digit of a 13-digit corporate number (法人番号), the leading digit, over the other 12."""
    total = sum(int(d) * (1 if n % 2 else 2) for n, d in enumerate(reversed(base12), start=1))
    return 9 - total % 9


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Issuer(_Strict):
    """The invoice issuer as a registered qualified-invoice issuer (適格請求書発行事業者)."""

    name: str = Field(min_length=1)
    name_en: str = ""
    corporation: bool = True       # a corporation's number is its corporate number, which has a check digit
    registration_number: str
    address: str = ""
    address_en: str = ""           # the English invoice prints this, or `address` when it is empty
    invoice_number_prefix: str = Field(default="CB", pattern=r"^[A-Z0-9]{1,8}$")

    @field_validator("registration_number", mode="before")
    @classmethod
    def _registration_number(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str) or not _REGISTRATION.match(value):
            raise ValueError(f"{value!r} must be 'T' followed by 13 digits, e.g. T4010001234567")
        digits = value[1:]
        if info.data.get("corporation", True) and int(digits[0]) != corporate_number_check_digit(digits[1:]):
            raise ValueError(f"{value!r}: check digit {digits[0]} is wrong (expected "
                             f"{corporate_number_check_digit(digits[1:])}); a typo?")
        return value


class PaymentInstructions(_Strict):
    """How and by when the customer pays the sales agent (art. 23), as printed on the invoice."""

    method: str = Field(min_length=1)
    method_en: str = ""
    account: str = ""
    account_en: str = ""
    due_months_after_billing_month: int = Field(default=1, ge=0, le=12)
    due_day: int = Field(default=31, ge=1, le=31)   # clamped to the month's last day

    def due_date(self, billing_month_last_day: date) -> date:
        year, month = add_months(billing_month_last_day.year, billing_month_last_day.month,
                                 self.due_months_after_billing_month)
        return date(year, month, min(self.due_day, month_last_day(year, month).day))


class AgentContact(_Strict):
    """Where a customer reaches its sales agent: printed in every notice's footer and on the invoice."""

    email: str = Field(default="", pattern=r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str = Field(default="", pattern=r"^$|^[0-9+][0-9 ()-]{5,}$")
    hours: str = ""                # e.g. 平日 9:00〜17:00
    hours_en: str = ""

    @model_validator(mode="after")
    def _reachable(self) -> AgentContact:
        if not (self.email or self.phone):
            raise ValueError("a sales agent's contact needs an email or a phone number")
        return self


class SalesAgent(_Strict):
    """A sales agent as customers know it (art. 23): its name, how to reach it, how to pay it."""

    name: str = Field(min_length=1)
    name_en: str = ""
    contact: AgentContact
    payment: PaymentInstructions


class MailSettings(_Strict):
    """How notices present themselves: the From display name and the domain of their Message-IDs."""

    from_name: str = Field(min_length=1)           # the From display name of Japanese notices
    from_name_en: str = ""                         # of English notices (from_name when empty)
    message_id_domain: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")

    def display_name(self, language: str) -> str:
        return (self.from_name_en or self.from_name) if language == "en" else self.from_name


ACCOUNTING_PRODUCTS = ("freee", "yayoi", "mf")
OUT_OF_SCOPE_KEY = "out_of_scope"     # the tax category key of lines outside the scope of consumption tax (不課税)


def _default_tax_categories() -> dict[str, dict[str, str]]:
    # Each product's own names for 10% taxable sales and for sales outside the scope of tax (as shipped; an
    # operator whose books use other names, e.g. 弥生's 税抜 "課税売上別10%", sets them in operator.yaml).
    return {"freee": {"10%": "課税売上10%", "8%": "課税売上8%", OUT_OF_SCOPE_KEY: "不課税"},
            "yayoi": {"10%": "課税売上込10%", "8%": "課税売上込8%", OUT_OF_SCOPE_KEY: "対象外"},
            "mf": {"10%": "課税売上 10%", "8%": "課税売上 8%", OUT_OF_SCOPE_KEY: "対象外"}}


class AccountingSettings(_Strict):
    """How `cloudbackup billing export --format freee|yayoi|mf` books the month's sales journal."""

    sales_account: str = Field(default="売上高", min_length=1)           # 勘定科目 of the sale (credit side)
    receivable_account: str = Field(default="売掛金", min_length=1)      # 勘定科目 of what is owed (debit side)
    # Whom the receivable is against: the customer (the invoice's recipient) or its sales agent, who collects the
    # payment (art. 23). Printed as 取引先 / 補助科目.
    counterparty: Literal["customer", "sales_agent"] = "customer"
    # Per product: the tax category (税区分) for each rate ("10%", "8%", ...) and for out-of-scope lines.
    tax_categories: dict[str, dict[str, str]] = Field(default_factory=_default_tax_categories)
    encoding: Literal["cp932", "utf-8"] = "cp932"                       # `--encoding` overrides it
    yayoi_header_row: bool = False       # 弥生's import format is positional (25/27 items): no header row

    @field_validator("tax_categories")
    @classmethod
    def _every_product(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        merged = _default_tax_categories()
        for product, names in value.items():
            if product not in ACCOUNTING_PRODUCTS:
                raise ValueError(f"unknown accounting product {product!r}: one of {', '.join(ACCOUNTING_PRODUCTS)}")
            merged[product] = {**merged[product], **names}
        return merged

    def tax_category(self, product: str, rate: Decimal) -> str:
        key = OUT_OF_SCOPE_KEY if rate == 0 else f"{(rate * 100).normalize():f}%"
        try:
            return self.tax_categories[product][key]
        except KeyError:
            raise KeyError(f"operator.yaml accounting.tax_categories.{product} has no tax category for {key}") \
                from None


class PeriodSettings(_Strict):
    """How the terms' one-month periods (art. 8 minimum term, art. 11 notice) are counted."""

    # Civil Code art. 140: a period that starts during a day does not count that first day (the default: a
    # contract or a notice is made during a day). `true` counts it, for an operator whose terms say so.
    count_first_day: bool = False


class OperatorSettings(_Strict):
    issuer: Issuer
    mail: MailSettings
    sales_agents: Annotated[dict[str, SalesAgent], Field(min_length=1)]
    accounting: AccountingSettings = AccountingSettings()
    periods: PeriodSettings = PeriodSettings()

    @field_validator("sales_agents")
    @classmethod
    def _agent_codes(cls, agents: dict[str, SalesAgent]) -> dict[str, SalesAgent]:
        for code in agents:
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", code):
                raise ValueError(f"sales agent code {code!r} must be lower-case letters, digits and '-'")
        return agents

    def agent(self, code: str) -> SalesAgent:
        try:
            return self.sales_agents[code]
        except KeyError:
            raise KeyError(f"sales agent {code!r} is not in the operator settings") from None


def operator_path() -> Path:
    return settings.registry_dir() / "operator.yaml"


def load_operator(path: Path | None = None) -> OperatorSettings:
    """Load the operator settings file; raises ValueError naming the file and the field."""
    path = path or operator_path()
    return load_model(path, OperatorSettings)
