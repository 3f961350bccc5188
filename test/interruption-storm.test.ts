/**
 * Interruption storm: thousands of fibers acquire from one small pool while their acquires time out, their holders are
 * interrupted, connections are invalidated and connects fail now and then. Afterwards nothing may be left behind:
 * waiting == 0, inUse == 0, every counter consistent, every handle accounted for, and a fresh acquire succeeds at
 * once (without the clock moving). Seeds are printed; SQLSIM_SEED=<seed> replays a run.
 */
import { describe, expect, it } from "@effect/vitest"
import { VirtualClock } from "@sqlsim/simulator"
import { ConnectionPool, Connector } from "@sqlsim/sqlite-pool"
import * as FaultConnector from "@sqlsim/test-kit/FaultConnector"
import { tempDir } from "@sqlsim/test-kit/TempDir"
import { settle, waitUntil, yieldEventLoop } from "@sqlsim/test-kit/Wait"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as path from "node:path"
import { summary, violations } from "./support/invariants.js"
import { seededRandom, seedFromEnvironment } from "./support/seed.js"
import { LeaseGuard, Outcomes } from "./support/storm.js"

const MAX_CONNECTIONS = 4

/** Builds a pool on a fresh file with the fault connector in front of the live one. */
const makePool = (input: { readonly acquireTimeout: number; readonly retries: number }) =>
  Effect.gen(function*() {
    const directory = yield* tempDir
    const connector = yield* FaultConnector.make(directory)
    const poolScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const pool = yield* ConnectionPool.make({
      filename: path.join(directory, "storm.db"),
      maxConnections: MAX_CONNECTIONS,
      acquireTimeout: input.acquireTimeout,
      retries: input.retries,
      retryBaseDelay: "10 millis",
      shutdownTimeout: 0
    }).pipe(Scope.extend(poolScope), Effect.provideService(Connector.Connector, connector.service))
    return { pool, connector }
  })

/** Checks the invariants and that no connection is leased twice; fails the test with the numbers if not. */
const checkInvariants = (pool: ConnectionPool.Service, guard: LeaseGuard, when: string) =>
  Effect.gen(function*() {
    const stats = yield* pool.stats
    const problems = [...violations(stats, MAX_CONNECTIONS)]
    if (guard.doubleLeases.length > 0) problems.push(`connections leased twice: ${guard.doubleLeases.join(", ")}`)
    if (stats.inUse < guard.held) problems.push(`inUse (${stats.inUse}) < leases being run (${guard.held})`)
    if (problems.length > 0) return yield* Effect.dieMessage(`${when}: ${problems.join("; ")} (${summary(stats)})`)
  })

/** What must hold once the storm is over, then a fresh acquire that must succeed without the clock moving. */
const checkAftermath = (pool: ConnectionPool.Service, connector: FaultConnector.FaultConnector, guard: LeaseGuard) =>
  Effect.gen(function*() {
    yield* checkInvariants(pool, guard, "after the storm")
    const stats = yield* pool.stats
    expect(stats.waiting).toBe(0)
    expect(stats.inUse).toBe(0)
    expect(stats.acquired).toBe(stats.released)
    expect(connector.openHandles()).toBe(stats.open)
    connector.faultFor = undefined
    const fresh = yield* Effect.fork(pool.use((connection) => connection.sql<{ one: number }>`SELECT 1 AS one`))
    yield* waitUntil(Effect.sync(() => fresh.unsafePoll() !== null), "a fresh acquire after the storm completes")
    expect(yield* Fiber.join(fresh)).toEqual([{ one: 1 }])
    return stats
  })

describe("interruption storm", () => {
  it.scoped("3000 fibers with random timeouts, interrupts, invalidations and connect faults leave nothing behind", () => {
    // Thousands of sleepers: the simulator's virtual clock instead of TestClock, which needs ~3 ms of
    // wall-clock time per wake-up. Time still moves only when the test moves it.
    const clock = new VirtualClock.VirtualClock()
    return Effect.gen(function*() {
      const seed = seedFromEnvironment()
      const random = seededRandom(seed)
      const { connector, pool } = yield* makePool({ acquireTimeout: 50, retries: 2 })
      // One connect attempt in five fails (a directory that does not exist: transient, so retried after 10, 20 ms).
      connector.faultFor = () => random.chance(0.2) ? "missingDirectory" : undefined
      const guard = new LeaseGuard()
      const outcomes = new Outcomes(
        new Set(["AcquireTimeoutError", "ConnectError", "TimeoutException", "SqlError", "Failure inside the lease"])
      )
      const fibers = 3000
      let invalidations = 0
      let interrupts = 0

      const operation = (index: number) => {
        const hold = Effect.sleep(random.int(20))
        const kind = random.int(100)
        if (kind < 35) {
          // a caller with its own deadline around the whole use
          return Effect.timeout(
            pool.use((connection) => guard.guard(connection, Effect.zipRight(connection.sql`SELECT 1`, hold))),
            random.int(100)
          )
        }
        if (kind < 70) {
          // a holder interrupted by someone else at a random moment (while waiting, connecting or holding)
          return Effect.gen(function*() {
            const fiber = yield* Effect.fork(
              pool.use((connection) => guard.guard(connection, Effect.zipRight(connection.sql`SELECT 1`, hold)))
            )
            yield* Effect.fork(Effect.zipRight(Effect.sleep(random.int(100)), Fiber.interrupt(fiber)))
            interrupts++
            return yield* Fiber.join(fiber)
          })
        }
        if (kind < 85) {
          // a lease whose connection is thrown away
          return Effect.scoped(Effect.gen(function*() {
            const connection = yield* pool.acquire
            yield* guard.guard(connection, Effect.zipRight(hold, pool.invalidate(connection)))
            invalidations++
          }))
        }
        // a lease that ends in failure: a SQL error (the caller's; the connection stays) or a failure of its own
        return pool.use((connection) => {
          const failing: Effect.Effect<unknown, unknown> = index % 2 === 0
            ? Effect.zipRight(hold, connection.sql`SELEC broken`)
            : Effect.zipRight(hold, Effect.fail({ _tag: "Failure inside the lease" as const }))
          return guard.guard(connection, failing)
        })
      }

      // Fibers arrive in waves of 10 every 5 ms of (test) time; after every step the invariants must hold.
      const running: Array<Fiber.RuntimeFiber<unknown, unknown>> = []
      let steps = 0
      while (running.length < fibers || running.some((fiber) => fiber.unsafePoll() === null)) {
        if (++steps > 20_000) return yield* Effect.dieMessage("the storm never ended")
        for (let wave = 0; wave < 10 && running.length < fibers; wave++) {
          const index = running.length
          running.push(
            yield* Effect.fork(Effect.onExit(operation(index), (exit) => Effect.sync(() => outcomes.record(exit))))
          )
        }
        yield* clock.adjust(5)
        yield* yieldEventLoop
        yield* checkInvariants(pool, guard, `at ${steps * 5} ms`)
      }
      // Background connects still retrying on behalf of timed-out waiters get their time too.
      yield* clock.adjust(1000)
      yield* settle()
      const stats = yield* checkAftermath(pool, connector, guard)
      expect(outcomes.unexpected).toEqual([])
      expect(outcomes.total).toBe(fibers)
      expect(guard.maxHeldAtOnce).toBeLessThanOrEqual(MAX_CONNECTIONS)
      console.log(
        `interruption storm (seed ${seed}): ${fibers} fibers, ${interrupts} interrupters, ${invalidations} ` +
          `invalidations, ${connector.failedCount()} connect faults injected of ${connector.attemptCount()} attempts; ` +
          `outcomes ${outcomes}; ${summary(stats)}`
      )
    }).pipe(Effect.withClock(clock))
  })

  it.scoped("interrupts landing at every point of an acquire (no clock: random numbers of yields) leave nothing behind", () =>
    Effect.gen(function*() {
      const seed = seedFromEnvironment()
      const random = seededRandom(seed)
      const { connector, pool } = yield* makePool({ acquireTimeout: 60_000, retries: 0 })
      // Permanent connect failures now and then: they fail at once, so no time is needed.
      connector.faultFor = () => random.chance(0.1) ? "directory" : undefined
      const guard = new LeaseGuard()
      const outcomes = new Outcomes(new Set(["ConnectError"]))
      const fibers = 3000
      const yields = (n: number) => Effect.repeatN(Effect.yieldNow(), n)

      const running = yield* Effect.forEach(
        Array.from({ length: fibers }, (_, index) => index),
        () =>
          Effect.gen(function*() {
            const invalidate = random.chance(0.1)
            const fiber = yield* Effect.fork(
              pool.use((connection) =>
                guard.guard(
                  connection,
                  Effect.zipRight(
                    connection.sql`SELECT 1`,
                    Effect.zipRight(yields(random.int(5)), invalidate ? pool.invalidate(connection) : Effect.void)
                  )
                )
              )
            )
            if (random.chance(0.6)) {
              yield* yields(random.int(30))
              yield* Fiber.interrupt(fiber)
            }
            return yield* Fiber.join(fiber)
          }).pipe(Effect.onExit((exit) => Effect.sync(() => outcomes.record(exit))), Effect.fork),
        { concurrency: "unbounded" }
      )
      let turns = 0
      while (running.some((fiber) => fiber.unsafePoll() === null)) {
        if (++turns > 100_000) return yield* Effect.dieMessage("the storm never ended")
        yield* yieldEventLoop
        if (turns % 10 === 0) yield* checkInvariants(pool, guard, `after ${turns} turns`)
      }
      yield* settle()
      const stats = yield* checkAftermath(pool, connector, guard)
      expect(outcomes.unexpected).toEqual([])
      expect(outcomes.total).toBe(fibers)
      expect(outcomes.counts.get("interrupted") ?? 0).toBeGreaterThan(0)
      console.log(
        `interruption storm without a clock (seed ${seed}): ${fibers} fibers, ${connector.failedCount()} connect ` +
          `faults injected; outcomes ${outcomes}; ${summary(stats)}`
      )
    }))
})
