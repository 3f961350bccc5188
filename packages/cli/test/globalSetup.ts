/**
 * The `sqlsim` command the tests run as a child process, compiled once per test run into one file with esbuild: the
 * transform tsx applies to each file of the sources, done once instead of in every child. A child then starts in
 * about half the time and CPU of `node --import tsx packages/cli/src/bin.ts` (measured: 0.6 s and 0.7 s of CPU against
 * 1.1 s and 1.5 s), which matters for a suite of some sixty commands run on three versions of Node.js.
 *
 * What the file keeps of the sources' layout:
 * - each module's `import.meta.url` is its source file's URL, so the files found beside a module (the Reader's worker
 *   script, the interrupt extension's C source, the lock holder, the bundled labels) are the ones in the repository;
 * - the packages installed under node_modules are not bundled: each is imported by the path esbuild resolved for the
 *   module that imports it (as Node would from the source file), so the command loads the same copies, native
 *   better-sqlite3 included.
 *
 * The file lives in a temporary directory of this test run (removed at its end), so runs on several versions of
 * Node.js side by side each have their own.
 */
import { build } from "esbuild"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import type { ProvidedContext } from "vitest"

declare module "vitest" {
  export interface ProvidedContext {
    /** the compiled `sqlsim` command: `node <it> ...args` runs it */
    readonly sqlsimCommand: string
  }
}

const bin = fileURLToPath(new URL("../src/bin.ts", import.meta.url))

/** Vitest's global set-up: `project` is its TestProject, of which only `provide` is used. */
export default async function setup(project: {
  readonly provide: <K extends "sqlsimCommand">(key: K, value: ProvidedContext[K]) => void
}) {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), "sqlsim-command-"))
  const outfile = path.join(directory, "sqlsim.mjs")
  await build({
    entryPoints: [bin],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    logLevel: "error",
    plugins: [{
      name: "sqlsim-sources",
      setup(build) {
        // A package from node_modules (not a workspace package's sources): external, by its resolved path.
        build.onResolve({ filter: /^[^./]/ }, async (args) => {
          if (args.pluginData === "resolving" || args.path.startsWith("node:")) return undefined
          const resolved = await build.resolve(args.path, {
            importer: args.importer,
            resolveDir: args.resolveDir,
            kind: args.kind,
            pluginData: "resolving"
          })
          if (resolved.errors.length > 0) return { errors: resolved.errors }
          if (resolved.external) return { path: args.path, external: true } // Node's own modules
          if (resolved.path.includes(`${path.sep}node_modules${path.sep}`)) {
            return { path: pathToFileURL(resolved.path).href, external: true }
          }
          return { path: resolved.path }
        })
        build.onLoad({ filter: /\.[cm]?[jt]s$/ }, async (args) => ({
          contents: (await fs.promises.readFile(args.path, "utf8"))
            .replaceAll("import.meta.url", JSON.stringify(pathToFileURL(args.path).href)),
          loader: args.path.endsWith("ts") ? "ts" : "js"
        }))
      }
    }]
  })
  project.provide("sqlsimCommand", outfile)
  return () => fs.rmSync(directory, { recursive: true, force: true })
}
