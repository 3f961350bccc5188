#!/usr/bin/env bash
# The consumer test's app on one runtime (test/consumer/run.sh starts it once per runtime, with that runtime first
# on PATH): installs the packed packages with the README's install lines into a fresh npm project, checks the tree,
# type-checks test/consumer/app under nodenext and bundler resolution in strict mode, runs it with plain node, loads
# the library through require(), and runs `npx sqlsim demo` and `npx sqlsim health` there.
# Usage: test/consumer/app.sh <work directory holding tarballs/> <better-sqlite3 major: 12 or 13>
#   12: the README's two install lines (better-sqlite3 12, the one @effect/sql-sqlite-node 0.53 depends on);
#   13: the README's better-sqlite3 13 override first (Node.js 22 or newer), then the same two lines.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$1"
sqlite_major="$2"
started=$SECONDS
step() { printf '\n== %s [%ds]\n' "$1" "$((SECONDS - started))"; }
fail() { echo "consumer test FAILED on Node.js $(node --version), better-sqlite3 $sqlite_major: $1" >&2; exit 1; }
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

step "Node.js $(node --version), better-sqlite3 $sqlite_major: install the tarballs and the documented peer set"
app="$work/app-node$(node -p 'process.versions.node.split(".")[0]')"
cp -r "$root/test/consumer/app" "$app"
cd "$app"
tarball() { ls "$work"/tarballs/sqlsim-"$1"-*.tgz; }
# The README's install lines, with the @sqlsim packages replaced by the tarballs. @sqlsim/simulator comes from the
# registry in a real install (a dependency of @sqlsim/cli); here it is not published, so its tarball is added.
readme_line() { grep -E "$1" "$root/README.md" || fail "no line $1 in README.md"; }
library_line="$(readme_line '^npm i @sqlsim/sqlite-pool ')"
cli_line="$(readme_line '^npm i -D @sqlsim/cli ')"
if [ "$sqlite_major" = 13 ]; then
  override_line="$(readme_line '^npm pkg set overrides\.@effect/sql-sqlite-node\.better-sqlite3=')"
  echo "$override_line"
  eval "$override_line"
fi
echo "$library_line"
echo "$cli_line"
eval "${library_line/@sqlsim\/sqlite-pool/$(tarball sqlite-pool)}"
eval "${cli_line/@sqlsim\/cli/$(tarball cli) $(tarball simulator)}"
npm i -D typescript@5.9 "@types/node@$(node -p 'process.versions.node.split(".")[0]')"
node -e '
const p = require("./package.json")
console.log("installed:", JSON.stringify({ ...p.dependencies, ...p.devDependencies }))
'

step "one copy of effect, of each @effect package and of better-sqlite3 $sqlite_major (one native build)"
node "$root/test/consumer/check-tree.mjs" "$sqlite_major"

step "type-check the app in strict mode, moduleResolution nodenext (emitting dist/) and bundler, side by side"
npx tsc -p tsconfig.nodenext.json &
nodenext=$!
npx tsc -p tsconfig.bundler.json || fail "tsc under moduleResolution bundler"
wait "$nodenext" || fail "tsc under moduleResolution nodenext"
echo "both type-check"

step "run the app with plain node"
node dist/app.js "$app/app.db" | tee "$app/app.out"
node -e '
const out = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))
const ok = out.migrations === 1 && out.rows.length === 2 && out.readerWriteRejected === "SqlError" &&
  out.health.ok === true && out.writerCreated === 1 && out.configError === "readConnections"
if (!ok) { console.error("unexpected app output"); process.exit(1) }
' "$app/app.out"

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
npx sqlsim health --db "$app/app.db"

step "passed on Node.js $(node --version) with better-sqlite3 $sqlite_major"
