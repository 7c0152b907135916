"""One vocabulary (art. 17(2), 18(2), 28): every run status, collection-error reason, skip reason and suspension
reason the system can record has customer-facing words in every notice language."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloudbackup.backup.capacity import CapacityBasis
from cloudbackup.backup.outcomes import CollectionErrorReason, RunStatus, SkipReason
from cloudbackup.notices import labels, samples
from cloudbackup.notices.kinds import ErrorPath, digest
from cloudbackup.notices.templating import LANGUAGES, render
from cloudbackup.registry.customers import SuspensionReason


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("group", sorted(labels.GROUPS))
def test_every_value_of_every_shared_enum_has_a_label(group: str, language: str) -> None:
    words = labels.LABELS[group][language]
    values = {member.value for member in labels.GROUPS[group]}
    assert values - set(words) == set(), f"{group} values without a {language} label"
    assert set(words) - values == set(), f"{group} labels for codes nothing records"
    assert all(w.strip() and "_" not in w for w in words.values()), "a label spelled like a code"


def test_the_groups_are_the_enums_the_engine_and_the_registry_record() -> None:
    assert {"collection_error": CollectionErrorReason, "run_status": RunStatus,
            "skip": SkipReason, "suspension": SuspensionReason,
            # art. 17(3): the capacity notice names the contract figure and says what it measures
            "capacity_basis": CapacityBasis, "capacity_basis_detail": CapacityBasis} == labels.GROUPS


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("reason", list(CollectionErrorReason))
def test_a_digest_names_each_reason_the_engine_records_in_words(reason: CollectionErrorReason,
                                                                 language: str) -> None:
    """The customer reads why a file was not collected (art. 17(2)), never the internal code."""
    started = datetime(2026, 11, 24, 17, 0, tzinfo=UTC)
    found = digest("run-1", started, started + timedelta(minutes=5), 10, [ErrorPath("/srv/a.txt", reason.value)])
    customer = samples.sample_customer(language)
    rendered = render("collection_errors", language, {"customer": customer, "digest": found})
    word = labels.LABELS["collection_error"][language][reason.value]
    for part in (rendered.text, rendered.html):
        assert word.split("（")[0].split(" (")[0] in part
        assert f"{reason.value}:" not in part and f"・{reason.value}" not in part
