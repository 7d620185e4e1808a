#!/usr/bin/env bash
# Runs a command with Node 24 and the project's npm packages in place: when the machine's node is
# older, Node 24 is installed from the npm registry into .tools/node24 (once), and `npm ci` runs
# whenever package-lock.json is newer than node_modules. Usage: scripts/node.sh npm start
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE_DIR="$ROOT/.tools/node24"

# `npm install --prefix` (and Node 24's own npm) would read the global npmrc under their own prefix,
# not the machine's: its settings (a registry, a proxy's CA file) are kept by naming it here.
if [ -z "${npm_config_globalconfig:-}" ] && command -v npm > /dev/null; then
  npm_config_globalconfig="$(npm config get globalconfig)"
  export npm_config_globalconfig
fi

major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$major" -lt 24 ]; then
  if [ ! -x "$NODE_DIR/node_modules/.bin/node" ]; then
    echo "scripts/node.sh: node $(node --version 2>/dev/null || echo missing) is older than 24; installing node@24 into .tools/node24" >&2
    npm install --prefix "$NODE_DIR" --no-audit --no-fund node@24 >&2
  fi
  export PATH="$NODE_DIR/node_modules/.bin:$PATH"
fi

stamp="$ROOT/node_modules/.package-lock.json"
if [ ! -f "$stamp" ] || [ "$ROOT/package-lock.json" -nt "$stamp" ]; then
  echo "scripts/node.sh: installing npm packages (npm ci)" >&2
  (cd "$ROOT" && npm ci --no-audit --no-fund) >&2
fi

cd "$ROOT"
exec "$@"
