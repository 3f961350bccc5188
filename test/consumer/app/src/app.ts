// A small app written the way a user writes one against the published packages: SqlitePool.layer as the database,
// a migration through SqliteMigrator (@effect/sql-sqlite-node) with its schema dump, a Model repository (@effect/sql),
// a Reader query, streams on both lanes.
// test/consumer/run.sh type-checks it under nodenext and bundler resolution, then runs it with plain node.
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Model, SqlClient, SqlError } from "@effect/sql"
import { SqliteMigrator } from "@effect/sql-sqlite-node"
import { PoolError, SqlitePool } from "@sqlsim/sqlite-pool"
import { Chunk, Effect, Layer, Option, Schema, Stream } from "effect"
import * as assert from "node:assert/strict"
import * as fs from "node:fs"
import * as path from "node:path"

class Event extends Model.Class<Event>("Event")({
  id: Model.Generated(Schema.Number),
  label: Schema.String
}) {}

class Events extends Effect.Service<Events>()("app/Events", {
  effect: Model.makeRepository(Event, { tableName: "events", spanPrefix: "Events", idColumn: "id" })
}) {}

const databaseFile = path.resolve(process.argv[2] ?? "app.db")
const schemaDirectory = path.join(path.dirname(databaseFile), "schema")

const Migrations = SqliteMigrator.layer({
  loader: SqliteMigrator.fromRecord({
    "1_create_events": Effect.flatMap(
      SqlClient.SqlClient,
      (sql) => sql`CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, label TEXT NOT NULL)`
    )
  }),
  // The dump runs the sqlite3 shell on the file of the layer's SqliteClient.SqliteClient.
  schemaDirectory
}).pipe(Layer.provide(NodeContext.layer))

const Database = SqlitePool.layer({ filename: databaseFile, readConnections: 2 })

const AppLayer = Layer.mergeAll(Events.Default, Migrations).pipe(Layer.provideMerge(Database))

const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const events = yield* Events
  const reader = yield* SqlitePool.Reader

  const migrations = yield* sql<{ migration_id: number; name: string }>`
    SELECT migration_id, name FROM effect_sql_migrations ORDER BY migration_id`
  assert.deepEqual(migrations.map((row) => [row.migration_id, row.name]), [[1, "create_events"]])

  const signup = yield* events.insert(Event.insert.make({ label: "user.signup" }))
  const login = yield* events.insert(Event.insert.make({ label: "user.login" }))
  assert.deepEqual([signup.id, login.id], [1, 2])
  yield* events.update(Event.update.make({ id: login.id, label: "user.login.ok" }))
  const found = yield* events.findById(login.id)
  assert.equal(Option.getOrThrow(found).label, "user.login.ok")

  const rows = yield* reader<{ id: number; label: string }>`SELECT id, label FROM events ORDER BY id`
  assert.deepEqual(rows, [{ id: 1, label: "user.signup" }, { id: 2, label: "user.login.ok" }])
  const readerWrite = yield* Effect.flip(reader`INSERT INTO events (label) VALUES ('through the reader')`)
  assert.ok(readerWrite instanceof SqlError.SqlError)

  const dump = fs.readFileSync(path.join(schemaDirectory, "_schema.sql"), "utf8")
  assert.match(dump, /CREATE TABLE events/)

  for (const client of [sql, reader]) {
    const streamed = yield* Stream.runCollect(client<{ id: number }>`SELECT id FROM events ORDER BY id`.stream)
    assert.deepEqual(Chunk.toReadonlyArray(streamed).map((row) => row.id), [1, 2])
  }

  const pool = yield* SqlitePool.SqlitePool
  const health = yield* pool.healthCheck
  assert.equal(health.ok, true)
  const stats = yield* pool.stats
  return {
    migrations: migrations.length,
    rows,
    readerWriteRejected: readerWrite._tag,
    health: { ok: health.ok },
    writerCreated: stats.writer.created,
    readersCreated: stats.readers.created
  }
})

// Typed errors reach the app: a bad configuration is a PoolConfigError naming the field.
const badConfig = Effect.flip(Layer.build(SqlitePool.layer({ readConnections: -1 }))).pipe(Effect.scoped)

Effect.gen(function*() {
  const summary = yield* program.pipe(Effect.provide(AppLayer))
  const configError = yield* badConfig
  assert.ok(configError instanceof PoolError.PoolConfigError)
  assert.equal(configError.field, "readConnections")
  console.log(JSON.stringify({ ...summary, configError: configError.field }))
}).pipe(Effect.runPromise).catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
