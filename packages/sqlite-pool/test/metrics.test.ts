/**
 * The pools' OpenTelemetry-convention metrics (`db.client.connection.*`) after a known workload on SqlitePool's two
 * lanes: their names, their attributes, the gauges' values and the histograms' counts and sums (on the TestClock, so
 * that a wait and a use of known length land in known buckets).
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { ConnectionPool, SqlitePool } from "@sqlsim/sqlite-pool"
import { tempDatabase } from "@sqlsim/test-kit/TempDir"
import { Deferred, Effect, Fiber, Metric, TestClock } from "effect"
import type * as MetricKey from "effect/MetricKey"
import type * as MetricState from "effect/MetricState"
import { waitUntil } from "./utils.js"

interface Series {
  readonly name: string
  readonly attributes: Record<string, string>
  readonly state: MetricState.MetricState.Untyped
}

/** Every `db.client.connection.*` series of the pools named after `filename`. */
const seriesOf = (filename: string) =>
  Effect.map(Metric.snapshot, (pairs): Array<Series> =>
    pairs
      .map(({ metricKey, metricState }) => ({
        name: metricKey.name,
        attributes: Object.fromEntries(
          (metricKey as MetricKey.MetricKey.Untyped).tags.map((tag) => [tag.key, tag.value])
        ),
        state: metricState
      }))
      .filter((series) =>
        series.name.startsWith("db.client.connection.") &&
        series.attributes["db.client.connection.pool.name"]?.startsWith(filename) === true
      ))

const find = (series: ReadonlyArray<Series>, name: string, attributes: Record<string, string>) => {
  const found = series.filter((s) =>
    s.name === name && Object.entries(attributes).every(([key, value]) => s.attributes[key] === value)
  )
  expect(found, `${name} ${JSON.stringify(attributes)}`).toHaveLength(1)
  return found[0]!.state as unknown as {
    readonly value?: number
    readonly count?: number
    readonly sum?: number
    readonly buckets?: ReadonlyArray<readonly [number, number]>
  }
}

/** How many observations of a histogram fell in (lower, upper] (its buckets are cumulative). */
const inBucket = (state: ReturnType<typeof find>, lower: number, upper: number) => {
  const at = (bound: number) => state.buckets?.find(([boundary]) => boundary === bound)?.[1] ?? Number.NaN
  return at(upper) - at(lower)
}

describe("pool metrics (OpenTelemetry's database-client conventions)", () => {
  it.scoped("names, attributes, gauges and histogram counts after a known workload", () =>
    Effect.gen(function*() {
      const filename = yield* tempDatabase
      const writer = { "db.client.connection.pool.name": `${filename} (writer)`, "sqlsim.lane": "writer" }
      const readers = { "db.client.connection.pool.name": `${filename} (readers)`, "sqlsim.lane": "reader" }
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const reader = yield* SqlitePool.Reader
        const pool = yield* SqlitePool.SqlitePool
        // Writer: 1 + 3 statements and 1 transaction, one after another: 5 leases, none of them waits.
        yield* sql`CREATE TABLE t (x)`
        for (const x of [1, 2, 3]) yield* sql`INSERT INTO t VALUES (${x})`
        yield* sql.withTransaction(Effect.zipRight(sql`INSERT INTO t VALUES (4)`, sql`INSERT INTO t VALUES (5)`))
        // Reader: 2 statements.
        yield* reader`SELECT count(*) FROM t`
        yield* reader`SELECT max(x) FROM t`
        // A transaction holds the writer for 250 ms; a statement waits for it all that time.
        const inside = yield* Deferred.make<void>()
        const holder = yield* Effect.fork(sql.withTransaction(
          Effect.zipRight(Deferred.succeed(inside, undefined), Effect.sleep("250 millis"))
        ))
        yield* Deferred.await(inside)
        const waiter = yield* Effect.fork(sql`INSERT INTO t VALUES (6)`)
        yield* waitUntil(Effect.map(pool.stats, (s) => s.writerWaiting === 1), "the statement waits")
        expect(find(yield* seriesOf(filename), "db.client.connection.pending_requests", writer).value).toBe(1)
        expect(
          find(yield* seriesOf(filename), "db.client.connection.count", {
            ...writer,
            "db.client.connection.state": "used"
          }).value
        ).toBe(1)
        yield* TestClock.adjust("250 millis")
        yield* Fiber.join(holder)
        yield* Fiber.join(waiter)
        const stats = yield* pool.stats
        // 5 + the holder + the waiter; each ran alone, so each handed out the connection once.
        expect(stats.writer.acquired).toBe(7)
        expect(stats.readers.acquired).toBe(2)
      }).pipe(Effect.provide(SqlitePool.layer({ filename, readConnections: 2 })))

      const series = yield* seriesOf(filename)
      // Names and attributes: every series has the pool's name, its lane and a unit; count has its state too.
      expect(new Set(series.map((s) => s.name))).toEqual(
        new Set([
          "db.client.connection.count",
          "db.client.connection.max",
          "db.client.connection.idle.max",
          "db.client.connection.idle.min",
          "db.client.connection.pending_requests",
          "db.client.connection.timeouts",
          "db.client.connection.create_time",
          "db.client.connection.wait_time",
          "db.client.connection.use_time"
        ])
      )
      for (const s of series) {
        const expected = ["db.client.connection.pool.name", "sqlsim.lane", "unit"]
        if (s.name === "db.client.connection.count") expected.push("db.client.connection.state")
        expect(Object.keys(s.attributes).sort(), s.name).toEqual(expected.sort())
        const unit = s.name.endsWith("_time")
          ? "s"
          : s.name.endsWith("requests")
          ? "{request}"
          : s.name.endsWith("timeouts")
          ? "{timeout}"
          : "{connection}"
        expect(s.attributes.unit, s.name).toBe(unit)
      }
      // The limits: the writer is a pool of one, opened with the layer; the Reader pool has 2, none kept open.
      expect(find(series, "db.client.connection.max", writer).value).toBe(1)
      expect(find(series, "db.client.connection.idle.min", writer).value).toBe(1)
      expect(find(series, "db.client.connection.max", readers).value).toBe(2)
      expect(find(series, "db.client.connection.idle.max", readers).value).toBe(2)
      expect(find(series, "db.client.connection.idle.min", readers).value).toBe(0)
      // The layer closed: no connection is open, nobody waits.
      for (const lane of [writer, readers]) {
        for (const state of ["idle", "used"]) {
          expect(find(series, "db.client.connection.count", { ...lane, "db.client.connection.state": state }).value)
            .toBe(0)
        }
        expect(find(series, "db.client.connection.pending_requests", lane).value).toBe(0)
        // Every wait ended with a connection.
        expect(find(series, "db.client.connection.timeouts", lane).count).toBe(0)
      }
      // Histograms: one creation per connection, one wait and one use per lease.
      expect(find(series, "db.client.connection.create_time", writer).count).toBe(1)
      expect(find(series, "db.client.connection.create_time", readers).count).toBe(1)
      const writerWaits = find(series, "db.client.connection.wait_time", writer)
      const writerUses = find(series, "db.client.connection.use_time", writer)
      expect(writerWaits.count).toBe(7)
      expect(writerUses.count).toBe(7)
      expect(find(series, "db.client.connection.wait_time", readers).count).toBe(2)
      expect(find(series, "db.client.connection.use_time", readers).count).toBe(2)
      // The TestClock moved only by the 250 ms: the waiter's wait and the holder's use are those, the rest 0.
      expect(writerWaits.sum).toBeCloseTo(0.25, 6)
      expect(inBucket(writerWaits, 0.1, 0.5)).toBe(1)
      expect(writerUses.sum).toBeCloseTo(0.25, 6)
      expect(inBucket(writerUses, 0.1, 0.5)).toBe(1)
    }))

  it.scoped("poolName names the pool in every series; SqlitePool's lanes share it, told apart by sqlsim.lane", () =>
    Effect.gen(function*() {
      const filename = yield* tempDatabase
      // Metrics are global to the process: a name of this test's own.
      const poolName = `orders ${filename}`
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const reader = yield* SqlitePool.Reader
        yield* sql`CREATE TABLE t (x)`
        yield* reader`SELECT count(*) FROM t`
      }).pipe(Effect.provide(SqlitePool.layer({ filename, poolName, readConnections: 1 })))
      const series = yield* seriesOf(poolName)
      expect(new Set(series.map((s) => s.attributes["db.client.connection.pool.name"]))).toEqual(new Set([poolName]))
      expect(find(series, "db.client.connection.wait_time", { "sqlsim.lane": "writer" }).count).toBe(1)
      expect(find(series, "db.client.connection.wait_time", { "sqlsim.lane": "reader" }).count).toBe(1)
      // Nothing under the file's default names.
      expect(yield* seriesOf(filename)).toEqual([])

      const pool = yield* ConnectionPool.make({ filename, poolName: `archive ${filename}`, maxConnections: 1 })
      yield* pool.use(() => Effect.void)
      const own = find(yield* seriesOf(`archive ${filename}`), "db.client.connection.wait_time", {})
      expect(own.count).toBe(1)
    }))
})
