#!/usr/bin/env bash
# Watches the servers of up.sh while a test run uses them (scripts/test.sh starts it in the background and stops it
# at the end): every $WATCH_INTERVAL seconds (default 15) each server is checked the way a client reaches it: Redis
# PING, Qdrant /readyz, and for S3 a request through radosgw plus a read through the Ceph OSD. A server failing
# $WATCH_FAILURES checks in a row (default 3, each allowed 20 s: a loaded machine is slow, not down) gets its
# diagnostics written to stderr and $STACK_DIR/watch.log: its status, the tails of its logs, disk and memory.
# The S3 cluster is then started afresh (down.sh s3; up.sh s3: same port and keys, buckets gone) at most twice: a
# CI run once lost every later S3 test to a radosgw that accepted connections and never answered.
# Usage: watch.sh (runs until killed)
set -uo pipefail
# shellcheck source=scripts/services/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

interval=${WATCH_INTERVAL:-15}
limit=${WATCH_FAILURES:-3}
report=$STACK_DIR/watch.log
here=$(dirname "${BASH_SOURCE[0]}")
export CEPH_CONF=$ceph_conf

redis_alive() { [ "$(timeout 20 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }
qdrant_alive() { http_ok "http://127.0.0.1:$QDRANT_HTTP_PORT/readyz" 20; }
# radosgw answers ListBuckets without the cluster, so the OSD is asked too (a listing of radosgw's root pool).
s3_alive() {
  http_ok "http://127.0.0.1:$S3_PORT/" 20 &&
    timeout 20 rados -p .rgw.root ls >/dev/null 2>&1
}

diagnose() {
  local service=$1 file
  {
    echo "watch: $(date -u +%FT%TZ) $service failed $limit checks in a row"
    case "$service" in
      s3)
        timeout 15 ceph --connect-timeout 5 -s 2>&1 | sed 's/^/  | /'
        for file in "$ceph_dir"/log/{mon.a,osd.0,client.rgw.a}.{log,out}; do
          [ -s "$file" ] && { echo "  last lines of $file:"; tail -n 15 "$file" | sed 's/^/  | /'; }
        done
        ;;
      redis) tail -n 15 "$redis_dir/redis.log" 2>/dev/null | sed 's/^/  | /' ;;
      qdrant) tail -n 15 "$qdrant_dir/qdrant.log" 2>/dev/null | sed 's/^/  | /' ;;
    esac
    df -h "$STACK_DIR" 2>&1 | sed 's/^/  | /'
    free -m 2>&1 | sed 's/^/  | /'
    uptime | sed 's/^/  | /'
  } | tee -a "$report" >&2
}

: >"$report" # this run's findings only
declare -A failures=([redis]=0 [qdrant]=0 [s3]=0)
restarts=0
while sleep "$interval"; do
  for service in redis qdrant s3; do
    if "${service}_alive"; then
      failures[$service]=0
      continue
    fi
    failures[$service]=$((failures[$service] + 1))
    [ "${failures[$service]}" -ge "$limit" ] || continue
    diagnose "$service"
    failures[$service]=0
    if [ "$service" = s3 ] && [ "$restarts" -lt 2 ]; then
      restarts=$((restarts + 1))
      echo "watch: starting the S3 cluster afresh (restart $restarts of 2)" | tee -a "$report" >&2
      { bash "$here/down.sh" s3 && bash "$here/up.sh" s3; } 2>&1 | sed 's/^/  | /' | tee -a "$report" >&2
    fi
  done
done
