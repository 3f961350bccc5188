/**
 * Contention: 16 fibers (or async loops) share 4 connections; each leases, holds its connection across one turn of
 * the event loop (`setImmediate`, the same for every contender), and releases, for a fixed time. What is measured is
 * the acquire wait: from asking for a connection until holding one.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Pool from "effect/Pool"
import type * as Scope from "effect/Scope"
import * as Contenders from "../contenders.js"
import * as Fixtures from "../fixtures.js"
import { batches, maximum, median, percentile, yieldEventLoop, yieldEventLoopPromise } from "../harness.js"
import type { Settings } from "../harness.js"
import { noProbe } from "./acquire.js"

/**
 * @since 0.1.0
 * @category constants
 */
export const WORKERS = 16

/**
 * @since 0.1.0
 * @category constants
 */
export const POOL_SIZE = 4

/**
 * @since 0.1.0
 * @category models
 */
export interface ContentionResult {
  readonly id: string
  readonly name: string
  readonly setup: string
  /** medians over the runs */
  readonly acquiresPerSecond: number
  readonly waitP50Ms: number
  readonly waitP99Ms: number
  readonly waitMaxMs: number
  readonly runs: ReadonlyArray<Run>
}

interface Run {
  readonly acquiresPerSecond: number
  readonly waitP50Ms: number
  readonly waitP99Ms: number
  readonly waitMaxMs: number
}

interface Contender {
  readonly id: string
  readonly name: string
  readonly setup: string
  /** runs the workload until `isRunning()` turns false, pushing each acquire wait (ms) */
  readonly run: (isRunning: () => boolean, waits: Array<number>) => Effect.Effect<void, unknown>
}

/** WORKERS Effect fibers, each leasing through `lease(record)` in a loop. */
const effectWorkers = (
  lease: (record: Effect.Effect<void>) => Effect.Effect<void, unknown>
) =>
(isRunning: () => boolean, waits: Array<number>) =>
  Effect.forEach(
    Array.from({ length: WORKERS }),
    () => {
      let started = 0
      const record = Effect.sync(() => {
        waits.push(performance.now() - started)
      })
      return Effect.whileLoop({
        while: isRunning,
        body: () =>
          Effect.suspend(() => {
            started = performance.now()
            return lease(record)
          }),
        step: () => undefined
      })
    },
    { concurrency: WORKERS, discard: true }
  )

/** WORKERS async loops, each leasing through acquire/release in a loop. */
const promiseWorkers =
  <C>(acquire: () => Promise<C>, release: (c: C) => unknown) => (isRunning: () => boolean, waits: Array<number>) =>
    Effect.promise(() =>
      Promise.all(Array.from({ length: WORKERS }, async () => {
        while (isRunning()) {
          const started = performance.now()
          const connection = await acquire()
          waits.push(performance.now() - started)
          await yieldEventLoopPromise()
          await release(connection)
        }
      }))
    )

const runOnce = (contender: Contender, durationMs: number): Effect.Effect<Run, unknown> =>
  Effect.gen(function*() {
    let running = true
    const waits: Array<number> = []
    const started = performance.now()
    const timer = setTimeout(() => {
      running = false
    }, durationMs)
    // Stopped however the run ends: an interrupted run must not leave the Promise-based workers looping.
    yield* contender.run(() => running, waits).pipe(Effect.ensuring(Effect.sync(() => {
      running = false
      clearTimeout(timer)
    })))
    const elapsedSeconds = (performance.now() - started) / 1000
    return {
      acquiresPerSecond: waits.length / elapsedSeconds,
      waitP50Ms: percentile(waits, 0.5),
      waitP99Ms: percentile(waits, 0.99),
      waitMaxMs: maximum(waits)
    }
  })

/**
 * @since 0.1.0
 * @category suites
 */
export const run = (
  filename: string,
  settings: Settings
): Effect.Effect<Array<ContentionResult>, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const size = POOL_SIZE
    const pool = yield* Contenders.connectionPool({ filename, maxConnections: size, minConnections: size })
    const poolNoProbe = yield* Contenders.connectionPool({
      filename,
      maxConnections: size,
      minConnections: size,
      ...noProbe
    })
    const effectPool = yield* Fixtures.effectPool(filename, size)
    const tarn = yield* Fixtures.tarnPool(filename, size)
    const generic = yield* Fixtures.genericPool(filename, size)
    const setup = `${WORKERS} workers, pool of ${size}`
    const contenders: Array<Contender> = [
      {
        id: "contention.pool",
        name: "ConnectionPool, defaults",
        setup: `${setup}, probe on acquire`,
        run: effectWorkers((record) => pool.use(() => Effect.zipRight(record, yieldEventLoop)))
      },
      {
        id: "contention.pool.noProbe",
        name: "ConnectionPool",
        setup: `${setup}, validationInterval 1 min`,
        run: effectWorkers((record) => poolNoProbe.use(() => Effect.zipRight(record, yieldEventLoop)))
      },
      {
        id: "contention.effectPool",
        name: "Effect Pool (makeWithTTL)",
        setup,
        run: effectWorkers((record) =>
          Effect.scoped(Effect.zipRight(Pool.get(effectPool), Effect.zipRight(record, yieldEventLoop)))
        )
      },
      {
        id: "contention.tarn",
        name: "tarn",
        setup,
        run: promiseWorkers(() => tarn.acquire().promise, (c) => tarn.release(c))
      },
      {
        id: "contention.generic",
        name: "generic-pool",
        setup,
        run: promiseWorkers(() => generic.acquire(), (c) => generic.release(c))
      }
    ]
    // Warm-up: opens every pool's connections and lets the JIT settle.
    for (const contender of contenders) yield* runOnce(contender, Math.min(300, settings.runMs))
    for (const contender of contenders) batches.set(contender.id, Effect.asVoid(runOnce(contender, 500)))
    const runs = contenders.map(() => [] as Array<Run>)
    for (let round = 0; round < settings.runs; round++) {
      for (let k = 0; k < contenders.length; k++) {
        const index = (k + round) % contenders.length
        runs[index]!.push(yield* runOnce(contenders[index]!, settings.runMs))
      }
    }
    return contenders.map((contender, index) => {
      const own = runs[index]!
      return {
        id: contender.id,
        name: contender.name,
        setup: contender.setup,
        acquiresPerSecond: median(own.map((r) => r.acquiresPerSecond)),
        waitP50Ms: median(own.map((r) => r.waitP50Ms)),
        waitP99Ms: median(own.map((r) => r.waitP99Ms)),
        waitMaxMs: median(own.map((r) => r.waitMaxMs)),
        runs: own
      }
    })
  })
