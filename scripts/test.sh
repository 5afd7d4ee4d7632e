#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (as root): set-up
# (packages, dockerd, venv, the test-only tools), the linter, then every tier:
# unit, functional, integration, e2e. The e2e tier's `bay up` cluster is built
# in the background meanwhile (log: /var/log/bay/e2e-build.log). At the end:
# each tier's wall time, and the whole suite's count.
# Extra arguments go to one pytest run instead (e.g. `bash scripts/test.sh tests/unit`,
# `bash scripts/test.sh -m "not e2e"`).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
started=$(date +%s)
bash "$here/scripts/setup.sh" --test
cd "$here"
log_dir=/var/log/bay
times=("setup $(($(date +%s) - started)) s")

# the linter first (configured in pyproject.toml): a finding fails the run before any test
.venv/bin/ruff check . || { echo "test.sh: ruff found problems (above); fix them first" >&2; exit 1; }

if [ $# -gt 0 ]; then
  set +e
  .venv/bin/pytest "$@"
  rc=$?
  set -e
  [ "$rc" = 5 ] && { echo "test.sh: pytest collected no tests; that is a failure here" >&2; exit 1; }
  exit "$rc"
fi

results=$(mktemp -d)
status="$results/e2e-cluster.json"
build_log="$log_dir/e2e-build.log"
build_started=$(date +%s)
# the e2e cluster's build is mostly waiting on Salt, apt and Docker inside the nodes
.venv/bin/python -m tests.e2e.prebuild "$status" >"$build_log" 2>&1 &
build_pid=$!
cleanup() {
  # interrupted before the e2e tier took the cluster over: stop the build and remove what it made
  if kill -0 "$build_pid" 2>/dev/null; then
    kill "$build_pid" 2>/dev/null || true
    wait "$build_pid" 2>/dev/null || true
  fi
  if [ -n "${e2e_pending:-}" ]; then
    .venv/bin/python -c 'from bay_salt.cluster.local import LocalCluster; from tests.e2e.prebuild import CLUSTER
LocalCluster(CLUSTER).down()' >/dev/null 2>&1 || true
  fi
  rm -rf "$results"
}
e2e_pending=1
trap cleanup EXIT

failed=()
tier() {  # tier NAME PYTEST-ARGS...: one pytest run, timed; its JUnit XML counted at the end
  local name=$1 t0 rc
  shift
  t0=$(date +%s)
  set +e
  .venv/bin/pytest --junitxml="$results/$name.xml" "$@"
  rc=$?
  set -e
  times+=("$name $(($(date +%s) - t0)) s")
  if [ "$rc" = 5 ]; then
    echo "test.sh: the $name tier collected no tests; that is a failure here" >&2
    failed+=("$name")
  elif [ "$rc" != 0 ]; then
    failed+=("$name")
  fi
}

tier unit tests/unit
tier functional tests/functional
tier integration tests/integration

echo "test.sh: waiting for the e2e cluster's build (log: $build_log)" >&2
set +e
wait "$build_pid"
build_rc=$?
set -e
times+=("e2e-cluster-build $(($(date +%s) - build_started)) s (in the background from the start)")
if [ "$build_rc" != 0 ]; then
  echo "test.sh: the e2e cluster's build failed (the e2e tier builds it again); its log ends:" >&2
  tail -20 "$build_log" >&2 || true
fi
e2e_pending=
BAY_E2E_PREBUILT="$status" tier e2e tests/e2e

echo
echo "test.sh: wall time per tier:"
printf '  %s\n' "${times[@]}"
echo "  total $(($(date +%s) - started)) s"
.venv/bin/python - "$results"/*.xml <<'EOF'
import sys
import xml.etree.ElementTree as ET

counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for path in sys.argv[1:]:
    for suite in ET.parse(path).getroot().iter("testsuite"):
        for k in counts:
            counts[k] += int(suite.get(k, 0))
bad = counts["failures"] + counts["errors"]
print(f"total: {counts['tests'] - bad - counts['skipped']} passed, {bad} failed, {counts['skipped']} skipped")
EOF
if [ ${#failed[@]} -gt 0 ]; then
  echo "test.sh: failed tiers: ${failed[*]}" >&2
  exit 1
fi
