/**
 * The simulation against real sqld processes on loopback (a primary and a replica started here): pooled and
 * connect-per-operation over the network, the replica's lag in the report, and the options that need a file refused.
 */
import { assert, describe, it } from "@effect/vitest"
import { Report, Simulation } from "@sqlsim/simulator"
import * as Sqld from "@sqlsim/test-kit/Sqld"
import { Effect, Either } from "effect"

describe("Simulation on libSQL", () => {
  it.scopedLive("pooled and connect-per-operation both run on the primary and replica; the report gives the lag", () =>
    Effect.gen(function*() {
      const { primary, replicas } = yield* Sqld.startCluster(1)
      const report = yield* Simulation.run({
        seed: 5,
        workers: 4,
        operations: 150,
        readers: 2,
        compare: true,
        faults: "die=0.05",
        libsql: { primaryUrl: primary.httpUrl, replicaUrls: [replicas[0]!.httpUrl] }
      })
      assert.deepStrictEqual(report.runs.map((run) => run.mode), ["pooled", "connect-per-operation"])
      assert.strictEqual(report.settings.database, primary.httpUrl)
      for (const run of report.runs) {
        assert.strictEqual(run.operations.completed + run.operations.failed, 150, run.mode)
        assert.strictEqual(run.operations.failed, 0, `${run.mode}: ${JSON.stringify(run.errors)}`)
        const [replica] = run.replication?.replicas ?? []
        assert.strictEqual(replica?.url, replicas[0]!.httpUrl, run.mode)
        assert.isAbove(replica!.connects, 0, run.mode)
        assert.isTrue(replica!.maxLagFrames === null || replica!.maxLagFrames >= 0, run.mode)
      }
      // A connect per operation is a network handshake each: the pool does fewer, far fewer than one per operation.
      const [pooled, perOperation] = report.runs
      assert.isBelow(pooled!.connections.created, perOperation!.connections.created)
      assert.strictEqual(perOperation!.connections.created, 150)
      assert.match(Report.toText(report), /replica lag \(frames\)/)
    }))

  it("options that need a database file are refused, naming the fields", () => {
    const libsql = { primaryUrl: "http://127.0.0.1:1" }
    const cases: ReadonlyArray<readonly [Simulation.Input, string]> = [
      [{ seed: 1, libsql, database: "x.db" }, "libsql"],
      [{ seed: 1, libsql, operations: 5, clock: "virtual" }, "clock"],
      [{ seed: 1, libsql, readerThreads: true }, "readerThreads"],
      [{ seed: 1, libsql, faults: "open=0.1" }, "faults"],
      [{ seed: 1, libsql, faults: "busy=lock-holder" }, "faults"]
    ]
    for (const [input, field] of cases) {
      const result = Simulation.resolve(input)
      assert.isTrue(Either.isLeft(result), JSON.stringify(input))
      if (Either.isLeft(result)) assert.strictEqual(result.left.field, field)
    }
  })
})
