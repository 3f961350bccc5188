/**
 * A lane: an `@effect/sql` client whose connections come from a ConnectionPool. The writer lane (a pool of one)
 * retries SQLITE_BUSY from other processes asynchronously, on the exponential schedule, so the event loop never
 * blocks in SQLite's busy handler; the reader lane turns SQLITE_READONLY into a message that says where writes go.
 *
 * @internal
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as Client from "@effect/sql/SqlClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Statement from "@effect/sql/Statement"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type * as ConnectionPool from "../ConnectionPool.js"
import type { PoolConfig } from "../PoolConfig.js"
import * as RetryPolicy from "../RetryPolicy.js"
import * as SqliteCode from "../SqliteCode.js"

export interface BusyCounter {
  retries: number
}

/**
 * Retries an effect while it fails with SQLITE_BUSY or SQLITE_LOCKED: exponential delays from retryBaseDelay,
 * each capped at retryMaxDelay (jittered when asked), for at most acquireTimeout in all.
 */
export const retryBusy = (config: PoolConfig, counter: BusyCounter) => {
  const schedule = RetryPolicy.backoff(config).pipe(
    Schedule.upTo(config.acquireTimeout),
    Schedule.tapOutput(() => Effect.sync(() => counter.retries++))
  )
  return <A>(effect: Effect.Effect<A, SqlError>): Effect.Effect<A, SqlError> =>
    Effect.flatMap(Clock.currentTimeMillis, (startedAt) =>
      effect.pipe(
        Effect.retry({ schedule, while: SqliteCode.isBusy }),
        Effect.catchIf(SqliteCode.isBusy, (error) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) =>
            Effect.fail(
              new SqlError({
                cause: error.cause,
                message: `the database is locked by another connection (${SqliteCode.codeOf(error)}); ` +
                  `still locked after ${now - startedAt} ms of retries: retry later, or find the long transaction ` +
                  `holding the write lock`
              })
            )))
      ))
}

const mapConnection = (
  connection: SqlConnection.Connection,
  wrap: <A>(effect: Effect.Effect<A, SqlError>) => Effect.Effect<A, SqlError>
): SqlConnection.Connection => ({
  execute: (sql, params, transformRows) => wrap(connection.execute(sql, params, transformRows)),
  executeRaw: (sql, params) => wrap(connection.executeRaw(sql, params)),
  executeStream: (sql, params, transformRows) => connection.executeStream(sql, params, transformRows),
  executeValues: (sql, params) => wrap(connection.executeValues(sql, params)),
  executeUnprepared: (sql, params, transformRows) => wrap(connection.executeUnprepared(sql, params, transformRows))
})

const readOnlyMessage = <A>(effect: Effect.Effect<A, SqlError>): Effect.Effect<A, SqlError> =>
  Effect.catchIf(
    effect,
    (error) => SqliteCode.codeOf(error)?.startsWith("SQLITE_READONLY") === true,
    (error) =>
      Effect.fail(
        new SqlError({
          cause: error.cause,
          message: "SqlitePool.Reader is read-only: run writes through SqlClient.SqlClient (the writer lane)"
        })
      )
  )

const acquireError = (error: { readonly message: string }) => new SqlError({ cause: error, message: error.message })

export interface Lane {
  readonly client: Client.SqlClient
  /** a lease of one raw connection with the pooled connection behind it (for transactions) */
  readonly lease: Effect.Effect<
    readonly [SqlConnection.Connection, ConnectionPool.PooledConnection],
    SqlError,
    Scope.Scope
  >
  readonly pool: ConnectionPool.Service
}

/** A lease: a pooled connection, and its one raw `@effect/sql` connection reserved for this scope. */
const leaseFrom = (pool: ConnectionPool.Service) =>
  Effect.flatMap(
    Effect.mapError(pool.acquire, acquireError),
    (pooled) => Effect.map(pooled.sql.reserve, (connection) => [connection, pooled] as const)
  )

export const makeLane = (options: {
  readonly pool: ConnectionPool.Service
  readonly kind: "writer" | "reader"
  readonly retryBusy: <A>(effect: Effect.Effect<A, SqlError>) => Effect.Effect<A, SqlError>
  readonly withTransaction: (lane: Omit<Lane, "client">) => Client.SqlClient["withTransaction"]
}): Effect.Effect<Lane, never, Reactivity.Reactivity> =>
  Effect.gen(function*() {
    const { kind, pool } = options
    const statementWrap = kind === "writer" ? options.retryBusy : readOnlyMessage
    const lease = Effect.map(leaseFrom(pool), ([connection, pooled]) =>
      [kind === "reader" ? mapConnection(connection, readOnlyMessage) : connection, pooled] as const)
    const client = yield* Client.make({
      acquirer: Effect.map(leaseFrom(pool), ([connection]) =>
        mapConnection(connection, statementWrap)),
      transactionAcquirer: Effect.map(lease, ([connection]) =>
        connection),
      compiler: Statement.makeCompilerSqlite(),
      spanAttributes: [["db.system.name", "sqlite"], ["sqlsim.lane", kind]]
    })
    const withTransaction = options.withTransaction({ lease, pool })
    return { client: Object.assign(client, { withTransaction }), lease, pool }
  })
