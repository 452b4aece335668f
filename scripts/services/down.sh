#!/usr/bin/env bash
# Stops the servers started by up.sh: down.sh [redis] [qdrant] [s3] (default: all), by pid, waiting until
# each has exited, and removes their data under $STACK_DIR.
set -euo pipefail
# shellcheck source=scripts/services/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

select_services "$@"
[ -d "$STACK_DIR" ] || { log "nothing to stop ($STACK_DIR does not exist)"; exit 0; }
exec 9>"$STACK_DIR/up.lock"
flock -w 300 9 || die "another up.sh/down.sh holds $STACK_DIR/up.lock"

for service in "${selected[@]}"; do
  case "$service" in
    redis)
      stop_pid "$redis_dir/redis.pid" redis-server
      rm -rf "$redis_dir"
      ;;
    qdrant)
      stop_pid "$qdrant_dir/qdrant.pid" qdrant
      rm -rf "$qdrant_dir"
      ;;
    s3)
      for entry in "${ceph_daemons[@]}"; do
        stop_pid "$ceph_dir/run/${entry%%:*}.pid" "${entry#*:}"
      done
      rm -rf "$ceph_dir"
      ;;
  esac
  log "$service stopped, data removed"
done

# Once no service is left, drop the environment file and the folder.
if [ ! -e "$redis_dir" ] && [ ! -e "$qdrant_dir" ] && [ ! -e "$ceph_dir" ]; then
  rm -f "$STACK_DIR/services.env" "$STACK_DIR/up.lock" "$STACK_DIR/.lock"
  rmdir "$STACK_DIR" 2>/dev/null || true
fi
