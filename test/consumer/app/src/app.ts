// A small app written the way a user writes one against the published packages: SqlitePool.layer as the database,
// a migration through SqliteMigrator (@effect/sql-sqlite-node), a Model repository (@effect/sql), a Reader query.
// test/consumer/run.sh type-checks it under nodenext and bundler resolution, then runs it with plain node.
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Model, SqlClient, SqlError } from "@effect/sql"
import { SqliteMigrator } from "@effect/sql-sqlite-node"
import { PoolError, SqlitePool } from "@sqlsim/sqlite-pool"
import { Effect, Layer, Option, Schema } from "effect"
import * as assert from "node:assert/strict"
import * as path from "node:path"

class Event extends Model.Class<Event>("Event")({
  id: Model.Generated(Schema.Number),
  label: Schema.String
}) {}

class Events extends Effect.Service<Events>()("app/Events", {
  effect: Model.makeRepository(Event, { tableName: "events", spanPrefix: "Events", idColumn: "id" })
}) {}

const databaseFile = path.resolve(process.argv[2] ?? "app.db")

const Migrations = SqliteMigrator.layer({
  loader: SqliteMigrator.fromRecord({
    "1_create_events": Effect.flatMap(
      SqlClient.SqlClient,
      (sql) => sql`CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, label TEXT NOT NULL)`
    )
  })
  // PARITY (issue 13): once SqlitePool.layer also provides SqliteClient.SqliteClient, pass
  // `schemaDirectory: <a temporary directory>` here and assert in `program` that `_schema.sql` there holds
  // `CREATE TABLE events`. Today the Migrator skips the dump ("Service not found: @effect/sql-sqlite-node/SqliteClient").
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

  // PARITY (issue 13): once `.stream` works on both lanes, assert here that
  // `sql\`SELECT id FROM events ORDER BY id\`.stream` and the same on `reader` each yield [1, 2].

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
const badConfig = Effect.flip(Layer.build(SqlitePool.layer({ maxConnections: 0 }))).pipe(Effect.scoped)

Effect.gen(function*() {
  const summary = yield* program.pipe(Effect.provide(AppLayer))
  const configError = yield* badConfig
  assert.ok(configError instanceof PoolError.PoolConfigError)
  assert.equal(configError.field, "maxConnections")
  console.log(JSON.stringify({ ...summary, configError: configError.field }))
}).pipe(Effect.runPromise).catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
