#!/usr/bin/env bash
# The whole test suite against the real servers; pytest's exit 5 (no tests collected) is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh || exit 1
.venv/bin/ruff check . || exit 1
# Import contracts ([tool.importlinter] in pyproject.toml): the pure core, the edges, the shells.
.venv/bin/lint-imports --no-logo --no-cache || exit 1
# Types of the pure core, cloudbackup.backup and cloudbackup.edges ([tool.mypy] in pyproject.toml).
MYPY_TARGETS=(
  -m cloudbackup.clock
  -p cloudbackup.registry
  -m cloudbackup.billing.months -m cloudbackup.billing.invoice -m cloudbackup.billing.rules -m cloudbackup.billing.preview
  -m cloudbackup.notices.kinds -m cloudbackup.notices.labels -m cloudbackup.notices.templating
  -p cloudbackup.backup
  -p cloudbackup.edges
)
.venv/bin/mypy "${MYPY_TARGETS[@]}" || exit 1
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
