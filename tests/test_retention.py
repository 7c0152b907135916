"""Retention (issue 12, deliverable 1): a policy keeps exactly the snapshots restic's `forget --keep-*` rules keep,
with the buckets on the Asia/Tokyo business calendar; no policy keeps everything.

Terms: art. 17(1) (the operator keeps the customer's backups on its devices; what is kept is the plan's retention).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cloudbackup.backup.retention import RetentionPolicy, apply_policy, snapshot_time
from cloudbackup.registry.catalog import load_catalog
from cloudbackup.registry.customers import load_customer
from conftest import ROOT, customer_yaml

RESTIC = json.loads((Path(__file__).parent / "data" / "restic_policy.json").read_text())


def _id(moment: datetime, n: int) -> str:
    return moment.strftime("%Y%m%dT%H%M%S.%fZ") + f"-{n:08x}"


def _utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@pytest.mark.parametrize("case", RESTIC["cases"], ids=lambda c: c["golden"])
def test_keeps_exactly_what_restic_keeps(case: dict) -> None:
    """restic's own golden files (TestApplyPolicy, copied into tests/data with their source): on restic's
    calendar (UTC) our rules keep the same snapshots, for the same reasons, in the same order."""
    snapshots = [(_id(_utc(t), n), _utc(t)) for n, t in enumerate(RESTIC["snapshots_utc"])]
    decision = apply_policy(snapshots, RetentionPolicy(**case["policy"]), tz=UTC)

    kept_times = [snapshot_time(sid).strftime("%Y-%m-%dT%H:%M:%S.%fZ") for sid in decision.keep]
    assert kept_times == case["keep_utc"]
    assert list(decision.keep.values()) == case["reasons"]
    assert len(decision.keep) + len(decision.forget) == len(snapshots)


def test_days_weeks_and_months_are_tokyo_ones() -> None:
    """Buckets follow the business calendar: 01:00 and 23:00 JST on the 27th are one Tokyo day (two UTC days),
    so keep_daily=2 keeps the 27th's newest and the 26th's, where a UTC calendar would keep the other one."""
    a = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)    # 19:00 JST on the 26th
    b = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)    # 01:00 JST on the 27th
    c = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)    # 23:00 JST on the 27th
    snaps = [(_id(t, i), t) for i, t in enumerate([a, b, c])]
    tokyo = apply_policy(snaps, RetentionPolicy(keep_daily=2))
    assert set(tokyo.keep) == {snaps[2][0], snaps[0][0]} and tokyo.forget == [snaps[1][0]]
    assert set(apply_policy(snaps, RetentionPolicy(keep_daily=2), tz=UTC).keep) == {snaps[2][0], snaps[1][0]}

    # A Tokyo month starts at 15:00 UTC on the last day of the previous UTC month.
    oct31 = datetime(2026, 10, 31, 15, 30, tzinfo=UTC)   # 00:30 JST, 1 November
    nov1 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)       # noon JST, 1 November
    sep = datetime(2026, 9, 30, 3, 0, tzinfo=UTC)
    snaps = [(_id(t, i), t) for i, t in enumerate([sep, oct31, nov1])]
    monthly = apply_policy(snaps, RetentionPolicy(keep_monthly=2))
    assert set(monthly.keep) == {snaps[2][0], snaps[0][0]}    # November's newest, and September (the oldest)


def test_no_policy_keeps_every_snapshot_and_any_policy_keeps_the_latest() -> None:
    times = [datetime(2026, 1, 1, tzinfo=UTC).replace(day=d) for d in range(1, 29)]
    snaps = [(_id(t, i), t) for i, t in enumerate(times)]
    assert apply_policy(snaps, RetentionPolicy()).forget == []
    assert len(apply_policy(snaps, RetentionPolicy()).keep) == 28
    for policy in (RetentionPolicy(keep_last=1), RetentionPolicy(keep_weekly=1), RetentionPolicy(keep_monthly=1)):
        assert snaps[-1][0] in apply_policy(snaps, policy).keep


def test_snapshot_time_is_read_from_the_id() -> None:
    assert snapshot_time("20261125T170000.412345Z-9c1e04ab") == datetime(2026, 11, 25, 17, 0, 0, 412345, tzinfo=UTC)


def test_the_oldest_snapshot_is_kept_while_a_rule_has_counts_left() -> None:
    """restic 0.16+: a rule with counts left also keeps the oldest snapshot (the longest history it allows),
    even when the oldest shares its bucket with a newer kept one."""
    times = [datetime(2026, 11, 27, h, tzinfo=UTC) for h in (1, 2, 3)]   # one Tokyo day
    snaps = [(_id(t, i), t) for i, t in enumerate(times)]
    decision = apply_policy(snaps, RetentionPolicy(keep_daily=5))
    assert decision.keep == {snaps[2][0]: ["daily snapshot"], snaps[0][0]: ["oldest daily snapshot"]}
    assert decision.forget == [snaps[1][0]]


# --- the registry: a plan's `retention:`, a customer's override ------------------------------------------------

CATALOG = ROOT / "dags" / "registry" / "catalog.yaml"


def test_each_shipped_plan_has_a_retention_and_a_customer_file_may_override_it(tmp_path: Path) -> None:
    catalog = load_catalog(CATALOG)
    plan = catalog.plan("standard-100")
    assert plan.retention_policy() == RetentionPolicy(keep_daily=7, keep_weekly=4, keep_monthly=6)
    assert all(not p.retention_policy().empty() for p in catalog.plans)
    assert plan.object_lock_days == 0

    path = tmp_path / "own-co.yaml"
    path.write_text(customer_yaml("own-co", paths=["/srv/a"]) + "retention: {keep_last: 30, keep_monthly: 24}\n",
                    encoding="utf-8")
    own = load_customer(path)
    # The override replaces the plan's block as a whole: no daily or weekly rule is inherited.
    assert plan.retention_policy(own.retention) == RetentionPolicy(keep_last=30, keep_monthly=24)
    path.write_text(customer_yaml("own-co", paths=["/srv/a"]) + "retention: {}\n", encoding="utf-8")
    assert plan.retention_policy(load_customer(path).retention).empty()        # keep every snapshot
    path.write_text(customer_yaml("own-co", paths=["/srv/a"]), encoding="utf-8")
    assert load_customer(path).retention is None


@pytest.mark.parametrize(("block", "field"), [
    ("retention: {keep_daly: 3}", "retention.keep_daly"),
    ("retention: {keep_daily: -2}", "retention.keep_daily"),
    ("retention: {keep_weekly: many}", "retention.keep_weekly"),
])
def test_a_bad_retention_names_the_file_and_the_field(tmp_path: Path, block: str, field: str) -> None:
    path = tmp_path / "bad-co.yaml"
    path.write_text(customer_yaml("bad-co", paths=["/srv/a"]) + block + "\n", encoding="utf-8")
    with pytest.raises(ValueError) as excinfo:
        load_customer(path)
    assert str(path) in str(excinfo.value) and f"field '{field}'" in str(excinfo.value)


@pytest.mark.parametrize(("change", "field"), [
    (("retention: {keep_last: 3}", "retention: {keep_lst: 3}"), "plans.2.retention.keep_lst"),
    (("retention: {keep_last: 3}", "retention: {keep_last: 3}\n    object_lock_days: -1"),
     "plans.2.object_lock_days"),
])
def test_a_bad_plan_retention_or_lock_names_the_catalog_and_the_field(tmp_path: Path, change: tuple[str, str],
                                                                       field: str) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG.read_text(encoding="utf-8").replace(*change), encoding="utf-8")
    with pytest.raises(ValueError) as excinfo:
        load_catalog(path)
    assert str(path) in str(excinfo.value) and f"field '{field}'" in str(excinfo.value)
