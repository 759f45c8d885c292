# Shared by Castellan's scripts: logging with timings, the Node toolchain and PATH.
# Source it; it sets $root and puts .tools/node/bin, .tools/bin and node_modules/.bin on PATH.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$root/scripts/versions.env"
cache=${CASTELLAN_TOOLS_CACHE:-$HOME/.cache/castellan/tools}

say() { printf '[castellan %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { say "error: $*"; exit 1; }

# phase NAME CMD...: runs a step and prints how long it took
phase() {
  local name=$1; shift
  local t0=$SECONDS rc=0
  say "== $name"
  "$@" || rc=$?
  say "== $name $([ $rc = 0 ] && echo done || echo "FAILED (exit $rc)") in $((SECONDS - t0))s"
  return $rc
}

node_ok() { # is the node on PATH >= 22.19?
  command -v node >/dev/null 2>&1 || return 1
  node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a===22&&b>=19)?0:1)'
}

# Puts Node >= 22.19 on PATH: the system one if new enough, else Node $NODE_VERSION
# from the npm package node@$NODE_VERSION, installed once into the cache.
ensure_node() {
  if [ -x "$root/.tools/node/bin/node" ]; then export PATH="$root/.tools/node/bin:$PATH"; return; fi
  if node_ok && [ "${CASTELLAN_FORCE_NODE_INSTALL:-}" != 1 ]; then return; fi
  local dir="$cache/node-$NODE_VERSION"
  if [ ! -x "$dir/node_modules/node/bin/node" ]; then
    command -v npm >/dev/null || fail "npm is needed to install Node $NODE_VERSION (from the npm package node@$NODE_VERSION)"
    say "installing Node $NODE_VERSION (npm package node@$NODE_VERSION) into $dir"
    rm -rf "$dir.partial"; mkdir -p "$dir.partial"
    (cd "$dir.partial" && npm install --no-save --no-audit --no-fund --loglevel=error --prefix . "node@$NODE_VERSION" >/dev/null) \
      || { rm -rf "$dir.partial"; fail "installing node@$NODE_VERSION from the npm registry failed"; }
    rm -rf "$dir"; mv "$dir.partial" "$dir"
  fi
  mkdir -p "$root/.tools"
  ln -sfn "$dir/node_modules/node" "$root/.tools/node"
  export PATH="$root/.tools/node/bin:$PATH"
  node_ok || fail "Node at $root/.tools/node is $(node --version), need >= 22.19"
}

# Installs the locked npm dependencies when node_modules is missing or older than
# package-lock.json. `npm install --no-save` rather than `npm ci`: npm 11 leaves
# other platforms' optional packages out of the lock and then `npm ci` refuses it.
ensure_deps() {
  if [ -f "$root/node_modules/.package-lock.json" ] && [ "$root/node_modules/.package-lock.json" -nt "$root/package-lock.json" ]; then return; fi
  say "installing npm dependencies (package-lock.json)"
  (cd "$root" && npm install --no-save --no-audit --no-fund --loglevel=error)
}

ensure_node
export PATH="$root/.tools/bin:$root/node_modules/.bin:$PATH"
