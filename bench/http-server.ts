/**
 * One contender of the HTTP suite (bench/cases/http.ts) as a server process of its own, so that its event loop is
 * not the load generator's: the routes of examples/http-api.ts, served by that example's `serve`, on
 *
 * - `single`: `@effect/sql-sqlite-node`'s SqliteClient, one connection; the Reader tag is that same client, so reads
 *   wait behind a write transaction as they would in an app written for it;
 * - `pool`: `SqlitePool.layer` with its defaults (4 Reader connections on the main thread);
 * - `threads`: the same with `readerThreads: true`.
 *
 * Logs "Listening on http://...:PORT" (an ephemeral port); SIGTERM closes it.
 *
 * Run with: node --import tsx bench/http-server.ts '{"contender":"pool","filename":"/tmp/http.db","writeWaitMs":50}'
 *
 * @since 0.1.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as HttpServer from "@effect/platform/HttpServer"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { SqlitePool } from "@sqlsim/sqlite-pool"
import * as Layer from "effect/Layer"
import { createServer } from "node:http"
import { routes, serve } from "../examples/http-api.js"

/**
 * @since 0.1.0
 * @category models
 */
export type Contender = "single" | "pool" | "threads"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly contender: Contender
  readonly filename: string
  readonly writeWaitMs: number
}

const database = ({ contender, filename }: Options): Layer.Layer<SqlClient.SqlClient | SqlitePool.Reader, unknown> => {
  switch (contender) {
    case "single":
      return Layer.effect(SqlitePool.Reader, SqlClient.SqlClient).pipe(
        Layer.provideMerge(SqliteClient.layer({ filename }))
      )
    case "pool":
      return SqlitePool.layer({ filename })
    case "threads":
      return SqlitePool.layer({ filename, readerThreads: true })
  }
}

const options = JSON.parse(process.argv[2] ?? "{}") as Options
serve(routes({ writeWait: options.writeWaitMs })).pipe(
  HttpServer.withLogAddress,
  Layer.provide(NodeHttpServer.layer(createServer, { port: 0 })),
  Layer.provide(database(options)),
  Layer.launch,
  NodeRuntime.runMain
)
