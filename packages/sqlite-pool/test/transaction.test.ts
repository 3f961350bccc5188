/**
 * SQLITE_BUSY at COMMIT. In WAL mode with `BEGIN IMMEDIATE` a real COMMIT hardly ever meets it, so these tests put a
 * fault in front of a real connection: its first COMMITs fail with SQLITE_BUSY, everything else runs on SQLite.
 */
import * as Client from "@effect/sql/SqlClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import { describe, expect, it } from "@effect/vitest"
import { RetryPolicy } from "@sqlsim/sqlite-pool"
import { settle } from "@sqlsim/test-kit/Wait"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import * as Transaction from "../src/internal/transaction.js"
import { advanceUntil, makeTestPool } from "./utils.js"

const busy = () =>
  new SqlError({
    cause: Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" }),
    message: "Failed to execute statement"
  })

/** A transaction runner over a pool of one, whose connection fails its next `busyCommits` COMMITs with BUSY. */
const setup = (busyCommits: number) =>
  Effect.gen(function*() {
    const { core, pool } = yield* makeTestPool({ maxConnections: 1 })
    let commitsLeft = busyCommits
    const withBusyCommit = (connection: SqlConnection.Connection): SqlConnection.Connection => ({
      ...connection,
      executeUnprepared: (sql, params, rows) => {
        const real = connection.executeUnprepared(sql, params, rows)
        // Decided each time the statement runs (a retry runs the same effect again).
        return sql === "COMMIT" ? Effect.suspend(() => commitsLeft-- > 0 ? Effect.fail(busy()) : real) : real
      }
    })
    const counter: RetryPolicy.BusyCounter = { retries: 0 }
    const withTransaction = Transaction.makeWithTransaction({
      lease: pool.acquire.pipe(
        Effect.mapError((error) => new SqlError({ cause: error, message: error.message })),
        Effect.map((pooled) => [withBusyCommit(core.entryOf(pooled)!.connection.connection), pooled] as const)
      ),
      invalidate: pool.invalidate,
      begin: "BEGIN IMMEDIATE",
      spanAttributes: [],
      retryBusy: RetryPolicy.retryWhileBusy({
        retryBaseDelay: Duration.millis(10),
        retryMaxDelay: Duration.millis(100),
        retryJitter: false,
        acquireTimeout: Duration.seconds(1)
      }, counter)
    })
    // A statement inside the transaction runs on the transaction's connection, as `sql` statements do.
    const insert = (x: number) =>
      Effect.flatMap(Effect.serviceOption(Client.TransactionConnection), (current) =>
        current._tag === "None"
          ? Effect.dieMessage("not inside the transaction")
          : current.value[0].executeUnprepared(`INSERT INTO t VALUES (${x})`, [], undefined))
    const values = pool.use((c) =>
      Effect.map(c.sql<{ x: number }>`SELECT x FROM t ORDER BY x`, (r) => r.map((row) => row.x))
    )
    yield* pool.use((c) => c.sql`CREATE TABLE t (x INTEGER)`)
    return { counter, insert, pool, values, withTransaction }
  })

/** Runs `effect` while moving the TestClock until it ends. */
const onTestClock = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    yield* advanceUntil(Effect.map(Fiber.poll(fiber), (exit) => exit._tag === "Some"), {
      step: "10 millis",
      limit: "10 seconds",
      description: "the transaction ends"
    })
    return yield* Fiber.await(fiber)
  })

describe("transactions: SQLITE_BUSY at COMMIT", () => {
  it.scoped("is retried on the backoff schedule, and the transaction commits", () =>
    Effect.gen(function*() {
      const { counter, insert, values, withTransaction } = yield* setup(2)
      const exit = yield* onTestClock(withTransaction(insert(1)))
      expect(exit).toMatchObject({ _tag: "Success" })
      expect(counter.retries).toBe(2)
      expect(yield* values).toEqual([1])
    }))

  it.scoped("still busy after acquireTimeout: a typed SqlError, rolled back, and the connection goes on working", () =>
    Effect.gen(function*() {
      const { insert, pool, values, withTransaction } = yield* setup(Number.POSITIVE_INFINITY)
      const exit = yield* onTestClock(withTransaction(insert(1)))
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) {
        // A failure, not a defect.
        expect(Cause.isDie(exit.cause)).toBe(false)
        const failure = Cause.failureOption(exit.cause)
        expect(failure._tag === "Some" && failure.value instanceof SqlError).toBe(true)
        if (failure._tag === "Some") expect((failure.value as SqlError).message).toContain("locked")
      }
      expect(yield* values).toEqual([])
      expect(yield* pool.stats).toMatchObject({ created: 1, invalidated: 0, inUse: 0 })
    }))
})

describe("transactions on one leased connection (a pool lease's sql.withTransaction)", () => {
  it.scoped("take the write lock at BEGIN and wait for another connection's transaction instead of failing", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool({ maxConnections: 2, retryMaxDelay: "20 millis" })
      yield* pool.use((c) => c.sql`CREATE TABLE t (x INTEGER)`)
      const first = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      // Both read before they write: with a deferred BEGIN the second would meet SQLITE_BUSY at its INSERT, which
      // no retry can save (its snapshot is older than the first's commit).
      const transaction = (x: number, holding: boolean) =>
        pool.use((c) =>
          c.sql.withTransaction(Effect.gen(function*() {
            yield* c.sql`SELECT count(*) FROM t`
            if (holding) {
              yield* Deferred.succeed(first, undefined)
              yield* Deferred.await(release)
            }
            yield* c.sql`INSERT INTO t VALUES (${x})`
          }))
        )
      const holder = yield* Effect.fork(transaction(1, true))
      yield* Deferred.await(first)
      const waiter = yield* Effect.fork(transaction(2, false))
      // The second waits on the write lock (BEGIN IMMEDIATE, retried on the backoff) while the first holds it.
      for (let step = 0; step < 10; step++) {
        yield* TestClock.adjust("10 millis")
        yield* settle()
      }
      expect(yield* Fiber.poll(waiter)).toMatchObject({ _tag: "None" })
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      expect(yield* onTestClock(Fiber.join(waiter))).toMatchObject({ _tag: "Success" })
      expect(yield* pool.use((c) => c.sql<{ x: number }>`SELECT x FROM t ORDER BY x`)).toEqual([{ x: 1 }, { x: 2 }])
    }))

  it.scoped("roll back whole when the body fails, and the connection goes back to the pool usable", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool({ maxConnections: 1 })
      yield* pool.use((c) => c.sql`CREATE TABLE t (x INTEGER)`)
      const exit = yield* Effect.exit(
        pool.use((c) =>
          c.sql.withTransaction(
            Effect.zipRight(c.sql`INSERT INTO t VALUES (1)`, Effect.fail("the body failed" as const))
          )
        )
      )
      expect(exit).toMatchObject({ _tag: "Failure" })
      expect(yield* pool.use((c) => c.sql<{ n: number }>`SELECT count(*) AS n FROM t`)).toEqual([{ n: 0 }])
      // No transaction left open on the connection: a new one begins.
      yield* pool.use((c) => c.sql.withTransaction(c.sql`INSERT INTO t VALUES (2)`))
      expect(yield* pool.stats).toMatchObject({ created: 1, invalidated: 0 })
    }))
})
