import { assert, describe, it } from "@effect/vitest"
import { Report, Simulation } from "@sqlsim/simulator"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { tempDir } from "./utils.js"

// Every fault at once, on virtual time: operations meet failed, slow and dying connections and failed pings, in both
// modes, and the run is exactly repeatable.
const faulty: Simulation.Input = {
  seed: 11,
  workers: 6,
  operations: 200,
  holdMs: 2,
  readers: 3,
  compare: true,
  clock: "virtual",
  faults: "open=0.15,open-permanent=0.2,slow=0.2,slow-ms=20,die=0.1,ping=0.1"
}

/** The tags a simulated operation may fail with: every one a typed error of the pool or of SQLite. */
const typedFailure =
  /^(SqlError\((ConnectError|AcquireTimeoutError|PoolClosedError|SQLITE_[A-Z_]+)\)|ConnectError|AcquireTimeoutError)$/

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
        assert.strictEqual(operations.started, 200, run.mode)
        assert.strictEqual(operations.completed + operations.failed, 200, run.mode)
        assert.strictEqual(operations.unfinished, 0, run.mode)
        const failures = Object.entries(run.errors)
        assert.strictEqual(failures.reduce((sum, [, n]) => sum + n, 0), operations.failed)
        for (const [tag] of failures) assert.match(tag, typedFailure, `${run.mode}: ${tag}`)
        // Transient open faults are felt in both modes, and retried.
        assert.isAbove(run.faults.openTransient, 0, run.mode)
        assert.isAbove(run.retries.connect, 0, run.mode)
        // Closed: nothing left open, nothing leaked.
        assert.strictEqual(run.connections.closed, run.connections.created, run.mode)
      }
      const [pooled, perOperation] = report.runs
      // A connection per operation opens 200 times: it meets permanent and slow open faults, and a failed open fails
      // the operation that needed it. The pool opens its few connections once (statements share them and find the
      // one the last statement used), and probes a connection only after it was idle for the lanes' probe window,
      // which no connection is in this short run: validation faults cannot reach it, and it replaced any that did.
      assert.isAbove(perOperation!.faults.openPermanent, 0)
      assert.isAbove(perOperation!.faults.slowOpen, 0)
      assert.isAbove(perOperation!.operations.failed, 0)
      assert.strictEqual(pooled!.connections.invalidated, pooled!.faults.dieIdle + pooled!.faults.pingFail)
      assert.isAbove(pooled!.connections.reused, 150)
      assert.strictEqual(perOperation!.faults.validations, 0)
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
