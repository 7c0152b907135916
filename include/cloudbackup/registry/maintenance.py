"""Operational stops (art. 13, 18(3)): maintenance windows declared in dags/registry/maintenance.yaml."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cloudbackup.clock import TOKYO
from cloudbackup.registry.yamlfile import load_model, read_yaml


class Window(BaseModel):
    """A period in which collection stops, for all customers or the listed ones; naive times are Tokyo."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    start: datetime
    end: datetime
    customers: Literal["all"] | list[str] = "all"
    reason: str = Field(min_length=1)
    emergency: bool = False          # art. 13: no advance notice was possible

    @field_validator("start", "end")
    @classmethod
    def _tokyo(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=TOKYO) if value.tzinfo is None else value

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end <= self.start:
            raise ValueError(f"window {self.id}: end {self.end} is not after start {self.start}")
        return self

    def covers(self, customer_id: str, moment: datetime) -> bool:
        applies = self.customers == "all" or customer_id in self.customers
        return applies and self.start <= moment < self.end

    def details(self, language: str) -> str:
        """The work announced in the notice (art. 13(2)); the one `reason` text serves both languages."""
        return self.reason

    def describe(self) -> str:
        fmt = "%Y-%m-%d %H:%M"
        return (f"maintenance window {self.id} ({self.start.astimezone(TOKYO):{fmt}}–"
                f"{self.end.astimezone(TOKYO):{fmt}} JST): {self.reason} (art. 13, not re-collected)")


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    windows: list[Window] = []


def load_windows(path: Path) -> list[Window]:
    """The declared windows; no file means none. A broken file raises naming the file and field."""
    if not path.exists():
        return []
    return load_model(path, _File, read_yaml(path) or {}).windows


def active_window(windows: list[Window], customer_id: str, moment: datetime) -> Window | None:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: times must be timezone-aware")
    return next((w for w in windows if w.covers(customer_id, moment)), None)
