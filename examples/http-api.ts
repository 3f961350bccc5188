// Run with: pnpm tsx examples/http-api.ts
/**
 * A small HTTP API on `SqlitePool.layer`, with `@effect/platform`'s router:
 *
 * - `GET /item/:id`: a point read on `SqlitePool.Reader`; 404 when there is no such item.
 * - `POST /item` with `{ "name": string, "value": integer }`: inserts the item and adds it to the running totals in
 *   one transaction on the writer lane; 201 with the new item.
 * - `GET /report`: an aggregate over every item on the Reader (count, sum and average per bucket of `value % 10`).
 * - `GET /health`: `SqlitePool.healthCheck`; 200 with the report, 503 when the database cannot answer.
 *
 * Bad input (an id that is not a positive integer, a body that is not the JSON above) is a 400 that says what is
 * wrong. `PORT` sets the port (default 3000; 0 picks a free one), `DATABASE_FILE` the database (default
 * `sqlsim-http-api.db` in the system's temporary directory), `WRITE_WAIT` a wait inside every write transaction (a
 * duration such as `50 millis`, default none: see `routes`). SIGTERM or Ctrl-C stops accepting connections, lets the
 * requests in flight finish, then closes the pool, and the process exits with 0.
 *
 * The routes need only `SqlClient.SqlClient` and `SqlitePool.Reader`, so the same app can run on
 * `@effect/sql-sqlite-node`'s `SqliteClient` with the Reader tag pointing at that one connection (the HTTP bench
 * suite does that, `pnpm bench -- --only=http`).
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { SqlClient } from "@effect/sql"
import { SqlitePool } from "@sqlsim/sqlite-pool"
import { Config, Duration, Effect, Layer, Schema } from "effect"
import { createServer } from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/**
 * The tables: the items, and one row of running totals that every write transaction updates with its item (so a
 * transaction applied in part would show as totals that do not match the items).
 */
export const SCHEMA: ReadonlyArray<string> = [
  "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, value INTEGER NOT NULL)",
  "CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY CHECK (id = 1), items INTEGER NOT NULL, value INTEGER NOT NULL)",
  "INSERT OR IGNORE INTO totals (id, items, value) VALUES (1, 0, 0)"
]

/** Creates the tables when missing. */
export const migrate = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* Effect.forEach(SCHEMA, (statement) => sql.unsafe(statement), { discard: true })
})

/** The report: count, sum and average of the items' values in ten buckets; it reads every item. */
export const REPORT = "SELECT value % 10 AS bucket, count(*) AS items, sum(value) AS total, avg(value) AS average " +
  "FROM items GROUP BY bucket ORDER BY bucket"

const ItemId = Schema.Struct({ id: Schema.NumberFromString.pipe(Schema.int(), Schema.positive()) })
const NewItem = Schema.Struct({ name: Schema.NonEmptyTrimmedString, value: Schema.Int })

interface Item {
  readonly id: number
  readonly name: string
  readonly value: number
}

const badRequest = (message: string) => HttpServerResponse.unsafeJson({ error: message }, { status: 400 })

/**
 * @param options.writeWait time each write transaction spends between its two statements, standing for a call to
 * another service made while the transaction is open (0 here; the bench's scenarios use 50 ms)
 */
export const routes = (options: { readonly writeWait?: Duration.DurationInput } = {}) => {
  const writeWait = Duration.decode(options.writeWait ?? 0)
  return HttpRouter.empty.pipe(
    HttpRouter.get(
      "/item/:id",
      Effect.gen(function*() {
        const { id } = yield* HttpRouter.schemaPathParams(ItemId)
        const reader = yield* SqlitePool.Reader
        const [item] = yield* reader<Item>`SELECT id, name, value FROM items WHERE id = ${id}`
        return item === undefined
          ? HttpServerResponse.unsafeJson({ error: `no item ${id}` }, { status: 404 })
          : HttpServerResponse.unsafeJson(item)
      }).pipe(
        Effect.catchTag("ParseError", () => Effect.succeed(badRequest("the id must be a positive integer")))
      )
    ),
    HttpRouter.post(
      "/item",
      Effect.gen(function*() {
        const { name, value } = yield* HttpServerRequest.schemaBodyJson(NewItem)
        const sql = yield* SqlClient.SqlClient
        const item = yield* sql.withTransaction(Effect.gen(function*() {
          const [inserted] = yield* sql<Item>`INSERT INTO items (name, value) VALUES (${name}, ${value})
            RETURNING id, name, value`
          if (!Duration.isZero(writeWait)) yield* Effect.sleep(writeWait)
          yield* sql`UPDATE totals SET items = items + 1, value = value + ${value} WHERE id = 1`
          return inserted!
        }))
        return HttpServerResponse.unsafeJson(item, { status: 201 })
      }).pipe(
        Effect.catchTags({
          ParseError: () =>
            Effect.succeed(badRequest("the body must be {\"name\": non-empty string, \"value\": integer}")),
          RequestError: () => Effect.succeed(badRequest("the body must be JSON"))
        })
      )
    ),
    HttpRouter.get(
      "/report",
      Effect.gen(function*() {
        const reader = yield* SqlitePool.Reader
        const buckets = yield* reader.unsafe(REPORT)
        return HttpServerResponse.unsafeJson({ buckets })
      })
    )
  )
}

/** The health endpoint: the pool's own check of both lanes. */
export const health = HttpRouter.empty.pipe(
  HttpRouter.get(
    "/health",
    Effect.gen(function*() {
      const pool = yield* SqlitePool.SqlitePool
      const report = yield* pool.healthCheck
      return HttpServerResponse.unsafeJson(report, { status: report.ok ? 200 : 503 })
    }).pipe(
      Effect.catchAll((error) =>
        Effect.succeed(HttpServerResponse.unsafeJson({ ok: false, error: error.message }, { status: 503 }))
      )
    )
  )
)

/**
 * Serves an app. When the layer closes (SIGTERM), the handlers are removed and the server stops listening, then waits
 * for its connections to end; responses sent from then on say `Connection: close`, so that a client's kept-alive
 * connection ends with the request in flight on it instead of holding the close for its idle timeout.
 */
export const serve = <E, R>(app: HttpApp.Default<E, R>) =>
  Layer.unwrapScoped(Effect.gen(function*() {
    let closing = false
    yield* Effect.addFinalizer(() => Effect.sync(() => (closing = true)))
    const closeWhenClosing = HttpApp.appendPreResponseHandler((_request, response) =>
      Effect.succeed(closing ? HttpServerResponse.setHeader(response, "connection", "close") : response)
    )
    return HttpServer.serve(Effect.zipRight(closeWhenClosing, app))
  }))

/**
 * The whole app on `SqlitePool.layer`, configured from the environment. The configuration is read first, so a bad
 * value stops the app before it opens the database.
 */
export const main = Layer.unwrapEffect(Effect.gen(function*() {
  // Config.port refuses 0, which asks the system for a free port.
  const port = yield* Config.integer("PORT").pipe(
    Config.validate({ message: "PORT must be an integer from 0 to 65535", validation: (n) => n >= 0 && n <= 65535 }),
    Config.withDefault(3000)
  )
  const filename = yield* Config.string("DATABASE_FILE").pipe(
    Config.withDefault(path.join(os.tmpdir(), "sqlsim-http-api.db"))
  )
  const writeWait = yield* Config.duration("WRITE_WAIT").pipe(Config.withDefault(Duration.zero))
  return serve(HttpRouter.concat(routes({ writeWait }), health)).pipe(
    HttpServer.withLogAddress,
    Layer.provide(NodeHttpServer.layer(createServer, { port })),
    Layer.provide(Layer.effectDiscard(migrate).pipe(Layer.provideMerge(SqlitePool.layer({ filename }))))
  )
}))

// Served only when run as a script; the bench imports the routes.
if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  Layer.launch(main).pipe(NodeRuntime.runMain)
}
