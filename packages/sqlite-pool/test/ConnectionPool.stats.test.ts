import { describe, expect, it } from "@effect/vitest"
import type { ConnectionPool, PoolStats } from "@sqlsim/sqlite-pool"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as Tracer from "effect/Tracer"
import { invariantsHold, makeTestPool, waitUntil } from "./utils.js"

/** The pool's own counters, by the PoolStats field they mirror (the semantic conventions define none of these). */
const ownCounters = {
  created: "sqlsim_pool_connections_created_total",
  reused: "sqlsim_pool_reused_total",
  acquired: "sqlsim_pool_acquired_total",
  released: "sqlsim_pool_released_total",
  invalidated: "sqlsim_pool_invalidated_total",
  closed: "sqlsim_pool_connections_closed_total",
  connectFailures: "sqlsim_pool_connect_failures_total",
  retries: "sqlsim_pool_connect_retries_total"
}

/** The values of the pool's metrics (attribute `db.client.connection.pool.name`), as PoolStats. */
const metricsOf = (name: string) =>
  Effect.map(Metric.snapshot, (pairs) => {
    const value = (metric: string, state?: string) => {
      const pair = pairs.find((candidate) =>
        candidate.metricKey.name === metric &&
        candidate.metricKey.tags.some((tag) => tag.key === "db.client.connection.pool.name" && tag.value === name) &&
        (state === undefined ||
          candidate.metricKey.tags.some((tag) => tag.key === "db.client.connection.state" && tag.value === state))
      )
      const metricState = pair?.metricState as { count?: number; value?: number } | undefined
      return metricState?.count ?? metricState?.value ?? 0
    }
    const idle = value("db.client.connection.count", "idle")
    const inUse = value("db.client.connection.count", "used")
    return {
      ...Object.fromEntries(Object.entries(ownCounters).map(([field, metric]) => [field, value(metric)])),
      timeouts: value("db.client.connection.timeouts"),
      open: idle + inUse,
      idle,
      inUse,
      waiting: value("db.client.connection.pending_requests")
    } as PoolStats.PoolStats
  })

/** Runs `effect` on a fiber and fails the test (instead of hanging it) if it does not end while other fibers run. */
const settle = <A, E>(description: string, effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    yield* waitUntil(Effect.map(Fiber.poll(fiber), (exit) => exit._tag === "Some"), `${description} ends`, 500)
    return yield* Fiber.join(fiber)
  })

const fatalDefect = Object.assign(new Error("database disk image is malformed"), { code: "SQLITE_CORRUPT" })

describe("ConnectionPool: statistics", () => {
  it.scoped("the Effect Metrics with the pool's name carry the same numbers as stats", () =>
    Effect.gen(function*() {
      // The first open goes to a directory: a real, permanent connect failure.
      const { filename, pool } = yield* makeTestPool(
        { maxConnections: 2, acquireTimeout: "1 second" },
        (attempt) => attempt === 1 ? "directory" : undefined
      )
      yield* Effect.exit(pool.use((c) => c.sql`SELECT 1`))
      yield* pool.use((c) => c.sql`CREATE TABLE t (x)`)
      yield* Effect.forEach([1, 2, 3, 4, 5, 6], (n) => pool.use((c) => c.sql`INSERT INTO t VALUES (${n})`), {
        concurrency: 3
      })
      yield* Effect.exit(pool.use(() => Effect.die(fatalDefect)))
      yield* pool.healthCheck
      // A timeout: both connections held, a third acquire gives up after acquireTimeout.
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Effect.all([pool.acquire, pool.acquire])
        const waiter = yield* Effect.fork(Effect.exit(Effect.scoped(pool.acquire)))
        yield* waitUntil(Effect.map(pool.stats, (s) => s.waiting === 1), "a fiber waits")
        expect(yield* metricsOf(filename)).toEqual(yield* pool.stats)
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(waiter)
      }))
      const stats = yield* pool.stats
      expect(stats).toMatchObject({ connectFailures: 1, timeouts: 1, invalidated: 1 })
      expect(stats.created).toBeGreaterThanOrEqual(2)
      expect(stats.reused).toBeGreaterThan(0)
      expect(yield* metricsOf(filename)).toEqual(stats)
    }))

  it.scoped("the invariants hold at every instant of a busy workload", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool({ maxConnections: 4 })
      yield* pool.use((c) => c.sql`CREATE TABLE t (x)`)
      const violations: Array<PoolStats.PoolStats> = []
      let samples = 0
      let running = true
      const sampler = yield* Effect.fork(Effect.whileLoop({
        while: () => running,
        body: () =>
          Effect.zipRight(
            Effect.map(pool.stats, (stats) => {
              samples++
              if (!invariantsHold(stats) || stats.open > 4) violations.push(stats)
            }),
            Effect.yieldNow()
          ),
        step: () => undefined
      }))
      const work = (n: number) =>
        n % 7 === 0
          ? Effect.exit(pool.use(() => Effect.die(fatalDefect)))
          : n % 5 === 0
          ? pool.use((c) => Effect.zipRight(c.sql`SELECT 1`, pool.invalidate(c)))
          : pool.use((c) => Effect.zipRight(c.sql`INSERT INTO t VALUES (${n})`, Effect.yieldNow()))
      yield* Effect.forEach(Array.from({ length: 60 }, (_, n) => n + 1), work, { concurrency: 12, discard: true })
      running = false
      yield* Fiber.join(sampler)
      expect(violations).toEqual([])
      expect(samples).toBeGreaterThan(20)
      const stats = yield* pool.stats
      expect(stats).toMatchObject({ acquired: 61, released: 61, inUse: 0, waiting: 0 })
      // 8 fatal defects (multiples of 7 up to 60), 11 explicit invalidations (multiples of 5 that are not of 7)
      expect(stats.invalidated).toBe(8 + 11)
    }))

  type Operation =
    | { readonly _tag: "acquire" }
    | { readonly _tag: "release"; readonly index: number }
    | { readonly _tag: "invalidateHeld"; readonly index: number }
    | { readonly _tag: "fatalUse" }
    | { readonly _tag: "use" }

  const operation: FastCheck.Arbitrary<Operation> = FastCheck.oneof(
    FastCheck.constant({ _tag: "acquire" } as const),
    FastCheck.nat(5).map((index) => ({ _tag: "release", index }) as const),
    FastCheck.nat(5).map((index) => ({ _tag: "invalidateHeld", index }) as const),
    FastCheck.constant({ _tag: "fatalUse" } as const),
    FastCheck.constant({ _tag: "use" } as const)
  )

  it.effect.prop(
    "any sequence of leases, releases and invalidations keeps stats equal to a simple model",
    [FastCheck.array(operation, { minLength: 1, maxLength: 16 })],
    ([operations]) =>
      Effect.scoped(Effect.gen(function*() {
        const maxConnections = 3
        const { connector, pool } = yield* makeTestPool({ maxConnections })
        const held: Array<{ scope: Scope.CloseableScope; connection: ConnectionPool.PooledConnection }> = []
        // Leases still held when the run ends are given back before the pool closes (or it would wait for them).
        yield* Effect.addFinalizer(() => Effect.forEach(held, (lease) => Scope.close(lease.scope, Exit.void)))
        const model = { acquired: 0, released: 0, invalidated: 0 }
        const doomed = new Set<ConnectionPool.PooledConnection>()
        for (const step of operations) {
          yield* settle(
            JSON.stringify(step),
            Effect.gen(function*() {
              switch (step._tag) {
                case "acquire": {
                  if (held.length === maxConnections) break
                  const scope = yield* Scope.make()
                  held.push({ scope, connection: yield* Scope.extend(pool.acquire, scope) })
                  model.acquired++
                  break
                }
                case "release": {
                  const [lease] = held.splice(step.index % Math.max(held.length, 1), 1)
                  if (lease === undefined) break
                  yield* Scope.close(lease.scope, Exit.void)
                  model.released++
                  if (doomed.delete(lease.connection)) model.invalidated++
                  break
                }
                case "invalidateHeld": {
                  const lease = held[step.index % Math.max(held.length, 1)]
                  if (lease === undefined) break
                  yield* pool.invalidate(lease.connection)
                  doomed.add(lease.connection)
                  break
                }
                case "fatalUse":
                case "use": {
                  if (held.length === maxConnections) break
                  yield* Effect.exit(pool.use(() => step._tag === "fatalUse" ? Effect.die(fatalDefect) : Effect.void))
                  model.acquired++
                  model.released++
                  if (step._tag === "fatalUse") model.invalidated++
                  break
                }
              }
            })
          )
          const stats = yield* pool.stats
          expect(invariantsHold(stats)).toBe(true)
          expect(stats).toMatchObject({ ...model, inUse: held.length, waiting: 0 })
          expect(stats.open).toBeLessThanOrEqual(maxConnections)
          expect(stats.open).toBe(connector.openHandles())
          // Every connection opened is one this model can account for.
          expect(stats.created).toBe(connector.openedCount())
        }
      })),
    { fastCheck: { numRuns: 15 } }
  )
})

interface RecordedSpan {
  readonly name: string
  readonly attributes: Map<string, unknown>
  ended: boolean
  exit?: Exit.Exit<unknown, unknown>
}

/** A tracer that keeps every span it makes. */
const recordingTracer = () => {
  const spans: Array<RecordedSpan> = []
  let nextId = 0
  const tracer = Tracer.make({
    span: (name, parent, context, links, startTime, kind) => {
      const recorded: RecordedSpan = { name, attributes: new Map(), ended: false }
      spans.push(recorded)
      const span: Tracer.Span = {
        _tag: "Span",
        name,
        spanId: `span-${++nextId}`,
        traceId: "trace",
        parent,
        context,
        get status(): Tracer.SpanStatus {
          return { _tag: "Started", startTime }
        },
        attributes: recorded.attributes,
        links,
        sampled: true,
        kind,
        end: (_endTime, exit) => {
          recorded.ended = true
          recorded.exit = exit
        },
        attribute: (key, value) => recorded.attributes.set(key, value),
        event: () => {},
        addLinks: () => {}
      }
      return span
    },
    context: (f) => f()
  })
  return { tracer, named: (name: string) => spans.filter((span) => span.name === name) }
}

describe("ConnectionPool: spans", () => {
  it.scoped("a connect and an acquire that waits get a span each; an acquire served at once gets none", () => {
    const { named, tracer } = recordingTracer()
    return Effect.gen(function*() {
      const { filename, pool } = yield* makeTestPool({ maxConnections: 1 })
      // The first acquire opens the connection: it waits for the connect.
      yield* pool.use(() => Effect.void)
      expect(named("sqlsim.connect")).toHaveLength(1)
      expect(named("sqlsim.acquire")).toHaveLength(1)
      // Served at once by the idle connection: no span.
      yield* pool.use(() => Effect.void)
      expect(named("sqlsim.acquire")).toHaveLength(1)
      // A second acquire waits for the first lease to end.
      const waiter = yield* Effect.scoped(Effect.gen(function*() {
        yield* pool.acquire
        const waiter = yield* Effect.fork(pool.use(() => Effect.void))
        yield* waitUntil(Effect.map(pool.stats, (s) => s.waiting === 1), "the second acquire waits")
        const [, waiting] = named("sqlsim.acquire")
        expect(waiting?.ended).toBe(false)
        return waiter
      }))
      yield* Fiber.join(waiter)
      const acquires = named("sqlsim.acquire")
      expect(acquires).toHaveLength(2)
      for (const span of acquires) {
        expect(span.ended).toBe(true)
        expect(span.exit?._tag).toBe("Success")
        expect(Object.fromEntries(span.attributes)).toMatchObject({
          "db.system.name": "sqlite",
          "db.namespace": filename
        })
      }
    }).pipe(Effect.withTracer(tracer))
  })
})
