/**
 * Retry storm guard: a database that cannot be opened must never make the pool loop. Permanent failures (a directory,
 * a file that is not a database) are tried once per acquire; transient ones (a directory that does not exist yet) at
 * most retries + 1 times per connect, spaced by the exponential schedule; no attempt is made while the clock stands
 * still (so the CPU idles while the pool waits); and once the database becomes available the same pool recovers by
 * itself. Time is TestClock time throughout.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConnectionPool, Connector, PoolConfig } from "@sqlsim/sqlite-pool"
import * as FaultConnector from "@sqlsim/test-kit/FaultConnector"
import { tempDir } from "@sqlsim/test-kit/TempDir"
import { settle, waitUntil } from "@sqlsim/test-kit/Wait"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { summary, violations } from "./support/invariants.js"

/** A pool on `filename` whose connects are counted by a fault connector (which injects nothing here). */
const countedPool = (directory: string, input: PoolConfig.Input) =>
  Effect.gen(function*() {
    const connector = yield* FaultConnector.make(directory)
    const pool = yield* ConnectionPool.make(input).pipe(Effect.provideService(Connector.Connector, connector.service))
    return { connector, pool }
  })

const selectOne = (pool: ConnectionPool.Service) =>
  pool.use((connection) => connection.sql<{ one: number }>`SELECT 1 AS one`)

/** Proves that nothing happens while the clock stands still: many turns of the event loop, not one more attempt. */
const idleWhileTimeStandsStill = (connector: FaultConnector.FaultConnector) =>
  Effect.gen(function*() {
    const before = connector.attemptCount()
    yield* settle(300)
    expect(connector.attemptCount()).toBe(before)
  })

describe("retry storm guard", () => {
  it.scoped("a permanent failure (the path is a directory) is tried once per acquire, then the pool recovers", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const filename = path.join(directory, "app.db")
      fs.mkdirSync(filename)
      const { connector, pool } = yield* countedPool(directory, { filename, retries: 5 })

      for (let acquire = 1; acquire <= 20; acquire++) {
        const error = yield* Effect.flip(selectOne(pool))
        expect(error._tag).toBe("ConnectError")
        if (error._tag !== "ConnectError") continue
        expect(error.transient).toBe(false)
        expect(error.attempts).toBe(1)
        expect(error.code).toBe("SQLITE_CANTOPEN")
      }
      expect(connector.attemptCount()).toBe(20)
      yield* idleWhileTimeStandsStill(connector)
      expect((yield* pool.stats).retries).toBe(0)

      // The operator fixes it: the same pool opens the database on the next acquire.
      fs.rmdirSync(filename)
      expect(yield* selectOne(pool)).toEqual([{ one: 1 }])
      const stats = yield* pool.stats
      expect(stats.created).toBe(1)
      expect(stats.connectFailures).toBe(20)
      expect(violations(stats, 5)).toEqual([])
      console.log(`retry storm (permanent): 20 acquires, ${connector.attemptCount()} attempts; ${summary(stats)}`)
    }))

  it.scoped("a file that is not a database is permanent too, until it is replaced by a database", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const filename = path.join(directory, "app.db")
      fs.writeFileSync(filename, crypto.randomBytes(16384))
      const { connector, pool } = yield* countedPool(directory, { filename, retries: 5 })
      const errors = yield* Effect.forEach(Array.from({ length: 10 }), () => Effect.flip(selectOne(pool)), {
        concurrency: "unbounded"
      })
      for (const error of errors) {
        expect(error._tag === "ConnectError" && !error.transient && error.code === "SQLITE_NOTADB").toBe(true)
      }
      expect(connector.attemptCount()).toBe(10)
      yield* idleWhileTimeStandsStill(connector)
      fs.rmSync(filename)
      expect(yield* selectOne(pool)).toEqual([{ one: 1 }])
    }))

  it.scoped("a transient failure is retried on the exponential schedule only, and never while the clock stands still", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const filename = path.join(directory, "not-yet", "app.db")
      const { connector, pool } = yield* countedPool(directory, { filename, retries: 3 })

      const acquire = yield* Effect.fork(Effect.either(selectOne(pool)))
      // Attempt 1 at once; then nothing at all until the clock reaches the next delay.
      yield* waitUntil(Effect.sync(() => connector.attemptCount() === 1), "the first attempt")
      for (const [delay, attempts] of [[10, 2], [20, 3], [40, 4]] as const) {
        yield* idleWhileTimeStandsStill(connector)
        yield* TestClock.adjust(delay - 1)
        yield* idleWhileTimeStandsStill(connector)
        expect(connector.attemptCount()).toBe(attempts - 1)
        yield* TestClock.adjust(1)
        yield* waitUntil(Effect.sync(() => connector.attemptCount() === attempts), `attempt ${attempts}`)
      }
      const result = yield* Fiber.join(acquire)
      expect(Either.isLeft(result)).toBe(true)
      if (Either.isLeft(result) && result.left._tag === "ConnectError") {
        expect(result.left.attempts).toBe(4)
        expect(result.left.transient).toBe(true)
        expect(result.left.message).toContain("directory does not exist")
      } else {
        expect.fail(`expected a ConnectError, got ${JSON.stringify(result)}`)
      }
      expect(connector.attempts.map((attempt) => attempt.at)).toEqual([0, 10, 30, 70])
      // The schedule is spent: an hour of clock time brings no further attempt.
      yield* TestClock.adjust("1 hours")
      yield* settle(50)
      expect(connector.attemptCount()).toBe(4)

      // The directory appears: the same pool recovers on the next acquire, without any help.
      fs.mkdirSync(path.dirname(filename))
      expect(yield* selectOne(pool)).toEqual([{ one: 1 }])
      const stats = yield* pool.stats
      expect(stats).toMatchObject({ created: 1, connectFailures: 4, retries: 3, open: 1 })
    }))

  it.scoped("many acquirers against a failing database: attempts bounded by acquires x (retries + 1), never a burst", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const filename = path.join(directory, "not-yet", "app.db")
      const maxConnections = 5
      const retries = 3
      const { connector, pool } = yield* countedPool(directory, { filename, retries, maxConnections })
      const acquirers = 50
      const fibers = yield* Effect.forEach(
        Array.from({ length: acquirers }),
        () => Effect.fork(Effect.either(selectOne(pool))),
        { concurrency: "unbounded" }
      )
      let moved = 0
      while (fibers.some((fiber) => fiber.unsafePoll() === null)) {
        yield* TestClock.adjust(5)
        yield* settle(5)
        moved += 5
        if (moved > 60_000) return yield* Effect.dieMessage("the acquirers never finished")
        expect(violations(yield* pool.stats, maxConnections)).toEqual([])
      }
      const results = yield* Effect.forEach(fibers, Fiber.join)
      expect(results.every((result) => Either.isLeft(result) && result.left._tag === "ConnectError")).toBe(true)
      expect(connector.attemptCount()).toBeLessThanOrEqual(acquirers * (retries + 1))
      // No burst: at one instant of the clock at most one cohort of maxConnections connects makes its last attempt
      // and the next cohort (the waiters that got their slots) its first.
      const perInstant = new Map<number, number>()
      for (const attempt of connector.attempts) perInstant.set(attempt.at, (perInstant.get(attempt.at) ?? 0) + 1)
      expect(Math.max(...perInstant.values())).toBeLessThanOrEqual(2 * maxConnections)
      yield* idleWhileTimeStandsStill(connector)

      fs.mkdirSync(path.dirname(filename))
      expect(yield* selectOne(pool)).toEqual([{ one: 1 }])
      console.log(
        `retry storm (transient): ${acquirers} acquirers, ${connector.failedCount()} failed attempts over ${moved} ms ` +
          `of clock time (bound ${acquirers * (retries + 1)}); ${summary(yield* pool.stats)}`
      )
    }))

  it.scoped("an acquire that times out first carries the last connect error; the background connect stays bounded", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const filename = path.join(directory, "not-yet", "app.db")
      const retries = 10
      const { connector, pool } = yield* countedPool(directory, {
        filename,
        retries,
        retryBaseDelay: "10 millis",
        retryMaxDelay: "100 millis",
        acquireTimeout: "50 millis"
      })
      const acquire = yield* Effect.fork(Effect.either(selectOne(pool)))
      yield* TestClock.adjust(50)
      const result = yield* Fiber.join(acquire)
      if (Either.isRight(result) || result.left._tag !== "AcquireTimeoutError") {
        return expect.fail(`expected an AcquireTimeoutError, got ${JSON.stringify(result)}`)
      }
      expect(result.left.lastError?._tag).toBe("ConnectError")
      expect((yield* pool.stats).timeouts).toBe(1)
      // Nobody waits any more; whatever connect was under way may finish its schedule, and then stops.
      yield* TestClock.adjust("1 hours")
      yield* settle(50)
      expect(connector.attemptCount()).toBeLessThanOrEqual(retries + 1)
      const attemptsAfterAnHour = connector.attemptCount()
      yield* TestClock.adjust("1 hours")
      yield* settle(50)
      expect(connector.attemptCount()).toBe(attemptsAfterAnHour)

      fs.mkdirSync(path.dirname(filename))
      const recovered = yield* Effect.fork(selectOne(pool))
      yield* TestClock.adjust(50)
      expect(yield* Fiber.join(recovered)).toEqual([{ one: 1 }])
      const stats = yield* pool.stats
      expect(violations(stats, 5)).toEqual([])
      expect(stats.waiting).toBe(0)
    }))

  it.scoped("recovery in the middle of a retry schedule: the next attempt succeeds and the acquire is served", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const filename = path.join(directory, "not-yet", "app.db")
      const { connector, pool } = yield* countedPool(directory, { filename, retries: 3 })
      const acquire = yield* Effect.fork(selectOne(pool))
      yield* waitUntil(Effect.sync(() => connector.attemptCount() === 1), "the first attempt")
      fs.mkdirSync(path.dirname(filename))
      yield* TestClock.adjust(10)
      expect(yield* Fiber.join(acquire)).toEqual([{ one: 1 }])
      expect(yield* pool.stats).toMatchObject({ created: 1, connectFailures: 1, retries: 1, acquired: 1 })
    }))

  it.scoped("minConnections against a failing database fails the construction after a bounded number of attempts", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const filename = path.join(directory, "not-yet", "app.db")
      const connector = yield* FaultConnector.make(directory)
      const building = yield* Effect.fork(
        Effect.scoped(ConnectionPool.make({ filename, minConnections: 3, maxConnections: 3, retries: 2 })).pipe(
          Effect.provideService(Connector.Connector, connector.service),
          Effect.flip
        )
      )
      yield* TestClock.adjust("1 seconds")
      const error = yield* Fiber.join(building)
      expect(error._tag).toBe("ConnectError")
      expect(connector.attemptCount()).toBeLessThanOrEqual(3 * 3)
      yield* TestClock.adjust("1 hours")
      yield* settle(50)
      expect(connector.attemptCount()).toBeLessThanOrEqual(3 * 3)
      expect(connector.openHandles()).toBe(0)
    }))

  it.scoped("a zero retry delay is refused, or still never retries without time passing", () =>
    Effect.gen(function*() {
      // retries with no delay at all would be a hot loop: 1000 attempts at once, the event loop starved meanwhile.
      const input = { retries: 1000, retryBaseDelay: 0, retryMaxDelay: 0 } as const
      const config = yield* Effect.either(PoolConfig.make(input))
      if (Either.isLeft(config)) {
        expect(config.left.field).toBe("retryBaseDelay")
        return
      }
      const directory = yield* tempDir
      const { connector, pool } = yield* countedPool(directory, {
        ...input,
        filename: path.join(directory, "not-yet", "app.db")
      })
      const acquire = yield* Effect.fork(Effect.either(selectOne(pool)))
      yield* waitUntil(Effect.sync(() => connector.attemptCount() >= 1), "the first attempt")
      yield* settle(50)
      expect(connector.attemptCount(), "connect attempts made while the clock stood still").toBe(1)
      yield* Fiber.interrupt(acquire)
    }))
})
