import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { assert, describe, expect, it } from "@effect/vitest"
import { PoolConfig, SqliteCode, SqlitePool } from "@sqlsim/sqlite-pool"
import { eventually } from "@sqlsim/test-kit/Wait"
import { Cause, Deferred, Effect, Exit, Fiber, Layer, Metric, Option, Scope } from "effect"
import * as path from "node:path"
import * as ThreadConnector from "../src/internal/threadConnector.js"
import { descriptors, endless, endlessAggregate, threads } from "./threadFixtures.js"
import { tempDir } from "./utils.js"

type Services = SqlClient.SqlClient | SqlitePool.SqlitePool | SqlitePool.Reader

/** Builds a SqlitePool layer with Reader threads on a fresh file, in a Scope of its own that the caller closes. */
const openPool = (input: PoolConfig.SqliteInput = {}) =>
  Effect.gen(function*() {
    const filename = path.join(yield* tempDir, "test.db")
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(SqlitePool.layer({ readerThreads: true, ...input, filename }), scope)
    const sql = yield* Effect.provide(SqlClient.SqlClient, context)
    yield* sql`CREATE TABLE t (x INTEGER)`
    yield* sql`INSERT INTO t VALUES (1)`
    return {
      scope,
      filename,
      sql,
      reader: yield* Effect.provide(SqlitePool.Reader, context),
      pool: yield* Effect.provide(SqlitePool.SqlitePool, context),
      run: <A, E>(effect: Effect.Effect<A, E, Services>) => Effect.provide(effect, context)
    }
  })

const count = (client: SqlClient.SqlClient) =>
  Effect.map(client<{ n: number }>`SELECT count(*) AS n FROM t`, (rows) => rows[0]!.n)

/**
 * A Reader transaction that counts the rows, stays open while the writer inserts one, then runs `later` inside it;
 * a read outside it sees the new row meanwhile. Returns the first count and what `later` gave.
 */
const aroundAWrite = <A>(
  { reader, sql }: { readonly reader: SqlClient.SqlClient; readonly sql: SqlClient.SqlClient },
  later: Effect.Effect<A, SqlError>
) =>
  Effect.gen(function*() {
    const inside = yield* Deferred.make<void>()
    const finish = yield* Deferred.make<void>()
    const transaction = yield* Effect.fork(reader.withTransaction(Effect.gen(function*() {
      const before = yield* count(reader)
      yield* Deferred.succeed(inside, undefined)
      yield* Deferred.await(finish)
      return [before, yield* later] as const
    })))
    yield* Deferred.await(inside)
    yield* sql`INSERT INTO t VALUES (2)`
    assert.strictEqual(yield* count(reader), 2)
    yield* Deferred.succeed(finish, undefined)
    return yield* Fiber.join(transaction)
  })

/** About 10^6 steps of SQLite per unit of `scale`, ending in one row: a read that keeps a core busy. */
const aggregate = (scale: number) =>
  `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${scale * 1_000_000}) ` +
  "SELECT sum(x) AS s FROM c"

describe("SqlitePool with readerThreads", () => {
  it.effect("readerThreads defaults to false and is one of SqlitePool's fields only", () =>
    Effect.gen(function*() {
      assert.isFalse((yield* PoolConfig.makeSqlite({})).readerThreads)
      assert.isTrue((yield* PoolConfig.makeSqlite({ readerThreads: true })).readerThreads)
      const bad = yield* Effect.flip(PoolConfig.makeSqlite({ readerThreads: "yes" as unknown as boolean }))
      assert.strictEqual(bad.field, "readerThreads")
      const elsewhere = yield* Effect.flip(PoolConfig.make({ readerThreads: true } as PoolConfig.Input))
      assert.strictEqual(elsewhere.field, "readerThreads")
    }))

  it.scopedLive("Reader statements run in a worker: the event loop keeps ticking through a long read", () =>
    Effect.gen(function*() {
      const { reader, scope } = yield* openPool({ readConnections: 1 })
      yield* reader`SELECT 1`
      let ticks = 0
      const timer = setInterval(() => ticks++, 10)
      // On the worker route from the start: whether the route moves it there is the routing tests' subject.
      const [row] = yield* SqlitePool.onWorker(reader.unsafe<{ s: number }>(aggregate(3)))
      clearInterval(timer)
      assert.strictEqual(row?.s, 3_000_000 * (3_000_000 + 1) / 2)
      // On the main thread this read would let no timer fire until it ended.
      assert.isAbove(ticks, 0)
      yield* Scope.close(scope, Exit.void)
    }))

  it.scopedLive("concurrent Reader statements run on different workers, not queued in one", () =>
    Effect.gen(function*() {
      const { pool, reader, scope } = yield* openPool({ readConnections: 2 })
      // Both on the worker route from the start. Left to the route, the first would start on the main thread, and on a
      // loaded machine (the watchdog thread waiting for a core) could finish there before its budget interrupted it.
      const sums = yield* SqlitePool.onWorker(
        Effect.all([reader.unsafe(aggregate(1)), reader.unsafe(aggregate(1))], { concurrency: "unbounded" })
      )
      assert.deepStrictEqual(sums, [[{ s: 500000500000 }], [{ s: 500000500000 }]])
      // A shared kept connection would have served both with one worker.
      assert.strictEqual((yield* pool.stats).readers.created, 2)
      yield* Scope.close(scope, Exit.void)
    }))

  it.scopedLive("the Reader contract holds: reads, a snapshot across awaits, typed errors, no writes", () =>
    Effect.gen(function*() {
      const { pool, reader, scope, sql } = yield* openPool({ readConnections: 2 })
      assert.strictEqual(yield* count(reader), 1)
      // One snapshot across an await, while a read outside it sees the new row.
      assert.deepStrictEqual(yield* aroundAWrite({ reader, sql }, count(reader)), [1, 1])

      // The same typed errors on either route.
      for (const onRoute of [SqlitePool.onMainThread, SqlitePool.onWorker]) {
        const write = yield* Effect.flip(onRoute(reader`INSERT INTO t VALUES (3)`))
        assert.instanceOf(write, SqlError)
        assert.include(write.message, "read-only")
        const wrong = yield* Effect.flip(onRoute(reader`SELECT nope FROM t`))
        assert.strictEqual(SqliteCode.codeOf(wrong), "SQLITE_ERROR")
      }
      assert.deepStrictEqual(yield* sql`SELECT x FROM t ORDER BY x`, [{ x: 1 }, { x: 2 }])
      const { readerRoutes } = yield* pool.stats
      assert.isAbove(readerRoutes!.mainThread, 0)
      assert.isAbove(readerRoutes!.worker, 0)
      yield* Scope.close(scope, Exit.void)
    }))

  it.scopedLive("an interrupted Reader statement stops its worker; the connection is replaced for the next one", () =>
    Effect.gen(function*() {
      const { pool, reader, scope } = yield* openPool({ readConnections: 1 })
      // The worker is open, so the timeout meets the statement, not the connect.
      assert.strictEqual(yield* SqlitePool.onWorker(count(reader)), 1)
      const started = performance.now()
      const exit = yield* Effect.exit(Effect.timeout(SqlitePool.onWorker(reader.unsafe(endless)), "100 millis"))
      assert.isTrue(Exit.isFailure(exit))
      assert.isBelow(performance.now() - started, 2_000)
      assert.strictEqual(yield* SqlitePool.onWorker(count(reader)), 1)
      const { readers } = yield* pool.stats
      assert.strictEqual(readers.created, 2)
      assert.isAtLeast(readers.closed, 1)
      yield* Scope.close(scope, Exit.void)
    }))

  it.scopedLive("a worker stopped from outside is replaced", () =>
    Effect.gen(function*() {
      const { pool, reader, scope } = yield* openPool({ readConnections: 1 })
      assert.strictEqual(yield* SqlitePool.onWorker(count(reader)), 1)
      const before = (yield* pool.stats).readers.created
      yield* Effect.promise(() => Promise.all(ThreadConnector.liveWorkers().map((worker) => worker.terminate())))
      assert.strictEqual(yield* SqlitePool.onWorker(count(reader)), 1)
      assert.strictEqual((yield* pool.stats).readers.created, before + 1)
      yield* Scope.close(scope, Exit.void)
    }))

  it.scopedLive("a worker that dies in the middle of a statement fails it with a SqlError", () =>
    Effect.gen(function*() {
      const { reader, scope } = yield* openPool({ readConnections: 1 })
      // The worker is open (a worker that dies while opening is a failed connect, retried), then runs the statement.
      yield* SqlitePool.onWorker(count(reader))
      const running = yield* Effect.fork(SqlitePool.onWorker(reader.unsafe(endless)))
      yield* Effect.sleep("100 millis")
      yield* Effect.promise(() => Promise.all(ThreadConnector.liveWorkers().map((worker) => worker.terminate())))
      const exit = yield* Fiber.await(running)
      assert.isTrue(Exit.isFailure(exit))
      const error = yield* Effect.flip(exit)
      assert.instanceOf(error, SqlError)
      assert.match(error.message, /worker thread exited/)
      assert.strictEqual(yield* count(reader), 1)
      yield* Scope.close(scope, Exit.void)
    }))

  it.scopedLive("closing the layer ends every worker: no thread, no file descriptor left", () =>
    Effect.gen(function*() {
      // A first pool warms the process's own lazily started threads (libuv's pool, V8's).
      const first = yield* openPool({ readConnections: 2 })
      yield* count(first.reader)
      yield* Scope.close(first.scope, Exit.void)
      const before = { threads: threads(), descriptors: descriptors() }

      // The running statement's lease is waited for this long, then its connection is closed under it.
      const { reader, scope } = yield* openPool({ readConnections: 3, shutdownTimeout: "100 millis" })
      yield* Effect.forEach([1, 2, 3], () => reader.withTransaction(count(reader)), { concurrency: 3 })
      // One statement still running when the layer closes.
      const running = yield* Effect.fork(SqlitePool.onWorker(reader.unsafe(endless)))
      yield* Effect.sleep("50 millis")
      expect(ThreadConnector.liveWorkers().length).toBeGreaterThanOrEqual(2)
      yield* Scope.close(scope, Exit.void)
      assert.isTrue(Exit.isFailure(yield* Fiber.await(running)))

      expect(ThreadConnector.liveWorkers()).toEqual([])
      expect({ threads: threads(), descriptors: descriptors() }).toEqual(before)
    }))
})

describe("the Reader's route with readerThreads", () => {
  const routes = (pool: SqlitePool.Service) => Effect.map(pool.stats, (stats) => stats.readerRoutes!)

  it.scopedLive("a statement that turns out long moves off the main thread and stays off; short ones stay on it", () =>
    Effect.gen(function*() {
      const { filename, pool, reader, scope } = yield* openPool({ readConnections: 1 })
      assert.strictEqual(yield* count(reader), 1)
      // A point read runs on the main thread; a thread preempted past the budget on a loaded machine runs it again on
      // a worker (counted over budget), never learning it long.
      const before = yield* routes(pool)
      assert.strictEqual(before.mainThread, 1)
      assert.strictEqual(before.learnedLong, 0)
      assert.strictEqual(before.worker, before.overBudget)
      // Interrupted on the main thread over its budget, then run again on a worker: the right answer, once. Learned
      // long at once by the CPU it used there, or (a main thread preempted on a loaded machine used less) at the
      // latest after three runs over the budget.
      let runs = 0
      while (runs < 3 && (yield* routes(pool)).learnedLong === 0) {
        assert.deepStrictEqual(yield* reader.unsafe(aggregate(1)), [{ s: 500000500000 }])
        runs++
      }
      const learned = yield* routes(pool)
      assert.deepStrictEqual(learned, {
        mainThread: before.mainThread + runs,
        worker: before.worker + runs,
        learnedLong: 1,
        overBudget: before.overBudget + runs
      })
      // Known long: straight to a worker, the main thread never tried again; a point read stays on the main thread.
      assert.deepStrictEqual(yield* reader.unsafe(aggregate(1)), [{ s: 500000500000 }])
      assert.strictEqual(yield* count(reader), 1)
      const after = yield* routes(pool)
      assert.strictEqual(after.mainThread, learned.mainThread + 1)
      assert.strictEqual(after.learnedLong, 1)
      assert.strictEqual(after.worker - learned.worker, 1 + after.overBudget - learned.overBudget)
      // The same counts as metrics, by the database's filename.
      const metrics = (yield* Metric.snapshot).filter((pair) =>
        pair.metricKey.tags.some((tag) => tag.key === "db.namespace" && tag.value === filename)
      )
      const value = (name: string, route?: string) =>
        metrics.find((pair) =>
          pair.metricKey.name === name &&
          (route === undefined || pair.metricKey.tags.some((tag) => tag.key === "sqlsim.route" && tag.value === route))
        )?.metricState as { readonly count: number } | undefined
      assert.strictEqual(value("sqlsim_reader_statements_total", "mainThread")?.count, after.mainThread)
      assert.strictEqual(value("sqlsim_reader_statements_total", "worker")?.count, after.worker)
      assert.strictEqual(value("sqlsim_reader_learned_long_total")?.count, 1)
      assert.strictEqual(value("sqlsim_reader_over_budget_total")?.count, after.overBudget)
      yield* Scope.close(scope, Exit.void)
    }))

  it.scopedLive("a forced route is obeyed; a statement forced onto the main thread fails over its budget", () =>
    Effect.gen(function*() {
      const { pool, reader, scope } = yield* openPool({ readConnections: 1 })
      assert.strictEqual(yield* SqlitePool.onWorker(count(reader)), 1)
      assert.deepStrictEqual(yield* routes(pool), { mainThread: 0, worker: 1, learnedLong: 0, overBudget: 0 })
      // Forced onto the main thread, where SQLite stops it at the budget: it fails rather than move.
      const started = performance.now()
      const over = yield* Effect.flip(SqlitePool.onMainThread(reader.unsafe(aggregate(1))))
      assert.isBelow(performance.now() - started, 2_000)
      assert.instanceOf(over, SqlError)
      assert.strictEqual(SqliteCode.codeOf(over), "SQLITE_INTERRUPT")
      assert.include(over.message, "SqlitePool.onWorker")
      const forced = yield* routes(pool)
      assert.deepInclude(forced, { mainThread: 1, worker: 1, overBudget: 1 })
      // The fiber's route holds for every statement of the effect, a point read included.
      yield* SqlitePool.onWorker(Effect.all([count(reader), count(reader)]))
      assert.deepStrictEqual(yield* routes(pool), { ...forced, worker: 3 })
      yield* Scope.close(scope, Exit.void)
    }))

  it.scopedLive("CPU time, not wall time: a statement that waits past the budget without computing is not learned long at once", () =>
    Effect.gen(function*() {
      // A function that waits 20 ms without using the CPU, on the main-thread connection only (its handle is here).
      const { pool, reader, scope } = yield* openPool({
        readConnections: 1,
        onConnect: ({ database }) =>
          Effect.sync(() =>
            database?.function("wait_ms", (ms: number) => {
              Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
              return ms
            })
          )
      })
      const waits = SqlitePool.onMainThread(reader.unsafe("SELECT wait_ms(20) AS waited"))
      // Over the budget in wall time each run (SQLite stops it when the function returns), with little CPU: each run
      // is a strike, and the third in a row learns it long.
      for (const strikes of [1, 2]) {
        assert.strictEqual(SqliteCode.codeOf(yield* Effect.flip(waits)), "SQLITE_INTERRUPT")
        assert.deepInclude(yield* routes(pool), { overBudget: strikes, learnedLong: 0 })
      }
      yield* Effect.flip(waits)
      assert.deepInclude(yield* routes(pool), { overBudget: 3, learnedLong: 1 })
      yield* Scope.close(scope, Exit.void)
    }))

  it.scopedLive("a read transaction's statements share one worker connection and one snapshot, forced or not", () =>
    Effect.gen(function*() {
      const { pool, reader, scope, sql } = yield* openPool({ readConnections: 2 })
      // Inside, forced onto the main thread or not: the transaction's snapshot; outside, on the main thread: the new row.
      const later = Effect.all([SqlitePool.onMainThread(count(reader)), count(reader)])
      assert.deepStrictEqual(yield* aroundAWrite({ reader, sql }, later), [1, [1, 1]])
      // One worker lease for the whole transaction; only the statement outside it ran on the main thread.
      assert.deepStrictEqual(yield* routes(pool), { mainThread: 1, worker: 1, learnedLong: 0, overBudget: 0 })
      yield* Scope.close(scope, Exit.void)
    }))

  it.scopedLive("an interrupted statement stops its SQLite work on either route", () =>
    Effect.gen(function*() {
      const { pool, reader, scope } = yield* openPool({ readConnections: 1 })
      // The main thread: SQLite interrupts it at the budget (nothing else can stop a synchronous call).
      // (A worker would run it for minutes: the timeout only keeps a broken route from hanging the test.)
      const main = yield* Effect.flip(
        Effect.timeout(SqlitePool.onMainThread(reader.unsafe(endlessAggregate)), "10 seconds")
      )
      assert.strictEqual(SqliteCode.codeOf(main), "SQLITE_INTERRUPT")
      // A worker: interrupted there by the fiber's timeout (the worker open already, so that the timeout meets the
      // statement, not the connect). Forced there: on a loaded machine the main thread's attempt alone can outlast
      // the timeout, which would then meet no worker statement at all.
      yield* SqlitePool.onWorker(count(reader))
      const started = performance.now()
      const exit = yield* Effect.exit(
        Effect.timeout(SqlitePool.onWorker(reader.unsafe(endlessAggregate)), "200 millis")
      )
      assert.isTrue(Exit.isFailure(exit))
      assert.isBelow(performance.now() - started, 2_000)
      // The worker's statement stopped: its connection was replaced and the next read runs.
      assert.strictEqual(yield* SqlitePool.onWorker(count(reader)), 1)
      assert.strictEqual((yield* pool.stats).readers.created, 2)
      assert.strictEqual(yield* count(reader), 1)
      yield* Scope.close(scope, Exit.void)
    }))

  it.scopedLive("closing the layer mid-read ends every read with a typed error", () =>
    Effect.gen(function*() {
      const { reader, scope } = yield* openPool({ readConnections: 2, shutdownTimeout: "100 millis" })
      // Both workers open (a connect under way as the layer closes is another test's), and the aggregate known long.
      yield* Effect.forEach([1, 2], () => reader.withTransaction(count(reader)), { concurrency: 2 })
      yield* reader.unsafe(aggregate(1))
      const long = yield* Effect.fork(reader.unsafe(endlessAggregate))
      const forced = yield* Effect.fork(SqlitePool.onWorker(reader.unsafe(endless)))
      yield* Effect.sleep("100 millis")
      yield* Scope.close(scope, Exit.void)
      for (const fiber of [long, forced]) {
        const exit = yield* Fiber.await(fiber)
        assert.isTrue(Exit.isFailure(exit))
        assert.instanceOf(
          Option.getOrThrow(Cause.failureOption((exit as Exit.Failure<unknown, SqlError>).cause)),
          SqlError
        )
      }
      // After the close, on either route: the pool's closed error, typed.
      for (const read of [count(reader), SqlitePool.onWorker(count(reader))]) {
        const error = yield* Effect.flip(read)
        assert.instanceOf(error, SqlError)
        assert.strictEqual((error.cause as { _tag?: string })._tag, "PoolClosedError")
      }
      // Real time: a loaded machine can take a while to end the worker threads.
      yield* eventually(Effect.sync(() => ThreadConnector.liveWorkers().length === 0), "every worker ended")
    }))
})
