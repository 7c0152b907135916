"""Notice templates as the customer reads them (art. 13(2), 14(2), 17(2)(3), 28): pure rendering, no servers."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from jinja2 import UndefinedError

from cloudbackup.notices import samples, templating
from cloudbackup.notices.kinds import DIGEST_PATHS, CapacityNotice, ErrorPath, digest
from cloudbackup.notices.templating import KINDS, LANGUAGES, PARTS, bar, render, safe_path, yen
from cloudbackup.registry.catalog import GB
from cloudbackup.registry.maintenance import Window

TEMPLATE_DIR = Path(templating.__file__).resolve().parents[1] / "templates" / "notices"
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_in_both_languages_without_undefined_variables(kind: str, language: str) -> None:
    """StrictUndefined: a template naming a variable the sample context lacks fails here, not in a customer's mail."""
    rendered = samples.render_sample(kind, language)
    assert rendered.subject and "\n" not in rendered.subject
    assert rendered.text.strip() and rendered.html.strip()
    for part in (rendered.subject, rendered.text, rendered.html):
        assert "{{" not in part and "{%" not in part
    if language == "ja":
        assert "クラウドバックアップ" in rendered.subject
        assert JAPANESE.search(rendered.text)
    else:
        assert "Cloud Backup" in rendered.subject
        assert "約款" not in rendered.text  # English customers get English text throughout


def test_every_template_file_is_a_kind_part_or_the_shared_layout() -> None:
    names = {p.name for p in TEMPLATE_DIR.glob("*.j2")}
    expected = {f"{k}.{lang}.{part}.j2" for k in KINDS for lang in LANGUAGES for part in PARTS}
    assert expected <= names
    assert all(n in expected or n.startswith("_") for n in names), names - expected


def test_a_variable_missing_from_the_context_is_an_error_not_a_blank() -> None:
    customer = samples.sample_customer("ja")
    with pytest.raises(UndefinedError):
        render("capacity", "ja", {"customer": customer})


def test_the_html_part_escapes_what_customers_and_remote_files_supply() -> None:
    customer = samples.sample_customer("en").model_copy(update={"name": "<script>alert(1)</script> & Co"})
    context = {"customer": customer, "digest": digest("run-1", datetime(2026, 11, 1, tzinfo=UTC), None, 1,
                                                      [ErrorPath("/srv/<img src=x onerror=alert(1)>.txt", "vanished")])}
    rendered = render("collection_errors", "en", context)
    assert "<script>" not in rendered.html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in rendered.html
    assert "<img" not in rendered.html
    assert "<script>alert(1)</script> & Co" in rendered.text  # the text part is plain text, shown as written


def test_yen_is_written_with_the_yen_sign_and_thousands_separators() -> None:
    assert yen(12345) == "¥12,345"
    assert yen(0) == "¥0"
    assert yen(1_234_567_890) == "¥1,234,567,890"
    assert yen(-4000) == "-¥4,000"


@pytest.mark.parametrize(("language", "start", "end"), [
    ("ja", "2026年12月6日(日) 01:00 (日本時間)", "2026年12月6日(日) 07:00 (日本時間)"),
    ("en", "Sun 6 Dec 2026 01:00 JST", "Sun 6 Dec 2026 07:00 JST"),
])
def test_the_maintenance_window_is_given_in_japan_time(language: str, start: str, end: str) -> None:
    """Art. 13(2): the period of the stop, on the customer's clock (stored in UTC: 16:00–22:00 on the 5th)."""
    window = Window(id="w1", start=datetime(2026, 12, 5, 16, 0, tzinfo=UTC),
                    end=datetime(2026, 12, 5, 22, 0, tzinfo=UTC), reason="storage upgrade")
    rendered = render("maintenance", language, {"customer": samples.sample_customer(language), "window": window})
    assert start in rendered.text and end in rendered.text
    assert start in rendered.subject
    assert start in rendered.html


def test_a_naive_time_is_refused_rather_than_guessed() -> None:
    """A notice never guesses a zone; a maintenance.yaml time without one is Tokyo time, as that file documents."""
    naive = CapacityNotice(80, 80 * GB, 100 * GB, datetime(2026, 12, 5, 1, 0), ())
    with pytest.raises(ValueError, match="timezone-aware"):
        render("capacity", "ja", {"customer": samples.sample_customer("ja"), "capacity": naive})
    window = Window(id="w1", start=datetime(2026, 12, 5, 1, 0), end=datetime(2026, 12, 5, 5, 0), reason="r")
    assert window.start.utcoffset() == timedelta(hours=9)


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_digest_of_thousands_of_errors_counts_them_all_but_lists_only_the_first_paths(language: str) -> None:
    """Art. 17(2): the customer learns how many and why, without a mail of thousands of lines."""
    errors = [ErrorPath(f"/srv/share/dir{n % 7}/file{n:05d}.dat", "permission_denied") for n in range(4990)]
    errors += [ErrorPath(f"/srv/share/bad name {n}?.txt", "name_policy") for n in range(10)]
    d = digest("run-1", datetime(2026, 11, 1, tzinfo=UTC), None, 123, errors)
    rendered = render("collection_errors", language, {"customer": samples.sample_customer(language), "digest": d})
    listed = [line for line in rendered.text.splitlines() if "/srv/share/" in line]
    assert len(listed) == DIGEST_PATHS
    assert "5,000" in rendered.subject and "4,990" in rendered.text and "4,980" in rendered.text
    assert len(rendered.text.splitlines()) < DIGEST_PATHS + 40
    assert [(r.reason, r.count) for r in d.by_reason] == [("permission_denied", 4990), ("name_policy", 10)]


def test_a_file_name_cannot_add_lines_to_the_notice() -> None:
    assert safe_path("/srv/evil\nSubject: hi\r.txt") == "/srv/evil\\nSubject: hi\\r.txt"
    assert len(safe_path("/srv/" + "a" * 1000)) == templating.PATH_MAX_CHARS


def test_the_capacity_chart_is_a_text_bar_every_mail_client_shows() -> None:
    """Art. 17(3): usage against the contract capacity, readable in plain text."""
    assert bar(86, 100) == "[#################---]"
    assert bar(0, 100) == "[--------------------]"
    assert bar(130, 100) == "[####################]!"
    rendered = samples.render_sample("capacity", "ja")
    assert "86.1 GB" in rendered.text and "100.0 GB" in rendered.text and "86.1%" in rendered.text
    assert "[#################---]" in rendered.text
    assert rendered.text.count("[#") == 1 + 7  # the current usage and the last seven runs


def test_preview_writes_every_kind_in_both_languages(tmp_path: Path) -> None:
    from cloudbackup.cli import main

    assert main(["notices", "preview", "--out", str(tmp_path / "preview")]) == 0
    written = {p.name for p in (tmp_path / "preview").iterdir()}
    assert written == {f"{k}.{lang}.{ext}" for k in KINDS for lang in LANGUAGES for ext in ("txt", "html")}
    assert (tmp_path / "preview" / "suspension.ja.txt").read_text(encoding="utf-8").startswith("Subject: 【")
