# Shared settings and helpers for scripts/stack/up.sh and down.sh (sourced, not run).
stack_scripts=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$stack_scripts/../.." && pwd)
STACK_DIR=${STACK_DIR:-$repo_root/.stack}
APPS_DIR=$STACK_DIR/apps

say() { echo "stack: $*"; }
die() { echo "stack: ERROR: $*" >&2; exit 1; }

# Pid from FILE if that process is alive and is the node program of this app (guards against recycled pids).
app_pid() {
  local file=$1 pid
  [ -s "$file" ] || return 1
  pid=$(tr -dc '0-9' <"$file")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  grep -q "^State:.*Z" "/proc/$pid/status" 2>/dev/null && return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "apps/.*/dist/main.js" || return 1
  echo "$pid"
}

# Stop the app in pid FILE: SIGTERM, wait up to GRACE seconds for a graceful exit, then SIGKILL.
stop_app() {
  local file=$1 grace=$2 pid i name
  name=$(basename "$file" .pid)
  if pid=$(app_pid "$file"); then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      app_pid "$file" >/dev/null || break
      sleep 0.1
    done
    if app_pid "$file" >/dev/null; then
      say "$name ($pid) still running after ${grace} s, killing"
      kill -KILL "$pid" 2>/dev/null || true
      while app_pid "$file" >/dev/null; do sleep 0.1; done
    else
      say "$name ($pid) stopped"
    fi
  fi
  rm -f "$file"
}
