import { assert, describe, it } from "@effect/vitest"
import { FaultInjector, FaultPlan } from "@sqlsim/simulator"
import { ConnectionPool, Connector, type PoolConfig } from "@sqlsim/sqlite-pool"
import { Duration, Effect, Exit, Fiber, Option } from "effect"
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

  // The pool validates every idle connection it hands out: half of them dying is enough to see both outcomes in 20
  // checkouts.
  it.scoped("a connection that died while idle has its handle really closed, and the pool replaces it", () =>
    Effect.gen(function*() {
      const filename = yield* tempDatabase
      const injector = yield* FaultInjector.make({ ...FaultPlan.none, dieIdle: 0.5 }, { seed: 1 })
      const pool = yield* poolWith(injector, { filename, maxConnections: 1 })
      const first = yield* pool.use((connection) => Effect.as(connection.sql`SELECT 1`, connection))
      yield* injector.arm
      for (let use = 0; use < 20; use++) yield* pool.use((connection) => connection.sql`SELECT 1`)
      const counts = yield* injector.counts
      const stats = yield* pool.stats
      assert.isAtLeast(counts.dieIdle, 1)
      assert.strictEqual(counts.pingFail, 0)
      // One validation per checkout of an idle connection; a replacement opened for the checkout was verified by the
      // connector as it opened, and is not probed again.
      assert.strictEqual(counts.validations, 20)
      // Every dead connection was replaced, and no live one was.
      assert.strictEqual(stats.invalidated, counts.dieIdle)
      assert.strictEqual(stats.created, 1 + counts.dieIdle)
      // The first death hit the only connection there was: its handle is closed for real, SQLite refuses it.
      assert.isTrue(Exit.isFailure(yield* Effect.exit(first.sql`SELECT 1`)))
    }))

  it.scoped("a failed health ping makes the pool replace the connection", () =>
    Effect.gen(function*() {
      const filename = yield* tempDatabase
      const injector = yield* FaultInjector.make({ ...FaultPlan.none, pingFail: 0.5 }, { seed: 1 })
      const pool = yield* poolWith(injector, { filename, maxConnections: 1 })
      yield* injector.arm
      for (let use = 0; use < 20; use++) yield* pool.use((connection) => connection.sql`SELECT 1`)
      const counts = yield* injector.counts
      const stats = yield* pool.stats
      assert.isAtLeast(counts.pingFail, 1)
      assert.strictEqual(counts.dieIdle, 0)
      assert.strictEqual(stats.invalidated, counts.pingFail)
      assert.strictEqual(stats.created, 1 + counts.pingFail)
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
        { ...FaultPlan.none, openPermanent: 1, dieIdle: 1 },
        { seed: 1 }
      )
      const pool = yield* poolWith(injector, { filename, maxConnections: 1 })
      yield* pool.use((connection) => connection.sql`SELECT 1`)
      yield* pool.use((connection) => connection.sql`SELECT 1`)
      assert.strictEqual((yield* pool.stats).created, 1)
      assert.deepStrictEqual(yield* injector.events, [])
      assert.strictEqual((yield* injector.counts).connectAttempts, 0)
    }))

  // The n-th connect attempt and the n-th validation get the same decision in every run with the same seed.
  const faultSequence = (seed: number, filename: string) =>
    Effect.gen(function*() {
      const injector = yield* FaultInjector.make(
        { ...FaultPlan.none, openTransient: 0.3, openPermanent: 0.1, dieIdle: 0.2, pingFail: 0.2 },
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
          }).pipe(Effect.flatMap((connection) => Effect.either(connection.validate)), Effect.either)
        )
      }
      return (yield* injector.events).map((event) => `${event.kind}#${event.index}`)
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
      for (const kind of ["open-transient", "open-permanent", "die-idle", "ping-fail"]) {
        assert.isTrue(first.some((event) => event.startsWith(kind)), kind)
      }
    }))
})
