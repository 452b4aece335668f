# shellcheck shell=bash disable=SC2034 # (variables here are used by up.sh and down.sh)
# Shared settings and helpers for up.sh / down.sh (sourced, not run).
# Every server binds to 127.0.0.1, keeps its data under $STACK_DIR and is tracked by a pid file there.

services_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$services_dir/../.." && pwd)

STACK_DIR=${STACK_DIR:-$repo_root/.stack}
REDIS_PORT=${REDIS_PORT:-16379}
QDRANT_HTTP_PORT=${QDRANT_HTTP_PORT:-16333}
QDRANT_GRPC_PORT=${QDRANT_GRPC_PORT:-16334}
S3_PORT=${S3_PORT:-17480}
CEPH_MON_PORT=${CEPH_MON_PORT:-16789}
S3_ACCESS_KEY=${S3_ACCESS_KEY:-facesearch}
S3_SECRET_KEY=${S3_SECRET_KEY:-facesearch-secret}
S3_REGION=${S3_REGION:-us-east-1}
S3_BUCKET=${S3_BUCKET:-facesearch}
# Seconds to wait for a server to become ready before failing with its log.
SERVICES_TIMEOUT=${SERVICES_TIMEOUT:-60}

redis_dir=$STACK_DIR/redis
qdrant_dir=$STACK_DIR/qdrant
ceph_dir=$STACK_DIR/ceph
ceph_conf=$ceph_dir/ceph.conf
# Ceph daemons in stop order (radosgw first so the OSD and the mon shut down without waiting on clients).
ceph_daemons=("client.rgw.a:radosgw" "osd.0:ceph-osd" "mon.a:ceph-mon")

log() { echo "services: $*"; }
die() { echo "services: ERROR: $*" >&2; exit 1; }

# Parse "redis qdrant s3" arguments (default: all three) into $selected.
select_services() {
  selected=()
  [ "$#" -eq 0 ] && set -- redis qdrant s3
  for name in "$@"; do
    case "$name" in
      redis | qdrant | s3) selected+=("$name") ;;
      *) die "unknown service '$name' (expected: redis qdrant s3)" ;;
    esac
  done
}

# Whether PID is a live process (an exited one may linger as a zombie until its parent or init reaps it).
running() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# Pid from FILE if that process is alive and is the program COMM (guards against recycled pids).
live_pid() {
  local file=$1 comm=$2 pid
  [ -s "$file" ] || return 1
  pid=$(tr -dc '0-9' <"$file")
  [ -n "$pid" ] && running "$pid" || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || return 1
  echo "$pid"
}

# Stop the process in pid FILE (if it is COMM): SIGTERM, wait up to 20 s, then SIGKILL; returns once it is gone.
stop_pid() {
  local file=$1 comm=$2 pid i
  if pid=$(live_pid "$file" "$comm"); then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
      running "$pid" || break
      sleep 0.1
    done
    if running "$pid"; then
      log "$comm ($pid) ignored SIGTERM for 20 s, killing"
      kill -KILL "$pid" 2>/dev/null || true
      while running "$pid"; do sleep 0.1; done
    fi
  fi
  rm -f "$file"
}

# http_ok URL [SECONDS]: a 2xx answer within SECONDS (default 2).
http_ok() {
  local seconds=${2:-2}
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --max-time "$seconds" "$1" 2>/dev/null
  else
    node -e 'fetch(process.argv[1], { signal: AbortSignal.timeout(1000 * process.argv[2]) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$1" "$seconds"
  fi
}

redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }
qdrant_ready() { http_ok "http://127.0.0.1:$QDRANT_HTTP_PORT/readyz"; }
# radosgw answers an anonymous ListBuckets with 200 once its pools and zone are set up.
s3_ready() { http_ok "http://127.0.0.1:$S3_PORT/"; }

# spawn PIDFILE OUTFILE CMD...: start CMD in the background in its own session (so it outlives the calling
# shell and its job control), stdout/stderr appended to OUTFILE, its pid in PIDFILE.
spawn() {
  local file=$1 out=$2 i pid
  shift 2
  rm -f "$file"
  # 9>&-: the server must not inherit up.sh's lock on $STACK_DIR/up.lock, or it would hold it forever.
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$file" "$@" >>"$out" 2>&1 </dev/null 9>&- &
  # Wait until the wrapper shell has written its pid and exec'd the program (or died), so callers can
  # judge the process by its name.
  for ((i = 0; i < 100; i++)); do
    if [ -s "$file" ]; then
      pid=$(tr -dc '0-9' <"$file")
      [ -d "/proc/$pid" ] || return 0
      [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != bash ] && return 0
    fi
    sleep 0.05
  done
}

# wait_ready NAME PIDFILE COMM CHECK [LOGFILE...]: wait until the command in $check passes while the process in
# PIDFILE lives. Fails at once if the process died, or after $SERVICES_TIMEOUT seconds, showing the logs' tails.
wait_ready() {
  local name=$1 file=$2 comm=$3 check=$4
  shift 4
  local deadline=$((SECONDS + SERVICES_TIMEOUT))
  while :; do
    if ! live_pid "$file" "$comm" >/dev/null; then
      fail_with_log "$name exited during startup" "$@"
      return 1
    fi
    $check && return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      fail_with_log "$name not ready after ${SERVICES_TIMEOUT} s" "$@"
      return 1
    fi
    sleep 0.2
  done
}

fail_with_log() {
  local message=$1 file
  shift
  echo "services: ERROR: $message" >&2
  for file in "$@"; do
    [ -s "$file" ] || continue
    echo "services: last lines of $file:" >&2
    tail -n 25 "$file" | sed 's/^/  | /' >&2
  done
}
