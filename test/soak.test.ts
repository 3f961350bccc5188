/**
 * A bounded soak: concurrent workers write, read and roll back through SqlitePool for a fixed time while the
 * simulator's fault injector fails connects (transient and permanent), slows them down, kills idle connections and
 * fails their health pings, and while callers time out and interrupt their own operations. Throughout: memory stays
 * flat (heap after GC), every error is a typed one, and at the end every counter is consistent, every committed row
 * is there and no rolled-back row is.
 *
 * The default run soaks for a few seconds. The long one: SQLSIM_SOAK=1 SQLSIM_SOAK_SECONDS=60 pnpm vitest run
 * test/soak.test.ts (SQLSIM_SEED=<seed> replays the fault decisions of a run).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { FaultInjector } from "@sqlsim/simulator"
import { ConnectionPool, SqlitePool } from "@sqlsim/sqlite-pool"
import { tempDir } from "@sqlsim/test-kit/TempDir"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as path from "node:path"
import { databaseDescriptors } from "./support/descriptors.js"
import { summary, violations } from "./support/invariants.js"
import { heapAfterGc, stillAlive } from "./support/memory.js"
import { seededRandom, seedFromEnvironment } from "./support/seed.js"
import { Outcomes } from "./support/storm.js"

const longSoak = process.env.SQLSIM_SOAK === "1"
const soakSeconds = longSoak ? Number(process.env.SQLSIM_SOAK_SECONDS ?? "60") : 4
const WORKERS = 8
const READ_CONNECTIONS = 3

/** Our own failure inside a transaction: the transaction must roll back. */
class RollbackRequested extends Data.TaggedError("RollbackRequested")<{}> {}

describe("soak", () => {
  it.live(
    `${soakSeconds} s of concurrent work under injected faults: typed errors only, flat memory, no lost row`,
    () =>
      Effect.gen(function*() {
        const seed = seedFromEnvironment()
        const random = seededRandom(seed)
        const filename = path.join(yield* tempDir, "soak.db")
        const injector = yield* FaultInjector.make({
          openTransient: 0.1,
          openPermanent: 0.02,
          slowOpen: 0.05,
          slowOpenMs: 5,
          die: 0.05,
          ping: 0.02,
          ioerr: 0,
          busyStatement: 0,
          slowStatement: 0,
          slowStatementMs: 20,
          lockHolder: undefined
        }, { seed })
        const poolScope = yield* Scope.make()
        const context = yield* Layer.buildWithScope(
          SqlitePool.layer({
            filename,
            readConnections: READ_CONNECTIONS,
            retries: 2,
            retryBaseDelay: "2 millis",
            retryMaxDelay: "20 millis",
            acquireTimeout: "250 millis"
          }).pipe(Layer.provide(FaultInjector.layer(injector))),
          poolScope
        )
        const sql = yield* Effect.provide(SqlClient.SqlClient, context)
        const reader = yield* Effect.provide(SqlitePool.Reader, context)
        const service = yield* Effect.provide(SqlitePool.SqlitePool, context)
        yield* sql`CREATE TABLE events (id INTEGER PRIMARY KEY, worker INTEGER NOT NULL, payload TEXT NOT NULL)`
        yield* injector.arm

        const outcomes = new Outcomes(
          new Set([
            "SqlError",
            "RollbackRequested",
            "TimeoutException",
            "ConnectError",
            "AcquireTimeoutError",
            "HealthCheckError"
          ])
        )
        const committed = new Set<number>()
        const rolledBack = new Set<number>()
        let operations = 0
        let nextId = 1
        const deadline = (yield* Clock.currentTimeMillis) + soakSeconds * 1000
        const memory: Array<number> = []

        const operation = (worker: number): Effect.Effect<unknown, unknown> => {
          const kind = random.int(100)
          if (kind < 35) {
            const ids = Array.from({ length: 1 + random.int(5) }, () => nextId++)
            return Effect.tap(
              sql.withTransaction(Effect.forEach(ids, (id) =>
                sql`INSERT INTO events (id, worker, payload) VALUES (${id}, ${worker}, ${
                  "x".repeat(random.int(200))
                })`)),
              () => Effect.sync(() => ids.forEach((id) => committed.add(id)))
            )
          }
          if (kind < 45) {
            const id = nextId++
            return sql.withTransaction(
              Effect.zipRight(
                sql`INSERT INTO events (id, worker, payload) VALUES (${id}, ${worker}, 'doomed')`,
                Effect.fail(new RollbackRequested())
              )
            ).pipe(
              Effect.tapError((error) => Effect.sync(() => error._tag === "RollbackRequested" && rolledBack.add(id)))
            )
          }
          if (kind < 80) return reader`SELECT count(*) AS n FROM events WHERE worker = ${worker}`
          if (kind < 90) return sql`SELECT max(id) AS id FROM events`
          if (kind < 95) return service.healthCheck
          // A caller that gives up after a millisecond or two, wherever its operation is.
          return Effect.timeout(reader`SELECT count(*) AS n FROM events`, 1 + random.int(2))
        }

        const worker = (index: number) =>
          Effect.gen(function*() {
            while ((yield* Clock.currentTimeMillis) < deadline) {
              const exit = yield* Effect.exit(operation(index))
              operations++
              outcomes.record(exit)
              if (operations % 2000 === 0) yield* Effect.yieldNow()
            }
          })
        const sampler = Effect.gen(function*() {
          while ((yield* Clock.currentTimeMillis) < deadline) {
            memory.push(heapAfterGc())
            yield* Effect.sleep(soakSeconds > 10 ? "2 seconds" : "500 millis")
          }
        })
        yield* Effect.all([sampler, ...Array.from({ length: WORKERS }, (_, index) => worker(index))], {
          concurrency: "unbounded",
          discard: true
        })

        // Counters consistent, nothing leased or waiting once the work has stopped.
        const stats = yield* service.stats
        for (
          const [lane, laneStats, max] of [["writer", stats.writer, 1], [
            "readers",
            stats.readers,
            READ_CONNECTIONS
          ]] as const
        ) {
          // A failure names the seed, which replays the run's fault decisions (not its timing).
          const context = `${lane} (SQLSIM_SEED=${seed}; ${summary(laneStats)})`
          expect(violations(laneStats, max), context).toEqual([])
          // Each lane keeps the connection of its single statements leased for up to a second after the last one.
          expect(laneStats.inUse, context).toBeLessThanOrEqual(1)
          expect(laneStats.waiting, context).toBe(0)
        }
        expect(stats.writerWaiting).toBe(0)
        // Only typed errors; every committed row present, no rolled-back row.
        expect(outcomes.unexpected).toEqual([])
        const ids = new Set((yield* sql<{ id: number }>`SELECT id FROM events`).map((row) => row.id))
        expect([...committed].filter((id) => !ids.has(id))).toEqual([])
        expect([...rolledBack].filter((id) => ids.has(id))).toEqual([])
        expect(committed.size).toBeGreaterThan(0)
        // Flat memory: the heap after GC at the end is not far above where it settled after the first samples.
        const settled = memory[Math.min(2, memory.length - 1)]!
        const final = heapAfterGc()
        const growthMb = (final - settled) / 1e6
        expect(growthMb).toBeLessThan(longSoak ? 30 : 40)

        yield* Scope.close(poolScope, Exit.void)
        expect(databaseDescriptors(filename)).toEqual([])
        const faults = yield* injector.counts
        console.log(
          `soak (seed ${seed}, ${soakSeconds} s, ${WORKERS} workers): ${operations} operations, ` +
            `${committed.size} rows committed, ${rolledBack.size} rolled back; outcomes ${outcomes}; faults injected: ` +
            `${faults.openTransient} transient opens, ${faults.openPermanent} permanent opens, ${faults.slowOpen} slow ` +
            `opens, ${faults.die} dead connections, ${faults.ping} failed checks (of ` +
            `${faults.connectAttempts} connects, ${faults.checks} checks, ${faults.validations} validations, ` +
            `${faults.statements} statements); heap after GC ` +
            `${(settled / 1e6).toFixed(1)} -> ${(final / 1e6).toFixed(1)} MB over ${memory.length} samples; ` +
            `writer ${summary(stats.writer)}; readers ${summary(stats.readers)}; busy retries ${stats.busyRetries}`
        )
      }).pipe(Effect.scoped),
    (soakSeconds + 60) * 1000
  )

  // What makes memory grow in a long soak: every connection thrown away (invalidated, or found dead on validation)
  // must become garbage once closed, whatever the pool's internal queues still point at.
  it.scoped("connections thrown away are not retained once closed", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const thrownAway: Array<WeakRef<object>> = []
      const pool = yield* ConnectionPool.make({ filename: path.join(directory, "app.db"), maxConnections: 2 })
      const before = heapAfterGc()
      for (let round = 0; round < 500; round++) {
        yield* pool.use((connection) =>
          Effect.zipRight(
            Effect.sync(() => thrownAway.push(new WeakRef(connection), new WeakRef(connection.sql))),
            pool.invalidate(connection)
          )
        )
      }
      yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      const alive = stillAlive(thrownAway)
      const growthMb = (heapAfterGc() - before) / 1e6
      console.log(
        `retention: ${thrownAway.length / 2} connections invalidated and closed, ${alive / 2} still reachable; ` +
          `heap after GC +${growthMb.toFixed(1)} MB`
      )
      expect((yield* pool.stats).closed).toBe(500)
      // The connection objects (and their clients, caches and statements) must be garbage. WeakRef targets touched in
      // the current job and the state of the last fibers keep a few alive for a while (0 to a handful from run to
      // run); a leak keeps all 500.
      expect(alive / 2).toBeLessThan(25)
    }))
})
