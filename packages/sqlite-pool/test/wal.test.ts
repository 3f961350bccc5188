/**
 * The WAL kept in check (`walCheckpointBytes`): a real file, a Reader transaction holding its snapshot while the writer
 * commits 20 MiB. The watch's once-a-second look runs on the TestClock; SQLite, the file and the checkpoints are real.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { SqlitePool } from "@sqlsim/sqlite-pool"
import { tempDatabase } from "@sqlsim/test-kit/TempDir"
import { Deferred, Effect, Fiber, Layer, Logger, LogLevel, Metric, TestClock } from "effect"
import * as fs from "node:fs"
import { waitUntil } from "./utils.js"

const MiB = 2 ** 20

/** The value of one of the WAL's metrics for `filename` (its `db.namespace`). */
const walMetric = (name: string, filename: string) =>
  Effect.map(Metric.snapshot, (pairs) => {
    const pair = pairs.find(({ metricKey }) =>
      metricKey.name === name &&
      metricKey.tags.some((tag) => tag.key === "db.namespace" && tag.value === filename)
    )
    const state = pair?.metricState as { readonly value?: number; readonly count?: number } | undefined
    return state?.value ?? state?.count ?? 0
  })

describe("the WAL kept in check", () => {
  it.scoped(
    "a reader holding a snapshot: the gauge grows, one warning names the reader, then the WAL is truncated",
    () =>
      Effect.gen(function*() {
        const filename = yield* tempDatabase
        const warnings: Array<string> = []
        const collect = Logger.make(({ logLevel, message }) => {
          if (logLevel._tag === "Warning") warnings.push(String(Array.isArray(message) ? message.join(" ") : message))
        })
        const walFile = `${filename}-wal`
        const limit = 4 * MiB
        yield* Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const reader = yield* SqlitePool.Reader
          const pool = yield* SqlitePool.SqlitePool
          // One small commit a second later than the last look: the watch looks again.
          const commitAfterASecond = Effect.zipRight(
            TestClock.adjust("1 second"),
            sql`INSERT INTO t VALUES (zeroblob(1))`
          )
          yield* sql`CREATE TABLE t (x BLOB)`
          yield* sql`INSERT INTO t VALUES (zeroblob(1))`
          expect(yield* walMetric("sqlsim.wal.size", filename)).toBeLessThan(MiB)
          // A Reader transaction reads, so it holds its snapshot until it ends.
          const reading = yield* Deferred.make<void>()
          const finish = yield* Deferred.make<void>()
          const longReader = yield* Effect.fork(
            reader.withTransaction(Effect.gen(function*() {
              yield* reader`SELECT count(*) FROM t`
              yield* Deferred.succeed(reading, undefined)
              yield* Deferred.await(finish)
            })).pipe(Effect.withSpan("nightly-report"))
          )
          yield* Deferred.await(reading)
          // 20 MiB committed, 1 MiB a transaction, all of it after the reader's snapshot.
          for (let i = 0; i < 20; i++) {
            yield* sql.withTransaction(sql`INSERT INTO t VALUES (randomblob(${MiB}))`)
          }
          yield* commitAfterASecond
          yield* waitUntil(Effect.sync(() => warnings.length > 0), "the blocked checkpoint is reported")
          expect(yield* walMetric("sqlsim.wal.size", filename)).toBeGreaterThan(20 * MiB)
          expect(fs.statSync(walFile).size).toBeGreaterThan(20 * MiB)
          expect(warnings).toHaveLength(1)
          expect(warnings[0]).toContain(`${filename}-wal is`)
          expect(warnings[0]).toContain("a reader holds an old snapshot")
          // It names the reader's holder: its span and fiber, held since before the 20 MiB and the second's wait.
          expect(warnings[0]).toContain(
            `the longest Reader lease is connection 1 of ${filename} (readers), by span "nightly-report" ` +
              `(fiber #${longReader.id().id}), held for 1000 ms`
          )
          // Still blocked a second later: counted again, not logged again (one warning an episode).
          yield* commitAfterASecond
          yield* waitUntil(
            Effect.map(walMetric("sqlsim.wal.checkpoints_blocked", filename), (n) => n >= 2),
            "a second blocked checkpoint"
          )
          expect(warnings).toHaveLength(1)
          expect(yield* walMetric("sqlsim.wal.truncations", filename)).toBe(0)
          // The pool's own view, as SqlitePool.stats shows it.
          const blocked = (yield* pool.stats).wal
          expect(blocked?.bytes).toBeGreaterThan(20 * MiB)
          expect(blocked?.checkpointsBlocked).toBeGreaterThanOrEqual(2)
          expect(blocked?.truncations).toBe(0)

          // The reader ends: the next look checkpoints every frame and truncates the file.
          yield* Deferred.succeed(finish, undefined)
          yield* Fiber.join(longReader)
          yield* commitAfterASecond
          yield* waitUntil(
            Effect.map(walMetric("sqlsim.wal.truncations", filename), (n) => n === 1),
            "the WAL is truncated"
          )
          expect(fs.statSync(walFile).size).toBeLessThan(limit)
          expect(yield* walMetric("sqlsim.wal.size", filename)).toBeLessThan(limit)
          expect(warnings).toHaveLength(1)
          expect((yield* pool.stats).wal).toMatchObject({ truncations: 1 })
          expect((yield* pool.stats).wal?.bytes).toBeLessThan(limit)
          // Every row is there.
          const [row] = yield* sql<{ n: number }>`SELECT count(*) AS n FROM t`
          expect(row?.n).toBe(24)
        }).pipe(
          Effect.provide(
            SqlitePool.layer({ filename, readConnections: 2, walCheckpointBytes: limit }).pipe(
              Layer.provide(Logger.replace(Logger.defaultLogger, collect))
            )
          ),
          Logger.withMinimumLogLevel(LogLevel.Warning)
        )
      }),
    { timeout: 60_000 }
  )
})
