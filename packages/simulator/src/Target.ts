/**
 * What a workload runs against, with the same statements either way:
 *
 * - `pooled`: the `SqlitePool` layer of `@sqlsim/sqlite-pool` (reads on its `Reader` connections, writes and
 *   transactions on its writer lane);
 * - `perOperation`: a fresh connection for every operation, opened through the same `Connector` (same pragmas, same
 *   injected faults), with the same connect retries and busy retries as the pool, closed when the operation ends.
 *
 * @since 0.1.0
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Connector, type PoolConfig, PoolError, type PoolStats, RetryPolicy, SqlitePool } from "@sqlsim/sqlite-pool"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { Operation, Target } from "./Workload.js"

/**
 * The two ways of running a workload.
 *
 * @since 0.1.0
 * @category models
 */
export type Mode = "pooled" | "connect-per-operation"

/**
 * Connection counts of a target, the same for both modes (for the pooled one: writer and readers added up).
 *
 * @since 0.1.0
 * @category models
 */
export interface ConnectionCounts {
  readonly created: number
  readonly closed: number
  /**
   * operations served by a connection that already existed: their first statement ran on a connection that had
   * served an operation before (counted by the fault injector, which sees every statement; the pool's own lease
   * counters are in its statistics)
   */
  readonly reused: number
  readonly invalidated: number
  readonly connectFailures: number
  readonly connectRetries: number
  readonly busyRetries: number
  readonly timeouts: number
  /** connections the target may hold at once (pool capacity; unbounded, as the number of workers, per operation) */
  readonly capacity: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface MeasuredTarget extends Target {
  readonly mode: Mode
  /** readable after the target's Scope closed (then the final counts); `reused` is the simulation's */
  readonly counts: Effect.Effect<Omit<ConnectionCounts, "reused">>
  /** the pool's own statistics (pooled mode only) */
  readonly poolStats: Effect.Effect<SqlitePool.Stats | undefined>
  /**
   * A long reader: a read transaction that reads one row, so that it holds its snapshot, then holds it `holdMs`
   * (the pooled one on a Reader connection, the other on a read-only connection of its own), under the span
   * `longReadSpan`.
   */
  readonly longRead: (holdMs: number) => Effect.Effect<void, unknown>
}

/**
 * The span a transaction of the workload runs under: what the pool's hold warnings and timeouts name as its holder.
 *
 * @since 0.2.0
 * @category constants
 */
export const transactionSpan = "sim.transaction"

/**
 * The span of the long reader (`MeasuredTarget.longRead`).
 *
 * @since 0.2.0
 * @category constants
 */
export const longReadSpan = "sim.long-read"

/** The long reader's statement: a read of the first row, as the workload's reads. */
const longReadOperation: Operation = { index: -1, kind: "read", key: 1 }

/** Statements shared by both targets. */
const statements = (writer: SqlClient.SqlClient, reader: SqlClient.SqlClient) => ({
  read: (operation: Operation) => reader`SELECT id, value FROM sim_items WHERE id = ${operation.key}`,
  insert: (operation: Operation) =>
    writer`INSERT INTO sim_items (value, operation) VALUES (${`item ${operation.index}`}, ${operation.index})`,
  count: (operation: Operation) =>
    writer`UPDATE sim_counters SET hits = hits + 1 WHERE id = ${1 + (operation.key % counters)}`
})

/**
 * Rows of `sim_counters` that transactions update.
 *
 * @since 0.1.0
 * @category constants
 */
export const counters = 16

const hold = (holdMs: number) => holdMs > 0 ? Effect.sleep(Duration.millis(holdMs)) : Effect.void

/** A read transaction that reads, so that it holds its snapshot, then holds it `holdMs`. */
const holdSnapshot = (sql: SqlClient.SqlClient, holdMs: number) =>
  sql.withTransaction(Effect.zipRight(statements(sql, sql).read(longReadOperation), hold(holdMs))).pipe(
    Effect.withSpan(longReadSpan)
  )

const add = (a: PoolStats.PoolStats, b: PoolStats.PoolStats) => ({
  created: a.created + b.created,
  closed: a.closed + b.closed,
  invalidated: a.invalidated + b.invalidated,
  connectFailures: a.connectFailures + b.connectFailures,
  connectRetries: a.retries + b.retries,
  timeouts: a.timeouts + b.timeouts
})

/**
 * The pooled target: a `SqlitePool` layer built in the current Scope (closed with it), with `connector` as its
 * Connector.
 *
 * @since 0.1.0
 * @category constructors
 */
export const pooled = (
  input: PoolConfig.Input,
  options: { readonly connector: Connector.Service; readonly holdMs: number }
): Effect.Effect<MeasuredTarget, PoolError.PoolConfigError | PoolError.ConnectError, Scope.Scope> =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      SqlitePool.layer(input).pipe(Layer.provide(Layer.succeed(Connector.Connector, options.connector)))
    )
    const writer = Context.get(context, SqlClient.SqlClient)
    const reader = Context.get(context, SqlitePool.Reader)
    const service = Context.get(context, SqlitePool.SqlitePool)
    const run = statements(writer, reader)
    const capacity = 1 + service.config.readConnections
    return {
      mode: "pooled",
      run: (operation) => {
        switch (operation.kind) {
          case "read":
            return Effect.asVoid(run.read(operation))
          case "write":
            return Effect.asVoid(run.insert(operation))
          case "transaction":
            return writer.withTransaction(
              Effect.zipRight(Effect.zipRight(run.count(operation), run.insert(operation)), hold(options.holdMs))
            ).pipe(Effect.withSpan(transactionSpan))
        }
      },
      gauges: Effect.map(service.stats, ({ readers, wal, writer }) => ({
        open: writer.open + readers.open,
        inUse: writer.inUse + readers.inUse,
        idle: writer.idle + readers.idle,
        waiting: writer.waiting + readers.waiting,
        walBytes: wal?.bytes
      })),
      counts: Effect.map(service.stats, (stats) => ({
        ...add(stats.writer, stats.readers),
        busyRetries: stats.busyRetries,
        capacity
      })),
      poolStats: service.stats,
      longRead: (holdMs) => holdSnapshot(reader, holdMs)
    } satisfies MeasuredTarget
  })

/**
 * The connect-per-operation target: every operation opens its own connection through `connector` (read-only for
 * reads, as the pool's readers are), retries a failed connect on the pool's schedule, runs the operation's statements
 * (busy retried as on the pool's writer lane; transactions begin with `BEGIN IMMEDIATE`), and closes the connection.
 *
 * @since 0.1.0
 * @category constructors
 */
export const perOperation = (
  config: PoolConfig.CommonConfig,
  options: { readonly connector: Connector.Service; readonly holdMs: number; readonly workers: number }
): MeasuredTarget => {
  const counts = {
    created: 0,
    closed: 0,
    invalidated: 0,
    connectFailures: 0,
    connectRetries: 0,
    timeouts: 0,
    capacity: options.workers
  }
  const busy: RetryPolicy.BusyCounter = { retries: 0 }
  const retryBusy = RetryPolicy.retryWhileBusy(config, busy)
  // As the pool does: the files the latest connection opened, so that a new file is not opened with the old -wal.
  let previousFile: Connector.FileIdentity | undefined

  const connect = (readOnly: boolean) =>
    Effect.gen(function*() {
      const attempt = options.connector.connect({
        filename: config.filename,
        readOnly,
        busyTimeout: config.busyTimeout,
        pageCacheKiB: config.pageCacheKiB,
        previousFile
      })
      const connection = yield* RetryPolicy.retryConnect(attempt, config, {
        failed: () => counts.connectFailures++,
        retrying: () => counts.connectRetries++
      })
      counts.created++
      previousFile = connection.fileIdentity ?? previousFile
      yield* Effect.addFinalizer(() => Effect.sync(() => counts.closed++))
      return yield* Connector.client(connection, config.filename, { readOnly, retryBusy })
    })

  return {
    mode: "connect-per-operation",
    run: (operation) =>
      Effect.scoped(Effect.gen(function*() {
        const sql = yield* connect(operation.kind === "read")
        const run = statements(sql, sql)
        switch (operation.kind) {
          case "read":
            return yield* Effect.asVoid(run.read(operation))
          case "write":
            return yield* Effect.asVoid(retryBusy(run.insert(operation)))
          case "transaction":
            return yield* sql.withTransaction(
              Effect.zipRight(Effect.zipRight(run.count(operation), run.insert(operation)), hold(options.holdMs))
            ).pipe(Effect.withSpan(transactionSpan))
        }
      })),
    gauges: Effect.sync(() => {
      const open = counts.created - counts.closed
      return { open, inUse: open, idle: 0, waiting: 0 }
    }),
    counts: Effect.sync(() => ({ ...counts, busyRetries: busy.retries })),
    poolStats: Effect.succeed(undefined),
    longRead: (holdMs) => Effect.scoped(Effect.flatMap(connect(true), (sql) => holdSnapshot(sql, holdMs)))
  }
}
