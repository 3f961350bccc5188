import { describe, expect, it } from "@effect/vitest"
import type { ConnectionPool } from "@sqlsim/sqlite-pool"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import { makeTestPool, waitUntil } from "./utils.js"

/**
 * Takes every connection of the pool, then starts `workers` fibers one after the other (each is waiting before the
 * next starts, so their arrival order is known), each running `rounds` uses that record the worker's number.
 * Returns the order in which the uses ran once the connections are given back.
 */
const contend = (pool: ConnectionPool.Service, options: { readonly workers: number; readonly rounds: number }) =>
  Effect.gen(function*() {
    const order: Array<number> = []
    const blockers = yield* Scope.make()
    yield* Effect.replicateEffect(pool.acquire, pool.config.maxConnections).pipe(Scope.extend(blockers))
    const fibers: Array<Fiber.RuntimeFiber<void, unknown>> = []
    for (let worker = 1; worker <= options.workers; worker++) {
      const use = pool.use((connection) =>
        Effect.gen(function*() {
          order.push(worker)
          yield* connection.sql`SELECT ${worker} AS worker`
          yield* Effect.yieldNow()
        })
      )
      fibers.push(yield* Effect.fork(Effect.repeatN(use, options.rounds - 1)))
      yield* waitUntil(Effect.map(pool.stats, (s) => s.waiting === worker), `worker ${worker} waits`)
    }
    yield* Scope.close(blockers, Exit.void)
    yield* Fiber.joinAll(fibers)
    return order
  })

const range = (count: number) => Array.from({ length: count }, (_, index) => index + 1)

/**
 * Uses that started round k + 1 while more than `slack` of the `workers` had not had round k yet, with how many
 * were behind.
 */
const overtakes = (order: ReadonlyArray<number>, workers: number, slack: number) => {
  const rounds = new Map<number, number>()
  const found: Array<{ readonly at: number; readonly worker: number; readonly behind: number }> = []
  order.forEach((worker, at) => {
    const round = (rounds.get(worker) ?? 0) + 1
    rounds.set(worker, round)
    const behind = range(workers).filter((other) => (rounds.get(other) ?? 0) < round - 1).length
    if (behind > slack) found.push({ at, worker, behind })
  })
  return found
}

describe("ConnectionPool: fairness", () => {
  it.scoped("one connection, five fibers: served in arrival order, every fiber progressing in turn", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool({ maxConnections: 1 })
      const order = yield* contend(pool, { workers: 5, rounds: 3 })
      // A fiber that gives its connection back and asks again queues behind everyone already waiting.
      expect(order).toEqual([...range(5), ...range(5), ...range(5)])
      expect(yield* pool.stats).toMatchObject({ waiting: 0, inUse: 0, acquired: 16, released: 16, created: 1 })
    }))

  it.scoped("three connections, eight fibers: no fiber starts round k + 1 before every fiber had round k", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool({ maxConnections: 3 })
      const order = yield* contend(pool, { workers: 8, rounds: 4 })
      expect(order).toHaveLength(32)
      // Three connections coming back at once go to the three oldest waiters together, and the runtime may run those
      // three in any order: a fiber asking again can get ahead of at most the two served with it, never further.
      expect(overtakes(order, 8, 2)).toEqual([])
      expect((yield* pool.stats).created).toBe(3)
    }))

  it.scoped("a waiter that gives up leaves the queue; the next one in line is served instead", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool({ maxConnections: 1 })
      const served: Array<string> = []
      const holder = yield* Scope.make()
      yield* Scope.extend(pool.acquire, holder)
      const waiter = (name: string) => Effect.fork(pool.use(() => Effect.sync(() => served.push(name))))
      const first = yield* waiter("first")
      yield* waitUntil(Effect.map(pool.stats, (s) => s.waiting === 1), "first waits")
      const quitter = yield* waiter("quitter")
      yield* waitUntil(Effect.map(pool.stats, (s) => s.waiting === 2), "quitter waits")
      const last = yield* waiter("last")
      yield* waitUntil(Effect.map(pool.stats, (s) => s.waiting === 3), "last waits")
      yield* Fiber.interrupt(quitter)
      expect((yield* pool.stats).waiting).toBe(2)
      yield* Scope.close(holder, Exit.void)
      yield* Fiber.join(first)
      yield* Fiber.join(last)
      expect(served).toEqual(["first", "last"])
      expect(yield* pool.stats).toMatchObject({ waiting: 0, inUse: 0, acquired: 3, released: 3 })
    }))

  it.scoped("a released connection goes to the oldest waiter, not to the fiber that released it", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool({ maxConnections: 1 })
      const served: Array<string> = []
      const holder = yield* Scope.make()
      yield* Scope.extend(pool.acquire, holder)
      const waiting = yield* Effect.fork(pool.use(() => Effect.sync(() => served.push("waiting"))))
      yield* waitUntil(Effect.map(pool.stats, (s) => s.waiting === 1), "a fiber waits")
      // Release and ask again at once, from the same fiber.
      yield* Scope.close(holder, Exit.void)
      yield* pool.use(() => Effect.sync(() => served.push("releaser")))
      yield* Fiber.join(waiting)
      expect(served).toEqual(["waiting", "releaser"])
    }))
})
