#!/usr/bin/env bash
# Installs what the service needs to run on its embedded default: pnpm, the dependencies and the pinned models.
# Safe to run again. Usage: bash scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PNPM_VERSION=12.4.2
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version)" != "$PNPM_VERSION" ]; then
  echo "install: pnpm $PNPM_VERSION"
  npm install --global --silent "pnpm@$PNPM_VERSION"
fi

# Native modules (better-sqlite3) compile with node-gyp; on machines that cannot download Node's headers,
# use the ones the distribution installed with Node.
if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node.h ]; then
  export npm_config_nodedir=/usr
fi

# The lock file is the contract; CI and fresh clones install exactly it. (Models come with the postinstall.)
pnpm install --frozen-lockfile
pnpm build
