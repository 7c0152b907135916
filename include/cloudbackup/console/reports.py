"""The reports finance and ops run: named SQL files in sql/reports/, run with parameters, out as CSV.

Reached from `cloudbackup reports list|run` and the console's Reports page. Each file's first line is a
comment `-- Ops: …` or `-- Finance: …`: who may run it from the console, and what it is for.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

REPORTS_DIR = Path(os.environ.get("CLOUDBACKUP_REPORTS_DIR",
                                  Path(__file__).resolve().parents[3] / "sql" / "reports"))
_PARAM = re.compile(r"(?<!:):([a-z_]+)")


@dataclass(frozen=True)
class Report:
    name: str
    about: str                  # the first comment line, without its audience
    audience: str               # "ops" or "finance"
    params: tuple[str, ...]     # in order of first use


def _sql(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _params(sql: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_PARAM.findall(re.sub(r"--[^\n]*", "", sql))))


def describe(directory: Path = REPORTS_DIR) -> list[Report]:
    out = []
    for path in sorted(directory.glob("*.sql")):
        sql = _sql(path)
        first = sql.splitlines()[0].removeprefix("--").strip()
        audience, _, about = first.partition(":")
        if audience.strip().lower() not in ("ops", "finance"):
            raise ValueError(f"{path}: the first line must be '-- Ops: …' or '-- Finance: …'")
        out.append(Report(path.stem, about.strip(), audience.strip().lower(), _params(sql)))
    return out


def available(directory: Path = REPORTS_DIR) -> dict[str, str]:
    """Report name → its first comment line (who it is for, what it is for, its params)."""
    return {r.name: f"{r.audience.capitalize()}: {r.about}" for r in describe(directory)}


def find(name: str, directory: Path = REPORTS_DIR) -> Report:
    for report in describe(directory):
        if report.name == name:
            return report
    raise ValueError(f"no report {name!r}; available: {', '.join(available(directory))}")


def run(engine: Engine, name: str, params: dict[str, str], directory: Path = REPORTS_DIR) -> tuple[list[str], list]:
    report = find(name, directory)
    missing = [p for p in report.params if not params.get(p)]
    if missing:
        raise ValueError(f"report {name!r} needs parameter(s): {', '.join(missing)}")
    with engine.connect() as conn:
        result = conn.execute(sa.text(_sql(directory / f"{name}.sql")), {k: params[k] for k in report.params})
        return list(result.keys()), [tuple(row) for row in result]


def to_csv(columns: list[str], rows: list) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue()
