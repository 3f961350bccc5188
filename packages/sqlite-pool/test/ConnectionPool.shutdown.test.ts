import { describe, expect, it } from "@effect/vitest"
import { ConnectionPool, Connector, type PoolConfig, PoolError } from "@sqlsim/sqlite-pool"
import * as FaultConnector from "@sqlsim/test-kit/FaultConnector"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as path from "node:path"
import { advanceUntil, invariantsHold, tempDir, waitUntil } from "./utils.js"

const isDone = <A, E>(fiber: Fiber.Fiber<A, E>) => Effect.map(Fiber.poll(fiber), Option.isSome)

/** A pool in a Scope of its own, so that a test can close it while leases and waiters are still around. */
const closablePool = (input: PoolConfig.Input = {}, redirect?: (attempt: number) => FaultConnector.Fault | undefined) =>
  Effect.gen(function*() {
    const directory = yield* tempDir
    const connector = yield* FaultConnector.make(directory, redirect)
    const poolScope = yield* Scope.make()
    const pool = yield* ConnectionPool.make({ filename: path.join(directory, "test.db"), ...input }).pipe(
      Effect.provideService(Connector.Connector, connector.service),
      Scope.extend(poolScope)
    )
    return { pool, connector, directory, close: Scope.close(poolScope, Exit.void) }
  })

describe("ConnectionPool: shutdown", () => {
  it.scoped("waiters fail with PoolClosedError at once; leases keep working until they end; then every handle is closed", () =>
    Effect.gen(function*() {
      const { close, connector, pool } = yield* closablePool({ maxConnections: 2 })
      const leaseScope = yield* Scope.make()
      const [first, second] = yield* Effect.all([pool.acquire, pool.acquire]).pipe(Scope.extend(leaseScope))
      const waiter = yield* Effect.fork(Effect.flip(pool.use((c) => Effect.succeed(c.id))))
      yield* waitUntil(Effect.map(pool.stats, (s) => s.waiting === 1), "a fiber waits")

      const closing = yield* Effect.fork(close)
      // The clock does not move: the waiter is failed by the closing itself, not by a timeout.
      yield* waitUntil(isDone(waiter), "the waiter is failed")
      const refused = yield* Fiber.join(waiter)
      expect(refused).toBeInstanceOf(PoolError.PoolClosedError)
      expect(refused._tag).toBe("PoolClosedError")

      const late = yield* Effect.flip(Effect.scoped(pool.acquire))
      expect(late._tag).toBe("PoolClosedError")
      expect(late.message).toMatch(/closed/)
      expect((yield* Effect.flip(pool.healthCheck))._tag).toBe("PoolClosedError")

      // Leases out keep working while the pool waits for them.
      expect(yield* first.sql`SELECT 1 AS one`).toEqual([{ one: 1 }])
      expect(yield* second.sql`SELECT 2 AS two`).toEqual([{ two: 2 }])
      expect(yield* Fiber.poll(closing)).toEqual(Option.none())
      expect(yield* pool.stats).toMatchObject({ open: 2, inUse: 2, waiting: 0 })

      yield* Scope.close(leaseScope, Exit.void)
      yield* Fiber.join(closing)
      const stats = yield* pool.stats
      expect(stats.closed).toBe(stats.created)
      expect(stats).toMatchObject({ open: 0, idle: 0, inUse: 0, acquired: 2, released: 2 })
      expect(connector.openHandles()).toBe(0)
    }))

  it.scoped("a lease that outlives shutdownTimeout: closing ends after the timeout and closes the handle under it", () =>
    Effect.gen(function*() {
      const { close, connector, pool } = yield* closablePool({ shutdownTimeout: "2 seconds" })
      const leaseScope = yield* Scope.make()
      const lease = yield* Scope.extend(pool.acquire, leaseScope)
      const closing = yield* Effect.fork(close)
      yield* waitUntil(Effect.map(pool.stats, (s) => s.waiting === 0), "closing has started")
      yield* TestClock.adjust("1999 millis")
      expect(yield* Fiber.poll(closing)).toEqual(Option.none())
      yield* advanceUntil(isDone(closing), { step: "1 millis", limit: "1 second", description: "closing ends" })
      expect(connector.openHandles()).toBe(0)
      const afterClose = yield* Effect.exit(lease.sql`SELECT 1`)
      expect(Exit.isFailure(afterClose)).toBe(true)
      const stats = yield* pool.stats
      expect(invariantsHold(stats)).toBe(true)
      expect(stats).toMatchObject({ open: 0, inUse: 0, idle: 0, closed: 1, acquired: 1, released: 1 })
      // Ending the lease later changes nothing and fails nothing.
      yield* Scope.close(leaseScope, Exit.void)
      expect(yield* pool.stats).toEqual(stats)
    }))

  it.scoped("with only idle connections, closing is immediate and closes every handle", () =>
    Effect.gen(function*() {
      const { close, connector, pool } = yield* closablePool({ maxConnections: 3 })
      yield* Effect.scoped(Effect.all([pool.acquire, pool.acquire, pool.acquire]))
      expect(connector.openHandles()).toBe(3)
      const closing = yield* Effect.fork(close)
      yield* waitUntil(isDone(closing), "closing ends without the clock moving")
      expect(connector.openHandles()).toBe(0)
      expect(yield* pool.stats).toMatchObject({ created: 3, closed: 3, open: 0, invalidated: 0 })
    }))

  it.scoped("an acquire waiting for a connect in progress ends at once, and the connect is not retried any more", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const { close, connector, pool } = yield* closablePool({
        filename: path.join(directory, "missing", "app.db"),
        retries: 10,
        retryBaseDelay: "100 millis"
      })
      const acquiring = yield* Effect.fork(Effect.scoped(pool.acquire))
      yield* waitUntil(Effect.sync(() => connector.attemptCount() === 1), "the first connect attempt failed")
      const closing = yield* Effect.fork(close)
      yield* waitUntil(isDone(acquiring), "the acquire ends without the clock moving")
      const exit = yield* Fiber.await(acquiring)
      // PoolClosedError or an interruption; never a connection.
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) {
        const failure = Cause.failureOption(exit.cause)
        expect(Option.isNone(failure) ? Cause.isInterrupted(exit.cause) : failure.value._tag === "PoolClosedError")
          .toBe(true)
      }
      yield* waitUntil(isDone(closing), "closing ends")
      yield* TestClock.adjust("1 minute")
      expect(connector.attemptCount()).toBe(1)
      expect((yield* pool.stats).open).toBe(0)
    }))

  it.scoped("closing stops a replacement connect that is still retrying, without waiting for its retries", () =>
    Effect.gen(function*() {
      let unavailable = false
      const { close, connector, pool } = yield* closablePool(
        { minConnections: 1, retries: 10, retryBaseDelay: "100 millis" },
        () => unavailable ? "missingDirectory" : undefined
      )
      unavailable = true
      yield* connector.closeHandle(1)
      // The acquire finds the dead connection and retires it: the top-up to minConnections starts, and the waiting
      // acquire counts on it (no second connect); it fails and waits to retry.
      const acquiring = yield* Effect.fork(Effect.scoped(pool.acquire))
      yield* waitUntil(Effect.sync(() => connector.attemptCount() === 2), "the replacement connect failed once")
      const closing = yield* Effect.fork(close)
      yield* waitUntil(isDone(closing), "closing ends without the clock moving")
      yield* waitUntil(isDone(acquiring), "the acquire ends")
      yield* TestClock.adjust("1 minute")
      expect(connector.attemptCount()).toBe(2)
      expect((yield* pool.stats).open).toBe(0)
    }))

  it.scoped("closing the layer's scope closes the pool", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const connector = yield* FaultConnector.make(directory)
      const layerScope = yield* Scope.make()
      const context = yield* Layer.build(
        ConnectionPool.layer({ filename: path.join(directory, "layer.db"), minConnections: 2 })
      )
        .pipe(Effect.provideService(Connector.Connector, connector.service), Scope.extend(layerScope))
      const pool = Context.get(context, ConnectionPool.ConnectionPool)
      expect(connector.openHandles()).toBe(2)
      yield* Scope.close(layerScope, Exit.void)
      expect(connector.openHandles()).toBe(0)
      expect(yield* pool.stats).toMatchObject({ created: 2, closed: 2, open: 0 })
    }))
})
