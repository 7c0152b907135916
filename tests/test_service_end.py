"""End of service (art. 19): the operator announces it with `cloudbackup notices service-end`, at least one month
ahead (19(2)), once to each customer whose contract runs on, in its language; the deliver_notices path sends it."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from notices_support import parse, subject_of, text_of

from cloudbackup import cli
from cloudbackup.clock import tokyo_date, utcnow
from cloudbackup.notices import service_end
from cloudbackup.notices.kinds import one_month_after
from cloudbackup.registry.customers import load_registry
from conftest import customer_yaml


def _customers(registry_dir: Path) -> None:
    files = {
        "end-ja": customer_yaml("end-ja", paths=["/srv/a"]),
        "end-en": customer_yaml("end-en", paths=["/srv/a"], language="en"),
        # Suspended (art. 14) is not ended: the contract runs on, so the customer is told.
        "end-held": customer_yaml("end-held", paths=["/srv/a"], status="suspended"),
        # Its own cancellation ends the contract before the service does: nothing to announce to it.
        "end-leaving": customer_yaml("end-leaving", paths=["/srv/a"],
                                     extra="cancellation:\n  notice_date: 2026-09-01\n  requested_end: 2026-10-31\n"),
    }
    for customer_id, text in files.items():
        (registry_dir / "customers" / f"{customer_id}.yaml").write_text(text, encoding="utf-8")


def _mails(stack, before: set[str]) -> dict[str, list]:  # noqa: ANN001
    out: dict[str, list] = {}
    for path in sorted(stack.smtp.maildir.glob("*.eml")):
        if path.name not in before:
            msg = parse(path)
            out.setdefault(str(msg["To"]).split("@")[0], []).append(msg)
    return out


@pytest.mark.servers
def test_the_service_end_reaches_each_customer_once_in_its_language_through_real_smtp(
        stack, registry_dir, database, engine, connect_service, capsys) -> None:
    """Art. 19(2), 28: one notice per affected customer (suspended included, a contract ending earlier not), in
    Japanese or English with the last day; a second run of the same command queues and sends nothing more."""
    _customers(registry_dir)
    connect_service(database, [])
    last_day = one_month_after(tokyo_date(utcnow())) + timedelta(days=10)
    before = {p.name for p in stack.smtp.maildir.glob("*.eml")}

    assert cli.main(["notices", "service-end", "--last-day", last_day.isoformat()]) == 0
    printed = capsys.readouterr().out
    assert "queued 3 notice(s); 0 customer(s) told before; 1 not affected" in printed
    assert "not affected: end-leaving: its own last day of service is 2026-10-31" in printed
    assert cli.main(["notices", "deliver"]) == 0
    assert cli.main(["notices", "service-end", "--last-day", last_day.isoformat()]) == 0
    assert "queued 0 notice(s); 3 customer(s) told before" in capsys.readouterr().out
    assert cli.main(["notices", "deliver"]) == 0

    mails = _mails(stack, before)
    assert sorted(mails) == ["end-en", "end-held", "end-ja"] and all(len(m) == 1 for m in mails.values())
    ja, en = mails["end-ja"][0], mails["end-en"][0]
    assert subject_of(ja) == (f"【クラウドバックアップ】サービス提供終了のお知らせ"
                              f"（{last_day.year}年{last_day.month}月{last_day.day}日をもって終了）")
    assert f"提供終了日: {last_day.year}年{last_day.month}月{last_day.day}日(" in text_of(ja)
    assert "約款第19条第1項・第2項" in text_of(ja)
    assert subject_of(en) == f"[Cloud Backup] The service ends on {last_day.day} {last_day:%B %Y}"
    assert f"Last day of service: {last_day:%a} {last_day.day} {last_day:%b %Y}" in text_of(en)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT customer_id, sent_at IS NOT NULL AS sent FROM notices "
                                    "WHERE kind = 'service_end' ORDER BY customer_id")).all()
    assert [tuple(r) for r in rows] == [("end-en", True), ("end-held", True), ("end-ja", True)]


def test_a_last_day_less_than_a_month_ahead_is_refused_with_the_article_and_nothing_is_queued(
        registry_dir, engine, capsys, monkeypatch) -> None:
    """Art. 19(2): at least one month's notice, and the terms name no exception; the earliest allowed last day is
    the same day a month later (Tokyo calendar). A part of the service, for named customers only, is its own
    notice; an unknown customer is refused."""
    _customers(registry_dir)
    customers = list(load_registry(registry_dir).customers)
    today = date(2026, 11, 28)

    with pytest.raises(service_end.ServiceEndRefused, match=r"art\. 19\(2\).*on or after 2026-12-28"):
        service_end.announce(engine, customers, date(2026, 12, 27), today)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM notices")).scalar_one() == 0

    part = service_end.announce(engine, customers, date(2026, 12, 28), today, scope="遠隔地保管オプション",
                                scope_en="Off-site copy option", only=["end-en"])
    assert part.queued == ("end-en",) and part.end_id.startswith("part-")
    whole = service_end.announce(engine, customers, date(2026, 12, 28), today, dry_run=True)
    assert whole.queued == ("end-en", "end-held", "end-ja") and whole.end_id == "service"
    with pytest.raises(service_end.ServiceEndRefused, match="unknown customer"):
        service_end.announce(engine, customers, date(2026, 12, 28), today, only=["nobody"])
    # Later, when the notice was given in time, asking again is not refused: nothing new to send.
    again = service_end.announce(engine, customers, date(2026, 12, 28), date(2026, 12, 20),
                                 scope="遠隔地保管オプション", scope_en="Off-site copy option", only=["end-en"])
    assert (again.queued, again.already) == ((), ("end-en",))

    # From the shell: exit 1, the article named, nothing queued.
    from cloudbackup.edges import connections
    monkeypatch.setattr(connections, "database", lambda: engine)   # the CLI on this test's database
    too_soon = one_month_after(tokyo_date(utcnow())) - timedelta(days=1)
    assert cli.main(["notices", "service-end", "--last-day", too_soon.isoformat()]) == 1
    assert "art. 19(2)" in capsys.readouterr().err
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM notices")).scalar_one() == 1   # the part's notice only
