#!/usr/bin/env bash
# Consumer test: the packages as a user gets them. Builds the workspace, stages and packs every package
# (scripts/stage-packages.mjs, then npm pack), checks that `pnpm pack` gives the same packages and that a raw
# `npm pack` of a workspace manifest is refused, then runs test/consumer/app.sh twice side by side: on Node.js 20 with
# better-sqlite3 12 and on Node.js 24 (scripts/runtimes.sh) with better-sqlite3 13. Each installs the tarballs into a
# fresh npm project together with the peer set the README's "Install in your app" section gives (read from the README
# itself, from the real registry), checks one copy of better-sqlite3, and type-checks, runs and `npx`es the app.
# Usage: test/consumer/run.sh [--keep]   (--keep leaves the temporary directory in place and prints it)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/sqlsim-consumer.XXXXXX")"
if [ "${1:-}" = "--keep" ]; then echo "working in $work"; else trap 'rm -rf "$work"' EXIT; fi
# better-sqlite3 compiles where no prebuilt binary is reachable: node-gyp then needs the local Node headers.
if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node.h ]; then export npm_config_nodedir=/usr; fi
export JOBS="${JOBS:-max}" # node-gyp: compile better-sqlite3's sources in parallel
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
"$root/scripts/runtimes.sh" dir 24 >/dev/null # Node.js 24 is installed (scripts/setup.sh --test-tools)
started=$SECONDS
step() { printf '\n== %s [%ds]\n' "$1" "$((SECONDS - started))"; }
fail() { echo "consumer test FAILED: $1" >&2; exit 1; }

step "build"
(cd "$root" && pnpm --silent build)

step "stage the packages and pack them with npm"
node "$root/scripts/stage-packages.mjs" --pack "$work/tarballs"

step "pnpm pack gives the same packages; a raw npm pack of a workspace manifest is refused"
mkdir -p "$work/pnpm"
for dir in "$root"/packages/*/; do
  # The test kit is private: it is never packed nor published.
  if node -e 'process.exit(require(process.argv[1]).private === true ? 0 : 1)' "$dir/package.json"; then continue; fi
  (cd "$dir" && pnpm --silent pack --pack-destination "$work/pnpm" >/dev/null)
  if (cd "$dir" && npm pack --pack-destination "$work/refused" >/dev/null 2>&1); then
    fail "npm pack of the workspace manifest in $dir was not refused"
  fi
done
node "$root/test/consumer/compare-tarballs.mjs" "$work/tarballs" "$work/pnpm"

step "the app on Node.js 20 with better-sqlite3 12 and on Node.js 24 with better-sqlite3 13, side by side"
# Each install runs under its runtime (first on PATH), and a compile of better-sqlite3 uses that runtime's headers.
node24="$("$root/scripts/runtimes.sh" dir 24)"
bash "$root/test/consumer/app.sh" "$work" 12 >"$work/node20.log" 2>&1 &
node20=$!
PATH="$node24/bin:$PATH" npm_config_nodedir="$node24" bash "$root/test/consumer/app.sh" "$work" 13 >"$work/node24.log" 2>&1 &
node24_app=$!
status20=0 status24=0
wait "$node20" || status20=$?
wait "$node24_app" || status24=$?
cat "$work/node20.log" "$work/node24.log"
[ "$status20" = 0 ] || fail "on Node.js 20 (exit $status20)"
[ "$status24" = 0 ] || fail "on Node.js 24 (exit $status24)"

step "consumer test passed"
