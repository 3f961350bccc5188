import { describe, expect, it } from "@effect/vitest"
import { ConnectionPool, PoolError } from "@sqlsim/sqlite-pool"
import Database from "better-sqlite3"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as TestClock from "effect/TestClock"
import * as fs from "node:fs"
import * as path from "node:path"
import { advanceUntil, makeTestPool, randomBytes, tempDir, waitUntil } from "./utils.js"

const isDone = <A, E>(fiber: Fiber.Fiber<A, E>) => Effect.map(Fiber.poll(fiber), Option.isSome)

/**
 * Moves the TestClock in steps (1 ms by default) until the fiber ends, then returns its exit. Sleeps fire at their
 * exact instants whatever the step; small steps only make sure background fibers have registered their next sleep.
 */
const runOnClock = <A, E>(fiber: Fiber.Fiber<A, E>, step: Duration.DurationInput = "1 millis") =>
  Effect.zipRight(
    advanceUntil(isDone(fiber), { step, limit: "10 seconds", description: "the fiber ends" }),
    Fiber.await(fiber)
  )

const gaps = (times: ReadonlyArray<number>) => times.slice(1).map((time, index) => time - times[index]!)

describe("ConnectionPool: connect retries", () => {
  it.scoped("a transient failure is retried after exactly 10, 20 and 40 ms, then the acquire fails with ConnectError", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const filename = path.join(directory, "missing", "app.db")
      const { connector, pool } = yield* makeTestPool({ filename })
      const fiber = yield* Effect.fork(Effect.flip(pool.use((c) => c.sql`SELECT 1`)))
      const exit = yield* runOnClock(fiber)
      expect(exit._tag).toBe("Success")
      const error = yield* Fiber.join(fiber)
      expect(error).toBeInstanceOf(PoolError.ConnectError)
      expect(error).toMatchObject({
        _tag: "ConnectError",
        filename,
        attempts: 4, // retries + 1
        code: "SQLITE_CANTOPEN",
        transient: true,
        elapsedMs: 70
      })
      expect(error.message).toContain("gave up after 4 attempts")
      // The driver's own error is kept as the cause.
      expect(String((error.cause as Error).message)).toMatch(/directory does not exist/)
      expect(connector.attempts.map((open) => open.at)).toEqual([0, 10, 30, 70])
      expect(gaps(connector.attempts.map((open) => open.at))).toEqual([10, 20, 40])
      expect(yield* pool.stats).toMatchObject({
        connectFailures: 4,
        retries: 3,
        created: 0,
        open: 0,
        acquired: 0,
        waiting: 0,
        timeouts: 0
      })
    }))

  it.scoped("with retryJitter each wait stays within +-20 % of 10, 20, 40 ms", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const filename = path.join(directory, "missing", "app.db")
      const { connector, pool } = yield* makeTestPool({ filename, retryJitter: true })
      yield* runOnClock(yield* Effect.fork(Effect.exit(pool.use((c) => c.sql`SELECT 1`))))
      const waits = gaps(connector.attempts.map((open) => open.at))
      expect(waits).toHaveLength(3)
      waits.forEach((wait, retry) => {
        expect(wait).toBeGreaterThanOrEqual(10 * 2 ** retry * 0.8)
        expect(wait).toBeLessThanOrEqual(10 * 2 ** retry * 1.2)
      })
    }))

  it.scoped("with retryJitter the waits really move: the random source at its extremes gives 8, 24 and 36 ms", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const filename = path.join(directory, "missing", "app.db")
      // Connects run on the pool's own fibers, which keep the services the pool was made with.
      const { connector, pool } = yield* makeTestPool({ filename, retryJitter: true }).pipe(
        Effect.withRandom(Random.fixed([0, 1, 0.25]))
      )
      const acquire = Effect.exit(pool.use((c) => c.sql`SELECT 1`))
      yield* runOnClock(yield* Effect.fork(acquire))
      const waits = gaps(connector.attempts.map((open) => open.at))
      expect(waits[0]).toBeCloseTo(8, 6)
      expect(waits[1]).toBeCloseTo(24, 6)
      expect(waits[2]).toBeCloseTo(36, 6)
    }))

  it.scoped("a directory that appears after 30 ms: the connect succeeds on a retry", () =>
    Effect.gen(function*() {
      const directory = path.join(yield* tempDir, "later")
      const filename = path.join(directory, "app.db")
      const { connector, pool } = yield* makeTestPool({ filename })
      const query = yield* Effect.fork(pool.use((c) => Effect.as(c.sql`CREATE TABLE t (x)`, c.id)))
      yield* Effect.fork(Effect.zipRight(Effect.sleep("30 millis"), Effect.sync(() => fs.mkdirSync(directory))))
      const exit = yield* runOnClock(query)
      expect(exit).toMatchObject({ _tag: "Success", value: 1 })
      expect(fs.existsSync(filename)).toBe(true)
      const stats = yield* pool.stats
      expect(stats.retries).toBeGreaterThan(0)
      expect(stats.connectFailures).toBe(stats.retries)
      expect(stats).toMatchObject({ created: 1, open: 1, acquired: 1 })
      const success = connector.attempts.find((open) => open.outcome === "opened")!
      expect(success.at).toBeGreaterThanOrEqual(30)
    }))

  it.scoped("the Nth open failing: a transient failure on the first attempt is absorbed by one retry", () =>
    Effect.gen(function*() {
      const { connector, pool } = yield* makeTestPool({}, (attempt) => attempt === 1 ? "missingDirectory" : undefined)
      const exit = yield* runOnClock(yield* Effect.fork(pool.use((c) => Effect.succeed(c.id))))
      expect(exit).toMatchObject({ _tag: "Success", value: 1 })
      expect(connector.attempts.map((open) => [open.at, open.outcome])).toEqual([[0, "failed"], [10, "opened"]])
      expect(yield* pool.stats).toMatchObject({ connectFailures: 1, retries: 1, created: 1 })
    }))

  it.scoped("a database locked by another connection: SQLITE_BUSY at connect is retried until the lock is gone", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "locked.db")
      const holder = new Database(filename)
      yield* Effect.addFinalizer(() => Effect.sync(() => holder.open && holder.close()))
      holder.exec("PRAGMA journal_mode = DELETE; PRAGMA locking_mode = EXCLUSIVE; CREATE TABLE t (x); BEGIN EXCLUSIVE")
      const { connector, pool } = yield* makeTestPool({ filename })
      const query = yield* Effect.fork(pool.use((c) => c.sql<{ n: number }>`SELECT count(*) AS n FROM t`))
      yield* Effect.fork(Effect.zipRight(
        Effect.sleep("25 millis"),
        Effect.sync(() => {
          holder.exec("COMMIT")
          holder.close()
        })
      ))
      const exit = yield* runOnClock(query)
      expect(exit).toMatchObject({ _tag: "Success", value: [{ n: 0 }] })
      expect(connector.attempts[0]!.code).toMatch(/^SQLITE_BUSY/)
      expect((yield* pool.stats).retries).toBeGreaterThan(0)
    }))
})

describe("ConnectionPool: permanent connect failures are not retried", () => {
  it.scoped("a path that is a directory fails at once with one attempt, without waiting on the clock", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const { connector, pool } = yield* makeTestPool({ filename: directory })
      const fiber = yield* Effect.fork(Effect.flip(pool.use((c) => c.sql`SELECT 1`)))
      // The clock never moves: a retry would leave this fiber waiting and waitUntil would fail.
      yield* waitUntil(isDone(fiber), "the acquire fails without waiting")
      const error = yield* Fiber.join(fiber)
      expect(error).toMatchObject({ _tag: "ConnectError", code: "SQLITE_CANTOPEN", transient: false, attempts: 1 })
      expect(error.message).toContain("not retried")
      expect(connector.attemptCount()).toBe(1)
      expect(yield* pool.stats).toMatchObject({ connectFailures: 1, retries: 0 })
    }))

  it.scoped("a file of random bytes fails at once with SQLITE_NOTADB", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "random.db")
      fs.writeFileSync(filename, randomBytes(8192))
      const { pool } = yield* makeTestPool({ filename })
      const fiber = yield* Effect.fork(Effect.flip(pool.use((c) => c.sql`SELECT 1`)))
      yield* waitUntil(isDone(fiber), "the acquire fails without waiting")
      expect(yield* Fiber.join(fiber)).toMatchObject({ code: "SQLITE_NOTADB", transient: false, attempts: 1 })
      expect(yield* pool.stats).toMatchObject({ connectFailures: 1, retries: 0 })
    }))
})

describe("ConnectionPool: acquireTimeout", () => {
  it.scoped("a connect slower than acquireTimeout fails with AcquireTimeoutError carrying the last ConnectError", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "missing", "app.db")
      const { pool } = yield* makeTestPool({
        filename,
        retries: 10,
        retryBaseDelay: "100 millis",
        acquireTimeout: "250 millis"
      })
      const fiber = yield* Effect.fork(Effect.flip(pool.use((c) => c.sql`SELECT 1`)))
      yield* runOnClock(fiber, "5 millis")
      const error = yield* Fiber.join(fiber)
      expect(error).toBeInstanceOf(PoolError.AcquireTimeoutError)
      if (error._tag !== "AcquireTimeoutError") return
      expect(error.waitedMs).toBe(250)
      expect(error.lastError).toMatchObject({ _tag: "ConnectError", code: "SQLITE_CANTOPEN", transient: true })
      // The snapshot is the pool at the moment of the timeout: attempts at 0 and 100 ms had failed, one waiter.
      expect(error.stats).toMatchObject({ connectFailures: 2, retries: 1, timeouts: 1, waiting: 1, open: 0 })
      expect(error.message).toContain("last connect error")
      expect(yield* pool.stats).toMatchObject({ timeouts: 1, waiting: 0, acquired: 0 })
    }))

  it.scoped("all connections leased for longer than acquireTimeout: AcquireTimeoutError without a connect error", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool({ maxConnections: 1, acquireTimeout: "2 seconds" })
      const waiter = yield* Effect.scoped(Effect.gen(function*() {
        yield* pool.acquire
        const waiter = yield* Effect.fork(Effect.flip(pool.use((c) => Effect.succeed(c.id))))
        yield* waitUntil(Effect.map(pool.stats, (s) => s.waiting === 1), "the second acquire waits")
        yield* runOnClock(waiter, "100 millis")
        return yield* Fiber.join(waiter)
      }))
      expect(waiter).toMatchObject({ _tag: "AcquireTimeoutError", waitedMs: 2000, lastError: undefined })
      if (waiter._tag !== "AcquireTimeoutError") return
      expect(waiter.stats).toMatchObject({ open: 1, inUse: 1, idle: 0, waiting: 1, timeouts: 1 })
      expect(waiter.message).toMatch(/raise acquireTimeout or maxConnections/)
      // The timed-out waiter left no trace: the only connection serves the next acquire at once.
      expect(yield* pool.stats).toMatchObject({ waiting: 0, inUse: 0, timeouts: 1 })
      expect(yield* pool.use((c) => Effect.succeed(c.id))).toBe(1)
    }))

  it.scoped("each waiter times out acquireTimeout after it asked, also after the pool had nobody waiting", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool({ maxConnections: 1, acquireTimeout: "2 seconds" })
      yield* Effect.scoped(Effect.gen(function*() {
        yield* pool.acquire
        const waitFrom = (label: string) =>
          Effect.gen(function*() {
            const waiting = (yield* pool.stats).waiting
            const fiber = yield* Effect.fork(Effect.flip(pool.use(() => Effect.void)))
            yield* waitUntil(Effect.map(pool.stats, (s) => s.waiting === waiting + 1), `${label} waits`)
            return fiber
          })
        const isDone = (fiber: Fiber.RuntimeFiber<unknown, unknown>) => fiber.unsafePoll() !== null
        const first = yield* waitFrom("the first")
        yield* TestClock.adjust("1 second")
        const second = yield* waitFrom("the second")
        yield* TestClock.adjust("1 second")
        yield* waitUntil(Effect.sync(() => isDone(first)), "the first times out at 2 s")
        expect(isDone(second)).toBe(false)
        yield* TestClock.adjust("1 second")
        yield* waitUntil(Effect.sync(() => isDone(second)), "the second times out at 3 s")
        // Nobody waits for a while; a later waiter still gets its deadline.
        yield* TestClock.adjust("10 seconds")
        const third = yield* waitFrom("the third")
        yield* TestClock.adjust("1999 millis")
        expect(isDone(third)).toBe(false)
        yield* TestClock.adjust("1 millis")
        yield* waitUntil(Effect.sync(() => isDone(third)), "the third times out 2 s after it asked")
        for (const fiber of [first, second, third]) {
          expect(yield* Fiber.join(fiber)).toMatchObject({ _tag: "AcquireTimeoutError", waitedMs: 2000 })
        }
      }))
      expect(yield* pool.stats).toMatchObject({ waiting: 0, inUse: 0, timeouts: 3 })
    }))

  it.scoped("an acquire that started after a connect failure ended is not failed by that stale failure", () =>
    Effect.gen(function*() {
      const directory = path.join(yield* tempDir, "later")
      const { pool } = yield* makeTestPool({
        filename: path.join(directory, "app.db"),
        retries: 2,
        retryBaseDelay: "100 millis",
        acquireTimeout: "250 millis"
      })
      // Attempts at 0, 100 and 300 ms; the acquire gives up at 250 ms, the connect fails for good at 300 ms.
      const first = yield* Effect.fork(Effect.flip(pool.use((c) => c.sql`SELECT 1`)))
      yield* runOnClock(first, "5 millis")
      expect((yield* Fiber.join(first))._tag).toBe("AcquireTimeoutError")
      yield* advanceUntil(Effect.map(pool.stats, (s) => s.connectFailures === 3), {
        step: "5 millis",
        limit: "1 second",
        description: "the background connect gives up"
      })
      fs.mkdirSync(directory)
      const second = yield* Effect.fork(pool.use((c) => Effect.succeed(c.id)))
      expect(yield* runOnClock(second, "5 millis")).toMatchObject({ _tag: "Success", value: 1 })
    }))
})

describe("ConnectionPool: minConnections and transient failures", () => {
  it.scoped("construction fails with ConnectError after retries + 1 attempts", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "missing", "app.db")
      const fiber = yield* Effect.fork(Effect.flip(Effect.scoped(ConnectionPool.make({ filename, minConnections: 1 }))))
      yield* runOnClock(fiber)
      expect(yield* Fiber.join(fiber)).toMatchObject({
        _tag: "ConnectError",
        code: "SQLITE_CANTOPEN",
        transient: true,
        attempts: 4
      })
    }))

  it.scoped("construction waits for a directory that appears during the retries", () =>
    Effect.gen(function*() {
      const directory = path.join(yield* tempDir, "later")
      const fiber = yield* Effect.fork(
        ConnectionPool.make({ filename: path.join(directory, "app.db"), minConnections: 2, maxConnections: 2 })
      )
      yield* Effect.fork(Effect.zipRight(Effect.sleep("15 millis"), Effect.sync(() => fs.mkdirSync(directory))))
      yield* runOnClock(fiber)
      const pool = yield* Fiber.join(fiber)
      const stats = yield* pool.stats
      expect(stats).toMatchObject({ created: 2, open: 2, idle: 2 })
      expect(stats.retries).toBeGreaterThan(0)
    }))
})
