/**
 * Every wait for a lane is bounded by `acquireTimeout`, and what fails a waiter names who holds what it waited for
 * (the holder's span, fiber and since when); `holdWarningThreshold` warns once about a hold that lasts too long,
 * naming where it was acquired; `SqlitePool.stats` shows the writer's holder. All on the TestClock.
 */
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { assert, describe, it } from "@effect/vitest"
import { PoolError, SqlitePool } from "@sqlsim/sqlite-pool"
import { tempDatabase } from "@sqlsim/test-kit/TempDir"
import { Deferred, type Duration, Effect, Exit, Fiber, TestClock } from "effect"
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
        console.log("waiting ok");yield* TestClock.adjust("499 millis")
        assert.isNull(waiter.unsafePoll(), "still waiting before acquireTimeout")
        yield* TestClock.adjust("2 millis")
        console.log("adjusted", waiter.unsafePoll());const exit = yield* Fiber.await(waiter);console.log("exit", exit)
        assert.isTrue(Exit.isFailure(exit))
        const error = yield* Effect.flip(exit)
        assert.instanceOf(error, SqlError)
        const cause = error.cause
        assert.instanceOf(cause, PoolError.AcquireTimeoutError)
        const timeout = cause as PoolError.AcquireTimeoutError
        assert.strictEqual(timeout.holder?.span, "hold-the-writer")
        assert.strictEqual(timeout.holder?.heldMs, 501)
        assert.include(timeout.message, "hold-the-writer")
        assert.include(error.message, "hold-the-writer")
        yield* TestClock.adjust("3 seconds")
        console.log("joining");yield* Fiber.join(holder);console.log("joined")
      })
    ))
})
