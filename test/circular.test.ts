/**
 * The import cycle check of `pnpm lint` (scripts/circular.mjs), run as `pnpm lint` runs it: on small trees written
 * to a temporary directory, and on the repository itself.
 */
import { assert, describe, it } from "@effect/vitest"
import * as TempDir from "@sqlsim/test-kit/TempDir"
import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../", import.meta.url))
const script = path.join(root, "scripts", "circular.mjs")

const runCheck = (tree: string) => {
  const run = spawnSync(process.execPath, [script, tree], { encoding: "utf8", timeout: 60_000 })
  return { code: run.status, output: run.stdout + run.stderr }
}

/** Writes `files` (path relative to the tree -> content) and each package's manifest under `tree`. */
const writeTree = (tree: string, files: Record<string, string>) => {
  for (const [file, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(tree, file)), { recursive: true })
    fs.writeFileSync(path.join(tree, file), content)
  }
  for (const name of fs.readdirSync(path.join(tree, "packages"))) {
    fs.writeFileSync(path.join(tree, "packages", name, "package.json"), JSON.stringify({ name: `@fixture/${name}` }))
  }
}

describe("scripts/circular.mjs", () => {
  it.scoped("a value import back from an internal module is a cycle, printed as its chain of files", () =>
    Effect.gen(function*() {
      const tree = yield* TempDir.tempDir
      writeTree(tree, {
        "packages/lib/src/Connector.ts": `import * as Thread from "./internal/thread.js"\nexport const a = Thread.b\n`,
        "packages/lib/src/internal/thread.ts": `import { classify, type Options } from "../Connector.js"\n` +
          `export const b = 1\nexport const use = (o: Options) => classify(o)\n`,
        "packages/lib/src/Unrelated.ts": `export const c = 1\n`
      })
      const run = runCheck(tree)
      assert.strictEqual(run.code, 1, run.output)
      assert.include(
        run.output,
        "packages/lib/src/Connector.ts -> packages/lib/src/internal/thread.ts -> packages/lib/src/Connector.ts"
      )
      assert.notInclude(run.output, "Unrelated.ts")
    }))

  it.scoped("type-only back edges (import type, inline type specifiers, export type) are not cycles", () =>
    Effect.gen(function*() {
      const tree = yield* TempDir.tempDir
      writeTree(tree, {
        "packages/lib/src/Connector.ts": `import * as Thread from "./internal/thread.js"\nexport const a = Thread.b\n` +
          `export type Options = {}\n`,
        "packages/lib/src/internal/thread.ts": `import type * as Connector from "../Connector.js"\n` +
          `import { type Options } from "../Connector.js"\nexport type { Options as O } from "../Connector.js"\n` +
          `export const b = 1\nexport type T = Connector.Options | Options\n`
      })
      const run = runCheck(tree)
      assert.strictEqual(run.code, 0, run.output)
      assert.include(run.output, "No import cycles among 2 source files")
    }))

  it.scoped("a cycle through a re-export, a .mjs file and another workspace package's name is found", () =>
    Effect.gen(function*() {
      const tree = yield* TempDir.tempDir
      writeTree(tree, {
        "packages/pool/src/index.ts": `export * from "./Pool.js"\n`,
        "packages/pool/src/Pool.ts": `import { worker } from "./worker.mjs"\nexport const pool = worker\n`,
        "packages/pool/src/worker.mjs": `import { report } from "@fixture/simulator/Report"\nexport const worker = 1\n`,
        "packages/simulator/src/Report.ts": `import { pool } from "@fixture/pool"\nexport const report = pool\n`
      })
      const run = runCheck(tree)
      assert.strictEqual(run.code, 1, run.output)
      assert.include(
        run.output,
        "packages/pool/src/Pool.ts -> packages/pool/src/worker.mjs -> packages/simulator/src/Report.ts -> " +
          "packages/pool/src/index.ts -> packages/pool/src/Pool.ts"
      )
    }))

  it("the repository's packages have no runtime import cycle", () => {
    const run = runCheck(root)
    assert.strictEqual(run.code, 0, run.output)
  })
})
