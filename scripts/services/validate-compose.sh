#!/usr/bin/env bash
# Validates docker-compose.yml (or the file given) offline, for CI: docker-compose parses it, resolves anchors
# and variables and rejects unknown keys or services; then checks that the scalable workers publish no ports
# and have no fixed container name (either would break `--scale`). Needs docker-compose (scripts/services/install.sh); no engine.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
file=${1:-$root/docker-compose.yml}
command -v docker-compose >/dev/null 2>&1 || { echo "validate-compose: docker-compose not found: run scripts/services/install.sh" >&2; exit 1; }

# The file requires these secrets from .env; give placeholders for the check only if the environment has none.
export ADMIN_API_KEY=${ADMIN_API_KEY:-validate-only-admin-key}
export S3_SECRET_KEY=${S3_SECRET_KEY:-validate-only-secret}

docker-compose -f "$file" config -q

# Normalized output: two-space service names, four-space keys.
docker-compose -f "$file" config | awk '
  /^services:/ { in_services = 1; next }
  /^[^ ]/ { in_services = 0 }
  in_services && /^  [A-Za-z0-9_.-]+:$/ { service = substr($1, 1, length($1) - 1) }
  in_services && service ~ /^(detector|embedder|indexer)$/ && /^    (ports|container_name):/ {
    printf "validate-compose: %s sets %s, so it cannot be scaled\n", service, $1 > "/dev/stderr"; bad = 1
  }
  END { exit bad }'
echo "validate-compose: docker-compose.yml ok ($(docker-compose -f "$file" config --services | tr '\n' ' '))"
