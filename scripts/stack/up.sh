#!/usr/bin/env bash
# pnpm stack:up - the whole distributed stack on this machine, without Docker: the backing servers (real Redis,
# Qdrant and Ceph S3 via scripts/services/up.sh), then each app as its own node process on 127.0.0.1:
#   embedders  EMBEDDERS (default 2), gRPC ports GRPC_BASE_PORT (default 50051) and up; 0 (with IMPORT_EMBED=inline):
#              none, the detectors embed everything themselves (EMBEDDER_GRPC_URL unset)
#   detectors  DETECTORS (default 2), gRPC ports after the embedders'
#   indexer    1
#   gateway    HTTP on PORT (default 3000)
# Each worker serves Prometheus metrics at GET /metrics, on ports METRICS_BASE_PORT (default 9464) and up: the
# embedders', then the detectors', then the indexer's (the gateway's are on PORT).
# Logs and pid files go to .stack/apps/. Waits until the gateway's /health/ready is green (STACK_READY_TIMEOUT
# seconds, default 180) and prints the URLs and keys. ADMIN_API_KEY and DEFAULT_APP_API_KEY come from the
# environment; unset, development keys are used and printed. SKIP_BUILD=1 skips `tsc -b`.
# Stop everything with scripts/stack/down.sh (pnpm stack:down).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo_root"

PORT=${PORT:-3000}
DETECTORS=${DETECTORS:-2}
EMBEDDERS=${EMBEDDERS:-2}
GRPC_BASE_PORT=${GRPC_BASE_PORT:-50051}
METRICS_BASE_PORT=${METRICS_BASE_PORT:-9464}
STACK_READY_TIMEOUT=${STACK_READY_TIMEOUT:-180}
dev_keys=0
if [ -z "${ADMIN_API_KEY:-}" ]; then ADMIN_API_KEY=dev-admin-key-change-me; dev_keys=1; fi
if [ -z "${DEFAULT_APP_API_KEY:-}" ]; then DEFAULT_APP_API_KEY=dev-default-app-key-change-me; dev_keys=1; fi
[[ "$DETECTORS" =~ ^[1-9][0-9]*$ ]] || die "DETECTORS must be a positive integer, got '$DETECTORS'"
[[ "$EMBEDDERS" =~ ^[0-9]+$ ]] || die "EMBEDDERS must be a whole number, got '$EMBEDDERS'"
# Queued import items wait for embedder workers: without any, the detectors must embed them (inline).
[ "$EMBEDDERS" -gt 0 ] || [ "${IMPORT_EMBED:-}" = inline ] ||
  die "EMBEDDERS=0 needs IMPORT_EMBED=inline (queued import items are embedded by embedder workers)"

mkdir -p "$APPS_DIR"
if app_pid "$APPS_DIR/gateway.pid" >/dev/null; then
  say "already running (gateway pid $(cat "$APPS_DIR/gateway.pid")); stop it first with pnpm stack:down"
  exit 0
fi

bash scripts/services/up.sh
# shellcheck disable=SC1091
. "$STACK_DIR/services.env"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  say "building (tsc -b)"
  npx tsc -b
fi

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
embedder_ports=() detector_ports=()
for ((i = 0; i < EMBEDDERS; i++)); do embedder_ports+=($((GRPC_BASE_PORT + i))); done
for ((i = 0; i < DETECTORS; i++)); do detector_ports+=($((GRPC_BASE_PORT + EMBEDDERS + i))); done
for p in "$PORT" "${embedder_ports[@]}" "${detector_ports[@]}"; do
  port_in_use "$p" && die "port $p is in use; set PORT / GRPC_BASE_PORT"
done
workers=$((EMBEDDERS + DETECTORS + 1))
for ((i = 0; i < workers; i++)); do
  port_in_use $((METRICS_BASE_PORT + i)) && die "port $((METRICS_BASE_PORT + i)) is in use; set METRICS_BASE_PORT"
done
next_metrics_port=$METRICS_BASE_PORT
metrics_urls=()
join() { local IFS=,; echo "$*"; }
embedder_urls=$(join "${embedder_ports[@]/#/127.0.0.1:}")
detector_urls=$(join "${detector_ports[@]/#/127.0.0.1:}")

export FACESEARCH_MODE=distributed HOST=127.0.0.1 PORT ADMIN_API_KEY DEFAULT_APP_API_KEY
export DETECTOR_GRPC_URL=$detector_urls
# Unset without embedders: the gateway then asks the detectors to embed too (Detector.Analyze).
if [ "$EMBEDDERS" -gt 0 ]; then export EMBEDDER_GRPC_URL=$embedder_urls; else unset EMBEDDER_GRPC_URL; fi

# start_worker NAME [VAR=VALUE...]: start, with the next metrics port.
start_worker() {
  local name=$1
  shift
  metrics_urls+=("$name http://127.0.0.1:$next_metrics_port/metrics")
  start "$name" METRICS_PORT="$next_metrics_port" "$@"
  next_metrics_port=$((next_metrics_port + 1))
}

# start NAME [VAR=VALUE...]: runs apps/<kind>/dist/main.js with the extra env, in its own session.
start() {
  local name=$1 kind=${1%-*}
  shift
  local pidfile=$APPS_DIR/$name.pid log=$APPS_DIR/$name.log flags=
  # As deploy/Dockerfile: the model workers' cores are busy with the models, where V8's GC helper threads only take
  # turns with them (BENCHMARKS.md, session 14).
  case $kind in detector | embedder) flags=--single-threaded-gc ;; esac
  : >"$log"
  # shellcheck disable=SC2016 # $0..$2 are the inner shell's arguments; $2 (the flags) is split on purpose
  setsid env "$@" bash -c 'echo $$ >"$0"; exec node $2 "$1"' "$pidfile" "apps/$kind/dist/main.js" "$flags" \
    >>"$log" 2>&1 </dev/null &
  for ((t = 0; t < 100; t++)); do [ -s "$pidfile" ] && break; sleep 0.05; done
  say "$name started (pid $(cat "$pidfile"), log $log)"
}

# On failure, stop whatever was started (the backing servers stay up).
started_ok=0
on_exit() {
  [ "$started_ok" = 1 ] && return
  for f in "$APPS_DIR"/*.pid; do [ -e "$f" ] && stop_app "$f" 5; done
}
trap on_exit EXIT

for ((i = 0; i < EMBEDDERS; i++)); do start_worker "embedder-$((i + 1))" GRPC_PORT="${embedder_ports[$i]}"; done
for ((i = 0; i < DETECTORS; i++)); do start_worker "detector-$((i + 1))" GRPC_PORT="${detector_ports[$i]}"; done
start_worker indexer-1
start gateway

say "waiting for http://127.0.0.1:$PORT/health/ready (up to ${STACK_READY_TIMEOUT} s)"
deadline=$((SECONDS + STACK_READY_TIMEOUT))
until curl -fsS -o /dev/null --max-time 3 "http://127.0.0.1:$PORT/health/ready" 2>/dev/null; do
  dead=()
  for f in "$APPS_DIR"/*.pid; do app_pid "$f" >/dev/null || dead+=("$(basename "$f" .pid)"); done
  if [ "${#dead[@]}" -gt 0 ] || [ "$SECONDS" -ge "$deadline" ]; then
    if [ "${#dead[@]}" -gt 0 ]; then echo "stack: ERROR: exited during start-up: ${dead[*]}" >&2; else
      echo "stack: ERROR: not ready after ${STACK_READY_TIMEOUT} s" >&2
      curl -sS --max-time 3 "http://127.0.0.1:$PORT/health/ready" >&2 2>/dev/null && echo >&2 || true
    fi
    for log in "$APPS_DIR"/*.log; do
      echo "stack: last lines of $log:" >&2
      tail -n 15 "$log" | sed 's/^/  | /' >&2
    done
    exit 1
  fi
  sleep 1
done
started_ok=1

say "ready: http://127.0.0.1:$PORT (API docs /docs, metrics /metrics)"
say "  embedders ${embedder_urls:-none (the detectors embed)}; detectors $detector_urls; 1 indexer; logs in $APPS_DIR"
say "  worker metrics: $(join "${metrics_urls[@]}" | sed 's/,/, /g')"
if [ "$dev_keys" = 1 ]; then
  say "  development keys (set ADMIN_API_KEY / DEFAULT_APP_API_KEY to choose your own):"
fi
say "  admin key:       $ADMIN_API_KEY"
say "  default app key: $DEFAULT_APP_API_KEY"
say "stop with: pnpm stack:down"
