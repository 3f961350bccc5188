/**
 * Fixtures of the command's tests: scoped temporary directories, direct reads of a database file (with
 * better-sqlite3, independently of the pool), and running the real `sqlsim` command as a child process.
 */
import { assert } from "@effect/vitest"
import Database from "better-sqlite3"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { inject } from "vitest"

import { tempDir } from "@sqlsim/test-kit/TempDir"

export { tempDir }

/** The `events` rows of a database file, read directly; undefined when the table does not exist. */
export const eventsOf = (filename: string): Array<{ id: number; label: string }> | undefined => {
  // Read-write, so that a crashed writer's WAL can be recovered (the rows are only read).
  const db = new Database(filename)
  try {
    const table = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'events'").get()
    if (table === undefined) return undefined
    return db.prepare("SELECT id, label FROM events ORDER BY id").all() as Array<{ id: number; label: string }>
  } finally {
    db.close()
  }
}

/** Creates a database file with an `events` table holding `labels` (in rollback-journal mode, SQLite's default). */
export const makeEventsDatabase = (filename: string, labels: ReadonlyArray<string>): void => {
  const db = new Database(filename)
  db.exec("CREATE TABLE events (id INTEGER PRIMARY KEY, label TEXT NOT NULL)")
  const insert = db.prepare("INSERT INTO events (label) VALUES (?)")
  for (const label of labels) insert.run(label)
  db.close()
}

/** Files in a directory, hidden temporary files included. */
export const filesIn = (directory: string): Array<string> => fs.readdirSync(directory).sort()

const repositoryRoot = fileURLToPath(new URL("../../../", import.meta.url))
/** The `sqlsim` command, compiled from the sources for this test run (globalSetup.ts): `node <it> ...args`. */
export const command: string = inject("sqlsimCommand")
const reportPeakMemory = fileURLToPath(new URL("./fixtures/report-peak-memory.mjs", import.meta.url))

/** What a run of the command left behind. */
export interface Run {
  /** when it ended (performance.now()) */
  readonly endedAt: number
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  /** peak resident memory of the child in MiB, when `measureMemory` was set */
  readonly peakMemoryMiB: number | undefined
}

export interface RunOptions {
  readonly cwd?: string
  /** added to a copy of this process's environment, from which SQLSIM_* variables are removed */
  readonly env?: Record<string, string>
  /** V8 heap limit of the child, in MiB */
  readonly maxOldSpaceMiB?: number
  readonly measureMemory?: boolean
  /** fed to the child's standard input, then closed; without it stdin is empty */
  readonly stdin?: (child: NodeJS.WritableStream) => void
  /** called once with the running child (to kill it, say) */
  readonly onSpawn?: (
    child: { readonly pid?: number | undefined; readonly kill: (signal: NodeJS.Signals) => boolean }
  ) => void
  /** called with everything written to stderr so far, each time more arrives */
  readonly onStderr?: (stderr: string) => void
}

/** Runs the `sqlsim` command with `args` (`command`, globalSetup.ts) and collects its output and exit code. */
export const sqlsim = (args: ReadonlyArray<string>, options: RunOptions = {}): Effect.Effect<Run> =>
  Effect.async<Run>((resume) => {
    const env: Record<string, string> = {}
    for (const [key, value] of Object.entries(process.env)) {
      if (value !== undefined && !key.startsWith("SQLSIM_")) env[key] = value
    }
    Object.assign(env, options.env ?? {})
    const memoryFile = options.measureMemory
      ? path.join(os.tmpdir(), `sqlsim-peak-${process.pid}-${Math.random().toString(36).slice(2)}`)
      : undefined
    if (memoryFile !== undefined) env.PEAK_MEMORY_REPORT_FILE = memoryFile
    const nodeArgs = [
      ...(options.maxOldSpaceMiB === undefined ? [] : [`--max-old-space-size=${options.maxOldSpaceMiB}`]),
      ...(memoryFile === undefined ? [] : ["--import", reportPeakMemory]),
      command,
      ...args
    ]
    const child = spawn(process.execPath, nodeArgs, {
      cwd: options.cwd ?? repositoryRoot,
      env,
      stdio: ["pipe", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text))
    child.stderr.setEncoding("utf8").on("data", (text: string) => {
      stderr += text
      options.onStderr?.(stderr)
    })
    // The child may stop reading early (bad input): a write after that is not the test's failure.
    child.stdin.on("error", () => {})
    if (options.stdin === undefined) child.stdin.end()
    else options.stdin(child.stdin)
    options.onSpawn?.(child)
    child.on("close", (code, signal) => {
      let peakMemoryMiB: number | undefined
      if (memoryFile !== undefined && fs.existsSync(memoryFile)) {
        peakMemoryMiB = Number(fs.readFileSync(memoryFile, "utf8")) / 1024
        fs.rmSync(memoryFile, { force: true })
      }
      resume(Effect.succeed({ endedAt: performance.now(), code, signal, stdout, stderr, peakMemoryMiB }))
    })
    return Effect.sync(() => {
      child.kill("SIGKILL")
    })
  })

/**
 * A failure a user can act on: the exit code, and exactly one line on stderr that says `expected` (besides the
 * progress lines `simulate` prints while it runs).
 */
export const assertOneLineError = (run: Run, code: number, expected: string | RegExp) => {
  assert.strictEqual(run.code, code, `exit code (stderr: ${run.stderr})`)
  const lines = linesOf(run.stderr).filter((line) => !line.startsWith("progress:"))
  assert.strictEqual(lines.length, 1, `one line on stderr, got: ${run.stderr}`)
  if (typeof expected === "string") assert.include(lines[0], expected)
  else assert.match(lines[0]!, expected)
  assert.notMatch(run.stderr, /\n\s+at /, "no stack trace")
}

/** The lines of a text, without the empty one after a final newline. */
export const linesOf = (text: string): Array<string> => {
  const lines = text.split("\n")
  return lines[lines.length - 1] === "" ? lines.slice(0, -1) : lines
}

/**
 * A directory nobody can create files in, for the Scope: a temporary directory made read-only (`chmod` for a normal
 * user; for root, who ignores permissions, the immutable attribute), or, where neither works, `/sys`, which refuses
 * new files to everyone.
 */
export const unwritableDirectory: Effect.Effect<string, never, Scope.Scope> = Effect.gen(function*() {
  const directory = yield* tempDir
  const isRoot = process.getuid?.() === 0
  const locked = yield* Effect.acquireRelease(
    Effect.sync(() => {
      try {
        if (isRoot) execFileSync("chattr", ["+i", directory], { stdio: "ignore" })
        else fs.chmodSync(directory, 0o555)
        return true
      } catch {
        return false
      }
    }),
    (locked) =>
      Effect.sync(() => {
        if (!locked) return
        if (isRoot) execFileSync("chattr", ["-i", directory], { stdio: "ignore" })
        else fs.chmodSync(directory, 0o755)
      })
  )
  const probe = path.join(directory, "probe")
  const writable = (() => {
    try {
      fs.writeFileSync(probe, "")
      fs.rmSync(probe)
      return true
    } catch {
      return false
    }
  })()
  return locked && !writable ? directory : "/sys"
})

/** Whether this process may mount a file system (root, with the capability): `smallDisk` needs it. */
export const canMount: boolean = (() => {
  if (process.platform !== "linux" || process.getuid?.() !== 0) return false
  const probe = fs.mkdtempSync(path.join(os.tmpdir(), "sqlsim-mount-"))
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", probe], { stdio: "ignore" })
    execFileSync("umount", [probe], { stdio: "ignore" })
    return true
  } catch {
    return false
  } finally {
    fs.rmSync(probe, { recursive: true, force: true })
  }
})()

/** A directory on a file system of its own with room for `kib` KiB (a tmpfs), unmounted with the Scope. */
export const smallDisk = (kib: number): Effect.Effect<string, never, Scope.Scope> =>
  Effect.flatMap(tempDir, (directory) =>
    Effect.as(
      Effect.acquireRelease(
        Effect.sync(() => execFileSync("mount", ["-t", "tmpfs", "-o", `size=${kib}k`, "tmpfs", directory])),
        () => Effect.sync(() => execFileSync("umount", [directory], { stdio: "ignore" }))
      ),
      directory
    ))

/**
 * A signal sent once `ready(stderr)` holds (checked as stderr arrives) or `ready()` holds (checked every 20 ms), then
 * after `delayMs`. `sentAt` is when it was sent (performance.now()), or undefined if it never was.
 */
export const signalWhen = (
  signal: NodeJS.Signals,
  ready: (stderr: string) => boolean,
  delayMs = 0,
  /** send the signal again this long after the first (as a wrapper relaying the terminal's signal does) */
  repeatAfterMs?: number
) => {
  const state: { sentAt: number | undefined } = { sentAt: undefined }
  let child: { readonly kill: (signal: NodeJS.Signals) => boolean } | undefined
  let armed = false
  let poll: ReturnType<typeof setInterval> | undefined
  let latest = ""
  const arm = () => {
    if (armed || child === undefined || !ready(latest)) return
    armed = true
    if (poll !== undefined) clearInterval(poll)
    setTimeout(() => {
      state.sentAt = performance.now()
      child?.kill(signal)
      if (repeatAfterMs !== undefined) setTimeout(() => child?.kill(signal), repeatAfterMs)
    }, delayMs)
  }
  return {
    state,
    options: {
      onSpawn: (spawned: { readonly kill: (signal: NodeJS.Signals) => boolean }) => {
        child = spawned
        poll = setInterval(arm, 20)
        poll.unref()
      },
      onStderr: (stderr: string) => {
        latest = stderr
        arm()
      }
    } satisfies RunOptions
  }
}
