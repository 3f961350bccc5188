/**
 * One regression test per way a connection with more than one owner (a pool lease, a lane's kept connection, a
 * transaction, shutdown) used to break: each on a real SQLite file, with real time bounded generously.
 */
import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { ConnectionPool, PoolConfig, type PoolError, SqlitePool } from "@sqlsim/sqlite-pool"
import { Cause, Context, Deferred, Effect, Exit, Fiber, Layer, Scope, TestClock } from "effect"
import { execFileSync } from "node:child_process"
import { createRequire } from "node:module"
import * as path from "node:path"
import { eventually, tempDir, waitUntil } from "./utils.js"

const require = createRequire(import.meta.url)

/** Builds SqlitePool.layer on a file of a fresh directory, in a Scope the test closes itself. */
const openLayer = (input: PoolConfig.SqliteInput) =>
  Effect.gen(function*() {
    const filename = path.join(yield* tempDir, "app.db")
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(SqlitePool.layer({ ...input, filename }), scope)
    return { filename, scope, context }
  })

/**
 * Forks a writer transaction that inserts 1, then waits for `finish`, then inserts 2; returns once it is open.
 */
const openTransaction = (sql: SqlClient.SqlClient) =>
  Effect.gen(function*() {
    const inside = yield* Deferred.make<void>()
    const finish = yield* Deferred.make<void>()
    const transaction = yield* Effect.fork(sql.withTransaction(Effect.gen(function*() {
      yield* sql`INSERT INTO t VALUES (1)`
      yield* Deferred.succeed(inside, undefined)
      yield* Deferred.await(finish)
      yield* sql`INSERT INTO t VALUES (2)`
    })))
    yield* Deferred.await(inside)
    return { finish, transaction }
  })

describe("one owner per connection", () => {
  it.scopedLive("healthCheck answers at once under a steady write load, never after acquireTimeout", () =>
    Effect.gen(function*() {
      const { context, scope } = yield* openLayer({ acquireTimeout: "2 seconds" })
      const sql = Context.get(context, SqlClient.SqlClient)
      const pool = Context.get(context, SqlitePool.SqlitePool)
      yield* sql`CREATE TABLE t (x INTEGER)`
      // 50 writes a second, for a second and a half, while health checks run beside them.
      const load = yield* Effect.fork(
        Effect.forEach(
          Array.from({ length: 75 }),
          (_, i) => Effect.zipRight(sql`INSERT INTO t VALUES (${i})`, Effect.sleep("20 millis")),
          { discard: true }
        )
      )
      for (let check = 0; check < 10; check++) {
        const started = Date.now()
        const health = yield* pool.healthCheck
        assert.isTrue(health.ok)
        // Far below acquireTimeout (the lane keeps its connection while writes keep coming, so a check that leased
        // from the pool would wait all of it): the check never waited for a connection.
        assert.isBelow(Date.now() - started, 1000)
        yield* Effect.sleep("130 millis")
      }
      yield* Fiber.join(load)
      // A second after the last write the lane has given its connection back; the check still needs no wait.
      yield* Effect.sleep("1100 millis")
      assert.isTrue((yield* pool.healthCheck).ok)
      yield* Scope.close(scope, Exit.void)
    }))

  it.scopedLive("closing the layer under a transaction: it commits whole, the work queued behind it fails typed", () =>
    Effect.gen(function*() {
      const { context, filename, scope } = yield* openLayer({ shutdownTimeout: "10 seconds" })
      const sql = Context.get(context, SqlClient.SqlClient)
      const pool = Context.get(context, SqlitePool.SqlitePool)
      yield* sql`CREATE TABLE t (x INTEGER)`
      const { finish, transaction } = yield* openTransaction(sql)
      const queued = yield* Effect.forEach(
        Array.from({ length: 10 }),
        (_, i) => Effect.fork(sql`INSERT INTO t VALUES (${100 + i})`)
      )
      yield* waitUntil(Effect.map(pool.stats, (stats) => stats.writerWaiting === 10), "ten statements queue")
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      // Everything queued ends at once, typed: the pool is closed.
      for (const fiber of queued) {
        const exit = yield* Fiber.await(fiber)
        assert.isTrue(Exit.isFailure(exit))
        if (Exit.isFailure(exit)) {
          const error = Cause.failureOption(exit.cause)
          assert.strictEqual(error._tag === "Some" ? error.value._tag : "defect", "SqlError")
          assert.strictEqual(
            error._tag === "Some" ? (error.value.cause as PoolError.PoolClosedError)._tag : "",
            "PoolClosedError"
          )
        }
      }
      assert.strictEqual((yield* pool.stats).writerWaiting, 0)
      // The transaction in flight finishes and commits whole; then the layer is closed.
      yield* Deferred.succeed(finish, undefined)
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(transaction)))
      yield* Fiber.join(closing)
      const rows = execFileSync(process.execPath, [
        "-e",
        `const D=require(${JSON.stringify(require.resolve("better-sqlite3"))});` +
        `console.log(JSON.stringify(new D(${
          JSON.stringify(filename)
        }).prepare("SELECT x FROM t ORDER BY x").pluck().all()))`
      ]).toString()
      assert.deepStrictEqual(JSON.parse(rows), [1, 2])
    }))

  it.scopedLive("closing the layer under a transaction that outlives shutdownTimeout: rolled back, failed typed", () =>
    Effect.gen(function*() {
      const { context, filename, scope } = yield* openLayer({ shutdownTimeout: "100 millis" })
      const sql = Context.get(context, SqlClient.SqlClient)
      yield* sql`CREATE TABLE t (x INTEGER)`
      const { finish, transaction } = yield* openTransaction(sql)
      yield* Scope.close(scope, Exit.void)
      yield* Deferred.succeed(finish, undefined)
      const exit = yield* Fiber.await(transaction)
      // Its connection was closed under it: SQLite rolled it back, and what follows fails as a SqlError, no defect.
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        assert.strictEqual(
          Cause.failureOption(exit.cause).pipe((e) => e._tag === "Some" ? e.value._tag : ""),
          "SqlError"
        )
        assert.lengthOf([...Cause.defects(exit.cause)], 0)
      }
      const count = execFileSync(process.execPath, [
        "-e",
        `const D=require(${JSON.stringify(require.resolve("better-sqlite3"))});` +
        `console.log(new D(${JSON.stringify(filename)}).prepare("SELECT count(*) FROM t").pluck().get())`
      ]).toString()
      assert.strictEqual(count.trim(), "0")
    }))

  it.scoped("maxLifetime below a second is refused; the shortest one allowed never makes an acquire wait or spin", () =>
    Effect.gen(function*() {
      for (const maxLifetime of [0, "0 millis", "999 millis"] as const) {
        const error = yield* Effect.flip(PoolConfig.make({ maxLifetime }))
        assert.strictEqual(error.field, "maxLifetime")
        assert.match(error.message, /at least 1 second, or null/)
      }
      const filename = path.join(yield* tempDir, "app.db")
      const pool = yield* ConnectionPool.make({ filename, maxLifetime: "1 second", acquireTimeout: "1 second" })
      for (let round = 0; round < 5; round++) {
        assert.strictEqual(yield* pool.use((c) => Effect.as(c.sql`SELECT 1`, c.id)), round + 1)
        yield* TestClock.adjust("1 second")
      }
      // One connection at a time, each retired once it outlived maxLifetime and replaced once, nothing more.
      assert.deepInclude(yield* pool.stats, { created: 5, closed: 5, open: 0, timeouts: 0 })
    }))

  it.scopedLive("a read transaction gets the connection the Reader keeps but is not using, at once", () =>
    Effect.gen(function*() {
      const { context, scope } = yield* openLayer({ readConnections: 2, acquireTimeout: "5 seconds" })
      const sql = Context.get(context, SqlClient.SqlClient)
      const reader = Context.get(context, SqlitePool.Reader)
      yield* sql`CREATE TABLE t (x INTEGER)`
      yield* reader`SELECT count(*) FROM t` // the Reader now keeps one connection for statements
      const holding = yield* Deferred.make<void>()
      const finish = yield* Deferred.make<void>()
      const first = yield* Effect.fork(reader.withTransaction(
        Effect.zipRight(Deferred.succeed(holding, undefined), Deferred.await(finish))
      ))
      yield* Deferred.await(holding)
      // The second read transaction needs the kept connection: it is handed over at once, not after the second the
      // lane would otherwise keep an unused connection.
      const started = Date.now()
      assert.deepStrictEqual(yield* reader.withTransaction(reader`SELECT count(*) AS n FROM t`), [{ n: 0 }])
      assert.isBelow(Date.now() - started, 900)
      yield* Deferred.succeed(finish, undefined)
      yield* Fiber.join(first)
      // Statements still run, on a connection leased again.
      assert.deepStrictEqual(yield* reader`SELECT count(*) AS n FROM t`, [{ n: 0 }])
      yield* Scope.close(scope, Exit.void)
    }))

  it.scopedLive("a writer connection opened while the file is unwritable is retried until it is writable again", () =>
    Effect.gen(function*() {
      const { context, filename, scope } = yield* openLayer({
        maxLifetime: "1 second",
        retries: 20,
        retryBaseDelay: "20 millis",
        retryMaxDelay: "20 millis"
      })
      const sql = Context.get(context, SqlClient.SqlClient)
      const pool = Context.get(context, SqlitePool.SqlitePool)
      yield* sql`CREATE TABLE t (x INTEGER)`
      yield* sql`INSERT INTO t VALUES (1)`
      // The immutable attribute refuses opening for writing even to root, as a read-only mount would: SQLite would
      // silently open the file read-only.
      execFileSync("chattr", ["+i", filename])
      yield* Effect.addFinalizer(() => Effect.sync(() => execFileSync("chattr", ["-i", filename])))
      // The writer's connection outlives maxLifetime and is retired; the next write must open a new one.
      yield* eventually(Effect.map(pool.stats, (stats) => stats.writer.closed === 1), "the writer connection retires")
      const write = yield* Effect.fork(sql`INSERT INTO t VALUES (2)`)
      yield* eventually(
        Effect.map(pool.stats, (stats) => stats.writer.connectFailures >= 2),
        "connects fail while the file is unwritable"
      )
      execFileSync("chattr", ["-i", filename])
      // Retried as transient: once the file is writable the connect succeeds read-write and the write lands.
      yield* Fiber.join(write)
      assert.deepStrictEqual(yield* sql`SELECT x FROM t ORDER BY x`, [{ x: 1 }, { x: 2 }])
      yield* Scope.close(scope, Exit.void)
    }))

  it.scopedLive("a writer connection that meets SQLITE_READONLY is replaced: the next write works", () =>
    Effect.gen(function*() {
      const { context, scope } = yield* openLayer({})
      const sql = Context.get(context, SqlClient.SqlClient)
      const pool = Context.get(context, SqlitePool.SqlitePool)
      yield* sql`CREATE TABLE t (x INTEGER)`
      // A connection that lost write access (here by a pragma, as SQLite's read-only fallback would).
      yield* sql`PRAGMA query_only = ON`
      const refused = yield* Effect.flip(sql`INSERT INTO t VALUES (1)`)
      assert.match(String((refused.cause as { code?: string }).code), /^SQLITE_READONLY/)
      yield* sql`INSERT INTO t VALUES (2)`
      assert.deepStrictEqual(yield* sql`SELECT x FROM t`, [{ x: 2 }])
      assert.deepInclude((yield* pool.stats).writer, { created: 2, invalidated: 1 })
      yield* Scope.close(scope, Exit.void)
    }))
})
