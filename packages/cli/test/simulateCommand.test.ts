import * as Command from "@effect/cli/Command"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { assert, describe, it } from "@effect/vitest"
import type { Report } from "@sqlsim/simulator"
import * as Sqld from "@sqlsim/test-kit/Sqld"
import { Console, Effect } from "effect"
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { simulateCommand } from "../src/commands/simulate.js"
import { command, tempDir } from "./utils.js"

const cli = Command.run(Command.make("sqlsim").pipe(Command.withSubcommands([simulateCommand])), {
  name: "sqlsim",
  version: "0.1.0"
})

/** Runs `sqlsim simulate <args>` in this process, capturing what it prints. */
const simulate = (...args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const out: Array<string> = []
    const err: Array<string> = []
    const result = yield* Console.consoleWith((console) =>
      cli(["node", "sqlsim", "simulate", ...args]).pipe(
        Effect.withConsole({
          ...console,
          log: (...parts: ReadonlyArray<unknown>) => Effect.sync(() => void out.push(parts.join(" "))),
          error: (...parts: ReadonlyArray<unknown>) => Effect.sync(() => void err.push(parts.join(" ")))
        }),
        Effect.either
      )
    )
    return { result, out: out.join("\n"), err: err.join("\n") }
  }).pipe(Effect.provide(NodeContext.layer))

const repository = fileURLToPath(new URL("../../..", import.meta.url))

describe("sqlsim simulate", () => {
  it.live("runs, prints the table, writes JSON and HTML; on virtual time the same seed repeats exactly", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const files = (name: string) => [path.join(directory, `${name}.json`), path.join(directory, `${name}.html`)]
      const args = (json: string, html: string) => [
        "--ops",
        "120",
        "--seed",
        "8",
        "--workers",
        "3",
        "--hold",
        "1",
        "--virtual-time",
        "--compare",
        "--faults",
        "open=0.2,die=0.1,slow=0.1",
        "--json",
        json,
        "--report",
        html
      ]
      const [json1, html1] = files("first")
      const [json2, html2] = files("second")
      const first = yield* simulate(...args(json1!, html1!))
      assert.strictEqual(first.result._tag, "Right", first.err)
      assert.match(
        first.out,
        /^sqlsim simulate: seed 8, 3 workers, 120 operations, faults open=0\.2,slow=0\.1,die=0\.1/
      )
      assert.match(first.out, /\npooled .* vs connect-per-operation .*: the pool is/)
      assert.include(first.out, `JSON report written to ${json1}`)
      assert.include(first.out, `HTML report written to ${html1}`)
      const report = JSON.parse(fs.readFileSync(json1!, "utf8")) as Report.Report
      assert.strictEqual(report.settings.seed, 8)
      assert.deepStrictEqual(report.runs.map((run) => run.operations.completed + run.operations.failed), [120, 120])
      assert.include(fs.readFileSync(html1!, "utf8"), "data-chart=\"connections\"")

      const second = yield* simulate(...args(json2!, html2!))
      assert.strictEqual(second.result._tag, "Right", second.err)
      const replay = JSON.parse(fs.readFileSync(json2!, "utf8")) as Report.Report
      const comparable = (r: Report.Report) =>
        JSON.stringify({ ...r, startedAt: 0, settings: { ...r.settings, database: 0 } })
      assert.strictEqual(comparable(replay), comparable(report))
    }).pipe(Effect.scoped))

  it.live("--sqld starts the servers, --kill crashes the primary mid-run, and the report says when it was back", () =>
    Effect.gen(function*() {
      const json = path.join(yield* tempDir, "servers.json")
      const { err, out, result } = yield* simulate(
        "--sqld",
        path.relative(process.cwd(), Sqld.sqldBinary()), // relative: the user's working directory's, not sqld's
        "--kill",
        "primary@500ms+500ms",
        "--duration",
        "2s",
        "--seed",
        "4",
        "--json",
        json
      )
      assert.strictEqual(result._tag, "Right", err)
      assert.match(out, /started by the simulator, 1 replica, kills primary@500ms\+500ms/)
      assert.match(out, /servers crashed +primary killed at 0\.\d\d s, back at 1\.\d\d s/)
      const report = JSON.parse(fs.readFileSync(json, "utf8")) as Report.Report
      assert.strictEqual(report.runs[0]!.servers[0]!.server, "primary")
      assert.isNotNull(report.runs[0]!.servers[0]!.backAtMs)
      // The pool's statistics carry the replicas' positions: bigints, written as decimal strings.
      assert.match(String(report.runs[0]!.pool?.replication?.primaryIndex), /^\d+$/)
    }).pipe(Effect.scoped))

  it.live("--reader-threads runs the Reader in worker threads and says so", () =>
    Effect.gen(function*() {
      const json = path.join(yield* tempDir, "threads.json")
      const { err, out, result } = yield* simulate("--ops", "300", "--seed", "3", "--reader-threads", "--json", json)
      assert.strictEqual(result._tag, "Right", err)
      assert.match(out, /^sqlsim simulate: seed 3, .*, Reader in worker threads\n/)
      const report = JSON.parse(fs.readFileSync(json, "utf8")) as Report.Report
      assert.isTrue(report.settings.readerThreads)
      assert.deepStrictEqual(report.runs.map(({ operations }) => [operations.completed, operations.failed]), [[300, 0]])
    }).pipe(Effect.scoped))

  it.live("--hold-warning-ms, --long-read and --wal-checkpoint-bytes: the report counts the warnings by span and shows the WAL's growth", () =>
    Effect.gen(function*() {
      const json = path.join(yield* tempDir, "operated.json")
      const { err, out, result } = yield* simulate(
        ...["--seed", "5", "--workers", "4", "--ops", "1200", "--hold", "30", "--virtual-time", "--json", json],
        ...["--hold-warning-ms", "20", "--long-read", "2500", "--wal-checkpoint-bytes", "65536"]
      )
      assert.strictEqual(result._tag, "Right", err)
      assert.match(out, /^sqlsim simulate: seed 5, .*, a long read of 2500 ms\n/)
      assert.match(out, /\nhold warnings +\d+ past 20 ms: span "sim\.long-read" 1, span "sim\.transaction" \d+\n/)
      assert.match(out, /\nWAL +largest .*; [1-9]\d* checkpoints? blocked by a reader, [1-9]\d* truncations?\n/)
      assert.match(out, /\nlong read +2500 ms: completed\n/)
      const report = JSON.parse(fs.readFileSync(json, "utf8")) as Report.Report
      assert.strictEqual(report.settings.longReadMs, 2500)
      assert.strictEqual(report.runs[0]!.holdWarnings!.thresholdMs, 20)
      assert.isAbove(report.runs[0]!.wal!.checkpointsBlocked, 0)
    }).pipe(Effect.scoped))

  it.live("--hold-warning-ms: the terminal gets the report's count, not one logged warning per hold", () =>
    Effect.sync(() => {
      const args = ["--seed", "5", "--workers", "4", "--ops", "300", "--hold", "30", "--virtual-time"]
      const run = spawnSync(
        process.execPath,
        [command, "simulate", ...args, "--hold-warning-ms", "20"],
        { cwd: repository, encoding: "utf8", timeout: 120_000 }
      )
      assert.strictEqual(run.status, 0, run.stderr)
      assert.match(run.stdout, /\nhold warnings +[1-9]\d* past 20 ms: span "sim\.transaction" \d+\n/)
      assert.notInclude(run.stdout + run.stderr, "holdWarningThreshold")
    }))

  it.live("bad flags are usage errors with one clear line, before any work", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, RegExp]> = [
        [["--faults", "open=2"], /--faults open=2: must be a probability between 0 and 1/],
        [["--faults", "explode=1"], /unknown fault "explode"/],
        [["--mix", "read=1,delete=2"], /unknown operation "delete"/],
        [["--duration", "2h"], /--duration must be more than 0 and at most 1 hour/],
        [["--workers", "0"], /--workers must be a whole number from 1 to 512, got 0/],
        [["--ops", "10", "--duration", "1s"], /give --ops or --duration, not both/],
        [["--virtual-time"], /--virtual-time needs --ops/],
        [["--ops", "10", "--virtual-time", "--reader-threads"], /cannot be combined with --reader-threads/],
        [["--db", ":memory:"], /--db must be a database file/],
        [["--kill", "primary@1s"], /--kill needs --sqld/],
        [["--sqld-replicas", "2"], /--sqld-replicas needs --sqld/],
        [["--sqld", path.join(directory, "no-sqld")], /no-sqld/],
        [["--sqld", Sqld.sqldBinary(), "--kill", "db@1s"], /--kill takes SERVER@AT\[\+DOWN\]/],
        [["--sqld", Sqld.sqldBinary(), "--kill", "replica-2@1s"], /--kill names replica-2, but the run starts 1/],
        [["--sqld", Sqld.sqldBinary(), "--primary", "http://127.0.0.1:1"], /give --primary or --sqld, not both/],
        [["--sqld", Sqld.sqldBinary(), "--faults", "open=0.1"], /use slow, die, ping, ioerr, stmt-busy and stmt-slow/],
        [["--faults", "die=0.5,ioerr=0.5"], /die \+ ping \+ ioerr \+ stmt-busy \+ stmt-slow must be below 1/],
        [["--statement-ms", "0.1"], /--statement-ms models a cost on the virtual clock: give it with --virtual-time/],
        [["--ops", "10", "--virtual-time", "--connect-ms", "-1"], /--connect-ms must be from 0 to 1000 milliseconds/],
        [["--long-read", "0"], /--long-read must be a whole number from 1 to 3,600,000, got 0/],
        [["--hold-warning-ms", "1.5"], /--hold-warning-ms must be a whole number from 1 to 3,600,000, got 1.5/],
        [["--wal-checkpoint-bytes", "0"], /--wal-checkpoint-bytes must be a whole number from 1 to/]
      ]
      for (const [args, message] of cases) {
        const { err, out, result } = yield* simulate(...args)
        assert.isTrue(result._tag === "Left" && ValidationError.isValidationError(result.left), args.join(" "))
        assert.match(err, message, args.join(" "))
        assert.notInclude(err, "    at ", "no stack trace")
        assert.strictEqual(out, "", "no work done")
      }
      // An output that cannot be written is reported before the run starts.
      const missing = path.join(directory, "no-such-directory", "report.json")
      const { out, result } = yield* simulate("--ops", "10", "--json", missing)
      assert.isTrue(result._tag === "Left")
      if (result._tag === "Left") {
        assert.strictEqual((result.left as { _tag?: string })._tag, "OutputError")
        assert.match((result.left as Error).message, /does not exist/)
      }
      assert.strictEqual(out, "")
    }).pipe(Effect.scoped))

  it.live(
    "Ctrl-C stops a real run: workers interrupted, pool closed, lock holder gone, summary printed",
    () =>
      Effect.gen(function*() {
        const directory = yield* tempDir
        const json = path.join(directory, "interrupted.json")
        const child = spawn(
          process.execPath,
          [
            command,
            "simulate",
            "--duration",
            "60s",
            "--seed",
            "2",
            "--faults",
            "open=0.05,busy=lock-holder,lock-ms=20,lock-every=100",
            "--json",
            json
          ],
          { cwd: repository, stdio: ["ignore", "pipe", "pipe"] }
        )
        let stdout = ""
        let stderr = ""
        child.stdout.on("data", (chunk: Buffer) => void (stdout += chunk.toString()))
        const exited = new Promise<number | null>((done) => child.on("exit", (code) => done(code)))
        // Once operations are reported done, the workers are running: interrupt them as Ctrl-C would.
        yield* Effect.async<void, Error>((resume) => {
          let interrupted = false
          child.once("exit", (code) => {
            if (!interrupted) resume(Effect.fail(new Error(`exited (${code}) before running: ${stderr}`)))
          })
          child.stderr.on("data", (chunk: Buffer) => {
            stderr += chunk.toString()
            if (!interrupted && /progress: .*, [1-9][\d,]* ok/.test(stderr)) {
              interrupted = true
              child.kill("SIGINT")
              resume(Effect.void)
            }
          })
        })
        const code = yield* Effect.promise(() => exited)
        assert.strictEqual(code, 130, stderr)
        assert.include(stderr, "interrupted: workers stopped, pool closed; summary of what completed:")
        assert.match(stdout, /duration\s+[\d.]+ s \(interrupted\)/)
        assert.include(stdout, "interrupted: the numbers cover the operations that finished before the stop")
        assert.notInclude(stderr, "    at ")

        const report = JSON.parse(fs.readFileSync(json, "utf8")) as Report.Report
        assert.isTrue(report.interrupted)
        const [run] = report.runs
        assert.isAbove(run!.operations.completed, 0)
        assert.strictEqual(run!.connections.closed, run!.connections.created)
        assert.strictEqual(run!.pool!.writer.open + run!.pool!.readers.open, 0)
        assert.isAtLeast(run!.lockHolder!.bursts, 1)
        // No process is left holding the run's database (the lock holder stopped with the run).
        if (fs.existsSync("/proc")) {
          const holders = fs.readdirSync("/proc").filter((pid) => {
            try {
              return /^\d+$/.test(pid) &&
                fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(report.settings.database)
            } catch {
              return false
            }
          })
          assert.deepStrictEqual(holders, [])
        }
      }).pipe(Effect.scoped),
    { timeout: 60_000 }
  )
})
