/**
 * The seam through which the pool opens connections. The live connector opens one `@effect/sql-sqlite-node`
 * `SqliteClient` (one better-sqlite3 handle) per connection, sets its pragmas and verifies it with `SELECT 1`.
 * Tests and the simulator wrap it to inject faults; the pool only sees this interface.
 *
 * @since 0.1.0
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as path from "node:path"
import { ConnectError } from "./PoolError.js"
import * as SqliteCode from "./SqliteCode.js"

/**
 * How to open one connection.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConnectOptions {
  readonly filename: string
  /** a read-only connection (`PRAGMA query_only`): writes fail with SQLITE_READONLY */
  readonly readOnly: boolean
  readonly busyTimeout: Duration.Duration
  readonly pageCacheKiB: number
}

/**
 * One open connection: the client bound to it, and a cheap probe that it still works.
 *
 * @since 0.1.0
 * @category models
 */
export interface Connection {
  readonly sql: SqliteClient.SqliteClient
  /** a probe (`SELECT 1`): fails when the connection is closed or broken */
  readonly validate: Effect.Effect<void, InvalidConnection>
  /**
   * A cheap check without a query (a `stat` of the database file at most): why the connection can no longer be
   * used (its database file was deleted or replaced), or undefined. The pool runs it on every checkout, and
   * `validate` only as `validationInterval` asks.
   */
  readonly check?: (() => string | undefined) | undefined
}

/**
 * Why a connection failed validation.
 *
 * @since 0.1.0
 * @category models
 */
export interface InvalidConnection {
  readonly reason: string
  readonly cause?: unknown
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** opens one connection in the given Scope (closing the Scope closes the connection); one attempt, no retries */
  readonly connect: (options: ConnectOptions) => Effect.Effect<Connection, ConnectError, Scope.Scope>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Connector extends Context.Tag("@sqlsim/sqlite-pool/Connector")<Connector, Service>() {}

/**
 * Maps whatever opening a database threw (better-sqlite3's `SqliteError`, its `TypeError` for a missing directory)
 * to a classified `ConnectError` for one attempt. A path that is a directory or holds something that is not a
 * database is permanent: retrying it would be a retry storm.
 *
 * @since 0.1.0
 * @category errors
 */
export const classifyOpenFailure = (filename: string, cause: unknown): ConnectError => {
  const error = (code: string, transient: boolean, reason: string) =>
    new ConnectError({ filename, attempts: 1, code, transient, reason, elapsedMs: 0, cause })
  const message = driverMessage(cause)
  // SQLite and better-sqlite3 report these as "unable to open" or "directory does not exist"; the operating system
  // says what it is. A name too long stays too long (permanent); descriptors may be freed (transient).
  const systemCode = (() => {
    try {
      fs.closeSync(fs.openSync(path.dirname(filename), "r"))
      fs.statSync(filename)
      return undefined
    } catch (systemError) {
      return (systemError as { code?: unknown }).code
    }
  })()
  if (systemCode === "ENAMETOOLONG") {
    return error(
      "SQLITE_CANTOPEN",
      false,
      "the file name is longer than the file system allows (ENAMETOOLONG); choose a shorter name or path"
    )
  }
  if (systemCode === "EMFILE" || systemCode === "ENFILE") {
    return error(
      "SQLITE_CANTOPEN",
      true,
      `too many open files (${systemCode}): the ${
        systemCode === "EMFILE" ? "process" : "system"
      } has no file descriptor left; raise the limit (ulimit -n) or open fewer connections (maxConnections)`
    )
  }
  if (/directory does not exist/i.test(message)) {
    return error("SQLITE_CANTOPEN", true, "directory does not exist")
  }
  const code = SqliteCode.codeOf(cause) ?? "UNKNOWN"
  if (SqliteCode.primary(code) === "SQLITE_CANTOPEN") {
    if (isDirectory(filename)) return error(code, false, "the path is a directory, not a database file")
    if (!isDirectory(path.dirname(filename))) return error(code, true, "directory does not exist")
    return error(code, true, message)
  }
  if (code === "SQLITE_NOTADB") return error(code, false, "the file is not a SQLite database")
  if (SqliteCode.primary(code) === "SQLITE_CORRUPT") return error(code, false, "the database file is corrupt")
  if (code === "UNKNOWN") return error(code, false, message)
  return error(code, SqliteCode.classify(code) === "transient", message)
}

/** The message of the innermost error: the driver's ("database is locked"), not a wrapper's ("Failed to prepare"). */
const driverMessage = (cause: unknown): string => {
  let message = cause instanceof Error ? cause.message : String(cause)
  let current: unknown = cause
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    if (current.message.trim() !== "") message = current.message
    current = current.cause
  }
  return message
}

const isDirectory = (candidate: string): boolean => {
  try {
    return fs.statSync(candidate).isDirectory()
  } catch {
    return false
  }
}

const fileIdentity = (filename: string): string | undefined => {
  try {
    const stat = fs.statSync(filename)
    return `${stat.dev}:${stat.ino}`
  } catch {
    return undefined
  }
}

const isFile = (filename: string) => filename !== ":memory:" && filename !== ""

/**
 * Opens a connection with `@effect/sql-sqlite-node`, outside any pool.
 *
 * @since 0.1.0
 * @category constructors
 */
export const connect = (
  options: ConnectOptions
): Effect.Effect<Connection, ConnectError, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function*() {
    const { filename } = options
    // SqliteClient.make opens synchronously and reports an open failure as a defect: catch it here.
    const opened = yield* Effect.exit(SqliteClient.make({ filename, disableWAL: true }))
    if (Exit.isFailure(opened)) {
      return yield* Effect.fail(classifyOpenFailure(filename, Cause.squash(opened.cause)))
    }
    const sql = opened.value
    const identity = isFile(filename) ? fileIdentity(filename) : undefined
    // The raw connection under the client, reserved once: a reservation only guards SqliteClient's own semaphore,
    // and the pool uses a connection only while nobody else holds it.
    const raw = yield* Effect.mapError(Effect.scoped(sql.reserve), (error) => classifyOpenFailure(filename, error))
    // Set-up statements run unprepared: through `sql` each would stay in the client's statement cache (for 10
    // minutes), about 50 KiB of native memory per idle connection. (The driver prepares as the effect is built.)
    const unprepared = (statement: string) =>
      Effect.try({
        try: () => raw.executeUnprepared(statement, [], undefined),
        catch: (cause) => classifyOpenFailure(filename, cause)
      })
    const pragma = (statement: string) =>
      Effect.flatMap(
        unprepared(statement),
        (run) => Effect.mapError(run, (error) => classifyOpenFailure(filename, error))
      )
    yield* pragma(`PRAGMA busy_timeout = ${Math.round(Duration.toMillis(options.busyTimeout))}`)
    yield* pragma(`PRAGMA cache_size = -${options.pageCacheKiB}`)
    yield* pragma("PRAGMA foreign_keys = ON")
    if (isFile(filename)) {
      // The first connection to a file switches it to WAL (persistent); later ones find it set. This can meet BUSY
      // from another process, which the pool's retry policy handles like any transient connect failure.
      const [mode] = yield* pragma("PRAGMA journal_mode")
      if ((mode as { journal_mode?: string } | undefined)?.journal_mode !== "wal" && !options.readOnly) {
        yield* pragma("PRAGMA journal_mode = WAL")
      }
    }
    if (options.readOnly) yield* pragma("PRAGMA query_only = ON")
    yield* pragma("SELECT 1")

    const check = () =>
      identity !== undefined && fileIdentity(filename) !== identity
        ? "the database file was deleted or replaced since the connection opened"
        : undefined
    // SELECT 1 on the raw connection: no statement compilation, no span, no statement cache lookup; under a
    // microsecond against about 12 for a reserved `executeRaw`. The effect (and the statement) is built once, then
    // run by every probe; on a closed handle running it fails with "The database connection is not open".
    const probe = yield* unprepared("SELECT 1")
    const validate: Effect.Effect<void, InvalidConnection> = Effect.mapError(probe, (cause) => ({
      // The driver's own message ("The database connection is not open") says more than SqlError's wrapper.
      reason: cause.cause instanceof Error ? cause.cause.message : cause.message,
      cause
    }))
    return { sql, validate, check }
  }).pipe(
    Effect.withSpan("sqlsim.connect", { attributes: { "db.system.name": "sqlite", "db.namespace": options.filename } })
  )

/**
 * The live connector.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Connector> = Layer.effect(Connector, Effect.suspend(() => makeLive))

/**
 * Makes the live connector (what `layer` provides).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeLive: Effect.Effect<Service> = Effect.map(Reactivity.make, (reactivity) =>
  Connector.of({
    connect: (options) => Effect.provideService(connect(options), Reactivity.Reactivity, reactivity)
  }))
