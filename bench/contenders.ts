/**
 * The Effect contenders, built in the current Scope: `@effect/sql-sqlite-node`'s single-connection client, this
 * project's ConnectionPool, and its SqlitePool layer (writer lane and Reader).
 *
 * @since 0.1.0
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { ConnectionPool, SqlitePool } from "@sqlsim/sqlite-pool"
import type { PoolConfig } from "@sqlsim/sqlite-pool"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/**
 * `@effect/sql-sqlite-node`'s client: one connection behind a semaphore of one (what an Effect user would otherwise
 * pick).
 *
 * @since 0.1.0
 * @category contenders
 */
export const singleClient = (filename: string) => SqliteClient.make({ filename }).pipe(Effect.provide(Reactivity.layer))

/**
 * This project's ConnectionPool with the given configuration on top of the defaults.
 *
 * @since 0.1.0
 * @category contenders
 */
export const connectionPool = (input: PoolConfig.Input) => ConnectionPool.make(input)

/**
 * This project's SqlitePool layer, built in the current Scope: the writer lane (`SqlClient.SqlClient`) and the
 * Reader.
 *
 * @since 0.1.0
 * @category contenders
 */
export const sqlitePool = (input: PoolConfig.SqliteInput) =>
  Effect.map(Layer.build(SqlitePool.layer(input)), (context) => ({
    writer: Context.get(context, SqlClient.SqlClient),
    reader: Context.get(context, SqlitePool.Reader),
    service: Context.get(context, SqlitePool.SqlitePool)
  }))
