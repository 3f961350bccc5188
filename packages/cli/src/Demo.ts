/**
 * The seed workload, the project's main job: read labels from a file, insert them into an `events` table through a
 * pooled connection in one transaction, read them back in id order, release the connection, health-check a second
 * acquire (a reuse of the same connection) and write a JSON summary whose pool statistics prove the pooling
 * (`created: 1, reused: 1`).
 *
 * Bad input changes nothing: the files are checked to be distinct and usable before the database is opened, the
 * input (read once) is read ahead of it up to `readAheadBytes`, and the inserts run in one transaction that rolls
 * back on any failure; a database file the run created is removed when nothing was committed. The summary is written
 * to a temporary file and renamed over the output only at the end.
 *
 * @since 0.1.0
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Workload } from "@sqlsim/simulator"
import { ConnectionPool, PoolConfig, type PoolError, type PoolStats } from "@sqlsim/sqlite-pool"
import * as Console from "effect/Console"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Stream from "effect/Stream"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as AtomicFile from "./AtomicFile.js"
import * as Distinct from "./internal/distinct.js"
import * as TemporaryDirectory from "./internal/temporaryDirectory.js"
import * as Labels from "./Labels.js"

/**
 * The labels file bundled with the command, used when no input is given.
 *
 * @since 0.1.0
 * @category constants
 */
export const bundledLabels: string = fileURLToPath(new URL("../assets/labels.txt", import.meta.url))

/**
 * Where the summary goes when no output is given: `summary.json` in the current directory.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultOutput = "summary.json"

/**
 * Rows are inserted and read back this many at a time (labels are at most 64 KiB, so a batch stays bounded).
 *
 * @since 0.1.0
 * @category constants
 */
export const batchSize = 256

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** the labels file, or "-" for standard input */
  readonly input: string
  /** the summary file (written atomically) */
  readonly output: string
  /** the pool's configuration; `filename` is the database (default ":memory:") */
  readonly pool?: PoolConfig.Input | undefined
  /** how many rows `Result.preview` keeps (default 20) */
  readonly previewRows?: number | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Row {
  readonly id: number
  readonly label: string
}

/**
 * The `health` part of the summary.
 *
 * @since 0.1.0
 * @category models
 */
export interface HealthSummary {
  readonly ok: boolean
  readonly latency_ms: number
  readonly sqlite_version: string
  readonly journal_mode: string
}

/**
 * The `pool_stats` part of the summary: `PoolStats` with snake_case keys.
 *
 * @since 0.1.0
 * @category models
 */
export interface PoolStatsSummary {
  readonly created: number
  readonly reused: number
  readonly acquired: number
  readonly released: number
  readonly invalidated: number
  readonly closed: number
  readonly connect_failures: number
  readonly retries: number
  readonly timeouts: number
  readonly open: number
  readonly idle: number
  readonly in_use: number
  readonly waiting: number
}

/**
 * The JSON summary, with the keys of the original brief.
 *
 * @since 0.1.0
 * @category models
 */
export interface Summary {
  readonly rows_inserted: number
  readonly rows: ReadonlyArray<Row>
  readonly health: HealthSummary
  readonly pool_stats: PoolStatsSummary
}

/**
 * What a run returns. The rows themselves are in the output file (streamed there, so their number is not limited
 * by memory); `preview` holds the first few.
 *
 * @since 0.1.0
 * @category models
 */
export interface Result {
  /** the absolute path the summary was written to */
  readonly output: string
  readonly rowsInserted: number
  readonly preview: ReadonlyArray<Row>
  readonly health: HealthSummary
  readonly poolStats: PoolStatsSummary
}

export {
  /**
   * Two options name the same file.
   *
   * @since 0.1.0
   * @category errors
   */
  ConflictError
} from "./internal/distinct.js"

/**
 * A statement on the database failed (say, an existing `events` table without a `label` column); the transaction
 * was rolled back.
 *
 * @since 0.1.0
 * @category errors
 */
export class DatabaseError extends Data.TaggedError("DatabaseError")<{
  readonly database: string
  readonly reason: string
  readonly cause: SqlError
}> {
  override get message(): string {
    return `database ${this.database}: ${this.reason}`
  }
}

/**
 * A run failed after its COMMIT (the rows read back, the summary written or renamed): `error` is why. The rows are in
 * the database all the same, so the message says so: a second run would insert them again.
 *
 * @since 0.1.0
 * @category errors
 */
export class CommittedError extends Data.TaggedError("CommittedError")<{
  readonly error: Exclude<DemoError, CommittedError>
  /** the database's absolute path, or ":memory:" */
  readonly database: string
  readonly rowsInserted: number
  readonly firstId: number
  readonly lastId: number
}> {
  override get message(): string {
    const where = this.database === ":memory:" ? "the in-memory database (gone with the process)" : this.database
    const ids = this.rowsInserted === 0 ? "" : ` (ids ${this.firstId} to ${this.lastId})`
    return `${this.error.message}; the ${this.rowsInserted} rows were committed to ${where}${ids} before it: a `
      + "second run inserts them again"
  }
}

/**
 * Everything a run can fail with; each has a one-line `message` that tells the user what to do.
 *
 * @since 0.1.0
 * @category errors
 */
export type DemoError =
  | Labels.InputError
  | AtomicFile.OutputError
  | Distinct.ConflictError
  | TemporaryDirectory.TemporaryDirectoryError
  | PoolError.PoolConfigError
  | PoolError.AcquireError
  | PoolError.HealthCheckError
  | DatabaseError
  | CommittedError

/**
 * Runs the workload.
 *
 * @example
 * import * as NodeContext from "@effect/platform-node/NodeContext"
 * import { Demo } from "@sqlsim/cli"
 * import * as Effect from "effect/Effect"
 *
 * export const program = Effect.gen(function*() {
 *   const result = yield* Demo.run({ input: "labels.txt", output: "summary.json" })
 *   return result.poolStats // created: 1, reused: 1
 * }).pipe(Effect.provide(NodeContext.layer))
 *
 * @since 0.1.0
 * @category constructors
 */
export const run = (options: Options): Effect.Effect<Result, DemoError, FileSystem.FileSystem> =>
  Effect.scoped(Effect.gen(function*() {
    const config = yield* PoolConfig.make(options.pool ?? {})
    yield* Distinct.checkDistinct([
      { option: "--input", file: options.input },
      { option: "--db", file: config.filename, database: true },
      { option: "--output", file: options.output }
    ])
    yield* Labels.inspect(options.input)
    const output = yield* AtomicFile.open(options.output)
    if (config.filename === ":memory:") yield* TemporaryDirectory.check("the in-memory database")
    // Read before the database is opened, so before the write lock is taken: a producer that is slow or silent (a
    // pipe, a FIFO) never holds the lock, and bad input within the limit never reaches the database. Each input is
    // read once; a longer one goes on inside the transaction, which rolls back if the rest is bad.
    const { ahead, rest } = yield* Labels.readAhead(options.input, readAheadBytes)
    // The labels read ahead are handed over, not kept: `ahead` would otherwise hold up to 4 MiB for the whole run.
    const first = Stream.suspend(() => Stream.fromIterable(ahead.splice(0)))
    const labels = rest === undefined ? first : Stream.concat(first, rest)
    const database = config.filename === ":memory:" ? undefined : path.resolve(config.filename)
    const createdHere = database !== undefined && !fs.existsSync(database)
    let committed: Inserted | undefined

    const result = yield* Effect.scoped(Effect.gen(function*() {
      const pool = yield* ConnectionPool.makeWithConfig(config)
      const previewRows = options.previewRows ?? 20
      // First lease: create, insert, read back; the connection goes back to the pool when `use` ends.
      const { preview, rowsInserted } = yield* pool.use((connection) =>
        Effect.gen(function*() {
          // The pool's transaction: BEGIN IMMEDIATE takes the write lock up front (retried with the pool's backoff
          // while another connection holds it), so nothing inside meets SQLITE_BUSY; any failure or interruption
          // rolls back.
          const inserted = yield* connection.sql.withTransaction(
            Effect.zipRight(createTable(connection.sql), insertLabels(connection.sql, labels))
          )
          committed = inserted
          yield* output.write(renderHead(inserted.count))
          const preview = yield* writeRows(connection.sql, inserted, output, previewRows)
          yield* output.write(renderRowsEnd(inserted.count))
          return { preview, rowsInserted: inserted.count }
        }).pipe(Effect.catchTag("SqlError", (cause) =>
          Effect.fail(
            new DatabaseError({
              database: config.filename,
              reason: cause.cause instanceof Error ? cause.cause.message : cause.message,
              cause
            })
          )))
      )
      // Second lease: the health check acquires like any other lease, so the idle connection is reused.
      const health = toHealthSummary(yield* pool.healthCheck)
      const poolStats = toPoolStatsSummary(yield* pool.stats)
      yield* output.write(renderTail(health, poolStats))
      return { output: output.path, rowsInserted, preview, health, poolStats } satisfies Result
    })).pipe(
      // After the pool has closed: a database file this run created and never committed to is not left behind.
      Effect.onExit((exit) =>
        Exit.isFailure(exit) && committed === undefined && createdHere ? removeDatabase(database) : Effect.void
      ),
      Effect.onInterrupt(() =>
        committed === undefined ? Effect.void : reportInterruptedAfterCommit(options.output, database, committed)
      ),
      // Renamed only after the pool has closed: the summary appears complete, or not at all.
      Effect.zipLeft(output.commit),
      Effect.mapError((error) =>
        committed === undefined ? error : new CommittedError({
          error,
          database: database ?? ":memory:",
          rowsInserted: committed.count,
          firstId: committed.firstId,
          lastId: committed.lastId
        })
      )
    )
    return result
  }))

/**
 * Labels read before the database is opened, in characters of text: 4 MiB (a longer input goes on inside the
 * transaction).
 *
 * @since 0.1.0
 * @category constants
 */
export const readAheadBytes = 4 * 1024 * 1024

const removeDatabase = (database: string) =>
  Effect.forEach(
    ["", "-wal", "-shm", "-journal"],
    (suffix) => Effect.ignore(Effect.try(() => fs.rmSync(database + suffix, { force: true })))
  )

/**
 * Interrupted after the COMMIT: the rows are in the database, so say so, on stderr and in the output (marked as
 * interrupted, with what completed), instead of exiting as if nothing happened.
 */
const reportInterruptedAfterCommit = (output: string, database: string | undefined, inserted: Inserted) =>
  Effect.gen(function*() {
    const where = database ?? "the in-memory database (gone with the process)"
    const ids = inserted.count === 0 ? "" : ` (ids ${inserted.firstId} to ${inserted.lastId})`
    yield* Console.error(
      `interrupted after the commit: ${inserted.count} rows were committed to ${where}${ids}; ` +
        `the summary written to ${output} is marked as interrupted`
    )
    const summary = {
      interrupted: true,
      rows_inserted: inserted.count,
      first_id: inserted.count === 0 ? null : inserted.firstId,
      last_id: inserted.count === 0 ? null : inserted.lastId,
      database: database ?? ":memory:"
    }
    yield* Effect.scoped(Effect.gen(function*() {
      const file = yield* AtomicFile.open(output)
      yield* file.write(JSON.stringify(summary, null, 2) + "\n")
      yield* file.commit
    })).pipe(Effect.catchAll((error) => Console.error(error.message)))
  })

/**
 * The summary as the JSON text written to the output: one row per line.
 *
 * @since 0.1.0
 * @category utils
 */
export const render = (summary: Summary): string =>
  renderHead(summary.rows_inserted) +
  summary.rows.map((row, i) => renderRowAt(row, i)).join("") +
  renderRowsEnd(summary.rows.length) +
  renderTail(summary.health, summary.pool_stats)

// The pieces of the summary, written one after the other so that the rows can be streamed.
const renderHead = (rowsInserted: number) => `{\n  "rows_inserted": ${rowsInserted},\n  "rows": [`

const renderRowAt = (row: Row, index: number) =>
  `${index === 0 ? "\n    " : ",\n    "}{"id": ${row.id}, "label": ${JSON.stringify(row.label)}}`

const renderRowsEnd = (rows: number) => rows === 0 ? "],\n" : "\n  ],\n"

const renderTail = (health: HealthSummary, poolStats: PoolStatsSummary) =>
  `  "health": ${indent(JSON.stringify(health, null, 2))},\n` +
  `  "pool_stats": ${indent(JSON.stringify(poolStats, null, 2))}\n}\n`

const indent = (json: string) => json.replaceAll("\n", "\n  ")

const createTable = (sql: SqliteClient.SqliteClient) =>
  sql`CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, label TEXT NOT NULL)`

interface Inserted {
  readonly count: number
  /** ids of this run's rows: new rowids are above every existing one while the write lock is held */
  readonly firstId: number
  readonly lastId: number
}

const insertLabels = <E>(sql: SqliteClient.SqliteClient, labels: Stream.Stream<Labels.Label, E>) =>
  Effect.suspend(() => {
    let count = 0
    let firstId = Number.POSITIVE_INFINITY
    let lastId = Number.NEGATIVE_INFINITY
    return labels.pipe(
      Stream.grouped(batchSize),
      // Each batch ends with a turn of the event loop: the statements are synchronous, and a signal must get through.
      Stream.runForEach((batch) =>
        Effect.map(
          Effect.zipLeft(
            sql<{ id: number }>`INSERT INTO events ${sql.insert(Array.from(batch, (label) => ({ label: label.text })))}
            RETURNING id`,
            Workload.eventLoopTurn
          ),
          (ids) => {
            count += ids.length
            // RETURNING gives no order guarantee: take the extremes.
            for (const { id } of ids) {
              if (id < firstId) firstId = id
              if (id > lastId) lastId = id
            }
          }
        )
      ),
      Effect.map((): Inserted => ({ count, firstId, lastId }))
    )
  })

const writeRows = (
  sql: SqliteClient.SqliteClient,
  inserted: Inserted,
  output: AtomicFile.AtomicFile,
  previewRows: number
) =>
  Effect.gen(function*() {
    const preview: Array<Row> = []
    if (inserted.count === 0) return preview
    let after = inserted.firstId - 1
    let written = 0
    while (true) {
      const page = yield* sql<Row>`SELECT id, label FROM events
        WHERE id > ${after} AND id <= ${inserted.lastId} ORDER BY id LIMIT ${batchSize}`
      if (page.length === 0) return preview
      let text = ""
      for (const row of page) {
        text += renderRowAt(row, written++)
        if (preview.length < previewRows) preview.push({ id: row.id, label: row.label })
      }
      yield* output.write(text)
      after = page[page.length - 1]!.id
    }
  })

const toHealthSummary = (report: ConnectionPool.HealthReport): HealthSummary => ({
  ok: report.ok,
  latency_ms: Math.round(report.latencyMs * 1000) / 1000,
  sqlite_version: report.sqliteVersion,
  journal_mode: report.journalMode
})

/**
 * `PoolStats` with the snake_case keys of the summary.
 *
 * @since 0.1.0
 * @category utils
 */
export const toPoolStatsSummary = (stats: PoolStats.PoolStats): PoolStatsSummary => ({
  created: stats.created,
  reused: stats.reused,
  acquired: stats.acquired,
  released: stats.released,
  invalidated: stats.invalidated,
  closed: stats.closed,
  connect_failures: stats.connectFailures,
  retries: stats.retries,
  timeouts: stats.timeouts,
  open: stats.open,
  idle: stats.idle,
  in_use: stats.inUse,
  waiting: stats.waiting
})
