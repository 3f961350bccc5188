import { assert, describe, it } from "@effect/vitest"
import { Report, Simulation } from "@sqlsim/simulator"
import { Effect, Logger, LogLevel } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { tempDir } from "./utils.js"

// Every fault at once, at a few percent, on virtual time: operations meet failed and slow opens, dying connections,
// failed checks and failing or slow statements, in both modes, and the run is exactly repeatable.
const everyFault = "open=0.05,open-permanent=0.02,slow=0.03,slow-ms=20,die=0.02,ping=0.02,ioerr=0.01,stmt-busy=0.02," +
  "stmt-slow=0.02"
const faulty: Simulation.Input = {
  seed: 11,
  workers: 6,
  operations: 300,
  readers: 3,
  compare: true,
  clock: "virtual",
  faults: everyFault
}

/** The tags a simulated operation may fail with: every one a typed error of the pool or of SQLite. */
const typedFailure =
  /^(SqlError\((ConnectError|AcquireTimeoutError|PoolClosedError|ClosedConnection|SQLITE_[A-Z_]+)\)|ConnectError|AcquireTimeoutError)$/

const lineOf = (run: Report.RunReport, key: string) => {
  const line = run.faults.kinds.find((line) => line.key === key)
  assert.isDefined(line, `${run.mode}: no line for ${key}`)
  return line!
}

/** A report without what differs between two runs of the same seed: when it started and the temporary file. */
const comparable = (report: Report.Report) =>
  JSON.stringify({ ...report, startedAt: undefined, settings: { ...report.settings, database: undefined } })

describe("Simulation", () => {
  it.effect("with faults on, every operation completes or fails with a typed error, and every connection is closed", () =>
    Effect.gen(function*() {
      const report = yield* Simulation.run(faulty)
      assert.deepStrictEqual(report.runs.map((run) => run.mode), ["pooled", "connect-per-operation"])
      assert.isFalse(report.interrupted)
      for (const run of report.runs) {
        const { operations } = run
        assert.strictEqual(operations.started, 300, run.mode)
        assert.strictEqual(operations.completed + operations.failed, 300, run.mode)
        assert.strictEqual(operations.unfinished, 0, run.mode)
        const failures = Object.entries(run.errors)
        assert.strictEqual(failures.reduce((sum, [, n]) => sum + n, 0), operations.failed)
        for (const [tag] of failures) assert.match(tag, typedFailure, `${run.mode}: ${tag}`)
        // Every kind asked for has its line, with what it met.
        assert.deepStrictEqual(
          run.faults.kinds.map((line) => line.key),
          ["open", "open-permanent", "slow", "die", "ping", "ioerr", "stmt-busy", "stmt-slow"]
        )
        // The virtual clock models what statements and opens cost: the run has a duration and a throughput.
        assert.isAbove(run.durationMs, 0, run.mode)
        assert.isNotNull(run.throughput, run.mode)
        assert.isAbove(run.latencyMs.p50!, 0, run.mode)
        // Closed: nothing left open, nothing leaked.
        assert.strictEqual(run.connections.closed, run.connections.created, run.mode)
      }
      const [pooled, perOperation] = report.runs
      // A connection per operation opens 300 times: it meets permanent and slow open faults, and a failed open fails
      // the operation that needed it; there is no pool to check or probe a connection, so `ping` has no chance.
      assert.isAbove(perOperation!.faults.openPermanent, 0)
      assert.isAbove(perOperation!.faults.slowOpen, 0)
      assert.isAbove(perOperation!.operations.failed, 0)
      assert.match(lineOf(perOperation!, "ping").noChance ?? "", /never checked or probed/)
      // The pool's connections meet every connection fault, and every one that broke a connection closed it.
      for (const key of ["die", "ping", "ioerr"]) {
        const line = lineOf(pooled!, key)
        assert.isAbove(line.injected, 0, key)
        assert.strictEqual(line.outcome.connectionsClosed, line.injected, key)
      }
      // Dead connections under the lanes' statements: the statement ran again on another connection.
      assert.isAbove(lineOf(pooled!, "die").outcome.operationsCompleted, 0)
      assert.isAbove(lineOf(pooled!, "stmt-busy").injected, 0)
      assert.isAbove(lineOf(pooled!, "stmt-slow").injected, 0)
      assert.strictEqual(perOperation!.connections.reused, 0)
      assert.isAbove(pooled!.connections.reused, 200)
      const pool = pooled!.pool!
      for (const stats of [pool.writer, pool.readers]) {
        assert.strictEqual(stats.open, 0)
        assert.strictEqual(stats.inUse, 0)
        assert.strictEqual(stats.closed, stats.created)
        assert.strictEqual(stats.acquired, stats.released)
      }
      // A fresh connection per operation: every completed operation opened one.
      assert.isAtLeast(perOperation!.connections.created, perOperation!.operations.completed)
      assert.isBelow(pooled!.connections.created, perOperation!.connections.created)
      assert.isDefined(report.comparison)
    }))

  it.effect("the same seed gives the same fault sequence and the same counts; another seed does not", () =>
    Effect.gen(function*() {
      const first = yield* Simulation.run(faulty)
      const again = yield* Simulation.run(faulty)
      const other = yield* Simulation.run({ ...faulty, seed: 12 })
      assert.strictEqual(comparable(again), comparable(first))
      for (const [index, run] of first.runs.entries()) {
        assert.notStrictEqual(other.runs[index]!.faults.fingerprint, run.faults.fingerprint)
      }
      assert.notStrictEqual(comparable(other), comparable(first))
    }))

  // The command's defaults (8 workers, 4 readers, no hold, a real clock) with dying connections and failed checks at
  // a few percent: whatever the seed, they reach the pool's connections, and the pool replaces each one.
  it.live("with the command's defaults, die and ping at a few percent reach the pooled run, each followed by a replacement", () =>
    Effect.forEach([1, 2, 3], (seed) =>
      Effect.gen(function*() {
        const report = yield* Simulation.run({ seed, operations: 500, faults: "die=0.02,ping=0.02" })
        const [pooled] = report.runs
        const die = lineOf(pooled!, "die")
        const ping = lineOf(pooled!, "ping")
        assert.isAbove(die.injected, 0, `seed ${seed}`)
        assert.isAbove(ping.injected, 0, `seed ${seed}`)
        assert.strictEqual(die.outcome.connectionsClosed, die.injected, `seed ${seed}`)
        assert.strictEqual(ping.outcome.connectionsClosed, ping.injected, `seed ${seed}`)
        // Each connection closed was replaced: the lanes went on with new ones to the end (one found dead as soon as
        // it opened counts as a failed connect, retried).
        const closedByFaults = die.outcome.connectionsClosed + ping.outcome.connectionsClosed
        const { connectFailures, created } = pooled!.connections
        assert.isAtLeast(created + connectFailures, closedByFaults + 1, `seed ${seed}`)
        assert.isAtLeast(pooled!.operations.completed, 450, `seed ${seed}`)
        for (const [tag] of Object.entries(pooled!.errors)) assert.match(tag, typedFailure, `seed ${seed}: ${tag}`)
        // Statements on a lane whose connection died ran again on another one.
        assert.isAtLeast(die.outcome.operationsCompleted, 1, `seed ${seed}`)
        assert.notMatch(Report.toText(report), /faults injected\s+none/)
      }), { discard: true }))

  it.live("on a real clock, --compare runs the same operations both ways and says how they compare in one line", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const database = path.join(directory, "compare.db")
      const report = yield* Simulation.run({ seed: 5, workers: 4, operations: 200, compare: true, database })
      const [pooled, perOperation] = report.runs
      assert.strictEqual(pooled!.operations.completed, 200)
      assert.strictEqual(perOperation!.operations.completed, 200)
      assert.strictEqual(perOperation!.connections.created, 200)
      assert.isAtMost(pooled!.connections.created, 1 + 4)
      assert.isNotNull(report.comparison?.ratio)
      assert.match(
        report.comparison!.summary,
        /^pooled .* ops\/s .* vs connect-per-operation .* ops\/s .*: the pool is/
      )
      assert.notInclude(report.comparison!.summary, "\n")
      // The database given is kept, with the workload's tables and rows.
      assert.isTrue(fs.existsSync(database))
    }).pipe(Effect.scoped))

  // Transactions that hold the writer 30 ms past a 20 ms holdWarningThreshold, and a reader that holds its snapshot
  // 2.5 s while the workload writes past a 64 KiB walCheckpointBytes: what operating the pool shows, on virtual time.
  const operated: Simulation.Input = {
    seed: 5,
    workers: 4,
    operations: 1200,
    holdMs: 30,
    longReadMs: 2500,
    clock: "virtual",
    pool: { holdWarningThreshold: "20 millis", walCheckpointBytes: 64 * 1024 }
  }

  it.effect("the report shows the hold warnings by span, each lane's waits, and the WAL a long reader let grow", () =>
    Effect.gen(function*() {
      const report = yield* Simulation.run(operated)
      const [pooled] = report.runs
      // Every transaction held the writer past the threshold (each a warning), and so did the long reader its Reader
      // connection: the warnings name their spans.
      const holds = pooled!.holdWarnings!
      assert.strictEqual(holds.thresholdMs, 20)
      const transactions = pooled!.byKind.transaction.completed
      assert.isAbove(transactions, 0)
      assert.deepStrictEqual(holds.bySpan, { "sim.long-read": 1, "sim.transaction": transactions })
      assert.strictEqual(holds.count, transactions + 1)
      // Writes wait for the transactions that hold the writer: up to a hold of 30 ms and more; nobody waited for a
      // Reader connection that long. One wait per lease, all from the pool's wait-time histograms.
      const { readers, writer } = pooled!.waits!
      assert.isAtLeast(writer.max!, 30)
      assert.isAtLeast(writer.p99!, writer.p50!)
      assert.isAbove(writer.count, transactions)
      assert.isBelow(readers.max!, 30)
      assert.isAbove(readers.count, 0)
      // The reader kept checkpoints from finishing while the WAL grew; once it ended, the WAL was truncated.
      const wal = pooled!.wal!
      assert.isAbove(wal.checkpointsBlocked, 0)
      assert.isAbove(wal.maxBytes, 4 * 64 * 1024)
      assert.isAbove(wal.truncations, 0)
      assert.isBelow(wal.endBytes, wal.maxBytes)
      assert.deepStrictEqual(pooled!.longRead, { holdMs: 2500, outcome: "completed" })
      assert.isTrue(pooled!.samples.some((sample) => sample.walBytes === wal.maxBytes))

      // Every format shows them: the text table and the JSON.
      const text = Report.toText(report)
      assert.match(
        text,
        new RegExp(
          `hold warnings +${
            transactions + 1
          } past 20 ms: span "sim.long-read" 1, span "sim.transaction" ${transactions}`
        )
      )
      assert.match(text, /writer wait p50\/p95\/p99\/max +[\d.]+ \/ [\d.]+ \/ [\d.]+ \/ [\d.]+ ms of [\d,]+ waits/)
      assert.match(
        text,
        /WAL +largest [\d.]+ (KiB|MiB), at the end [\d.]+ (KiB|MiB); [1-9]\d* checkpoints? blocked by a reader/
      )
      assert.match(text, /long read +2500 ms: completed/)
      const json = JSON.parse(Report.toJson(report)) as Report.Report
      assert.deepStrictEqual(json.runs[0]!.holdWarnings, holds)
      assert.deepStrictEqual(json.runs[0]!.wal, wal)
      assert.deepStrictEqual(json.runs[0]!.waits, pooled!.waits)

      // On virtual time the same seed gives the same report, these numbers included.
      assert.strictEqual(comparable(yield* Simulation.run(operated)), comparable(report))
    }).pipe(Logger.withMinimumLogLevel(LogLevel.Error)))

  it.effect("without holdWarningThreshold the report says the warnings are off; without a long reader none is blocked", () =>
    Effect.gen(function*() {
      const report = yield* Simulation.run({ ...operated, operations: 300, longReadMs: undefined, pool: {} })
      const [pooled] = report.runs
      assert.deepStrictEqual(pooled!.holdWarnings, { thresholdMs: null, count: 0, bySpan: {} })
      assert.strictEqual(pooled!.wal!.checkpointsBlocked, 0)
      assert.isNull(pooled!.longRead)
      assert.match(Report.toText(report), /hold warnings +off \(no holdWarningThreshold\)/)
    }))

  it.effect("a database that cannot be opened is a typed SetupError before any work", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const result = yield* Effect.either(
        Simulation.run({ seed: 1, operations: 10, clock: "virtual", database: directory })
      )
      assert.isTrue(result._tag === "Left")
      if (result._tag === "Left") {
        assert.strictEqual(result.left._tag, "SetupError")
        assert.match(result.left.message, /cannot prepare the simulation database .*: .*directory/)
      }
    }).pipe(Effect.scoped))
})
