"""The reports finance and ops run: named SQL files in sql/reports/, run with parameters, out as CSV."""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

REPORTS_DIR = Path(os.environ.get("CLOUDBACKUP_REPORTS_DIR",
                                  Path(__file__).resolve().parents[3] / "sql" / "reports"))


def available(directory: Path = REPORTS_DIR) -> dict[str, str]:
    """Report name → its first comment line (what it is for and its params)."""
    out = {}
    for path in sorted(directory.glob("*.sql")):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        out[path.stem] = first.removeprefix("--").strip()
    return out


def run(engine: Engine, name: str, params: dict[str, str], directory: Path = REPORTS_DIR) -> tuple[list[str], list]:
    path = directory / f"{name}.sql"
    if not re.fullmatch(r"[a-z0-9_]+", name) or not path.exists():
        raise ValueError(f"no report {name!r}; available: {', '.join(available(directory))}")
    sql = path.read_text(encoding="utf-8")
    needed = set(re.findall(r"(?<!:):([a-z_]+)", re.sub(r"--[^\n]*", "", sql)))
    missing = needed - set(params)
    if missing:
        raise ValueError(f"report {name!r} needs parameter(s): {', '.join(sorted(missing))}")
    with engine.connect() as conn:
        result = conn.execute(sa.text(sql), {k: params[k] for k in needed})
        return list(result.keys()), [tuple(row) for row in result]


def to_csv(columns: list[str], rows: list) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue()
