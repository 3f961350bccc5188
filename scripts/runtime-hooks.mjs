// Loaded into every process and worker thread by `scripts/runtimes.sh run` (NODE_OPTIONS --import): better-sqlite3
// resolves to the runtime's own install (node_modules/.cache/sqlsim-runtimes/node-<major>/modules, beside the
// runtime's bin/node), built for that runtime, where the workspace's node_modules hold the build for Node.js 20.
// Resolution runs as usual and a file of the workspace's better-sqlite3 is then swapped for the same file of the
// runtime's: vitest resolves bare specifiers to full paths before importing, and the command hands a resolved path to
// a worker thread started with `eval` (which runs no preloaded module). Synchronous hooks cover import and require();
// require.resolve is covered by wrapping CommonJS's resolver, since Node.js 22 runs it without the hooks.
// The directory comes from the binary, not from the environment, since tests start child processes with environments
// of their own (NODE_OPTIONS kept). A process of another Node.js that NODE_OPTIONS reaches is left alone.
import * as fs from "node:fs"
import * as module from "node:module"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const modules = path.join(path.dirname(path.dirname(process.execPath)), "modules")

if (fs.existsSync(path.join(modules, "package.json")) && module.registerHooks !== undefined) {
  const runtimePackage = path.dirname(
    module.createRequire(path.join(modules, "package.json")).resolve("better-sqlite3/package.json")
  )
  // pnpm's place for a package: node_modules/.pnpm/<name>@<version>/node_modules/<name>/
  const workspaceFile = /\/node_modules\/\.pnpm\/better-sqlite3@[^/]+\/node_modules\/better-sqlite3(\/.*)$/
  const swapped = (file) => {
    const inPackage = workspaceFile.exec(file)
    return inPackage === null ? file : path.join(runtimePackage, inPackage[1])
  }
  module.registerHooks({
    resolve: (specifier, context, next) => {
      const resolved = next(specifier, context)
      if (!resolved.url.startsWith("file:")) return resolved
      return { ...resolved, url: pathToFileURL(swapped(fileURLToPath(resolved.url))).href }
    }
  })
  const resolveFilename = module.Module._resolveFilename
  module.Module._resolveFilename = function(...args) {
    return swapped(resolveFilename.apply(this, args))
  }
}
