import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { FaultInjector, FaultPlan } from "@sqlsim/simulator"
import { ConnectionPool, Connector, type PoolConfig, SqliteCode, SqlitePool } from "@sqlsim/sqlite-pool"
import { Context, Duration, Effect, Either, Exit, Fiber, Layer, Option } from "effect"
import { advanceUntil, tempDatabase } from "./utils.js"

const poolWith = (injector: FaultInjector.FaultInjector, input: PoolConfig.Input) =>
  ConnectionPool.make(input).pipe(Effect.provideService(Connector.Connector, injector.connector))

const isDone = <A, E>(fiber: Fiber.Fiber<A, E>) => Effect.map(Fiber.poll(fiber), Option.isSome)

describe("FaultInjector", () => {
  it.scoped("a transient open fault is SQLite's own CANTOPEN, retried on the pool's schedule, then a ConnectError", () =>
    Effect.gen(function*() {
      const filename = yield* tempDatabase
      const injector = yield* FaultInjector.make({ ...FaultPlan.none, openTransient: 1 }, { seed: 1 })
      yield* injector.arm
      const pool = yield* poolWith(injector, { filename, retries: 3 })
      const fiber = yield* Effect.fork(Effect.either(pool.use(() => Effect.void)))
      // Backoff 10 + 20 + 40 ms on the TestClock: no real waiting.
      const moved = yield* advanceUntil(isDone(fiber), {
        step: 5,
        limit: 1000,
        description: "the connect after three retries"
      })
      const result = yield* Fiber.join(fiber)
      assert.isTrue(result._tag === "Left")
      if (result._tag === "Left") {
        const error = result.left
        assert.strictEqual(error._tag, "ConnectError")
        if (error._tag === "ConnectError") {
          assert.strictEqual(error.attempts, 4)
          assert.strictEqual(error.code, "SQLITE_CANTOPEN")
          assert.isTrue(error.transient)
          assert.strictEqual(error.filename, filename)
          assert.match(error.message, /injected fault/)
        }
      }
      assert.isAtLeast(moved, 70)
      const counts = yield* injector.counts
      assert.strictEqual(counts.connectAttempts, 4)
      assert.strictEqual(counts.openTransient, 4)
      assert.deepStrictEqual((yield* injector.events).map((event) => [event.kind, event.index]), [
        ["open-transient", 1],
        ["open-transient", 2],
        ["open-transient", 3],
        ["open-transient", 4]
      ])
      const stats = yield* pool.stats
      assert.strictEqual(stats.connectFailures, 4)
      assert.strictEqual(stats.retries, 3)
    }))

  it.scoped("a permanent open fault is SQLite's own NOTADB and is not retried", () =>
    Effect.gen(function*() {
      const filename = yield* tempDatabase
      const injector = yield* FaultInjector.make({ ...FaultPlan.none, openPermanent: 1 }, { seed: 1 })
      yield* injector.arm
      const pool = yield* poolWith(injector, { filename, retries: 3 })
      const result = yield* Effect.either(pool.use(() => Effect.void))
      assert.isTrue(result._tag === "Left" && result.left._tag === "ConnectError")
      if (result._tag === "Left" && result.left._tag === "ConnectError") {
        assert.strictEqual(result.left.code, "SQLITE_NOTADB")
        assert.isFalse(result.left.transient)
        assert.strictEqual(result.left.attempts, 1)
      }
      assert.strictEqual((yield* injector.counts).connectAttempts, 1)
    }))

  // A caller's lease is checked and probed (validationInterval 0) and runs its statement: three events of a
  // connection, each of which may be the one where it dies.
  it.live("a connection that dies has its handle really closed; the pool closes it and opens another", () =>
    Effect.gen(function*() {
      const filename = yield* tempDatabase
      const injector = yield* FaultInjector.make({ ...FaultPlan.none, die: 0.2 }, { seed: 1 })
      const pool = yield* poolWith(injector, { filename, maxConnections: 1 })
      const first = yield* pool.use((connection) => Effect.as(connection.sql`SELECT 1`, connection))
      yield* injector.arm
      const results = yield* Effect.forEach(
        Array.from({ length: 30 }),
        () => Effect.either(pool.use((connection) => connection.sql`SELECT 1`))
      )
      const counts = yield* injector.counts
      const events = yield* injector.events
      const stats = yield* pool.stats
      assert.isAtLeast(counts.die, 2)
      assert.strictEqual(counts.ping, 0)
      assert.deepStrictEqual([...new Set(events.map((event) => event.site))].sort(), ["check", "probe", "statement"])
      // Every dead connection was closed by the pool; none lived on.
      assert.strictEqual((yield* injector.outcomes).die.connectionsClosed, counts.die)
      assert.strictEqual(stats.open, 1)
      assert.strictEqual(stats.closed, stats.created - 1)
      // A caller's own statement that met its connection closed fails typed (the pool does not run a caller's work
      // twice); a connection found dead at its check or probe was passed over, unseen by the caller.
      const failed = results.filter(Either.isLeft).map((result) => result.left)
      assert.strictEqual(failed.length, events.filter((event) => event.site === "statement").length)
      for (const error of failed) assert.isTrue(Connector.isClosedConnection(error), String(error))
      // The first connection is gone: its handle is closed for real, SQLite refuses it.
      assert.isTrue(Exit.isFailure(yield* Effect.exit(first.sql`SELECT 1`)))
    }).pipe(Effect.scoped))

  it.live("a failed health check makes the pool replace the connection; the caller never sees it", () =>
    Effect.gen(function*() {
      const filename = yield* tempDatabase
      const injector = yield* FaultInjector.make({ ...FaultPlan.none, ping: 0.3 }, { seed: 1 })
      const pool = yield* poolWith(injector, { filename, maxConnections: 1 })
      yield* injector.arm
      for (let use = 0; use < 20; use++) yield* pool.use((connection) => connection.sql`SELECT 1`)
      const counts = yield* injector.counts
      const stats = yield* pool.stats
      assert.isAtLeast(counts.ping, 2)
      assert.strictEqual(counts.die, 0)
      assert.strictEqual((yield* injector.outcomes).ping.connectionsClosed, counts.ping)
      // Each connection found broken was replaced: one found so as soon as it opened counts as a failed connect.
      assert.strictEqual(stats.created + stats.connectFailures, 1 + counts.ping)
    }).pipe(Effect.scoped))

  it.scoped("a statement's I/O error and SQLITE_BUSY are the driver's own errors; after an I/O error the pool replaces the connection", () =>
    Effect.gen(function*() {
      const filename = yield* tempDatabase
      const injector = yield* FaultInjector.make({ ...FaultPlan.none, ioerr: 0.2, busyStatement: 0.2 }, { seed: 3 })
      const pool = yield* poolWith(injector, { filename, maxConnections: 1 })
      yield* injector.arm
      const results = yield* Effect.forEach(
        Array.from({ length: 40 }),
        () => Effect.either(pool.use((connection) => connection.sql`SELECT 1`))
      )
      const counts = yield* injector.counts
      assert.isAtLeast(counts.ioerr, 1)
      assert.isAtLeast(counts.busy, 1)
      const codes = results.filter(Either.isLeft).map((result) => SqliteCode.codeOf(result.left))
      assert.strictEqual(codes.filter((code) => code === "SQLITE_IOERR").length, counts.ioerr)
      assert.strictEqual(codes.filter((code) => code === "SQLITE_BUSY").length, counts.busy)
      // SQLITE_IOERR is fatal to a connection, SQLITE_BUSY is not.
      assert.strictEqual((yield* injector.outcomes).ioerr.connectionsClosed, counts.ioerr)
      assert.strictEqual((yield* pool.stats).created, 1 + counts.ioerr)
    }))

  it.scoped("a slow statement takes its drawn latency on the clock", () =>
    Effect.gen(function*() {
      const filename = yield* tempDatabase
      const injector = yield* FaultInjector.make(
        { ...FaultPlan.none, slowStatement: 0.99, slowStatementMs: 40 },
        { seed: 7 }
      )
      const pool = yield* poolWith(injector, { filename })
      yield* pool.use((connection) => connection.sql`SELECT 1`)
      yield* injector.arm
      const fiber = yield* Effect.fork(pool.use((connection) => connection.sql`SELECT 1`))
      const moved = yield* advanceUntil(isDone(fiber), { step: 1, limit: 1000, description: "the slow statement" })
      yield* Fiber.join(fiber)
      const [event] = yield* injector.events
      assert.strictEqual(event?.kind, "slow-statement")
      assert.isAtLeast(moved, Math.floor(event?.delayMs ?? Infinity))
    }))

  it.scoped("a slow open takes its drawn latency on the clock before the connection is handed out", () =>
    Effect.gen(function*() {
      const filename = yield* tempDatabase
      const injector = yield* FaultInjector.make({ ...FaultPlan.none, slowOpen: 1, slowOpenMs: 40 }, { seed: 7 })
      yield* injector.arm
      const pool = yield* poolWith(injector, { filename })
      const fiber = yield* Effect.fork(pool.use((connection) => connection.sql`SELECT 1`))
      const moved = yield* advanceUntil(isDone(fiber), { step: 1, limit: 1000, description: "the slow open" })
      yield* Fiber.join(fiber)
      const [event] = yield* injector.events
      assert.strictEqual(event?.kind, "slow-open")
      const delayMs = event?.delayMs ?? -1
      assert.isAbove(delayMs, 0)
      assert.isAtMost(delayMs, 400) // capped at 10 times the mean
      assert.isAtLeast(moved, Math.floor(delayMs))
      assert.strictEqual((yield* injector.counts).slowOpenMs, delayMs)
    }))

  it("slow-open latencies follow an exponential distribution, capped at 10 times the mean", () => {
    assert.strictEqual(FaultInjector.slowOpenLatency(50, 0), 0)
    assert.closeTo(FaultInjector.slowOpenLatency(50, 1 - Math.exp(-1)), 50, 1e-9)
    assert.strictEqual(FaultInjector.slowOpenLatency(50, 0.999999999), 500)
  })

  it.scoped("before it is armed, the injector passes every connect and validation through, uncounted", () =>
    Effect.gen(function*() {
      const filename = yield* tempDatabase
      const injector = yield* FaultInjector.make(
        { ...FaultPlan.none, openPermanent: 1, die: 0.99 },
        { seed: 1 }
      )
      const pool = yield* poolWith(injector, { filename, maxConnections: 1 })
      yield* pool.use((connection) => connection.sql`SELECT 1`)
      yield* pool.use((connection) => connection.sql`SELECT 1`)
      assert.strictEqual((yield* pool.stats).created, 1)
      assert.deepStrictEqual(yield* injector.events, [])
      assert.strictEqual((yield* injector.counts).connectAttempts, 0)
    }))

  // The n-th connect attempt, and the n-th event of the n-th connection, get the same decision in every run with the
  // same seed.
  const faultSequence = (seed: number, filename: string) =>
    Effect.gen(function*() {
      const injector = yield* FaultInjector.make(
        { ...FaultPlan.none, openTransient: 0.3, openPermanent: 0.1, die: 0.2, ping: 0.2 },
        { seed }
      )
      yield* injector.arm
      for (let attempt = 0; attempt < 60; attempt++) {
        yield* Effect.scoped(
          injector.connector.connect({
            filename,
            readOnly: false,
            busyTimeout: Duration.zero,
            pageCacheKiB: 2000
          }).pipe(
            Effect.flatMap((connection) =>
              Effect.zipRight(Effect.sync(() => connection.check()), Effect.either(connection.validate))
            ),
            Effect.either
          )
        )
      }
      return (yield* injector.events).map((event) => `${event.kind}#${event.connection ?? ""}/${event.index}`)
    })

  it.scoped("the same seed gives the same fault sequence; another seed, another one", () =>
    Effect.gen(function*() {
      const filename = yield* tempDatabase
      const first = yield* faultSequence(42, filename)
      const again = yield* faultSequence(42, filename)
      const other = yield* faultSequence(43, filename)
      assert.isAbove(first.length, 10)
      assert.deepStrictEqual(again, first)
      assert.notDeepEqual(other, first)
      for (const kind of ["open-transient", "open-permanent", "die", "ping"]) {
        assert.isTrue(first.some((event) => event.startsWith(kind)), kind)
      }
    }))
})

// The lanes keep no connection of their own: each statement takes the pool's connection and gives it back. A kill
// closes the driver handle of every connection the injector opened, wherever it is, as a crash under the app would.
describe("the lanes under a killed connection", () => {
  const lanes = (injector: FaultInjector.FaultInjector, filename: string) =>
    Effect.map(
      Layer.build(
        SqlitePool.layer({ filename, readConnections: 1 }).pipe(Layer.provide(FaultInjector.layer(injector)))
      ),
      (context) => ({
        sql: Context.get(context, SqlClient.SqlClient),
        reader: Context.get(context, SqlitePool.Reader),
        pool: Context.get(context, SqlitePool.SqlitePool)
      })
    )

  it.scoped("a connection killed between two statements: the next one runs once, on a new connection", () =>
    Effect.gen(function*() {
      const filename = yield* tempDatabase
      const injector = yield* FaultInjector.make(FaultPlan.none, { seed: 1 })
      const { pool, reader, sql } = yield* lanes(injector, filename)
      yield* sql`CREATE TABLE t (x INTEGER)`
      yield* sql`INSERT INTO t VALUES (1)`
      yield* reader`SELECT x FROM t`
      const before = yield* pool.stats
      assert.strictEqual(before.writer.open, 1)
      assert.strictEqual(yield* injector.kill, 2)
      yield* sql`INSERT INTO t VALUES (2)`
      assert.deepStrictEqual(yield* reader`SELECT x FROM t ORDER BY x`, [{ x: 1 }, { x: 2 }])
      const after = yield* pool.stats
      // The killed connections were closed and replaced, one each; the statement ran once, on the new one.
      for (const lane of ["writer", "readers"] as const) {
        assert.strictEqual(after[lane].created, before[lane].created + 1, lane)
        assert.strictEqual(after[lane].closed, before[lane].closed + 1, lane)
        assert.strictEqual(after[lane].open, 1, lane)
      }
    }))

  it.scoped("a connection killed inside a transaction: a typed failure, rolled back whole, the lane goes on", () =>
    Effect.gen(function*() {
      const filename = yield* tempDatabase
      const injector = yield* FaultInjector.make(FaultPlan.none, { seed: 1 })
      const { pool, reader, sql } = yield* lanes(injector, filename)
      yield* sql`CREATE TABLE t (x INTEGER)`
      yield* sql`INSERT INTO t VALUES (1)`
      const result = yield* Effect.either(sql.withTransaction(Effect.gen(function*() {
        yield* sql`INSERT INTO t VALUES (2)`
        yield* injector.kill
        yield* sql`INSERT INTO t VALUES (3)`
      })))
      assert.isTrue(Either.isLeft(result))
      if (Either.isLeft(result)) {
        assert.strictEqual(result.left._tag, "SqlError")
        assert.isTrue(Connector.isClosedConnection(result.left), String(result.left))
      }
      // Nothing of the transaction was committed: SQLite rolled it back as its handle closed.
      assert.deepStrictEqual(yield* reader`SELECT x FROM t ORDER BY x`, [{ x: 1 }])
      yield* sql`INSERT INTO t VALUES (4)`
      assert.deepStrictEqual(yield* reader`SELECT x FROM t ORDER BY x`, [{ x: 1 }, { x: 4 }])
      const { writer } = yield* pool.stats
      assert.strictEqual(writer.closed, writer.created - 1)
    }))
})
