/**
 * A process whose Reader threads are inside long SQLite aggregates exits when asked: Node joins every worker thread
 * at exit, and a thread inside one SQLite step cannot be joined until the step ends (minutes here). Real processes,
 * real worker threads, and a real missing C compiler (`CC` naming no program).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { tempDir } from "./utils.js"

const repositoryRoot = fileURLToPath(new URL("../../../", import.meta.url))
const tsx = pathToFileURL(path.join(repositoryRoot, "node_modules/tsx/dist/loader.mjs")).href
const fixture = fileURLToPath(new URL("./fixtures/exit-during-aggregate.ts", import.meta.url))

interface Ended {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  /** from "exiting" on stdout to the process's end */
  readonly exitMs: number | undefined
}

/** Runs the fixture (see its header) with `env` added; killed after `limitMs` if it has not ended by then. */
const runFixture = (env: Record<string, string>, limitMs: number) =>
  Effect.flatMap(tempDir, (directory) =>
    Effect.async<Ended>((resume) => {
      const child = spawn(process.execPath, ["--import", tsx, fixture, directory], {
        cwd: repositoryRoot,
        env: { ...process.env, ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let stdout = ""
      let stderr = ""
      let exitingAt: number | undefined
      child.stdout.setEncoding("utf8").on("data", (text: string) => {
        stdout += text
        if (exitingAt === undefined && stdout.includes("exiting")) exitingAt = performance.now()
      })
      child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text))
      const limit = setTimeout(() => child.kill("SIGKILL"), limitMs)
      child.on("close", (code, signal) => {
        clearTimeout(limit)
        const exitMs = exitingAt === undefined ? undefined : performance.now() - exitingAt
        resume(Effect.succeed({ code, signal, stdout, stderr, exitMs }))
      })
      return Effect.sync(() => child.kill("SIGKILL"))
    }))

describe("the process's exit with Reader threads inside SQLite", () => {
  it.scopedLive(
    "without a C compiler: one warning at the first worker open, and process.exit ends the process "
      + "at once although two timed-out aggregates still run",
    () =>
      Effect.gen(function*() {
        // The aggregates are given up after 3 s, so that both have started in their workers even on a loaded machine
        // (given up before they started, nothing would hold the exit).
        const ended = yield* runFixture({ CC: "/no/such/compiler", MODE: "timeout", DELAY_MS: "3000" }, 60_000)
        assert.include(ended.stdout, "exiting", ended.stderr)
        // The aggregates would run for minutes: the limit above kills a process that waits for them.
        assert.isBelow(ended.exitMs!, 5_000)
        // SIGKILL: Node cannot exit otherwise while a thread is inside SQLite (its exit code is lost).
        assert.strictEqual(ended.signal, "SIGKILL")
        assert.strictEqual(ended.stderr.match(/SQLSIM_NO_INTERRUPT/g)?.length, 1, ended.stderr)
        assert.match(ended.stderr, /stops only at its next row .* install a C compiler/)
      }),
    90_000
  )

  it.scopedLive(
    "with the interrupt extension: process.exit while both aggregates run exits at once, code 0",
    () =>
      Effect.gen(function*() {
        const ended = yield* runFixture({ MODE: "running", DELAY_MS: "1000" }, 60_000)
        assert.include(ended.stdout, "exiting", ended.stderr)
        assert.isBelow(ended.exitMs!, 5_000)
        assert.strictEqual(ended.code, 0, ended.stderr)
        assert.notInclude(ended.stderr, "SQLSIM_NO_INTERRUPT")
      }),
    90_000
  )
})
