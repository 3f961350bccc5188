/**
 * Lane storm: hundreds of fibers use SqlitePool's lanes at once (single statements, transactions held across awaits
 * that commit or roll back, nested blocks, Reader statements and Reader transactions) while some of them are
 * interrupted at random moments. Single statements share the writer connection while transactions hold it alone, so
 * the thing to prove is that the two never mix: a statement that returned is in the database even when a transaction
 * that ran at the same time rolled back, a transaction is all or nothing, and afterwards nothing waits, nothing is
 * leased but the lanes' kept connections, and both lanes still work. Seeds are printed; SQLSIM_SEED=<seed> replays.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { SqlitePool } from "@sqlsim/sqlite-pool"
import { tempDir } from "@sqlsim/test-kit/TempDir"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as path from "node:path"
import { violations } from "./support/invariants.js"
import { seededRandom, seedFromEnvironment } from "./support/seed.js"

const READ_CONNECTIONS = 3

describe("lane storm", () => {
  it.scopedLive(
    "statements, transactions, Reader work and interruptions at once: never mixed, nothing left behind",
    () =>
      Effect.gen(function*() {
        const seed = seedFromEnvironment()
        const random = seededRandom(seed)
        const filename = path.join(yield* tempDir, "lanes.db")
        const context = yield* Layer.build(SqlitePool.layer({ filename, readConnections: READ_CONNECTIONS }))
        const sql = yield* Effect.provide(SqlClient.SqlClient, context)
        const reader = yield* Effect.provide(SqlitePool.Reader, context)
        const pool = yield* Effect.provide(SqlitePool.SqlitePool, context)
        yield* sql`CREATE TABLE t (id INTEGER PRIMARY KEY, owner INTEGER NOT NULL, part INTEGER NOT NULL)`

        // What each operation expects of the database afterwards, by owner (the operation's number).
        const statementsDone = new Set<number>() // single statements that returned: their row must be there
        const committed = new Set<number>() // transactions that returned: both rows there
        const rolledBack = new Set<number>() // transactions that failed on purpose: no row
        const transactions = new Set<number>() // every transaction: all or nothing
        const pause = () => random.chance(0.5) ? Effect.sleep(random.int(3)) : Effect.yieldNow()

        const operation = (owner: number): Effect.Effect<unknown, unknown> => {
          const kind = random.int(100)
          if (kind < 40) {
            return Effect.tap(sql`INSERT INTO t (owner, part) VALUES (${owner}, 0)`, () => statementsDone.add(owner))
          }
          if (kind < 70) {
            transactions.add(owner)
            const fail = random.chance(0.3)
            const nested = random.chance(0.3)
            const body = Effect.gen(function*() {
              yield* sql`INSERT INTO t (owner, part) VALUES (${owner}, 1)`
              yield* pause()
              // A failed inner block rolls back only itself.
              if (nested) {
                yield* Effect.exit(sql.withTransaction(Effect.zipRight(sql`DELETE FROM t`, Effect.fail("inner"))))
              }
              yield* sql`INSERT INTO t (owner, part) VALUES (${owner}, 2)`
              if (fail) return yield* Effect.fail("rolled back on purpose")
            })
            return sql.withTransaction(body).pipe(
              Effect.tap(() => committed.add(owner)),
              Effect.tapError(() => Effect.sync(() => fail && rolledBack.add(owner)))
            )
          }
          if (kind < 90) return reader`SELECT count(*) AS n FROM t`
          return reader.withTransaction(
            Effect.zipRight(reader`SELECT count(*) AS n FROM t`, Effect.zipRight(pause(), reader`SELECT 1`))
          )
        }

        const fibers: Array<Fiber.RuntimeFiber<unknown, unknown>> = []
        let interrupted = 0
        for (let owner = 1; owner <= 600; owner++) {
          const fiber = yield* Effect.fork(operation(owner))
          fibers.push(fiber)
          if (random.chance(0.15)) {
            interrupted++
            yield* Effect.fork(Effect.zipRight(pause(), Fiber.interrupt(fiber)))
          }
          if (owner % 20 === 0) yield* pause()
        }
        const exits = yield* Effect.forEach(fibers, Fiber.await)

        const rows = yield* sql<{ owner: number; part: number }>`SELECT owner, part FROM t`
        const parts = new Map<number, Array<number>>()
        for (const row of rows) parts.set(row.owner, [...(parts.get(row.owner) ?? []), row.part])
        const problems: Array<string> = []
        for (const owner of statementsDone) {
          if (!(parts.get(owner) ?? []).includes(0)) problems.push(`statement ${owner} returned but its row is gone`)
        }
        for (const owner of transactions) {
          const found = (parts.get(owner) ?? []).sort().join(",")
          if (committed.has(owner) && found !== "1,2") problems.push(`transaction ${owner} committed with [${found}]`)
          if (rolledBack.has(owner) && found !== "") problems.push(`transaction ${owner} rolled back with [${found}]`)
          if (found !== "" && found !== "1,2") problems.push(`transaction ${owner} half there: [${found}]`)
        }
        expect(problems).toEqual([])

        // Nothing waits, nothing is leased but each lane's kept connection, and both lanes still work.
        const stats = yield* pool.stats
        expect(stats.writerWaiting).toBe(0)
        expect(violations(stats.writer, 1)).toEqual([])
        expect(violations(stats.readers, READ_CONNECTIONS)).toEqual([])
        expect(stats.writer.waiting + stats.readers.waiting).toBe(0)
        expect(stats.writer.inUse).toBeLessThanOrEqual(1)
        expect(stats.readers.inUse).toBeLessThanOrEqual(1)
        yield* sql.withTransaction(sql`INSERT INTO t (owner, part) VALUES (0, 0)`)
        expect((yield* reader<{ n: number }>`SELECT count(*) AS n FROM t WHERE owner = 0`)[0]?.n).toBe(1)

        const failures = exits.filter(Exit.isFailure).length
        console.log(
          `lane storm (seed ${seed}): 600 operations, ${interrupted} interrupters, ${statementsDone.size} statements, ` +
            `${committed.size} commits, ${rolledBack.size} rollbacks, ${failures} ended in failure or interruption`
        )
      }),
    60_000
  )
})
