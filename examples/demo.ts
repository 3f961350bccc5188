// Run with: pnpm tsx examples/demo.ts
/**
 * The seed walkthrough as code, on the library alone: read labels from a file, insert them into an `events` table
 * through a pooled connection, read them back, health-check a second acquire (a reuse of the same connection) and
 * write a JSON summary whose pool statistics prove the pooling: created 1, reused 1.
 *
 * `pnpm sqlsim demo` runs the same job as a command, with streamed input, validation and an atomic output file.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as FileSystem from "@effect/platform/FileSystem"
import { ConnectionPool } from "@sqlsim/sqlite-pool"
import { Console, Effect } from "effect"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const labelsFile = fileURLToPath(new URL("./labels.txt", import.meta.url))
const summaryFile = path.join(os.tmpdir(), "sqlsim-example-summary.json")

/** camelCase keys to the snake_case of the summary: connectFailures -> connect_failures. */
const snakeCase = (record: object) =>
  Object.fromEntries(
    Object.entries(record).map(([key, value]) => [key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), value])
  )

const program = Effect.gen(function*() {
  const fs = yield* FileSystem.FileSystem

  // 1. The labels: one per line, surrounding whitespace trimmed, blank lines skipped.
  const labels = (yield* fs.readFileString(labelsFile))
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "")

  // 2. A pool with the defaults: an in-memory database, connections opened on first use.
  const pool = yield* ConnectionPool.make()

  // 3. First acquire: create the table, insert every label in one transaction (bound parameters, never string
  //    concatenation), read the rows back in id order. The connection returns to the pool when `use` ends.
  const rows = yield* pool.use(({ sql }) =>
    Effect.gen(function*() {
      yield* sql`CREATE TABLE events (id INTEGER PRIMARY KEY, label TEXT NOT NULL)`
      yield* sql.withTransaction(
        Effect.forEach(labels, (label) => sql`INSERT INTO events (label) VALUES (${label})`, { discard: true })
      )
      return yield* sql<{ id: number; label: string }>`SELECT id, label FROM events ORDER BY id`
    })
  )

  // 4. Second acquire: the health check leases a connection like any other use; the idle one is reused.
  const health = yield* pool.healthCheck
  const stats = yield* pool.stats

  // 5. The summary.
  const summary = {
    rows_inserted: rows.length,
    rows,
    health: snakeCase(health),
    pool_stats: snakeCase(stats)
  }
  const json = JSON.stringify(summary, null, 2)
  yield* fs.writeFileString(summaryFile, `${json}\n`)
  yield* Console.log(json)
  yield* Console.log(`Summary written to ${summaryFile} (created ${stats.created}, reused ${stats.reused})`)
})

program.pipe(Effect.scoped, Effect.provide(NodeContext.layer), NodeRuntime.runMain)
