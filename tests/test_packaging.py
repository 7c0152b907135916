"""What ships: the wheel holds the whole package and its templates, and none of the dev tools (tests/devtools);
the Docker image is built from constraints.txt, pyproject.toml, include/ and sql/ only, so tests/ cannot get in."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path, PurePosixPath

import pytest

from conftest import ROOT

PACKAGE = ROOT / "include" / "cloudbackup"
SUBPACKAGES = {"registry", "backup", "billing", "notices", "console", "edges"}
DEV_ONLY = {"devstack", "demo", "console_seed", "devtools"}
# Left out of the copy the wheel is built from: environments, caches, run data and earlier build output.
_NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
                                      ".hypothesis")
_RUN_DATA = {ROOT / "var", ROOT / "bench" / "work"}


def not_sources(folder: str, names: list[str]) -> set[str]:
    return set(_NOT_SOURCES(folder, names)) | {n for n in names if Path(folder, n) in _RUN_DATA}


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The file names in the wheel `pip wheel` builds, offline, from a copy of the checkout (the build
    writes build/ and *.egg-info next to the sources: never into the shared work tree)."""
    major = int(version("setuptools").split(".")[0])
    assert major >= 68, "the dev extra brings setuptools>=68: run `make setup`"
    tmp = tmp_path_factory.mktemp("wheel")
    source, out = tmp / "source", tmp / "out"
    shutil.copytree(ROOT, source, ignore=not_sources)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                             "--disable-pip-version-check", "-q", "-w", str(out), str(source)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("cloudbackup-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_the_wheel_holds_no_dev_tool(wheel_files: list[str]) -> None:
    shipped_dev_tools = [name for name in wheel_files
                         if {PurePosixPath(part).stem for part in PurePosixPath(name).parts} & DEV_ONLY]
    assert not shipped_dev_tools
    tops = {PurePosixPath(name).parts[0] for name in wheel_files}
    assert tops == {"cloudbackup", next(t for t in tops if t.endswith(".dist-info"))}, tops


def test_the_wheel_holds_every_module_subpackage_and_template(wheel_files: list[str]) -> None:
    names = set(wheel_files)
    for sub in sorted(SUBPACKAGES):
        assert f"cloudbackup/{sub}/__init__.py" in names, sub
    sources = {f"cloudbackup/{p.relative_to(PACKAGE).as_posix()}" for p in PACKAGE.rglob("*.py")
               if "__pycache__" not in p.parts}
    assert sources - names == set()
    templates = {f"cloudbackup/{p.relative_to(PACKAGE).as_posix()}" for p in (PACKAGE / "templates").rglob("*.j2")}
    assert templates, "include/cloudbackup/templates has no *.j2"
    assert templates - names == set()
    assert any(re.fullmatch(r"cloudbackup/templates/notices/.+\.j2", n) for n in names)
    assert any(re.fullmatch(r"cloudbackup/templates/console/.+\.j2", n) for n in names)


def test_the_wheel_installs_the_command(wheel_files: list[str]) -> None:
    assert any(n.endswith(".dist-info/entry_points.txt") for n in wheel_files)


def copy_sources(dockerfile: str) -> list[str]:
    """The build-context paths every COPY/ADD of the Dockerfile takes (COPY --from=stage is not the context)."""
    text = re.sub(r"\\\n", " ", dockerfile)
    sources: list[str] = []
    for line in text.splitlines():
        words = line.strip().split(None, 1)
        if len(words) < 2 or words[0].upper() not in ("COPY", "ADD"):
            continue
        flags = re.match(r"(?:--[\w-]+(?:=\S+)?\s+)*", words[1]).group(0)
        if "--from" in flags:
            continue
        rest = words[1][len(flags):].strip()
        args = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        sources.extend(args[:-1])
    return sources


def test_the_image_copies_only_the_package_its_constraints_and_sql() -> None:
    sources = copy_sources((ROOT / "Dockerfile").read_text())
    assert sorted(sources) == sorted(["constraints.txt", "pyproject.toml", "include", "sql"]), sources


def test_copy_sources_reads_flags_lists_and_continuations() -> None:
    assert copy_sources("FROM x\nCOPY --chown=a:b one two /dst/\nADD [\"three\", \"/d\"]\n"
                        "COPY --from=build /app /app\nCOPY \\\n  four /d\n") == ["one", "two", "three", "four"]
