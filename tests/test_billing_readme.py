"""The worked billing example (docs/billing.md) is what `cloudbackup billing preview` prints for the demo customer."""

from __future__ import annotations

import re
import shlex

import pytest

from cloudbackup import cli
from conftest import ROOT


def test_the_readme_worked_example_is_reproduced_exactly_by_billing_preview(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "docs" / "billing.md").read_text(encoding="utf-8")
    section = readme.split("<!-- section: billing -->", 1)[1]
    match = re.search(r"```console\n\$ (cloudbackup billing preview [^\n]+)\n(.*?)```", section, re.DOTALL)
    assert match, "README billing section has no `$ cloudbackup billing preview` example"
    command, expected = match.group(1), match.group(2)
    monkeypatch.setenv("CLOUDBACKUP_REGISTRY_DIR", str(ROOT / "dags" / "registry"))

    assert cli.main(shlex.split(command)[1:]) == 0

    assert capsys.readouterr().out == expected
    # The example walks through every timeline rule: start month, initial fee, change month, price version,
    # suspension, end month.
    for article in ("22(1)", "22(3)", "9(4)", "22(2)", "21(2)"):
        assert article in expected, article
