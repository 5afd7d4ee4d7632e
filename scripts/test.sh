#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (as root): set-up
# (packages, dockerd, venv), the linter, then every tier: unit, functional,
# integration, e2e.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/unit`).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$here/scripts/setup.sh"
cd "$here"
# the linter first (configured in pyproject.toml): a finding fails the run before any test
.venv/bin/ruff check . || { echo "test.sh: ruff found problems (above); fix them first" >&2; exit 1; }
set +e
.venv/bin/pytest "${@:-tests}"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "test.sh: pytest collected no tests; that is a failure here" >&2
  exit 1
fi
exit "$rc"
