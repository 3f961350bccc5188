/**
 * The simulation against real sqld processes on loopback (a primary and a replica started here, or by the simulator
 * itself): pooled and connect-per-operation over the network, the replica's lag in the report, a primary and a
 * replica crashed mid-run and restarted by the simulator, and the options that need a file refused.
 */
import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { FaultInjector, FaultPlan, Report, ReportHtml, ServerFaults, Simulation } from "@sqlsim/simulator"
import { LibsqlConnector, SqlitePool } from "@sqlsim/sqlite-pool"
import * as Sqld from "@sqlsim/test-kit/Sqld"
import { Context, Effect, Either, Layer } from "effect"

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
        // A socket closed under a statement fails it typed: as never run (ClosedConnection), or, for one in flight on
        // the socket as it closed, with the server's error (it may have run: nothing runs it again).
        const typed = ["SqlError(ClosedConnection)", "SqlError(LibsqlStatementError)"]
        assert.deepStrictEqual(Object.keys(run.errors).filter((key) => !typed.includes(key)), [], run.mode)
        const die = run.faults.kinds.find((line) => line.key === "die")!
        assert.isAbove(die.injected, 0, run.mode)
        assert.strictEqual(die.outcome.connectionsClosed, die.injected, run.mode)
        const [replica] = run.replication?.replicas ?? []
        assert.strictEqual(replica?.url, replicas[0]!.httpUrl, run.mode)
        assert.isAbove(replica!.connects, 0, run.mode)
        assert.isTrue(replica!.maxLagFrames === null || replica!.maxLagFrames >= 0, run.mode)
      }
      // A connect per operation is a network handshake each: the pool does fewer, far fewer than one per operation.
      const [pooled, perOperation] = report.runs
      // On the pool's lanes a statement that met its socket closed ran again on another connection (once per
      // connection of the pool: one that meets a dead socket again fails); with a connection of its own, none did.
      const ranAgain = (run: Report.RunReport) =>
        run.faults.kinds.find((line) => line.key === "die")!.outcome.operationsCompleted
      assert.isAbove(ranAgain(pooled!), 0)
      assert.strictEqual(ranAgain(perOperation!), 0)
      assert.isBelow(pooled!.connections.created, perOperation!.connections.created)
      assert.strictEqual(perOperation!.connections.created, 150)
      assert.match(Report.toText(report), /replica lag \(frames\)/)
    }))

  it.scopedLive("the sockets to the primary and the replica killed while the lanes keep them: the next statements run once, on new ones", () =>
    Effect.gen(function*() {
      const { primary, replicas } = yield* Sqld.startCluster(1)
      const libsql = yield* LibsqlConnector.make({ primaryUrl: primary.httpUrl, replicaUrls: [replicas[0]!.httpUrl] })
      const injector = yield* FaultInjector.make(FaultPlan.none, { seed: 1, connector: libsql })
      const context = yield* Layer.build(
        SqlitePool.layer({ filename: "killed", readConnections: 1 }).pipe(Layer.provide(FaultInjector.layer(injector)))
      )
      const sql = Context.get(context, SqlClient.SqlClient)
      const reader = Context.get(context, SqlitePool.Reader)
      const pool = Context.get(context, SqlitePool.SqlitePool)
      yield* sql`CREATE TABLE t (x INTEGER)`
      yield* sql`INSERT INTO t VALUES (1)`
      assert.deepStrictEqual(yield* reader`SELECT x FROM t`, [{ x: 1 }])
      const before = yield* pool.stats
      assert.strictEqual(yield* injector.kill, 2)
      yield* sql`INSERT INTO t VALUES (2)`
      // Read-your-writes: the Reader's new socket to the replica waits until it has the insert.
      assert.deepStrictEqual(yield* reader`SELECT x FROM t ORDER BY x`, [{ x: 1 }, { x: 2 }])
      const after = yield* pool.stats
      for (const lane of ["writer", "readers"] as const) {
        assert.strictEqual(after[lane].created, before[lane].created + 1, lane)
        assert.strictEqual(after[lane].closed, before[lane].closed + 1, lane)
      }
    }))

  it.scopedLive("servers the simulator starts: a primary crashed mid-run fails only the writes while it is down", () =>
    Effect.gen(function*() {
      const report = yield* Simulation.run({
        seed: 11,
        workers: 4,
        duration: "3 seconds",
        readers: 2,
        servers: { sqld: Sqld.sqldBinary(), replicas: 1, kills: "primary@700ms+600ms" }
      })
      const [run] = report.runs
      assert.deepStrictEqual(report.settings.servers, { replicas: 1, kills: "primary@700ms+600ms" })
      const [event] = run!.servers
      assert.strictEqual(event?.server, "primary")
      assert.isNull(event!.error)
      assert.isAtLeast(event!.killedAtMs, 650)
      assert.isAtLeast(event!.backAtMs!, event!.killedAtMs + 600)
      // Reads go on on the replica while the primary is down, and read-your-writes on the primary once it is back;
      // writes fail typed while it is down (after the connect retries), and work again after the restart.
      assert.strictEqual(run!.byKind.read.failed, 0, JSON.stringify(run!.errors))
      assert.isAbove(run!.byKind.write.completed, 0)
      const failedAfter = run!.timeline.buckets
        .filter((bucket) => bucket.tMs >= event!.backAtMs! + 1_000)
        .reduce((sum, bucket) => sum + bucket.failed, 0)
      assert.strictEqual(failedAfter, 0, "no failure a second after the primary was back")
      const completedAfter = run!.timeline.buckets
        .filter((bucket) => bucket.tMs >= event!.backAtMs!)
        .reduce((sum, bucket) => sum + bucket.completed, 0)
      assert.isAbove(completedAfter, 0)
      assert.match(Report.toText(report), /servers crashed +primary killed at 0\.\d\d s, back at 1\.\d\d s/)
      assert.match(ReportHtml.render(report), /servers crashed<\/th><td>primary killed at 0\.\d\d s, back at/)
    }))

  it.scopedLive("a replica crashed mid-run: its reads move to the primary, and nothing fails", () =>
    Effect.gen(function*() {
      const report = yield* Simulation.run({
        seed: 12,
        workers: 4,
        duration: "2500 millis",
        readers: 2,
        servers: { sqld: Sqld.sqldBinary(), kills: "replica-1@500ms+500ms" }
      })
      const [run] = report.runs
      assert.strictEqual(run!.servers[0]?.server, "replica-1")
      assert.isNotNull(run!.servers[0]!.backAtMs)
      assert.strictEqual(run!.operations.failed, 0, JSON.stringify([run!.errors, run!.byKind, run!.servers]))
      assert.isAbove(run!.replication!.fallbacks, 0)
    }))

  it("server kills are parsed and checked against the servers started", () => {
    const parsed = ServerFaults.parse("replica-1@3s, primary@2s+500ms")
    assert.deepStrictEqual(Either.getOrThrow(parsed), [
      { server: "primary", atMs: 2000, downMs: 500 },
      { server: "replica-1", atMs: 3000, downMs: 1000 }
    ])
    assert.strictEqual(ServerFaults.format(Either.getOrThrow(parsed)), "primary@2000ms+500ms,replica-1@3000ms+1000ms")
    for (
      const text of ["primary", "primary@", "db@1s", "replica-0@1s", "primary@soon", "primary@1s+0s", "primary@1s+-1s"]
    ) {
      const result = ServerFaults.parse(text)
      assert.isTrue(Either.isLeft(result), text)
      if (Either.isLeft(result)) assert.match(result.left.describe((name) => name), /kills takes SERVER@AT\[\+DOWN\]/)
    }
    const cases: ReadonlyArray<readonly [Simulation.Input, string, RegExp]> = [
      [
        { seed: 1, servers: { sqld: "sqld", kills: "replica-2@1s" } },
        "servers",
        /names replica-2, but the run starts 1 replica/
      ],
      [{ seed: 1, servers: { sqld: "" } }, "servers", /needs the path of a sqld binary/],
      [
        { seed: 1, servers: { sqld: "sqld", kills: [{ server: "primary", atMs: -5, downMs: 100 }] } },
        "servers",
        /SERVER@AT/
      ],
      [{ seed: 1, servers: { sqld: "sqld", kills: [{ server: "db", atMs: 5, downMs: 100 }] } }, "servers", /SERVER@AT/],
      [
        { seed: 1, duration: "2 seconds", servers: { sqld: "sqld", kills: "primary@2s" } },
        "servers",
        /after the run ends/
      ],
      [{ seed: 1, servers: { sqld: "sqld", replicas: 9 } }, "servers", /from 0 to 8/],
      [{ seed: 1, servers: { sqld: "sqld" }, libsql: { primaryUrl: "http://x" } }, "servers", /not both/],
      [{ seed: 1, servers: { sqld: "sqld" }, database: "x.db" }, "servers", /not both/],
      [{ seed: 1, servers: { sqld: "sqld" }, faults: "open=0.1" }, "faults", /kills to crash a server/]
    ]
    for (const [input, field, message] of cases) {
      const result = Simulation.resolve(input)
      assert.isTrue(Either.isLeft(result), JSON.stringify(input))
      if (Either.isLeft(result)) {
        assert.strictEqual(result.left.field, field)
        assert.match(result.left.message, message)
      }
    }
  })

  it.scopedLive("a sqld binary that is not there fails the run typed, saying which", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Simulation.run({ seed: 1, operations: 5, servers: { sqld: "/no/such/sqld" } }))
      assert.strictEqual(error._tag, "SqldError")
      assert.match(error.message, /could not be started: spawn \/no\/such\/sqld ENOENT \(no such file: give the path/)
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
