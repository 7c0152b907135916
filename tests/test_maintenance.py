"""Operational stops (art. 13, 18(3)): maintenance windows, in Asia/Tokyo, for all customers or some."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cloudbackup.registry.maintenance import TOKYO, active_window, load_windows

WINDOWS = """\
windows:
  - id: storage-upgrade
    start: 2026-12-05 01:00
    end: 2026-12-05 05:00
    customers: all
    reason: ストレージ装置の更新
  - id: tanaka-line-work
    start: 2026-12-10T22:00:00+09:00
    end: 2026-12-11T02:00:00+09:00
    customers: [demo-tanaka]
    reason: 回線工事
    emergency: true
"""


@pytest.fixture
def windows(tmp_path: Path):
    path = tmp_path / "maintenance.yaml"
    path.write_text(WINDOWS, encoding="utf-8")
    return load_windows(path)


def test_a_window_without_offset_is_tokyo_time(windows) -> None:
    inside = datetime(2026, 12, 4, 16, 30, tzinfo=UTC)     # 01:30 JST on the 5th
    assert active_window(windows, "anyone", inside).id == "storage-upgrade"
    assert active_window(windows, "anyone", datetime(2026, 12, 5, 0, 59, tzinfo=TOKYO)) is None


def test_the_end_is_exclusive(windows) -> None:
    assert active_window(windows, "anyone", datetime(2026, 12, 5, 5, 0, tzinfo=TOKYO)) is None
    assert active_window(windows, "anyone", datetime(2026, 12, 5, 4, 59, tzinfo=TOKYO)) is not None


def test_a_window_for_some_customers_leaves_the_others_running(windows) -> None:
    moment = datetime(2026, 12, 11, 1, 0, tzinfo=TOKYO)
    assert active_window(windows, "demo-tanaka", moment).id == "tanaka-line-work"
    assert active_window(windows, "demo-globex", moment) is None


def test_the_skip_reason_names_the_window_and_the_article(windows) -> None:
    text = windows[0].describe()
    assert "storage-upgrade" in text and "2026-12-05 01:00" in text and "art. 13" in text


def test_no_file_means_no_window(tmp_path: Path) -> None:
    assert load_windows(tmp_path / "absent.yaml") == []


def test_a_window_that_ends_before_it_starts_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "maintenance.yaml"
    path.write_text("windows:\n  - {id: w, start: 2026-12-05 05:00, end: 2026-12-05 01:00, reason: x}\n")
    with pytest.raises(ValueError, match="maintenance.yaml.*end"):
        load_windows(path)


def test_the_repository_file_is_valid() -> None:
    load_windows(Path(__file__).resolve().parents[1] / "dags" / "registry" / "maintenance.yaml")


def test_naive_moments_are_refused(windows) -> None:
    with pytest.raises(ValueError, match="naive"):
        active_window(windows, "x", datetime(2026, 12, 5, 2, 0))
