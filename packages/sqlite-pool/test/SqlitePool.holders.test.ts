/**
 * Every wait for a lane is bounded by `acquireTimeout`, and what fails a waiter names who holds what it waited for
 * (the holder's span, fiber and since when); `holdWarningThreshold` warns once about a hold that lasts too long,
 * naming where it was acquired; `SqlitePool.stats` shows the writer's holder. All on the TestClock.
 */
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { assert, describe, it } from "@effect/vitest"
import { ConnectionPool, PoolError, SqlitePool } from "@sqlsim/sqlite-pool"
import { tempDatabase } from "@sqlsim/test-kit/TempDir"
import { settle } from "@sqlsim/test-kit/Wait"
import { Clock, Deferred, type Duration, Effect, Exit, Fiber, Logger, Metric, TestClock } from "effect"
import { waitUntil } from "./utils.js"

/** A SqlitePool on a fresh file with `acquireTimeout: "500 millis"`, table `t` created. */
const withPool = <A, E>(
  input: { readonly holdWarningThreshold?: Duration.DurationInput },
  body: Effect.Effect<A, E, SqlClient.SqlClient | SqlitePool.SqlitePool | SqlitePool.Reader>
) =>
  Effect.flatMap(tempDatabase, (filename) =>
    Effect.zipRight(
      Effect.flatMap(SqlClient.SqlClient, (sql) => sql`CREATE TABLE t (x)`),
      body
    ).pipe(
      Effect.provide(SqlitePool.layer({ filename, acquireTimeout: "500 millis", readConnections: 1, ...input }))
    ))

/**
 * Forks the stalled writer: a transaction under the span `hold-the-writer` that inserts, then sleeps 3 s
 * while it holds the writer. Returns once it holds it.
 */
const holdTheWriter = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const inside = yield* Deferred.make<void>()
  const holder = yield* Effect.fork(
    sql.withTransaction(
      sql`INSERT INTO t VALUES (1)`.pipe(
        Effect.zipRight(Deferred.succeed(inside, undefined)),
        Effect.zipRight(Effect.sleep("3 seconds"))
      )
    ).pipe(Effect.withSpan("hold-the-writer"))
  )
  yield* Deferred.await(inside)
  return holder
})

/** A logger that keeps the warnings' messages. */
const warningLog = () => {
  const warnings: Array<string> = []
  const collect = Logger.make(({ logLevel, message }) => {
    if (logLevel._tag === "Warning") warnings.push(Array.isArray(message) ? message.join(" ") : String(message))
  })
  return { collect, warnings }
}

describe("every wait bounded, the holder named", () => {
  it.scoped("a write waiting for a stalled writer fails typed after acquireTimeout, naming the holder", () =>
    withPool(
      {},
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const pool = yield* SqlitePool.SqlitePool
        const holder = yield* holdTheWriter
        const waiter = yield* Effect.fork(sql`INSERT INTO t VALUES (2)`)
        yield* waitUntil(Effect.map(pool.stats, (s) => s.writerWaiting === 1), "the insert waits")
        yield* TestClock.adjust("499 millis")
        assert.isNull(waiter.unsafePoll(), "still waiting before acquireTimeout")
        yield* TestClock.adjust("2 millis")
        const exit = yield* Fiber.await(waiter)
        assert.isTrue(Exit.isFailure(exit))
        const error = yield* Effect.flip(exit)
        assert.instanceOf(error, SqlError)
        assert.instanceOf(error.cause, PoolError.AcquireTimeoutError)
        const timeout = error.cause as PoolError.AcquireTimeoutError
        assert.strictEqual(timeout.holder?.span, "hold-the-writer")
        assert.strictEqual(timeout.holder?.fiber, `#${holder.id().id}`)
        assert.strictEqual(timeout.holder?.heldMs, 500)
        assert.strictEqual(timeout.holders, 1)
        assert.include(error.message, `span "hold-the-writer" (fiber #${holder.id().id}), held for 500 ms`)
        // The writer lane is one connection and refuses maxConnections: the advice is about the hold.
        assert.include(
          error.message,
          "the writer lane is one connection: shorten what holds it, set holdWarningThreshold to log where a " +
            "long hold was acquired, or raise acquireTimeout"
        )
        assert.notInclude(error.message, "maxConnections")
        yield* TestClock.adjust("3 seconds")
        yield* Fiber.join(holder)
      }).pipe(Effect.onExit(() => TestClock.adjust("1 minute")))
    ))

  it.scoped("a Reader statement waiting for a held Reader connection fails the same way", () =>
    withPool(
      {},
      Effect.gen(function*() {
        const reader = yield* SqlitePool.SqlitePool.pipe(Effect.zipRight(SqlitePool.Reader))
        const inside = yield* Deferred.make<void>()
        const holder = yield* Effect.fork(
          reader.withTransaction(Effect.zipRight(Deferred.succeed(inside, undefined), Effect.sleep("3 seconds"))).pipe(
            Effect.withSpan("long-report")
          )
        )
        yield* Deferred.await(inside)
        const waiter = yield* Effect.fork(reader`SELECT count(*) FROM t`)
        yield* TestClock.adjust("501 millis")
        const error = yield* Effect.flip(Fiber.join(waiter))
        assert.instanceOf(error.cause, PoolError.AcquireTimeoutError)
        assert.include(error.message, `span "long-report"`)
        // The Reader's size is readConnections (SqlitePool refuses maxConnections).
        assert.include(
          error.message,
          "raise acquireTimeout or readConnections, or hold Reader connections for less time"
        )
        yield* TestClock.adjust("3 seconds")
        yield* Fiber.join(holder)
      }).pipe(Effect.onExit(() => TestClock.adjust("1 minute")))
    ))

  it.scoped("holdWarningThreshold: one warning per long hold, naming the holder and where it was acquired", () => {
    const { collect, warnings } = warningLog()
    return Effect.gen(function*() {
      yield* withPool(
        { holdWarningThreshold: "1 second" },
        Effect.gen(function*() {
          const holder = yield* holdTheWriter
          yield* TestClock.adjust("999 millis")
          yield* settle()
          assert.deepStrictEqual(warnings, [], "no warning before the threshold")
          yield* TestClock.adjust("1 millis")
          yield* waitUntil(Effect.sync(() => warnings.length === 1), "the warning is logged")
          yield* TestClock.adjust("1500 millis")
          yield* settle()
          assert.lengthOf(warnings, 1, "one warning per hold")
          assert.include(warnings[0], `held longer than holdWarningThreshold (1000 ms) by span "hold-the-writer"`)
          assert.include(warnings[0], `(fiber #${holder.id().id}), held for 1000 ms; acquired at:`)
          assert.include(warnings[0], "SqlitePool.holders.test.ts")
          yield* TestClock.adjust("1 second")
          yield* Fiber.join(holder)
          const stats = yield* Effect.flatMap(SqlitePool.SqlitePool, (pool) => pool.stats)
          assert.strictEqual(stats.holdWarnings, 1)
          assert.deepStrictEqual(stats.holdWarningsBySpan, { "hold-the-writer": 1 })
          const pool = yield* SqlitePool.SqlitePool
          const counted = (yield* Metric.snapshot).filter(({ metricKey }) =>
            metricKey.name === "sqlsim_pool_hold_warnings_total" &&
            metricKey.tags.some((tag) => tag.value === `${pool.config.filename} (writer)`)
          )
          assert.deepStrictEqual(counted.map(({ metricState }) => (metricState as { count?: number }).count), [1])
        }).pipe(Effect.onExit(() => TestClock.adjust("1 minute")))
      )
    }).pipe(Effect.provide(Logger.add(collect)))
  })

  it.scoped("SqlitePool.stats shows the writer's holder while it holds the writer, and none after", () =>
    withPool(
      {},
      Effect.gen(function*() {
        const pool = yield* SqlitePool.SqlitePool
        assert.isUndefined((yield* pool.stats).writerHolder)
        const start = yield* Clock.currentTimeMillis
        const holder = yield* holdTheWriter
        yield* TestClock.adjust("250 millis")
        const held = (yield* pool.stats).writerHolder
        assert.deepStrictEqual(held, {
          span: "hold-the-writer",
          fiber: `#${holder.id().id}`,
          since: start,
          heldMs: 250,
          site: undefined
        })
        yield* TestClock.adjust("3 seconds")
        yield* Fiber.join(holder)
        assert.isUndefined((yield* pool.stats).writerHolder)
      }).pipe(Effect.onExit(() => TestClock.adjust("1 minute")))
    ))

  it.scoped("a ConnectionPool acquire waits at most acquireTimeout; the error and the warning name the use that holds", () => {
    const { collect, warnings } = warningLog()
    return Effect.gen(function*() {
      const filename = yield* tempDatabase
      const pool = yield* ConnectionPool.make({
        filename,
        maxConnections: 1,
        acquireTimeout: "500 millis",
        holdWarningThreshold: "200 millis"
      })
      const inside = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(
        pool.use(() => Effect.zipRight(Deferred.succeed(inside, undefined), Effect.sleep("3 seconds"))).pipe(
          Effect.withSpan("nightly-export")
        )
      )
      yield* Deferred.await(inside)
      const waiter = yield* Effect.fork(Effect.scoped(pool.acquire))
      yield* TestClock.adjust("501 millis")
      const error = yield* Effect.flip(Fiber.join(waiter))
      assert.instanceOf(error, PoolError.AcquireTimeoutError)
      assert.include(error.message, `held longest by span "nightly-export" (fiber #${holder.id().id}), held for 500 ms`)
      assert.include(error.message, "raise acquireTimeout or maxConnections, or hold connections for less time")
      assert.lengthOf(warnings, 1)
      assert.include(warnings[0], "SqlitePool.holders.test.ts")
      yield* TestClock.adjust("3 seconds")
      yield* Fiber.join(holder)
    }).pipe(Effect.provide(Logger.add(collect)))
  })
})
