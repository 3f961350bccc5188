/**
 * Crash safety: a child process writes numbered batches through SqlitePool (WAL, one transaction per batch) and is
 * killed with SIGKILL at a random moment, several times in a row on the same database. After every kill the
 * database must pass PRAGMA integrity_check, hold every batch the child reported committed, hold every batch whole
 * (a batch is all-or-nothing) and nothing beyond the one batch that may have committed just before the kill without
 * being reported. The next child then opens the crashed database (SQLite recovers the WAL) and carries on.
 *
 * What this does and does not cover: SIGKILL ends the process, not the machine. The operating system still holds every
 * write the process made, so even `synchronous=NORMAL` in WAL mode (which may lose the last commits on power loss)
 * loses nothing here. Power loss is out of reach of a test.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConnectionPool } from "@sqlsim/sqlite-pool"
import { tempDir } from "@sqlsim/test-kit/TempDir"
import Database from "better-sqlite3"
import * as Effect from "effect/Effect"
import { spawn } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { seededRandom, seedFromEnvironment } from "./support/seed.js"

const repositoryRoot = fileURLToPath(new URL("..", import.meta.url))
const writerScript = fileURLToPath(new URL("./fixtures/crash-writer.ts", import.meta.url))
const ROWS_PER_BATCH = 25
const ROUNDS = 4

interface ChildRun {
  readonly reported: ReadonlyArray<number>
  readonly synchronous: string
  readonly signal: NodeJS.Signals | null
  readonly code: number | null
  readonly stderr: string
}

/**
 * Starts the writer and kills it with SIGKILL once it has reported `killAfter` commits, `extraMillis` later (so the
 * kill lands anywhere in a transaction or a checkpoint). Resolves once its output is fully read.
 */
const runAndKill = (filename: string, firstBatch: number, killAfter: number, extraMillis: number) =>
  Effect.async<ChildRun>((resume) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", writerScript, filename, String(ROWS_PER_BATCH), String(firstBatch)],
      { cwd: repositoryRoot, stdio: ["ignore", "pipe", "pipe"] }
    )
    const reported: Array<number> = []
    let synchronous = "unknown"
    let pending = ""
    let stderr = ""
    let killing = false
    child.stdout.setEncoding("utf8")
    child.stdout.on("data", (chunk: string) => {
      pending += chunk
      const lines = pending.split("\n")
      pending = lines.pop() ?? ""
      for (const line of lines) {
        const committed = /^committed (\d+)$/.exec(line)
        if (committed !== null) reported.push(Number(committed[1]))
        const ready = /^ready synchronous=(\S+)$/.exec(line)
        if (ready !== null) synchronous = ready[1]!
      }
      if (!killing && reported.length >= killAfter) {
        killing = true
        setTimeout(() => child.kill("SIGKILL"), extraMillis)
      }
    })
    child.stderr.setEncoding("utf8")
    child.stderr.on("data", (chunk: string) => stderr += chunk)
    // "close" comes after the output streams ended: every line written before the kill has been read.
    child.on("close", (code, signal) => resume(Effect.succeed({ reported, synchronous, signal, code, stderr })))
    return Effect.sync(() => child.kill("SIGKILL"))
  })

interface Inspection {
  readonly integrity: string
  readonly batches: ReadonlyArray<{ readonly batch: number; readonly rows: number }>
}

/** Opens the crashed database the plain way (better-sqlite3, which runs SQLite's WAL recovery) and reads it. */
const inspect = (filename: string): Inspection => {
  const db = new Database(filename)
  try {
    const integrity = db.prepare("PRAGMA integrity_check").pluck().all().join("; ")
    const batches = db.prepare("SELECT batch, count(*) AS rows FROM events GROUP BY batch ORDER BY batch")
      .all() as Array<
        { batch: number; rows: number }
      >
    return { integrity, batches }
  } finally {
    db.close()
  }
}

describe("crash safety", () => {
  it.live(
    `a writer killed with SIGKILL ${ROUNDS} times loses no committed batch and leaves no partial one`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        const seed = seedFromEnvironment()
        const random = seededRandom(seed)
        const filename = path.join(yield* tempDir, "crash.db")
        let allReported: Array<number> = []
        let nextBatch = 1
        let unreportedSurvivors = 0
        let synchronous = "unknown"

        for (let round = 1; round <= ROUNDS; round++) {
          const killAfter = 1 + random.int(30)
          const extraMillis = random.int(25)
          const run = yield* runAndKill(filename, nextBatch, killAfter, extraMillis)
          if (run.signal !== "SIGKILL") {
            return expect.fail(`the writer ended by itself (code ${run.code}) instead of being killed:\n${run.stderr}`)
          }
          synchronous = run.synchronous
          allReported = [...allReported, ...run.reported]
          const maxReported = Math.max(0, ...allReported)

          const { batches, integrity } = inspect(filename)
          expect(integrity).toBe("ok")
          // Every batch is whole: all of its rows or none of them.
          for (const { batch, rows } of batches) expect({ batch, rows }).toEqual({ batch, rows: ROWS_PER_BATCH })
          const present = batches.map(({ batch }) => batch)
          // Every reported commit survived ...
          for (const batch of allReported) expect(present).toContain(batch)
          // ... and nothing else, but for the one batch whose COMMIT may have returned just before the kill.
          const expected = Array.from({ length: maxReported }, (_, index) => index + 1)
          if (present.length === maxReported + 1) {
            unreportedSurvivors++
            expected.push(maxReported + 1)
          }
          expect(present).toEqual(expected)

          // The pool itself opens the crashed database and finds the same rows.
          const count = yield* Effect.scoped(Effect.gen(function*() {
            const pool = yield* ConnectionPool.make({ filename })
            expect((yield* pool.healthCheck).ok).toBe(true)
            return yield* pool.use((connection) => connection.sql<{ n: number }>`SELECT count(*) AS n FROM events`)
          }))
          expect(count).toEqual([{ n: present.length * ROWS_PER_BATCH }])

          console.log(
            `crash round ${round}: killed after ${run.reported.length} reported commits (+${extraMillis} ms); ` +
              `${present.length} batches (${present.length * ROWS_PER_BATCH} rows) intact`
          )
          nextBatch = present.length + 1
        }
        console.log(
          `crash safety (seed ${seed}): ${ROUNDS} SIGKILLs survived, ${allReported.length} reported commits all ` +
            `present, ${unreportedSurvivors} unreported commits survived whole, no partial batch, integrity ok ` +
            `(PRAGMA synchronous=${synchronous} in WAL mode)`
        )
      })),
    60_000
  )
})
