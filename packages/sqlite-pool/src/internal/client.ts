/**
 * The `SqliteClient`-shaped client of one connection (what `PooledConnection.sql` is): `@effect/sql`'s client over
 * the connector's connection, with SqliteClient's `export`, `backup` and `loadExtension` where the connection has a
 * local driver handle.
 *
 * @internal
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Client from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as Statement from "@effect/sql/Statement"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Connector from "../Connector.js"
import * as Transaction from "./transaction.js"

const unavailable = (what: string) =>
  Effect.fail(new SqlError({ cause: undefined, message: `${what} needs a local SQLite connection` }))

/** What a client is built with, as SqliteClient's configuration says it. */
export interface Options {
  readonly filename: string
  readonly transformQueryNames?: ((name: string) => string) | undefined
  readonly transformResultNames?: ((name: string) => string) | undefined
  readonly spanAttributes?: Readonly<Record<string, unknown>> | undefined
  readonly prepareCacheSize?: number | undefined
  readonly prepareCacheTTL?: Duration.DurationInput | undefined
}

/** SqliteClient's own members, beside those of every `SqlClient`. */
export interface SqliteMembers {
  readonly export: SqliteClient.SqliteClient["export"]
  readonly backup: SqliteClient.SqliteClient["backup"]
  readonly loadExtension: SqliteClient.SqliteClient["loadExtension"]
}

/**
 * The one place a `SqlClient` becomes a `SqliteClient` (a connection's client, and the writer lane): its config as
 * SqliteClient reports it and its own members. SqliteClient declares `updateValues: never`, which no value can
 * have, so the result is asserted rather than checked.
 */
export const asSqliteClient = (
  client: Client.SqlClient,
  options: Options,
  members: SqliteMembers
): SqliteClient.SqliteClient =>
  Object.assign(client, {
    [SqliteClient.TypeId]: SqliteClient.TypeId,
    config: {
      filename: options.filename,
      transformQueryNames: options.transformQueryNames,
      transformResultNames: options.transformResultNames,
      spanAttributes: options.spanAttributes,
      prepareCacheSize: options.prepareCacheSize,
      prepareCacheTTL: options.prepareCacheTTL
    },
    ...members
  }) as unknown as SqliteClient.SqliteClient

/** How the client of one connection runs `withTransaction` (the lanes' implementation, on that connection). */
export interface TransactionOptions {
  /** "BEGIN IMMEDIATE" on a read-write connection: the write lock up front, so nothing inside meets SQLITE_BUSY */
  readonly begin: string
  readonly retryBusy: <A>(effect: Effect.Effect<A, SqlError>) => Effect.Effect<A, SqlError>
  /** takes the connection out of use (its ROLLBACK failed) */
  readonly invalidate: Effect.Effect<void>
}

/** The compiler, the row transform and the span attributes of SqliteClient for `options`. */
export const clientOptions = (options: Options, extraAttributes: ReadonlyArray<readonly [string, unknown]> = []) => ({
  compiler: Statement.makeCompilerSqlite(options.transformQueryNames),
  transformRows: options.transformResultNames === undefined
    ? undefined
    : Statement.defaultTransforms(options.transformResultNames).array,
  spanAttributes: [
    ...Object.entries(options.spanAttributes ?? {}),
    ["db.system.name", "sqlite"] as const,
    ...extraAttributes
  ]
})

export const make = (
  connection: Connector.Connection,
  options: Options,
  transaction: TransactionOptions
): Effect.Effect<SqliteClient.SqliteClient, never, Reactivity.Reactivity> =>
  Effect.map(
    Client.make({ acquirer: Effect.succeed(connection.connection), ...clientOptions(options) }),
    (client) => {
      const driver = connection.driver
      const withTransaction = Transaction.makeWithTransaction({
        lease: Effect.succeed([connection.connection, undefined] as const),
        invalidate: () => transaction.invalidate,
        begin: transaction.begin,
        retryBusy: transaction.retryBusy,
        spanAttributes: clientOptions(options).spanAttributes
      })
      return asSqliteClient(Object.assign(client, { withTransaction }), options, {
        export: driver?.export ?? unavailable("export"),
        backup: (destination) => driver?.backup(destination) ?? unavailable("backup"),
        loadExtension: (path) => driver?.loadExtension(path) ?? unavailable("loadExtension")
      })
    }
  )
