// Run with: pnpm tsx examples/compose-layer.ts
/**
 * An app that provides one Layer, `SqlitePool.layer`, and gets `SqlClient.SqlClient` from `@effect/sql`: its
 * repository service is ordinary `@effect/sql` code, unaware of the pool. Writes and transactions run on the writer
 * lane; `list` reads on `SqlitePool.Reader`, the read-only connections; `SqlitePool.SqlitePool` gives stats and
 * health.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { SqliteCode, SqlitePool } from "@sqlsim/sqlite-pool"
import { Console, Context, Effect, Layer } from "effect"

interface Event {
  readonly id: number
  readonly label: string
}

/** The app's repository: all it needs is a SqlClient (and, for reads, the Reader). */
class EventRepository extends Context.Tag("examples/EventRepository")<EventRepository, {
  /** inserts all labels in one transaction: all of them, or none */
  readonly addAll: (labels: ReadonlyArray<string>) => Effect.Effect<void, SqlError>
  readonly list: Effect.Effect<ReadonlyArray<Event>, SqlError>
}>() {
  static readonly layer = Layer.effect(
    EventRepository,
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const reader = yield* SqlitePool.Reader
      yield* sql`CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY,
        label TEXT NOT NULL CHECK (label <> '')
      )`
      return {
        addAll: (labels) =>
          sql.withTransaction(
            Effect.forEach(labels, (label) => sql`INSERT INTO events (label) VALUES (${label})`, { discard: true })
          ),
        list: reader<Event>`SELECT id, label FROM events ORDER BY id`
      }
    })
  )
}

/** The whole wiring: the repository on top of the pool. An in-memory database is shared by all its connections. */
const AppLayer = EventRepository.layer.pipe(
  Layer.provideMerge(SqlitePool.layer({ filename: ":memory:", readConnections: 2 }))
)

const program = Effect.gen(function*() {
  const events = yield* EventRepository
  yield* events.addAll(["user.signup", "user.login", "checkout"])

  // The empty label breaks the CHECK constraint: the transaction rolls back, the first label is not kept either.
  const failed = yield* Effect.either(events.addAll(["refund", ""]))
  yield* Console.log(
    `second batch: ${failed._tag === "Left" ? `rolled back (${SqliteCode.codeOf(failed.left)})` : "committed"}`
  )

  for (const event of yield* events.list) yield* Console.log(`event ${event.id}: ${event.label}`)

  const pool = yield* SqlitePool.SqlitePool
  const health = yield* pool.healthCheck
  const stats = yield* pool.stats
  yield* Console.log(
    `healthy: ${health.ok}; writer connections created ${stats.writer.created}, ` +
      `reader connections created ${stats.readers.created}`
  )
})

program.pipe(Effect.provide(AppLayer), NodeRuntime.runMain)
