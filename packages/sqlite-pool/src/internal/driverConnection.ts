/**
 * An `@effect/sql` connection over one better-sqlite3 handle, owned by the live connector: statements prepared once
 * and kept in a small cache (the worker threads' own, `sqliteSetup.mjs`), `executeStream` through `iterate()`, and a closed handle reported as a typed
 * `ClosedConnection` cause before anything runs (instead of the driver's TypeError text).
 *
 * @internal
 */
import * as Client from "@effect/sql/SqlClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import Database from "better-sqlite3"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { StatementCache, type StatementCacheOptions } from "./sqliteSetup.mjs"

/**
 * The cause of a `SqlError` from a connection whose handle is closed: the statement never ran.
 *
 * @internal
 */
export class ClosedConnection extends Error {
  override readonly name = "ClosedConnection"
}

export const isClosedConnection = (error: unknown): boolean =>
  typeof error === "object" && error !== null && (error as { cause?: unknown }).cause instanceof ClosedConnection

/** What a driver connection offers beside `@effect/sql`'s: SqliteClient's `export`, `backup` and `loadExtension`. */
export interface DriverExtras {
  /** the better-sqlite3 handle itself (for `function`, `aggregate`, ...), when it lives on this thread */
  readonly database: Database.Database | undefined
  readonly export: Effect.Effect<Uint8Array, SqlError>
  readonly backup: (destination: string) => Effect.Effect<{ totalPages: number; remainingPages: number }, SqlError>
  readonly loadExtension: (path: string) => Effect.Effect<void, SqlError>
}

const failure = (cause: unknown, message: string) => new SqlError({ cause, message })

/** Rows of a stream pulled from `iterate()` per chunk. */
const STREAM_CHUNK = 128

/**
 * A turn of the event loop. Pulling rows is synchronous and resumes through microtasks: without a turn between
 * chunks, a long stream would starve timers, I/O and signal handlers (and every other fiber waiting on them).
 */
const eventLoopTurn = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

/** A statement's rows as arrays of values; the cached statement is left returning objects. */
const values = (params: ReadonlyArray<unknown>) => (statement: Database.Statement) => {
  if (!statement.reader) {
    statement.run(...params)
    return []
  }
  statement.raw(true)
  try {
    return statement.all(...params) as ReadonlyArray<ReadonlyArray<unknown>>
  } finally {
    statement.raw(false)
  }
}

/** The rows of an open iterator, pulled `STREAM_CHUNK` at a time with a turn of the event loop before each. */
const chunksOf = (
  iterator: Iterator<unknown>,
  transformRows: (<A extends object>(rows: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined
): Stream.Stream<any, SqlError> =>
  Stream.repeatEffectChunkOption(Effect.zipRight(
    eventLoopTurn,
    Effect.suspend(() => {
      const chunk: Array<any> = []
      try {
        while (chunk.length < STREAM_CHUNK) {
          const next = iterator.next()
          if (next.done === true) break
          chunk.push(next.value)
        }
      } catch (cause) {
        return Effect.fail(Option.some(failure(cause, "Failed to execute statement")))
      }
      if (chunk.length === 0) return Effect.fail(Option.none())
      return Effect.succeed(
        Chunk.unsafeFromArray(transformRows === undefined ? chunk : transformRows(chunk as Array<object>))
      )
    })
  ))

/**
 * The connection over `db`, with `readOnly`: the same connection refusing every statement that would write
 * (SQLite's own verdict, `sqlite3_stmt_readonly`, known once the statement is prepared and before it runs). The
 * Reader runs on that view when it has no connections of its own (`readConnections: 0`).
 */
export const make = (
  db: Database.Database,
  cache: StatementCacheOptions
): SqlConnection.Connection & DriverExtras & { readonly readOnly: SqlConnection.Connection } => {
  const prepared = new StatementCache(db, cache)
  return {
    ...statements(db, prepared, false),
    readOnly: statements(db, prepared, true),
    database: db,
    export: Effect.try({ try: () => db.serialize(), catch: (cause) => failure(cause, "Failed to export database") }),
    backup: (destination) =>
      Effect.tryPromise({
        try: () => db.backup(destination),
        catch: (cause) => failure(cause, "Failed to backup database")
      }),
    loadExtension: (path) =>
      Effect.try({
        try: () => {
          db.loadExtension(path)
          // Statements prepared before may have been compiled without the extension's functions.
          prepared.clear()
        },
        catch: (cause) => failure(cause, "Failed to load extension")
      })
  }
}

/** What a read-only connection says of a write: SQLite's own code and words, so it is told apart as they are. */
const refusedWrite = () =>
  failure(
    new Database.SqliteError("attempt to write a readonly database", "SQLITE_READONLY"),
    "Failed to execute statement"
  )

/** `@effect/sql`'s statements on `db`, through its statement cache; with `readOnly`, writes refused before they run. */
const statements = (
  db: Database.Database,
  prepared: StatementCache,
  readOnly: boolean
): SqlConnection.Connection => {
  const closed = () => failure(new ClosedConnection("the database connection is closed"), "the connection is closed")

  // One synchronous step: a statement runs to completion inside the driver, so two never overlap.
  const run = <A>(
    sql: string,
    cached: boolean,
    body: (statement: Database.Statement) => A
  ): Effect.Effect<A, SqlError> =>
    Effect.withFiberRuntime((fiber) => {
      if (!db.open) return Effect.fail(closed())
      let statement: Database.Statement
      try {
        statement = cached ? prepared.prepare(sql) : db.prepare(sql)
      } catch (cause) {
        return Effect.fail(failure(cause, "Failed to prepare statement"))
      }
      if (readOnly && !statement.readonly) return Effect.fail(refusedWrite())
      try {
        if (statement.reader) statement.safeIntegers(Context.get(fiber.currentContext, Client.SafeIntegers))
        return Effect.succeed(body(statement))
      } catch (cause) {
        return Effect.fail(failure(cause, "Failed to execute statement"))
      }
    })

  const rows = (params: ReadonlyArray<unknown>) => (statement: Database.Statement): ReadonlyArray<any> => {
    if (statement.reader) return statement.all(...params)
    statement.run(...params)
    return []
  }
  const transformed = (
    effect: Effect.Effect<ReadonlyArray<any>, SqlError>,
    transformRows: (<A extends object>(rows: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined
  ) => transformRows === undefined ? effect : Effect.map(effect, transformRows)

  return {
    execute: (sql, params, transformRows) => transformed(run(sql, true, rows(params)), transformRows),
    executeRaw: (sql, params) =>
      run(sql, true, (statement) => statement.reader ? statement.all(...params) : statement.run(...params)),
    executeValues: (sql, params) => run(sql, true, values(params)),
    executeUnprepared: (sql, params, transformRows) => transformed(run(sql, false, rows(params ?? [])), transformRows),
    // Rows are pulled lazily, a chunk at a time; the iterator is closed when the stream ends or is interrupted.
    // A statement of its own (not the cached one): an open iterator keeps its statement busy.
    executeStream: (sql, params, transformRows) =>
      Stream.unwrapScoped(Effect.map(
        Effect.acquireRelease(
          run(sql, false, (statement): Iterator<unknown> => {
            if (statement.reader) return statement.iterate(...params)
            statement.run(...params)
            return [][Symbol.iterator]()
          }),
          (iterator) => Effect.sync(() => iterator.return?.())
        ),
        (iterator) => chunksOf(iterator, transformRows)
      ))
  }
}
