// Loaded into every process and worker thread by `scripts/runtimes.sh run` (NODE_OPTIONS --import): better-sqlite3
// resolves to the runtime's own install (node_modules/.cache/sqlsim-runtimes/node-<major>/modules, beside the
// runtime's bin/node), built for that runtime, where the workspace's node_modules hold the build for Node.js 20.
// Resolution runs as usual and a file of the workspace's better-sqlite3 is then swapped for the same file of the
// runtime's: vitest resolves bare specifiers to full paths before importing. Synchronous hooks, so that require() is
// covered as well as import, and on Node.js 24 require.resolve too (the interrupt extension finds better-sqlite3's
// SQLite headers that way); Node.js 22's require.resolve skips the hooks, harmless there: that runtime runs the
// workspace's better-sqlite3 version. The directory comes from the binary, not from the environment, since tests
// start child processes with environments of their own (NODE_OPTIONS kept). A process of another Node.js (one that
// NODE_OPTIONS reached through a child started as plain `node` elsewhere) is left alone.
import * as fs from "node:fs"
import * as module from "node:module"
import * as path from "node:path"
import { pathToFileURL } from "node:url"

const modules = path.join(path.dirname(path.dirname(process.execPath)), "modules")

if (fs.existsSync(path.join(modules, "package.json")) && module.registerHooks !== undefined) {
  const runtimePackage = pathToFileURL(
    path.dirname(module.createRequire(path.join(modules, "package.json")).resolve("better-sqlite3/package.json"))
  ).href
  // pnpm's place for a package: node_modules/.pnpm/<name>@<version>/node_modules/<name>/
  const workspaceFile = /\/node_modules\/\.pnpm\/better-sqlite3@[^/]+\/node_modules\/better-sqlite3(\/.*)$/
  module.registerHooks({
    resolve: (specifier, context, next) => {
      const resolved = next(specifier, context)
      const file = workspaceFile.exec(resolved.url)
      return file === null ? resolved : { ...resolved, url: `${runtimePackage}${file[1]}` }
    }
  })
}
