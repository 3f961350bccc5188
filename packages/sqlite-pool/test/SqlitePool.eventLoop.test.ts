/**
 * The event loop during a burst on the lanes: better-sqlite3 is synchronous and fibers resume on microtasks, so
 * without the pool giving it turns a burst runs start to end with no timer, I/O or signal in between.
 */
import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { SqlitePool } from "@sqlsim/sqlite-pool"
import { tempDatabase } from "@sqlsim/test-kit/TempDir"
import { Effect, Fiber } from "effect"

const burst = 5_000

/** Runs `body` with the writer lane's client on a fresh file, a table `t` made. */
const withWriter = <A, E>(body: (sql: SqlClient.SqlClient) => Effect.Effect<A, E, SqlitePool.SqlitePool>) =>
  Effect.scoped(Effect.flatMap(tempDatabase, (filename) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE t (x INTEGER)`
      return yield* body(sql)
    }).pipe(
      // The last of 5,000 queued transactions waits for all the others: on a loaded machine longer than the default
      // acquireTimeout (5 s), which is not what these tests are about.
      Effect.provide(SqlitePool.layer({ filename, acquireTimeout: "2 minutes" }))
    )))

/**
 * The times at which a 10 ms interval ticked while `effect` ran, how many of its operations had ended at each tick
 * (`done`, counted by `effect` itself), and the times it started and ended.
 */
const ticksDuring = <A, E>(effect: (done: () => void) => Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const ticks: Array<number> = []
    const doneAtTicks: Array<number> = []
    let done = 0
    const interval = setInterval(() => {
      ticks.push(performance.now())
      doneAtTicks.push(done)
    }, 10)
    const started = performance.now()
    const result = yield* Effect.ensuring(effect(() => void done++), Effect.sync(() => clearInterval(interval)))
    return { result, ticks, doneAtTicks, started, ended: performance.now() }
  })

/** Some tick came while the burst was under way: after some operations had ended, before all had. */
const tickedMidBurst = (doneAtTicks: ReadonlyArray<number>) =>
  assert.isTrue(
    doneAtTicks.some((done) => done > 0 && done < burst),
    `the loop turned only before or after the burst (operations done at each tick: ${doneAtTicks.join(", ")})`
  )

/**
 * The longest time between consecutive ticks and the end. Not from the start: forking thousands of fibers is
 * Effect's own work, done before any of them reaches the pool.
 */
const longestGap = (times: ReadonlyArray<number>) =>
  times.slice(1).reduce((longest, time, i) => Math.max(longest, time - times[i]!), 0)

describe("the event loop during a burst", () => {
  it.live(
    `ticks while ${burst} transactions forked onto the writer lane run`,
    () =>
      withWriter((sql) =>
        Effect.gen(function*() {
          const transaction = sql.withTransaction(Effect.zipRight(sql`INSERT INTO t VALUES (1)`, sql`SELECT 1`))
          const { doneAtTicks, ended, started, ticks } = yield* ticksDuring((done) =>
            Effect.forEach(Array.from({ length: burst }), () => Effect.tap(transaction, done), {
              concurrency: "unbounded",
              discard: true
            })
          )
          assert.isAbove(ticks.length, 0, `no tick in ${(ended - started).toFixed(0)} ms`)
          // The loop turns all through the burst, not once at its end. The turns come every 2,048 leases or 20 ms: the
          // bound is generous because a loaded machine can leave the process unscheduled for hundreds of ms.
          tickedMidBurst(doneAtTicks)
          assert.isBelow(longestGap([...ticks, ended]), 2_000)
          const [row] = yield* sql<{ n: number }>`SELECT count(*) AS n FROM t`
          assert.strictEqual(row?.n, burst)
        })
      ),
    60_000
  )

  it.live(
    `ticks while ${burst} single statements forked onto the writer lane run`,
    () =>
      withWriter((sql) =>
        Effect.gen(function*() {
          const { doneAtTicks, ended, started, ticks } = yield* ticksDuring((done) =>
            Effect.forEach(
              Array.from({ length: burst }),
              (_, i) => Effect.tap(sql`INSERT INTO t VALUES (${i})`, done),
              {
                concurrency: "unbounded",
                discard: true
              }
            )
          )
          assert.isAbove(ticks.length, 0, `no tick in ${(ended - started).toFixed(0)} ms`)
          tickedMidBurst(doneAtTicks)
          assert.isBelow(longestGap([...ticks, ended]), 2_000)
        })
      ),
    60_000
  )

  it.live(
    "a short Effect.timeout on a transaction queued behind a burst fires",
    () =>
      withWriter((sql) =>
        Effect.gen(function*() {
          const pool = yield* SqlitePool.SqlitePool
          const transaction = sql.withTransaction(sql`INSERT INTO t VALUES (1)`)
          const others = yield* Effect.fork(
            Effect.forEach(Array.from({ length: burst }), () => transaction, {
              concurrency: "unbounded",
              discard: true
            })
          )
          // Queued behind most of the burst (looked at a bounded number of times: never a spin).
          let waiting = 0
          for (let look = 0; look < 10_000 && waiting < burst / 2; look++) {
            yield* Effect.yieldNow()
            waiting = (yield* pool.stats).writerWaiting
          }
          assert.isAtLeast(waiting, burst / 2)
          const last = yield* Effect.either(Effect.timeout(transaction, "10 millis"))
          yield* Fiber.join(others)
          assert.isTrue(last._tag === "Left" && last.left._tag === "TimeoutException")
          // The timed-out transaction left nothing behind: the burst's rows only.
          const [row] = yield* sql<{ n: number }>`SELECT count(*) AS n FROM t`
          assert.strictEqual(row?.n, burst)
        })
      ),
    60_000
  )
})
