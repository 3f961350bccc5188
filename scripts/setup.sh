#!/usr/bin/env bash
# Sets up a checkout for the README's commands, from a machine with only Node.js and npm:
#   - pnpm 12.4.2 (with `npm i -g` when pnpm is missing or another version; corepack is not needed),
#   - with --test-tools, what some tests run besides Node.js, each through apt-get when missing: a Chromium for the
#     HTML report test (Debian's `chromium`; or name one in $CHROMIUM) and the `sqlite3` shell, which
#     SqliteMigrator's schema dump runs,
#   - the dependencies, exactly as locked,
#   - with --test-tools, Node.js 22 and 24 with a better-sqlite3 built for each (scripts/runtimes.sh install, into
#     node_modules/.cache/sqlsim-runtimes), for CI: the library's and the command's tests on both.
# Quick when everything is there already.
set -euo pipefail
cd "$(dirname "$0")/.."

pnpm_version=12.4.2
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version 2>/dev/null)" != "$pnpm_version" ]; then
  echo "setup: installing pnpm $pnpm_version with npm"
  npm i -g "pnpm@$pnpm_version" --no-audit --no-fund
  hash -r
  command -v pnpm >/dev/null 2>&1 || {
    echo "setup: pnpm was installed into $(npm prefix -g)/bin, which is not on PATH; add it and run again" >&2
    exit 1
  }
fi

if [ "${1:-}" = "--test-tools" ]; then
  missing=()
  if [ -z "${CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then missing+=(chromium); fi
  if ! command -v sqlite3 >/dev/null 2>&1; then missing+=(sqlite3); fi
  if [ "${#missing[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
      echo "setup: missing ${missing[*]} and no apt-get to install them: install them (CHROMIUM may name a Chromium)" >&2
      exit 1
    fi
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    echo "setup: installing Debian's ${missing[*]}"
    $sudo apt-get update
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
  fi
fi

# better-sqlite3 compiles where no prebuilt binary is reachable: node-gyp then uses the local Node headers
# (pnpm 12 ignores `nodedir` in .npmrc, hence the environment variable).
if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node.h ]; then export npm_config_nodedir=/usr; fi
pnpm install --frozen-lockfile
if [ "${1:-}" = "--test-tools" ]; then scripts/runtimes.sh install; fi
