/**
 * The real `sqlsim` command, run as a child process: exit codes, stdout, stderr and the files it leaves.
 */
import { assert, describe, it } from "@effect/vitest"
import { Demo, Labels } from "@sqlsim/cli"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import packageJson from "../package.json" with { type: "json" }
import {
  assertOneLineError,
  eventsOf,
  filesIn,
  makeEventsDatabase,
  sqlsim,
  tempDir,
  unwritableDirectory
} from "./utils.js"

const readSummary = (file: string): Demo.Summary => JSON.parse(fs.readFileSync(file, "utf8"))

describe("sqlsim", () => {
  it.scoped("demo with no arguments: bundled labels, in-memory database, ./summary.json named in the output", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      const run = yield* sqlsim(["demo"], { cwd })
      assert.strictEqual(run.code, 0, run.stderr)
      assert.strictEqual(run.stderr, "")
      const output = path.join(cwd, "summary.json")
      assert.include(run.stdout, `Summary written to ${output}`)
      const summary = readSummary(output)
      const bundled = fs.readFileSync(Demo.bundledLabels, "utf8").split("\n").map((line) => line.trim())
        .filter((line) => line !== "")
      assert.deepStrictEqual(summary.rows.map((row) => row.label), bundled)
      assert.deepStrictEqual(summary.rows.map((row) => row.id), bundled.map((_, i) => i + 1))
      assert.strictEqual(summary.pool_stats.created, 1)
      assert.strictEqual(summary.pool_stats.reused, 1)
      // stdout starts with the same JSON (all rows fit in the preview); only the summary is left in the directory.
      assert.isTrue(run.stdout.startsWith(Demo.render(summary).trimEnd()))
      assert.deepStrictEqual(filesIn(cwd), ["summary.json"])
    }))

  it.scoped("--version prints the package's version; demo --help documents the options and the label limit", () =>
    Effect.gen(function*() {
      const version = yield* sqlsim(["--version"])
      assert.strictEqual(version.code, 0)
      assert.strictEqual(version.stdout.trim(), packageJson.version)
      const help = yield* sqlsim(["demo", "--help"])
      assert.strictEqual(help.code, 0)
      for (const option of ["--input", "--output", "--db", "--pool-size", "--max-retries", "SQLSIM_DEMO_INPUT"]) {
        assert.include(help.stdout, option)
      }
      assert.include(help.stdout, `${Labels.maxLabelBytes} bytes`)
    }))

  it.scoped("--pool-size 0 and --max-retries -1 are usage errors naming the rule (exit 2, nothing written)", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      assertOneLineError(yield* sqlsim(["demo", "--pool-size", "0"], { cwd }), 2, "--pool-size must be an integer >= 1")
      assertOneLineError(
        yield* sqlsim(["demo", "--max-retries", "-1"], { cwd }),
        2,
        "--max-retries must be an integer >= 0"
      )
      assert.deepStrictEqual(filesIn(cwd), [])
    }))

  it.scoped("bad input: one line on stderr, exit 1, the database and an earlier summary unchanged", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      const db = path.join(cwd, "events.db")
      makeEventsDatabase(db, ["earlier"])
      fs.writeFileSync(path.join(cwd, "summary.json"), "earlier summary")
      fs.mkdirSync(path.join(cwd, "a-directory"))
      fs.writeFileSync(path.join(cwd, "utf16.txt"), Buffer.from("\uFEFFlabel\n", "utf16le"))
      const demo = (input: string) => sqlsim(["demo", "--input", input, "--db", db], { cwd })

      assertOneLineError(yield* demo("missing.txt"), 1, "input missing.txt: no such file")
      assertOneLineError(yield* demo("a-directory"), 1, "input a-directory: is a directory")
      assertOneLineError(yield* demo("utf16.txt"), 1, "input utf16.txt (line 1): is not valid UTF-8 text")

      assert.deepStrictEqual(eventsOf(db), [{ id: 1, label: "earlier" }])
      assert.strictEqual(fs.readFileSync(path.join(cwd, "summary.json"), "utf8"), "earlier summary")
      assert.deepStrictEqual(filesIn(cwd).filter((file) => !file.startsWith("events.db")), [
        "a-directory",
        "summary.json",
        "utf16.txt"
      ])
    }))

  it.scoped("an output in a missing or unwritable directory: exit 1, one line, no database created", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      const locked = yield* unwritableDirectory
      const missing = yield* sqlsim(["demo", "--output", "no/such/dir/summary.json", "--db", "events.db"], { cwd })
      assertOneLineError(missing, 1, /^cannot write no\/such\/dir\/summary\.json: the directory .* does not exist/)
      const unwritable = yield* sqlsim(["demo", "--output", path.join(locked, "summary.json"), "--db", "events.db"], {
        cwd
      })
      assertOneLineError(unwritable, 1, "permission denied")
      assert.deepStrictEqual(filesIn(cwd), [])
    }))

  it.scoped("a 1 GB input is streamed: its over-long first line fails at once, in bounded memory", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      // Sparse: 1 GiB of NUL bytes without using the disk, and one endless line.
      const big = path.join(cwd, "big.txt")
      const fd = fs.openSync(big, "w")
      fs.ftruncateSync(fd, 1024 ** 3)
      fs.closeSync(fd)
      const run = yield* sqlsim(["demo", "--input", big], { cwd, maxOldSpaceMiB: 64, measureMemory: true })
      assertOneLineError(run, 1, `(line 1): is longer than ${Labels.maxLabelBytes} bytes`)
      assert.isDefined(run.peakMemoryMiB)
      assert.isBelow(run.peakMemoryMiB!, 400, "peak resident memory (MiB) far below the input's 1024")
      assert.deepStrictEqual(filesIn(cwd), ["big.txt"])
    }))

  it.scoped("100 MB of labels on standard input succeed with a 64 MB heap: streamed in, streamed out", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      const count = 100_000
      const line = (i: number) => `${String(i).padStart(8, "0")} ${"x".repeat(1000)}\n`
      const run = yield* sqlsim(["demo", "--input", "-"], {
        cwd,
        maxOldSpaceMiB: 64,
        measureMemory: true,
        stdin: (input) => {
          let i = 0
          const pump = () => {
            while (i < count) {
              let chunk = ""
              for (const end = Math.min(i + 500, count); i < end; i++) chunk += line(i)
              if (!input.write(chunk)) return void input.once("drain", pump)
            }
            input.end()
          }
          pump()
        }
      })
      assert.strictEqual(run.code, 0, run.stderr)
      assert.include(run.stdout, `(showing the first 20 of ${count} rows)`)
      assert.isBelow(run.peakMemoryMiB!, 400, "peak resident memory (MiB)")
      const summary = readSummary(path.join(cwd, "summary.json"))
      assert.strictEqual(summary.rows_inserted, count)
      assert.strictEqual(summary.rows.length, count)
      assert.isTrue(summary.rows.every((row, i) => row.id === i + 1 && row.label === line(i).trim()))
      assert.strictEqual(summary.pool_stats.reused, 1)
    }))

  it.scoped("killed in the middle of the transaction: no summary written, no rows inserted", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      const db = path.join(cwd, "events.db")
      makeEventsDatabase(db, ["earlier"])
      fs.writeFileSync(path.join(cwd, "summary.json"), "earlier summary")
      const chunk = Array.from({ length: 1000 }, (_, i) => `label ${i} ${"y".repeat(80)}`).join("\n") + "\n"
      let kill: (signal: NodeJS.Signals) => boolean = () => false
      const run = yield* sqlsim(["demo", "--input", "-", "--db", db], {
        cwd,
        onSpawn: (child) => (kill = child.kill.bind(child)),
        stdin: (input) => {
          // A write's callback runs once the chunk is in the pipe (64 KiB): after 24 chunks the command has read
          // megabytes of labels, which it only does inside its transaction, and waits for more: kill it there.
          let written = 0
          const next = () => written++ < 24 ? input.write(chunk, next) : kill("SIGKILL")
          next()
        }
      })
      assert.strictEqual(run.signal, "SIGKILL")
      assert.strictEqual(fs.readFileSync(path.join(cwd, "summary.json"), "utf8"), "earlier summary")
      assert.deepStrictEqual(eventsOf(db), [{ id: 1, label: "earlier" }])
    }))

  it.scoped("options come from the environment too; a bad value there is named", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      fs.writeFileSync(path.join(cwd, "mine.txt"), "from the environment\n")
      const configured = yield* sqlsim(["demo"], {
        cwd,
        env: { SQLSIM_DEMO_INPUT: "mine.txt", SQLSIM_DEMO_OUTPUT: "out.json", SQLSIM_FILENAME: "env.db" }
      })
      assert.strictEqual(configured.code, 0, configured.stderr)
      assert.deepStrictEqual(readSummary(path.join(cwd, "out.json")).rows, [{ id: 1, label: "from the environment" }])
      assert.deepStrictEqual(eventsOf(path.join(cwd, "env.db")), [{ id: 1, label: "from the environment" }])
      const invalid = yield* sqlsim(["demo", "--output", "bad.json"], { cwd, env: { SQLSIM_MAX_CONNECTIONS: "0" } })
      assertOneLineError(invalid, 2, "SQLSIM_MAX_CONNECTIONS: maxConnections must be an integer from 1 to 1000, got 0")
      assert.isFalse(fs.existsSync(path.join(cwd, "bad.json")))
    }))

  it.scoped("simulate's Reader flags fall back to SQLSIM_READ_CONNECTIONS and SQLSIM_READER_THREADS", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      const configured = yield* sqlsim(["simulate", "--ops", "20", "--json", "run.json"], {
        cwd,
        env: { SQLSIM_READ_CONNECTIONS: "1", SQLSIM_READER_THREADS: "true" }
      })
      assert.strictEqual(configured.code, 0, configured.stderr)
      const settings = JSON.parse(fs.readFileSync(path.join(cwd, "run.json"), "utf8")).settings
      assert.deepInclude(settings, { readers: 1, readerThreads: true })
      const invalid = yield* sqlsim(["simulate", "--ops", "20"], { cwd, env: { SQLSIM_READ_CONNECTIONS: "many" } })
      assertOneLineError(invalid, 2, "--readers (or SQLSIM_READ_CONNECTIONS) must be a whole number from 0 to 64")
    }))

  it.scoped("health prints a JSON report: exit 0 when healthy, 1 with one line on stderr when not", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      makeEventsDatabase(path.join(cwd, "events.db"), ["one"])
      const healthy = yield* sqlsim(["health", "--db", "events.db"], { cwd })
      assert.strictEqual(healthy.code, 0, healthy.stderr)
      const report = JSON.parse(healthy.stdout)
      assert.strictEqual(report.ok, true)
      assert.strictEqual(report.database, path.join(cwd, "events.db"))
      assert.match(report.sqlite_version, /^3\./)
      fs.writeFileSync(path.join(cwd, "notes.txt"), "plain text, long enough to be read as a database header......\n")
      const unhealthy = yield* sqlsim(["health", "--db", "notes.txt"], { cwd })
      assertOneLineError(unhealthy, 1, "unhealthy: cannot open notes.txt: the file is not a SQLite database")
      assert.strictEqual(JSON.parse(unhealthy.stdout).ok, false)
    }))
})
