#!/usr/bin/env bash
# Consumer test: the packages as a user gets them. Builds the workspace, stages and packs every package
# (scripts/stage-packages.mjs, then npm pack), checks that `pnpm pack` gives the same packages and that a raw
# `npm pack` of a workspace manifest is refused, installs the tarballs into a fresh npm project together with the peer
# set the README's "Install in your app" section gives (read from the README itself, from the real registry),
# type-checks test/consumer/app under nodenext and bundler resolution in strict mode, runs it with plain node, loads
# the library through require(), and runs `npx sqlsim demo` and `npx sqlsim health` there.
# Usage: test/consumer/run.sh [--keep]   (--keep leaves the temporary directory in place and prints it)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/sqlsim-consumer.XXXXXX")"
if [ "${1:-}" = "--keep" ]; then echo "working in $work"; else trap 'rm -rf "$work"' EXIT; fi
# better-sqlite3 compiles where no prebuilt binary is reachable: node-gyp then needs the local Node headers.
if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node.h ]; then export npm_config_nodedir=/usr; fi
export JOBS="${JOBS:-max}" # node-gyp: compile better-sqlite3's sources in parallel
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
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

step "install the tarballs and the documented peer set into a fresh npm project"
cp -r "$root/test/consumer/app" "$work/app"
cd "$work/app"
tarball() { ls "$work"/tarballs/sqlsim-"$1"-*.tgz; }
# The README's install lines, with the @sqlsim packages replaced by the tarballs. @sqlsim/simulator comes from the
# registry in a real install (a dependency of @sqlsim/cli); here it is not published, so its tarball is added.
library_line="$(grep -E '^npm i @sqlsim/sqlite-pool ' "$root/README.md")" || fail "no library install line in README.md"
cli_line="$(grep -E '^npm i -D @sqlsim/cli ' "$root/README.md")" || fail "no CLI install line in README.md"
echo "$library_line"
echo "$cli_line"
eval "${library_line/@sqlsim\/sqlite-pool/$(tarball sqlite-pool)}"
eval "${cli_line/@sqlsim\/cli/$(tarball cli) $(tarball simulator)}"
npm i -D typescript@5.9 @types/node@20
node -e '
const p = require("./package.json")
console.log("installed:", JSON.stringify({ ...p.dependencies, ...p.devDependencies }))
'

step "one copy of effect, of each @effect package and of better-sqlite3 (one native build)"
node "$root/test/consumer/check-tree.mjs"

step "type-check the app in strict mode, moduleResolution nodenext (emitting dist/) and bundler, side by side"
npx tsc -p tsconfig.nodenext.json &
nodenext=$!
npx tsc -p tsconfig.bundler.json || fail "tsc under moduleResolution bundler"
wait "$nodenext" || fail "tsc under moduleResolution nodenext"
echo "both type-check"

step "run the app with plain node"
node dist/app.js "$work/app/app.db" | tee "$work/app.out"
node -e '
const out = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))
const ok = out.migrations === 1 && out.rows.length === 2 && out.readerWriteRejected === "SqlError" &&
  out.health.ok === true && out.writerCreated === 1 && out.configError === "readConnections"
if (!ok) { console.error("unexpected app output"); process.exit(1) }
' "$work/app.out"

step "require() of the library (ESM through require, Node >= 20.19)"
node --no-warnings -e '
const { SqlitePool, PoolConfig } = require("@sqlsim/sqlite-pool")
if (typeof SqlitePool.layer !== "function" || typeof PoolConfig.make !== "function") process.exit(1)
console.log("require(\"@sqlsim/sqlite-pool\"): SqlitePool.layer is a", typeof SqlitePool.layer)
'

step "npx sqlsim demo (bundled labels, in-memory database)"
npx sqlsim demo
node -e '
const s = JSON.parse(require("fs").readFileSync("summary.json", "utf8"))
if (!(s.rows_inserted > 0 && s.pool_stats.created === 1 && s.pool_stats.reused === 1)) {
  console.error("unexpected summary.json"); process.exit(1)
}
console.log(`summary.json: rows_inserted ${s.rows_inserted}, created ${s.pool_stats.created}, reused ${s.pool_stats.reused}`)
'
step "npx sqlsim health on the app's database"
npx sqlsim health --db "$work/app/app.db"

step "consumer test passed"
