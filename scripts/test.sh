#!/usr/bin/env bash
# The whole test suite: build, start real Redis, Qdrant and S3 on 127.0.0.1 (scripts/services), run every test,
# stop the servers. Without the servers (not installed, or FACESEARCH_TEST_SERVICES=off) the integration tests
# skip with their reason; under CI a server that does not start fails the run.
# Usage: pnpm test [vitest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

pnpm build

started=0
watcher=
cleanup() {
  # Its own process group: the check it may be running goes with it.
  if [ -n "$watcher" ]; then kill -TERM -- "-$watcher" 2>/dev/null || true; fi
  if [ "$started" = 1 ]; then bash scripts/services/down.sh >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

if [ "${FACESEARCH_TEST_SERVICES:-on}" != "off" ]; then
  if bash scripts/services/up.sh; then
    started=1
    # shellcheck disable=SC1091
    source .stack/services.env
    # Checks the servers while the tests run; a stuck one gets its diagnostics printed (and S3 a fresh start).
    setsid bash scripts/services/watch.sh >/dev/null &
    watcher=$!
  elif [ "${CI:-}" = "true" ]; then
    echo "test: the backing services did not start (see above); CI needs them" >&2
    exit 1
  else
    echo "test: the backing services did not start; integration tests will skip (run 'pnpm services:install' as root)" >&2
  fi
fi

mkdir -p test-artifacts
status=0
pnpm exec vitest run --reporter=default --reporter=json --outputFile.json=test-artifacts/vitest.json "$@" || status=$?
# One plain closing line for CI: counts of the tests that really ran.
node -e '
  const r = require("./test-artifacts/vitest.json");
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' || true
if [ -s "${STACK_DIR:-.stack}/watch.log" ]; then
  echo "test: a backing server stopped answering during the run (scripts/services/watch.sh):" >&2
  grep '^watch:' "${STACK_DIR:-.stack}/watch.log" >&2 || true
fi
exit "$status"
