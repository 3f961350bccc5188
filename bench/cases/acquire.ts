/**
 * Acquire + release overhead of the pools with a trivial body, and the same lease around a prepared SELECT 1 for
 * the peers: this project's ConnectionPool, Effect's bare `Pool`, tarn 3 and generic-pool 3, all of size 5, one
 * fiber (or one async loop) leasing in a row.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Pool from "effect/Pool"
import type * as Scope from "effect/Scope"
import * as Contenders from "../contenders.js"
import * as Fixtures from "../fixtures.js"
import type { Case, Result, Settings } from "../harness.js"
import { measureSuite, repeatEffect, repeatPromise } from "../harness.js"

/**
 * @since 0.1.0
 * @category constants
 */
export const POOL_SIZE = 5

/**
 * The like-for-like configuration: no `SELECT 1` probe on acquire (the peers have none); the default probes every
 * acquire of a connection that was used before.
 *
 * @since 0.1.0
 * @category constants
 */
export const noProbe = { validationInterval: "1 minute" } as const

/**
 * @since 0.1.0
 * @category suites
 */
export const run = (filename: string, settings: Settings): Effect.Effect<Array<Result>, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const size = POOL_SIZE
    const pool = yield* Contenders.connectionPool({ filename, maxConnections: size })
    const poolNoProbe = yield* Contenders.connectionPool({ filename, maxConnections: size, ...noProbe })
    const effectPool = yield* Fixtures.effectPool(filename, size)
    const tarn = yield* Fixtures.tarnPool(filename, size)
    const generic = yield* Fixtures.genericPool(filename, size)
    const setup = `pool of ${size}, 1 fiber`

    const cases: Array<Case> = [
      {
        id: "pool.use.trivial",
        name: "ConnectionPool.use(() => Effect.void), defaults",
        setup: `${setup}, probe on acquire`,
        run: repeatEffect(() => pool.use(() => Effect.void))
      },
      {
        id: "pool.use.trivial.noProbe",
        name: "ConnectionPool.use(() => Effect.void)",
        setup: `${setup}, validationInterval 1 min`,
        run: repeatEffect(() => poolNoProbe.use(() => Effect.void))
      },
      {
        id: "effectPool.trivial",
        name: "Effect Pool: Effect.scoped(pool.get)",
        setup: `${setup}, makeWithTTL`,
        run: repeatEffect(() => Effect.scoped(Pool.get(effectPool)))
      },
      {
        id: "tarn.trivial",
        name: "tarn: acquire().promise + release",
        setup,
        run: repeatPromise(() => Fixtures.withTarn(tarn, (c) => c))
      },
      {
        id: "generic.trivial",
        name: "generic-pool: acquire + release",
        setup,
        run: repeatPromise(() => Fixtures.withGeneric(generic, (c) => c))
      },
      {
        id: "effectPool.select1",
        name: "Effect Pool + prepared SELECT 1",
        setup: `${setup}, makeWithTTL`,
        run: repeatEffect(() => Effect.scoped(Effect.map(Pool.get(effectPool), (c) => c.selectOne.get())))
      },
      {
        id: "tarn.select1",
        name: "tarn + prepared SELECT 1",
        setup,
        run: repeatPromise(() => Fixtures.withTarn(tarn, (c) => c.selectOne.get()))
      },
      {
        id: "generic.select1",
        name: "generic-pool + prepared SELECT 1",
        setup,
        run: repeatPromise(() => Fixtures.withGeneric(generic, (c) => c.selectOne.get()))
      }
    ]
    return yield* measureSuite("acquire + release", cases, settings)
  })
