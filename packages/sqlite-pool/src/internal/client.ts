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
import * as Effect from "effect/Effect"
import type * as Connector from "../Connector.js"

const unavailable = (what: string) =>
  Effect.fail(new SqlError({ cause: undefined, message: `${what} needs a local SQLite connection` }))

export const make = (
  connection: Connector.Connection,
  filename: string
): Effect.Effect<SqliteClient.SqliteClient, never, Reactivity.Reactivity> =>
  Effect.map(
    Client.make({
      acquirer: Effect.succeed(connection.connection),
      compiler: Statement.makeCompilerSqlite(),
      spanAttributes: [["db.system.name", "sqlite"]]
    }),
    (client) => {
      const driver = connection.driver
      return Object.assign(client, {
        [SqliteClient.TypeId]: SqliteClient.TypeId,
        config: { filename },
        export: driver?.export ?? unavailable("export"),
        backup: (destination: string) => driver?.backup(destination) ?? unavailable("backup"),
        loadExtension: (path: string) => driver?.loadExtension(path) ?? unavailable("loadExtension")
      }) as unknown as SqliteClient.SqliteClient
    }
  )
