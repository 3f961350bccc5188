/**
 * The seam through which the pool opens connections. The live connector opens one better-sqlite3 handle per
 * connection, sets its pragmas, verifies it with `SELECT 1` and builds the `@effect/sql` connection over it.
 * Tests and the simulator wrap it to inject faults; the pool only sees this interface.
 *
 * @since 0.1.0
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import type * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import Database from "better-sqlite3"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as PooledClient from "./internal/client.js"
import * as DatabaseFile from "./internal/databaseFile.js"
import * as DriverConnection from "./internal/driverConnection.js"
import * as OpenFailure from "./internal/openFailure.js"
import * as SqliteSetup from "./internal/sqliteSetup.mjs"
import * as ThreadConnector from "./internal/threadConnector.js"
import type { ConnectError } from "./PoolError.js"

/**
 * How to open one connection.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConnectOptions {
  readonly filename: string
  /**
   * The files a connection of the same pool opened before (its `fileIdentity`). When the database file at the name is
   * another one now (or none), while the old one's `-wal` or `-shm` is still beside it, the connect fails at once
   * with a permanent ConnectError, before anything opens the name: SQLite would read that `-wal` into the new file.
   * The pool passes its latest connection's. Connectors that open no file (`:memory:`, libSQL) ignore it.
   */
  readonly previousFile?: FileIdentity | undefined
  /** a read-only connection (`PRAGMA query_only`): writes fail with SQLITE_READONLY */
  readonly readOnly: boolean
  readonly busyTimeout: Duration.Duration
  readonly pageCacheKiB: number
  /** prepared statements kept per connection (default 200, as SqliteClient) */
  readonly prepareCacheSize?: number | undefined
  /** a cached statement unused for this long is prepared afresh (default 10 minutes, as SqliteClient) */
  readonly prepareCacheTTL?: Duration.Duration | undefined
  /**
   * Open the connection in a worker thread of its own (`readerThreads`): statements run there, off the event loop.
   * A worker that does not answer its opening or a probe within `timeout` is treated as dead.
   */
  readonly worker?: { readonly timeout: Duration.Duration } | undefined
  /** SQLite extensions to load into the connection (read when it opens: a pool shares one growing list) */
  readonly extensions?: ReadonlyArray<string> | undefined
}

/**
 * One open connection, owned by the connector that opened it: the `@effect/sql` connection statements run on, a
 * probe, and a cheap check. Where it lives (a better-sqlite3 handle on this thread, a worker, a server) is the
 * connector's business; the pool only sees this.
 *
 * @since 0.1.0
 * @category models
 */
export interface Connection {
  /** what statements run on; the pool hands it to one lease holder at a time */
  readonly connection: SqlConnection.Connection
  /** a probe (`SELECT 1`): fails when the connection is closed or broken */
  readonly validate: Effect.Effect<void, InvalidConnection>
  /**
   * An O(1) check, without a query or a system call: why the connection can no longer be used (closed, its worker
   * thread gone, its socket closed), or undefined. The pool runs it on every checkout and the lanes before every
   * statement; `validate` runs only as `validationInterval` asks.
   */
  readonly check: () => string | undefined
  /**
   * For a connection on a database file: a `stat` of the file, why the connection can no longer be used (the file
   * was deleted or replaced since it opened), or undefined. Run where `check` is, but at most once per
   * `validationInterval` for each connection (so every time with the default of 0): the stat is the largest single
   * cost of a checkout.
   */
  readonly checkFile?: (() => string | undefined) | undefined
  /** for a connection on a database file: which files it opened, for `ConnectOptions.previousFile` */
  readonly fileIdentity?: FileIdentity | undefined
  /**
   * SqliteClient's `export`, `backup` and `loadExtension` where the connection has a driver handle (on this thread,
   * or in its worker thread); the handle itself (`database`) only when it lives on this thread
   */
  readonly driver?: DriverConnection.DriverExtras | undefined
  /**
   * The same connection refusing every statement that would write (with SQLITE_READONLY): what the Reader runs on
   * when it has no connections of its own (`readConnections: 0`). Without it, the Reader refuses what it cannot tell
   * is a read from the statement's text.
   */
  readonly readOnly?: SqlConnection.Connection | undefined
}

/**
 * Which files a connection opened: the database file's identity (device, inode and birth time), and its `-wal`'s and
 * `-shm`'s where they existed once it was set up. Equal identities are the same file; a file deleted, or replaced by
 * another under its name, has a different one.
 *
 * @since 0.1.0
 * @category models
 */
export interface FileIdentity {
  readonly database: string
  readonly wal: string | undefined
  readonly shm: string | undefined
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
  /** for a connector whose Reader reads on replicas: how far behind each is (`SqlitePool.stats` reports it) */
  readonly replication?: Effect.Effect<Replication> | undefined
}

/**
 * Why a replica is out of the Reader's rotation: `unreachable` (the network failed: refused, reset, unreachable),
 * `stalled` (no answer within `connectTimeout` or `statementTimeout`), `refused` (it answered, but not as a libSQL
 * server of this database would: an HTTP server, a gRPC port, a server error), `rejected` (the token) or `behind`
 * (a fiber's position not reached within `replicationWaitTimeout`).
 *
 * @since 0.1.0
 * @category models
 */
export interface ReplicaOut {
  readonly cause: "unreachable" | "stalled" | "refused" | "rejected" | "behind"
  /** what failed, as a person reads it */
  readonly reason: string
  /** when a Reader connect tries it again (the Clock's epoch milliseconds) */
  readonly retryAt: number
  /** failures in a row: each doubles the wait, from `fallbackLifetime` up to 8 times it */
  readonly strikes: number
}

/**
 * Where the Reader's connections are, how far each replica is behind its primary, and which replicas are out.
 *
 * @since 0.1.0
 * @category models
 */
export interface Replication {
  /** the newest replication index a primary connection reported, in the current generation */
  readonly primaryIndex: bigint | undefined
  /** primary restarts noticed: the generation of the primary's numbering (0 until the first) */
  readonly generation: number
  readonly replicas: ReadonlyArray<{
    readonly url: string
    /** connections opened to it */
    readonly connects: number
    /** connect attempts that failed */
    readonly failures: number
    /** the newest index one of its connections reported */
    readonly index: bigint | undefined
    /** the generation of the primary's numbering it is known to follow; below `generation`: not yet followed */
    readonly generation: number
    /**
     * frames it was behind the primary when it last answered (primary's newest index then, minus its own); unknown
     * while it does not follow the current generation
     */
    readonly lagFrames: number | undefined
    /** why the Reader passes it over, until when; undefined while it serves (or has not failed since it last did) */
    readonly out: ReplicaOut | undefined
  }>
  /** Reader connections opened on the primary because no replica could serve */
  readonly fallbacks: number
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Connector extends Context.Tag("@sqlsim/sqlite-pool/Connector")<Connector, Service>() {}

/**
 * Whether a statement failed because its connection was closed before it ran (so running it again elsewhere is
 * safe).
 *
 * @since 0.1.0
 * @category utils
 */
export const isClosedConnection: (error: unknown) => boolean = DriverConnection.isClosedConnection

/**
 * Maps whatever opening a database threw (better-sqlite3's `SqliteError`, its `TypeError` for a missing directory)
 * to a classified `ConnectError` for one attempt. A path that is a directory or holds something that is not a
 * database is permanent: retrying it would be a retry storm.
 *
 * @since 0.1.0
 * @category errors
 */
export const classifyOpenFailure: (filename: string, cause: unknown) => ConnectError = OpenFailure.classifyOpenFailure

/**
 * Which files a database name leads to now (as a connection's `fileIdentity`), or undefined for `:memory:` or when
 * there is no database file.
 *
 * @since 0.1.0
 * @category utils
 */
export const fileIdentity: (filename: string) => FileIdentity | undefined = DatabaseFile.files

/**
 * Opens a connection with better-sqlite3, outside any pool: pragmas set, WAL switched on for files, verified with a
 * read of the schema.
 *
 * @since 0.1.0
 * @category constructors
 */
export const connect = (options: ConnectOptions): Effect.Effect<Connection, ConnectError, Scope.Scope> =>
  options.worker !== undefined ? connectInWorker(options, options.worker.timeout) : connectHere(options)

const connectInWorker = (options: ConnectOptions, timeout: Duration.Duration) =>
  ThreadConnector.connect({ ...options, openTimeout: timeout, probeTimeout: timeout })

const connectHere = (options: ConnectOptions): Effect.Effect<Connection, ConnectError, Scope.Scope> =>
  Effect.gen(function*() {
    const { filename } = options
    const stale = DatabaseFile.staleSidecars(filename, options.previousFile)
    if (stale !== undefined) return yield* stale
    const db = yield* Effect.acquireRelease(
      Effect.try({
        try: () => new Database(filename),
        catch: (cause) => classifyOpenFailure(filename, cause)
      }),
      (db) => Effect.sync(() => db.close())
    )
    const identity = DatabaseFile.isFile(filename) ? DatabaseFile.identity(filename) : undefined
    // The worker threads run the same set-up (readerWorker.mjs).
    const probe = yield* Effect.try({
      try: () => {
        SqliteSetup.setUp(db, {
          filename,
          readOnly: options.readOnly,
          busyTimeoutMs: Math.round(Duration.toMillis(options.busyTimeout)),
          pageCacheKiB: options.pageCacheKiB,
          extensions: options.extensions
        })
        return db.prepare("SELECT 1")
      },
      catch: (cause) => OpenFailure.classifySetUpFailure(filename, cause)
    })
    const check = () => db.open ? undefined : "the connection was closed"
    const checkFile = () => DatabaseFile.replacedSince(filename, identity)
    const validate: Effect.Effect<void, InvalidConnection> = Effect.suspend(() => {
      if (!db.open) return Effect.fail({ reason: "the connection was closed" })
      try {
        probe.get()
        return Effect.void
      } catch (cause) {
        return Effect.fail({ reason: cause instanceof Error ? cause.message : String(cause), cause })
      }
    })
    const connection = DriverConnection.make(db, {
      size: options.prepareCacheSize ?? 200,
      timeToLiveMillis: Duration.toMillis(options.prepareCacheTTL ?? Duration.minutes(10))
    })
    return {
      connection,
      validate,
      check,
      checkFile,
      fileIdentity: DatabaseFile.files(filename),
      driver: connection,
      readOnly: connection.readOnly
    }
  }).pipe(
    Effect.withSpan("sqlsim.connect", { attributes: { "db.system.name": "sqlite", "db.namespace": options.filename } })
  )

/**
 * The `@effect/sql-sqlite-node`-shaped client of one connection (what a pool lease's `sql` is), for code that opens
 * connections with a connector directly. Its `withTransaction` is the pool's: `BEGIN IMMEDIATE` (plain `BEGIN` when
 * `readOnly`), the BEGIN and COMMIT retried with `retryBusy` (none by default), savepoints for nested blocks.
 *
 * @since 0.1.0
 * @category constructors
 */
export const client = (
  connection: Connection,
  filename: string,
  options: {
    readonly readOnly?: boolean | undefined
    readonly retryBusy?: (<A>(effect: Effect.Effect<A, SqlError>) => Effect.Effect<A, SqlError>) | undefined
  } = {}
): Effect.Effect<SqliteClient.SqliteClient> =>
  Effect.provideServiceEffect(
    PooledClient.make(connection, { filename }, {
      begin: options.readOnly === true ? "BEGIN" : "BEGIN IMMEDIATE",
      retryBusy: options.retryBusy ?? ((effect) => effect),
      // The connection is the caller's: closing it is theirs too.
      invalidate: Effect.void
    }),
    Reactivity.Reactivity,
    Reactivity.make
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
export const makeLive: Effect.Effect<Service> = Effect.succeed(Connector.of({ connect }))

/**
 * The connector provided (`Connector.Connector`), or the live one when none is.
 *
 * @since 0.1.0
 * @category constructors
 */
export const current: Effect.Effect<Service> = Effect.flatMap(
  Effect.serviceOption(Connector),
  Option.match({ onNone: () => makeLive, onSome: Effect.succeed })
)
