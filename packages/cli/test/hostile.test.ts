/**
 * The command tried as a hostile user would: it never destroys a file, `health` never changes a database and tells
 * the truth about it, and a signal stops the work at once. Every test runs the real command as a child process on
 * real files (a FIFO, a read-only directory, a TMPDIR that does not exist, real signals).
 */
import { assert, describe, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import {
  assertOneLineError,
  canMount,
  eventsOf,
  filesIn,
  makeEventsDatabase,
  signalWhen,
  smallDisk,
  sqlsim,
  tempDir,
  unwritableDirectory
} from "./utils.js"

const killedWriter = fileURLToPath(new URL("./fixtures/killed-writer.mjs", import.meta.url))

/** The bytes of a database's main file, -wal and -shm (undefined for a missing one). */
const bytesOf = (db: string) =>
  Object.fromEntries(
    ["", "-wal", "-shm", "-journal"].map((suffix) => [
      `main${suffix}`,
      fs.existsSync(db + suffix) ? fs.readFileSync(db + suffix) : undefined
    ])
  )

/** A WAL database with committed frames never checkpointed: its writer was killed with SIGKILL. */
const killedWriterDatabase = (db: string, rows: number) => {
  const result = spawnSyncNode([killedWriter, db, String(rows)])
  assert.strictEqual(result, "SIGKILL")
  assert.isAbove(fs.statSync(`${db}-wal`).size, 0, "the commits are in the -wal")
  assert.isTrue(fs.existsSync(`${db}-shm`))
}

const spawnSyncNode = (args: ReadonlyArray<string>): NodeJS.Signals | null => {
  try {
    execFileSync(process.execPath, args, { stdio: "ignore" })
    return null
  } catch (error) {
    return (error as { signal?: NodeJS.Signals | null }).signal ?? null
  }
}

/** Overwrites `bytes` bytes at `offset` with seeded noise. */
const damage = (file: string, offset: number, bytes: number) => {
  const noise = Buffer.alloc(bytes)
  let state = 12345
  for (let i = 0; i < bytes; i++) {
    state = (state * 1103515245 + 12345) % 2 ** 31
    noise[i] = state & 0xff
  }
  const handle = fs.openSync(file, "r+")
  fs.writeSync(handle, noise, 0, bytes, offset)
  fs.closeSync(handle)
}

/** A database big enough that 16 KiB in its middle hold table and index pages. */
const makeIndexedDatabase = (db: string) => {
  const database = new Database(db)
  database.exec(
    "CREATE TABLE items (id INTEGER PRIMARY KEY, value TEXT NOT NULL); CREATE INDEX by_value ON items (value)"
  )
  const insert = database.prepare("INSERT INTO items (value) VALUES (?)")
  database.transaction(() => {
    for (let i = 0; i < 5000; i++) insert.run(`value ${i} ${"x".repeat(100)}`)
  })()
  database.close()
}

describe("health never changes a database and tells the truth", () => {
  it.scoped("a WAL database left by a killed writer: healthy, no byte of main/-wal/-shm changed", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      const db = path.join(cwd, "app.db")
      killedWriterDatabase(db, 200)
      const before = bytesOf(db)
      const run = yield* sqlsim(["health", "--db", "app.db"], { cwd })
      assert.strictEqual(run.code, 0, run.stderr)
      const report = JSON.parse(run.stdout)
      assert.strictEqual(report.ok, true)
      assert.strictEqual(report.journal_mode, "wal")
      assert.strictEqual(report.page_check, "quick")
      assert.deepStrictEqual(bytesOf(db), before)
      assert.deepStrictEqual(filesIn(cwd), ["app.db", "app.db-shm", "app.db-wal"])
      // The same files in a directory nobody can write to: still read, still unchanged.
      const locked = yield* unwritableDirectory
      if (locked !== "/sys") {
        const isRoot = process.getuid?.() === 0
        if (isRoot) execFileSync("chattr", ["-i", locked])
        for (const suffix of ["", "-wal", "-shm"]) fs.copyFileSync(db + suffix, path.join(locked, `app.db${suffix}`))
        if (isRoot) execFileSync("chattr", ["+i", locked])
        else fs.chmodSync(locked, 0o555)
        const inLocked = yield* sqlsim(["health", "--db", path.join(locked, "app.db")], { cwd })
        assert.strictEqual(inLocked.code, 0, inLocked.stderr)
        assert.deepStrictEqual(bytesOf(path.join(locked, "app.db")), before)
      }
    }))

  it.scoped("a damaged -wal is read as SQLite recovers it and left as it was", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      const db = path.join(cwd, "app.db")
      killedWriterDatabase(db, 200)
      // The first frame's header: the log is then invalid from its start.
      damage(`${db}-wal`, 40, 16)
      const before = bytesOf(db)
      const run = yield* sqlsim(["health", "--db", db], { cwd })
      assert.strictEqual(run.code, 0, run.stderr)
      assert.deepStrictEqual(bytesOf(db), before)
      assert.deepStrictEqual(filesIn(cwd), ["app.db", "app.db-shm", "app.db-wal"])
    }))

  it.scoped("a -wal with commits but no -shm: refused with one line, nothing created", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      const db = path.join(cwd, "app.db")
      killedWriterDatabase(db, 50)
      fs.rmSync(`${db}-shm`)
      const before = bytesOf(db)
      const run = yield* sqlsim(["health", "--db", "app.db"], { cwd })
      assertOneLineError(run, 1, "app.db-wal holds commits not yet in the main file")
      assert.deepStrictEqual(bytesOf(db), before)
      assert.deepStrictEqual(filesIn(cwd), ["app.db", "app.db-wal"])
    }))

  it.scoped("a checkpointed WAL database (no -wal) and a rollback one: healthy, no file created or changed", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      const wal = path.join(cwd, "wal.db")
      const database = new Database(wal)
      database.pragma("journal_mode = WAL")
      database.exec("CREATE TABLE t (x)")
      database.close()
      const rollback = path.join(cwd, "rollback.db")
      makeEventsDatabase(rollback, ["one"])
      const before = [bytesOf(wal), bytesOf(rollback)]
      for (const db of [wal, rollback]) {
        const run = yield* sqlsim(["health", "--db", db, "--check", "full"], { cwd })
        assert.strictEqual(run.code, 0, run.stderr)
        assert.strictEqual(JSON.parse(run.stdout).page_check, "full")
      }
      assert.deepStrictEqual([bytesOf(wal), bytesOf(rollback)], before)
      assert.deepStrictEqual(filesIn(cwd), ["rollback.db", "wal.db"])
    }))

  it.scoped("16 KiB of pages overwritten: unhealthy (exit 1) with the first problems; --check none skips it", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      const db = path.join(cwd, "big.db")
      makeIndexedDatabase(db)
      damage(db, Math.floor(fs.statSync(db).size / 2 / 4096) * 4096, 16 * 1024)
      const before = bytesOf(db)
      for (const check of ["quick", "full"]) {
        const run = yield* sqlsim(["health", "--db", db, "--check", check], { cwd })
        assertOneLineError(run, 1, /^unhealthy: .*big\.db is corrupt: (quick|integrity)_check found \d+ problems?/)
        const report = JSON.parse(run.stdout)
        assert.strictEqual(report.ok, false)
        assert.isAbove(report.problems.length, 0)
      }
      const skipped = yield* sqlsim(["health", "--db", db, "--check", "none"], { cwd })
      assert.strictEqual(skipped.code, 0, skipped.stderr)
      assert.strictEqual(JSON.parse(skipped.stdout).page_check, "none")
      assert.deepStrictEqual(bytesOf(db), before)
    }))
})

describe("inputs, database and outputs are distinct files, by real path", () => {
  it.scoped("simulate refuses an output on the database, its -wal, a symlink to it, or another output", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      const db = path.join(cwd, "app.db")
      makeEventsDatabase(db, ["keep me"])
      fs.symlinkSync(db, path.join(cwd, "link.db"))
      const before = bytesOf(db)
      const conflicts: ReadonlyArray<[ReadonlyArray<string>, string]> = [
        [["--db", "app.db", "--json", "app.db"], "--db and --json name the same file (app.db)"],
        [["--db", "app.db", "--json", "link.db"], "--db and --json name the same file (app.db and link.db)"],
        [["--db", "link.db", "--report", "./sub/../app.db-wal"], "--db and --report name the same file"],
        [["--json", "x.json", "--report", "x.json"], "--json and --report name the same file (x.json)"]
      ]
      for (const [args, expected] of conflicts) {
        const run = yield* sqlsim(["simulate", "--ops", "20", "--seed", "1", ...args], { cwd })
        assertOneLineError(run, 2, expected)
      }
      assert.deepStrictEqual(bytesOf(db), before)
      assert.deepStrictEqual(eventsOf(db), [{ id: 1, label: "keep me" }])
      assert.deepStrictEqual(filesIn(cwd), ["app.db", "link.db"])
    }))

  it.scoped("demo refuses an output that is a symlink to its input or database, and the database's -wal", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      fs.writeFileSync(path.join(cwd, "labels.txt"), "one\n")
      fs.symlinkSync("labels.txt", path.join(cwd, "labels-link.txt"))
      const conflicts: ReadonlyArray<[ReadonlyArray<string>, string]> = [
        [["--input", "labels.txt", "--output", "labels-link.txt"], "--input and --output name the same file"],
        [["--input", "labels-link.txt", "--db", "labels.txt"], "--input and --db name the same file"],
        [["--db", "app.db", "--output", "app.db-wal"], "--db and --output name the same file (app.db-wal)"]
      ]
      for (const [args, expected] of conflicts) {
        const run = yield* sqlsim(["demo", ...args], { cwd })
        assertOneLineError(run, 2, expected)
      }
      assert.strictEqual(fs.readFileSync(path.join(cwd, "labels.txt"), "utf8"), "one\n")
      assert.deepStrictEqual(filesIn(cwd), ["labels-link.txt", "labels.txt"])
    }))
})

/** Generous: a signal is acted on within a second; the rest is writing reports on a busy machine. */
const exitBoundMs = 10_000

const readJson = (file: string) => JSON.parse(fs.readFileSync(file, "utf8"))

describe("a signal stops the work at once and keeps what completed", () => {
  for (
    const [signal, repeat] of [["SIGINT", undefined], ["SIGTERM", undefined], ["SIGINT", 60]] as const
  ) {
    const how = repeat === undefined ? signal : `${signal} twice (a wrapper relaying it)`
    it.scoped(`simulate --duration 60s: ${how} a second in stops it, prints and writes what completed (130)`, () =>
      Effect.gen(function*() {
        const cwd = yield* tempDir
        const stop = signalWhen(signal, (stderr) => stderr.includes("progress:"), 1000, repeat)
        const run = yield* sqlsim(
          ["simulate", "--duration", "60s", "--seed", "3", "--json", "r.json", "--report", "r.html"],
          { cwd, ...stop.options }
        )
        assert.isDefined(stop.state.sentAt, `a progress line was printed (stderr: ${run.stderr})`)
        assert.strictEqual(run.code, 130, run.stderr)
        assert.isBelow(run.endedAt - stop.state.sentAt!, exitBoundMs, "time from the signal to the exit (ms)")
        assert.include(run.stderr, "interrupted: workers stopped, pool closed")
        assert.include(run.stdout, "interrupted: the numbers cover the operations that finished before the stop")
        const report = readJson(path.join(cwd, "r.json"))
        assert.strictEqual(report.runs[0].interrupted, true)
        assert.isAbove(report.runs[0].operations.completed, 0)
        assert.include(fs.readFileSync(path.join(cwd, "r.html"), "utf8"), "interrupted")
        assert.deepStrictEqual(filesIn(cwd), ["r.html", "r.json"])
      }))
  }

  it.scoped("demo in the middle of a long transaction: SIGTERM exits 130 at once, nothing committed or written", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      const db = path.join(cwd, "app.db")
      makeEventsDatabase(db, ["earlier"])
      fs.writeFileSync(path.join(cwd, "summary.json"), "earlier summary")
      const labels = path.join(cwd, "labels.txt")
      const line = (i: number) => `label ${i} ${"z".repeat(100)}\n`
      fs.writeFileSync(labels, Array.from({ length: 300_000 }, (_, i) => line(i)).join(""))
      // The inserts spill into the -wal while the transaction is open: signal it then.
      const stop = signalWhen("SIGTERM", () => (fs.existsSync(`${db}-wal`) ? fs.statSync(`${db}-wal`).size : 0) > 1e6)
      const run = yield* sqlsim(["demo", "--input", labels, "--db", db], { cwd, ...stop.options })
      assert.isDefined(stop.state.sentAt, "the transaction was seen writing")
      assert.strictEqual(run.code, 130, run.stderr)
      assert.isBelow(run.endedAt - stop.state.sentAt!, exitBoundMs, "time from the signal to the exit (ms)")
      assert.strictEqual(fs.readFileSync(path.join(cwd, "summary.json"), "utf8"), "earlier summary")
      assert.deepStrictEqual(eventsOf(db), [{ id: 1, label: "earlier" }])
    }))

  it.scoped("demo interrupted after its COMMIT: says how many rows were committed, and marks the summary", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      const db = path.join(cwd, "app.db")
      const labels = path.join(cwd, "labels.txt")
      fs.writeFileSync(labels, Array.from({ length: 200_000 }, (_, i) => `row ${i} ${"w".repeat(60)}\n`).join(""))
      // The rows are written to the temporary summary only after the COMMIT.
      const temporarySummary = () =>
        fs.readdirSync(cwd).some((name) => name.startsWith(".sqlsim-") && fs.statSync(path.join(cwd, name)).size > 1e5)
      const stop = signalWhen("SIGINT", temporarySummary)
      const run = yield* sqlsim(["demo", "--input", labels, "--db", db, "--output", "summary.json"], {
        cwd,
        ...stop.options
      })
      assert.isDefined(stop.state.sentAt, "the read-back was seen writing")
      assert.strictEqual(run.code, 130, run.stderr)
      assert.isBelow(run.endedAt - stop.state.sentAt!, exitBoundMs, "time from the signal to the exit (ms)")
      assertOneLineError(run, 130, `interrupted after the commit: 200000 rows were committed to ${db}`)
      const summary = readJson(path.join(cwd, "summary.json"))
      assert.deepStrictEqual(summary, {
        interrupted: true,
        rows_inserted: 200_000,
        first_id: 1,
        last_id: 200_000,
        database: db
      })
      assert.strictEqual(eventsOf(db)!.length, 200_000)
      assert.deepStrictEqual(filesIn(cwd).filter((name) => name.startsWith(".")), [])
    }))
})

describe("the database taken away", () => {
  // The pooled run (60 s): the database file alone deleted, so the pool refuses the name (its old -wal is there). The
  // connect-per-operation run of --compare (4 s each, deleted once the second run's progress shows, well before it
  // would end): the -wal and -shm deleted too, so the next connection makes an empty database, where nothing is found.
  for (
    const [mode, duration, extra, during, suffixes] of [
      ["pooled", "60s", [], "progress:", [""]],
      ["--compare", "4s", ["--compare"], "(2/2)", ["", "-wal", "-shm"]]
    ] as const
  ) {
    it.scoped(`simulate (${mode}) whose --db is deleted mid-run: stops at once, one line (exit 1), no report`, () =>
      Effect.gen(function*() {
        const cwd = yield* tempDir
        let deletedAt: number | undefined
        const run = yield* sqlsim(
          ["simulate", "--duration", duration, "--seed", "3", "--db", "app.db", "--json", "r.json", ...extra],
          {
            cwd,
            onStderr: (stderr) => {
              if (deletedAt !== undefined || !stderr.includes(during)) return
              for (const suffix of suffixes) fs.rmSync(path.join(cwd, `app.db${suffix}`), { force: true })
              deletedAt = performance.now()
            }
          }
        )
        assert.isDefined(deletedAt, `the run was under way (stderr: ${run.stderr})`)
        assertOneLineError(
          run,
          1,
          /^the simulation database app\.db was deleted or replaced while the run worked on it: the run stopped/
        )
        assert.isBelow(run.endedAt - deletedAt!, exitBoundMs, "time from the deletion to the exit (ms)")
        // No report, nor its temporary file; the pooled run created no database under the name.
        const left = filesIn(cwd).filter((name) => !/^app\.db-(wal|shm)$/.test(name))
        assert.deepStrictEqual(left, mode === "pooled" ? [] : left.filter((name) => name === "app.db"))
      }))
  }
})

describe("the disk full", () => {
  it.scoped.skipIf(!canMount)(
    "simulate whose database's disk fills: stops at once, one line (exit 1), no report",
    () =>
      Effect.gen(function*() {
        const disk = yield* smallDisk(2048)
        const cwd = yield* tempDir
        const started = performance.now()
        const run = yield* sqlsim(
          ["simulate", "--duration", "60s", "--seed", "3", "--mix", "write=100", "--db", path.join(disk, "app.db")]
            .concat(["--json", "r.json"]),
          { cwd }
        )
        assertOneLineError(
          run,
          1,
          /^the disk that holds the simulation database .*app\.db is full \(SQLITE_FULL\): the run stopped/
        )
        // Writes fill 2 MiB within a second or two: the run stops there, not at its 60 s end.
        assert.isBelow(run.endedAt - started, 30_000)
        assert.deepStrictEqual(filesIn(cwd), [])
      })
  )

  it.scoped.skipIf(!canMount)(
    "demo whose database's disk fills, or whose output's: one line (exit 1), nothing left",
    () =>
      Effect.gen(function*() {
        const disk = yield* smallDisk(1024)
        const cwd = yield* tempDir
        const labels = path.join(cwd, "labels.txt")
        fs.writeFileSync(labels, Array.from({ length: 100_000 }, (_, i) => `label ${i} ${"x".repeat(20)}\n`).join(""))
        const full = yield* sqlsim(["demo", "-i", labels, "--db", path.join(disk, "app.db"), "-o", "out.json"], { cwd })
        assertOneLineError(full, 1, /app\.db: database or disk is full/)
        assert.deepStrictEqual(filesIn(disk), [], "the database the run created is removed")
        assert.deepStrictEqual(filesIn(cwd), ["labels.txt"])
        // The output on the full disk instead: the rows are committed, and the error says so; the output is not
        // half-written.
        fs.writeFileSync(path.join(disk, "filler"), Buffer.alloc(1024 * 1024 - 8192))
        const output = yield* sqlsim(["demo", "-i", labels, "--db", "app.db", "-o", path.join(disk, "out.json")], {
          cwd
        })
        assertOneLineError(
          output,
          1,
          /out\.json: the disk is full; the 100000 rows were committed to .*app\.db \(ids 1 to 100000\) before it: a second run inserts them again$/
        )
        assert.deepStrictEqual(filesIn(disk), ["filler"])
        assert.strictEqual(eventsOf(path.join(cwd, "app.db"))?.length, 100_000)
      })
  )
})

describe("a FIFO as input", () => {
  it.scoped("the write lock is not held while input is awaited, and the first SIGINT ends the run (130)", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      const db = path.join(cwd, "app.db")
      makeEventsDatabase(db, ["earlier"])
      const fifo = path.join(cwd, "labels.fifo")
      execFileSync("mkfifo", [fifo])
      let writer: number | undefined
      let otherWriter = "not tried"
      const stop = signalWhen("SIGINT", () => {
        if (writer === undefined) {
          // Succeeds once the command has opened the FIFO for reading.
          try {
            writer = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK)
          } catch {
            return false
          }
          fs.writeSync(writer, "one\ntwo\n")
          return false
        }
        // Another process writes while the command waits for the rest of its input: no SQLITE_BUSY.
        const other = new Database(db, { timeout: 0 })
        try {
          other.exec("BEGIN IMMEDIATE; INSERT INTO events (label) VALUES ('other process'); COMMIT")
          otherWriter = "ok"
        } catch (error) {
          otherWriter = String((error as { code?: unknown }).code)
        } finally {
          other.close()
        }
        return true
      }, 500)
      const run = yield* sqlsim(["demo", "--input", fifo, "--db", db, "--output", "out.json"], {
        cwd,
        ...stop.options
      }).pipe(Effect.ensuring(Effect.sync(() => writer !== undefined && fs.closeSync(writer))))
      assert.strictEqual(otherWriter, "ok")
      assert.isDefined(stop.state.sentAt)
      assert.strictEqual(run.code, 130, run.stderr)
      assert.isBelow(run.endedAt - stop.state.sentAt!, exitBoundMs, "time from the signal to the exit (ms)")
      assert.deepStrictEqual(eventsOf(db), [{ id: 1, label: "earlier" }, { id: 2, label: "other process" }])
      assert.deepStrictEqual(filesIn(cwd), ["app.db", "labels.fifo"])
    }))
})

describe("the environment", () => {
  it.scoped(
    "a TMPDIR that does not exist, or is read-only: one line naming it and how to choose another (exit 1)",
    () =>
      Effect.gen(function*() {
        const cwd = yield* tempDir
        const missing = path.join(cwd, "no-such-tmp")
        const readOnly = yield* unwritableDirectory
        for (const [tmp, reason] of [[missing, "it does not exist"], [readOnly, "it is not writable"]] as const) {
          const env = { TMPDIR: tmp }
          const demo = yield* sqlsim(["demo", "--output", "out.json"], { cwd, env })
          assertOneLineError(
            demo,
            1,
            `cannot use the temporary directory ${tmp} (for the in-memory database): ${reason}`
          )
          assert.include(demo.stderr, "set TMPDIR to a directory you can write to (TMPDIR=")
          const simulate = yield* sqlsim(["simulate", "--ops", "10", "--seed", "1"], { cwd, env })
          assertOneLineError(simulate, 1, `cannot use the temporary directory ${tmp} (for simulate's temporary files)`)
          const withDb = yield* sqlsim(["simulate", "--ops", "10", "--seed", "1", "--db", "app.db"], { cwd, env })
          assertOneLineError(withDb, 1, `cannot use the temporary directory ${tmp}`)
        }
        assert.isFalse(fs.existsSync(missing))
        assert.deepStrictEqual(filesIn(cwd), [])
      })
  )

  it.scoped("a 250-character output name is written (the temporary name is short); one too long is refused", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      const long = `${"o".repeat(245)}.json`
      const demo = yield* sqlsim(["demo", "--output", long], { cwd })
      assert.strictEqual(demo.code, 0, demo.stderr)
      assert.strictEqual(readJson(path.join(cwd, long)).rows_inserted, 5)
      const report = `${"r".repeat(245)}.html`
      const simulate = yield* sqlsim(["simulate", "--ops", "20", "--seed", "1", "--json", long, "--report", report], {
        cwd
      })
      assert.strictEqual(simulate.code, 0, simulate.stderr)
      assert.strictEqual(readJson(path.join(cwd, long)).settings.seed, 1)
      const tooLong = yield* sqlsim(["demo", "--output", "t".repeat(300)], { cwd })
      assertOneLineError(tooLong, 1, "the name is longer than the file system allows; choose a shorter one")
      assert.deepStrictEqual(filesIn(cwd), [long, report])
    }))
})

describe("smaller things", () => {
  it.scoped("--db with a name too long: permanent, said in words, not retried; --seed says what a seed must be", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      const run = yield* sqlsim(["demo", "--db", `${"d".repeat(300)}.db`, "--output", "out.json"], { cwd })
      assertOneLineError(run, 1, "the file name is longer than the file system allows (ENAMETOOLONG)")
      assert.include(run.stderr, "after 1 attempt")
      for (const seed of ["-1", "abc", "1.5"]) {
        const simulate = yield* sqlsim(["simulate", "--ops", "10", "--seed", seed], { cwd })
        assertOneLineError(simulate, 2, `--seed must be a whole number from 0 to 2,147,483,647, got ${seed}`)
      }
      assert.deepStrictEqual(filesIn(cwd), [])
    }))

  it.scoped("standard input that turns out bad creates no --db file, even when it is longer than the read-ahead", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      // Valid labels past the 4 MiB read before the database opens, then a byte that is not UTF-8.
      const good = Array.from({ length: 60_000 }, (_, i) => `label ${i} ${"g".repeat(90)}\n`).join("")
      for (const [name, input] of [["short", "fine\n\xff\n"], ["long", `${good}\xff\n`]] as const) {
        const run = yield* sqlsim(["demo", "--input", "-", "--db", `${name}.db`, "--output", "out.json"], {
          cwd,
          stdin: (child) => child.end(Buffer.from(input, "latin1"))
        })
        assertOneLineError(run, 1, "is not valid UTF-8 text")
      }
      assert.deepStrictEqual(filesIn(cwd), [])
    }))
})
