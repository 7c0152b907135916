"""Notice templates: one Jinja2 environment (autoescaped HTML, StrictUndefined) and its filters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, pass_context
from jinja2.runtime import Context

from cloudbackup.clock import TOKYO
from cloudbackup.notices import labels

KINDS = ("collection_errors", "capacity", "maintenance", "suspension", "service_end", "invoice", "correction")
LANGUAGES = ("ja", "en")
PARTS = ("subject", "txt", "html")
_WEEKDAYS_JA = "月火水木金土日"
BAR_WIDTH = 20
PATH_MAX_CHARS = 200


def yen(amount: int | Decimal) -> str:
    """Integer yen as `¥12,345` (a negative amount as `-¥12,345`)."""
    sign = "-" if amount < 0 else ""
    return f"{sign}¥{abs(amount):,}"


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r} in a notice: times must be timezone-aware")
    return moment.astimezone(TOKYO)


@pass_context
def jst(ctx: Context, moment: datetime) -> str:
    """An instant on the Tokyo clock, in the notice's language, always saying it is JST."""
    t = _aware(moment)
    if ctx["language"] == "ja":
        return f"{t.year}年{t.month}月{t.day}日({_WEEKDAYS_JA[t.weekday()]}) {t:%H:%M} (日本時間)"
    return f"{t:%a} {t.day} {t:%b %Y %H:%M} JST"


@pass_context
def day(ctx: Context, value: date | datetime) -> str:
    """A Tokyo calendar day, in the notice's language."""
    if isinstance(value, datetime):
        value = _aware(value).date()
    if ctx["language"] == "ja":
        return f"{value.year}年{value.month}月{value.day}日({_WEEKDAYS_JA[value.weekday()]})"
    return f"{value:%a} {value.day} {value:%b %Y}"


@pass_context
def long_date(ctx: Context, value: date) -> str:
    """A calendar date without the weekday, as invoices print it: `2026年11月1日` / `1 November 2026`."""
    if ctx["language"] == "ja":
        return f"{value.year}年{value.month}月{value.day}日"
    return f"{value.day} {value:%B %Y}"


@pass_context
def month(ctx: Context, value: Any) -> str:
    """A billing month (`BillingMonth` or `YYYY-MM`): `2026年10月` / `October 2026`."""
    year, number = (int(p) for p in str(value).split("-")) if isinstance(value, str) else (value.year, value.month)
    if ctx["language"] == "ja":
        return f"{year}年{number}月"
    return f"{date(year, number, 1):%B %Y}"


def short_day(value: datetime) -> str:
    """`11/20`: the Tokyo day of a chart point."""
    return f"{_aware(value):%m/%d}"


def num(value: int) -> str:
    return f"{value:,}"


def gb(size_bytes: int) -> str:
    """Decimal gigabytes, as the contract capacity is sold (catalog.GB), one decimal, truncated; below 1 GB in
    decimal MB, below 1 MB in kB, so that a small figure never reads `0.0 GB` or `0.8 MB`."""
    unit, name = next(((u, n) for u, n in ((10**9, "GB"), (10**6, "MB"), (10**3, "kB")) if size_bytes >= u),
                      (10**3, "kB"))
    value = (Decimal(size_bytes) / Decimal(unit)).quantize(Decimal("0.1"), rounding=ROUND_DOWN)
    return f"{value:,} {name}"


def percent(part: int, whole: int) -> str:
    value = (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), rounding=ROUND_DOWN)
    return f"{value}%"


def bar(part: int, whole: int, width: int = BAR_WIDTH) -> str:
    """A usage bar every mail client shows, e.g. `[###############-----]`; '!' marks usage over 100%."""
    filled = min(width, part * width // whole) if whole > 0 else 0
    over = "!" if part > whole else ""
    return "[" + "#" * filled + "-" * (width - filled) + "]" + over


def bar_percent(part: int, whole: int) -> int:
    """Width of an HTML bar, 0–100."""
    return max(0, min(100, part * 100 // whole)) if whole > 0 else 0


def safe_path(path: str) -> str:
    """A remote file name as one printable line: control characters shown escaped, long names cut."""
    shown = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in path)
    return shown if len(shown) <= PATH_MAX_CHARS else shown[: PATH_MAX_CHARS - 1] + "…"


@pass_context
def label(ctx: Context, code: str, group: str) -> str:
    """The customer-facing words for a code (collection error reason, suspension reason)."""
    return labels.label(group, code, ctx["language"])


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("cloudbackup", "templates"),
        undefined=StrictUndefined,
        # Template files are named *.html.j2: the default select_autoescape(["html"]) misses them.
        autoescape=lambda name: name is not None and name.endswith((".html.j2", ".html")),
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(yen=yen, num=num, jst=jst, day=day, long_date=long_date, month=month, short_day=short_day,
                       gb=gb, percent=percent, bar=bar, bar_percent=bar_percent, safe_path=safe_path, label=label)
    return env


ENV = _environment()


@dataclass(frozen=True)
class RenderedNotice:
    subject: str
    text: str
    html: str


def render(kind: str, language: str, context: dict[str, Any]) -> RenderedNotice:
    """Render `notices/<kind>.<lang>.{subject,txt,html}.j2`; an undefined variable is an error."""
    if kind not in KINDS:
        raise ValueError(f"unknown notice kind {kind!r}; known: {', '.join(KINDS)}")
    if language not in LANGUAGES:
        raise ValueError(f"no notice templates for language {language!r}; known: {', '.join(LANGUAGES)}")
    # `agent` is None when the customer's sales agent is unknown (`registry check` reports it): the footer then
    # names no agent. `name_policy` is the operator's file-name policy (backup.yaml), worded in the digest.
    full = {"agent": None, "name_policy": None, **context, "language": language}

    def part(suffix: str) -> str:
        return ENV.get_template(f"notices/{kind}.{language}.{suffix}.j2").render(full)

    subject = " ".join(part("subject").split())  # one header line, whatever the template's whitespace
    return RenderedNotice(subject, part("txt"), part("html"))
