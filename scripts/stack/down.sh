#!/usr/bin/env bash
# pnpm stack:down - stops the apps started by scripts/stack/up.sh (SIGTERM, then SIGKILL after STACK_GRACE
# seconds, default 20), gateway first so no new work comes in, then the backing servers (scripts/services/down.sh).
# KEEP_SERVICES=1 leaves the backing servers running.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo_root"
STACK_GRACE=${STACK_GRACE:-20}

if [ -d "$APPS_DIR" ]; then
  order=(gateway indexer detector embedder)
  for kind in "${order[@]}"; do
    # Replicas of one kind stop together.
    pids=()
    for f in "$APPS_DIR/$kind"*.pid; do
      [ -e "$f" ] || continue
      stop_app "$f" "$STACK_GRACE" &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || true; done
  done
else
  say "no apps to stop ($APPS_DIR does not exist)"
fi

if [ "${KEEP_SERVICES:-0}" != 1 ]; then
  bash scripts/services/down.sh
fi
