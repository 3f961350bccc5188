/**
 * A pool of SQLite connections: the pool core over the connector, each connection with its own `SqliteClient`-shaped
 * client (set up by `onConnect`), and the public `ConnectionPool.Service` as a facade over the core. The lanes and
 * the tests hold the core itself; users hold only the facade and the handles it hands out.
 *
 * @internal
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import type * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as ConnectionPool from "../ConnectionPool.js"
import type * as Connector from "../Connector.js"
import type * as PoolConfig from "../PoolConfig.js"
import * as PooledClient from "./client.js"
import { isClosedConnection } from "./driverConnection.js"
import { connectAttemptFailed, type ConnectError, HealthCheckError } from "./errors.js"
import * as MemoryDatabase from "./memoryDatabase.js"
import * as PoolCore from "./poolCore.js"
import * as RetryPolicy from "./retryPolicy.js"
import * as SqliteCode from "./sqliteCode.js"

/** The core of a pool of SQLite connections, as the lanes and the tests hold it. */
export type Core = PoolCore.PoolCore<SqliteClient.SqliteClient>

/** One connection of such a pool. */
export type Entry = PoolCore.Entry<SqliteClient.SqliteClient>

/** The Reactivity of the layer when there is one (so every client of the layer shares it), a new one otherwise. */
const reactivity = Effect.flatMap(
  Effect.serviceOption(Reactivity.Reactivity),
  Option.match({ onNone: () => Reactivity.make, onSome: Effect.succeed })
)

/** The user's set-up of a new connection; a failure cannot be retried away, so it is permanent. */
const onConnect = (
  config: PoolConfig.PoolConfig,
  role: PoolConfig.NewConnection["role"]
) =>
(sql: SqliteClient.SqliteClient, connection: Connector.Connection): Effect.Effect<void, ConnectError> =>
  config.onConnect === undefined ?
    Effect.void :
    Effect.suspend(() => config.onConnect!({ sql, database: connection.driver?.database, role })).pipe(
      Effect.catchAllCause((cause) =>
        Effect.fail(connectAttemptFailed({
          filename: config.filename,
          code: "UNKNOWN",
          transient: false,
          reason: `the onConnect hook failed: ${Cause.pretty(cause).split("\n")[0]}`,
          cause: Cause.squash(cause)
        }))
      )
    )

/**
 * Makes the core of a pool from a validated configuration, its connections from `connector`. Every connection lives
 * in a Scope of its own inside the pool's, so closing the pool closes them all.
 */
export const make = (
  config: PoolConfig.PoolConfig,
  options: ConnectionPool.MakeOptions & {
    readonly connector: Connector.Service
    /** how messages name the pool, when not as its metrics do (SqlitePool's lanes) */
    readonly describedAs?: string | undefined
    /** the pool's own set-up of each new connection, before the user's `onConnect` */
    readonly setUp?: ((connection: Connector.Connection) => Effect.Effect<void, ConnectError>) | undefined
  }
): Effect.Effect<Core, ConnectError, Scope.Scope> =>
  Effect.gen(function*() {
    const { connector } = options
    // Registered first, so the temporary directory of ":memory:" is removed after the pool has closed.
    const filename = options.databaseFile ?? (yield* MemoryDatabase.resolve(config.filename))
    const readOnly = options.readOnly ?? false
    const shared = yield* reactivity
    const setUp = onConnect(config, options.role ?? "pool")
    // A lease's `sql.withTransaction`: on a read-write pool BEGIN IMMEDIATE, retried while another connection holds
    // the write lock, so that no statement inside meets SQLITE_BUSY halfway.
    const transactions = readOnly
      ? { begin: "BEGIN", retryBusy: <A>(effect: Effect.Effect<A, SqlError>) => effect }
      : { begin: "BEGIN IMMEDIATE", retryBusy: RetryPolicy.retryWhileBusy(config, { retries: 0 }) }
    const core = yield* PoolCore.make<SqliteClient.SqliteClient>({
      config,
      connector,
      connectOptions: {
        filename,
        readOnly,
        busyTimeout: config.busyTimeout,
        pageCacheKiB: config.pageCacheKiB,
        prepareCacheSize: config.prepareCacheSize,
        prepareCacheTTL: config.prepareCacheTTL,
        extensions: options.extensions,
        worker: options.inWorkers === true ? { timeout: config.acquireTimeout } : undefined
      },
      makeClient: (connection, invalidate) =>
        PooledClient.make(connection, { ...config, filename }, { ...transactions, invalidate }).pipe(
          Effect.tap(() => options.setUp?.(connection) ?? Effect.void),
          Effect.tap((sql) => setUp(sql, connection)),
          Effect.provideService(Reactivity.Reactivity, shared)
        ),
      // A read-write connection that meets SQLITE_READONLY has lost write access (SQLite reopened its file
      // read-only): only a new connection gets it back. A statement that found its connection closed proves it
      // closed, even before the connection's own check knows (a socket's close event can come later).
      isFatal: (error) =>
        isClosedConnection(error) ||
        (!readOnly && SqliteCode.primary(SqliteCode.codeOf(error) ?? "") === "SQLITE_READONLY"),
      label: options.label ?? config.poolName ?? config.filename,
      describedAs: options.describedAs,
      lane: options.role === "writer" || options.role === "reader" ? options.role : undefined
    })
    yield* core.fill
    return core
  })

/** The public pool over a core: leases for callers, handles in place of entries. */
export const service = (core: Core): ConnectionPool.Service => {
  const { config } = core
  // A lease in the current Scope; its connection goes back when the Scope closes.
  const acquire = Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(
      core.acquire("exclusive", core.callerLease, restore),
      ({ entry, release }) => Effect.as(Effect.addFinalizer((exit) => Effect.sync(() => release(exit))), entry.handle)
    )
  )
  // On the core's lease directly: the hot path of every caller, without a Scope.
  const use = <A, E, R>(f: (connection: ConnectionPool.PooledConnection) => Effect.Effect<A, E, R>) => {
    const site = core.holdWarningMillis === undefined ? undefined : PoolCore.callSite()
    return Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(
        core.acquire("exclusive", core.callerLease, restore, site),
        ({ entry, release }) => Effect.onExit(restore(f(entry.handle)), (exit) => Effect.sync(() => release(exit)))
      )
    )
  }
  const healthCheck = use((connection) => report(connection.sql)).pipe(
    Effect.mapError((cause) =>
      cause._tag === "SqlError"
        ? new HealthCheckError({ filename: config.filename, reason: cause.message, cause })
        : cause
    ),
    Effect.withSpan("sqlsim.healthCheck", { captureStackTrace: false })
  )
  return {
    acquire,
    use,
    stats: Effect.sync(() => core.snapshot()),
    healthCheck,
    invalidate: (connection) =>
      Effect.sync(() => {
        const entry = core.entryOf(connection)
        if (entry !== undefined) core.invalidate(entry)
      }),
    check: (connection) => {
      const entry = core.entryOf(connection)
      return entry === undefined ? "it is not a connection of this pool" : core.check(entry)
    },
    config
  }
}

/**
 * What a health check reports of a connection that answered: its SQLite version and journal mode, and how long the
 * queries took. A connection that does not answer fails instead, so a report is always `ok`.
 */
export const report = (sql: SqlClient.SqlClient) =>
  Effect.gen(function*() {
    const started = performance.now()
    const [version] = yield* sql<{ version: string }>`SELECT sqlite_version() AS version`
    const [mode] = yield* sql<{ journal_mode: string }>`PRAGMA journal_mode`
    // Reads the schema page: a database file that was overwritten or damaged there does not answer.
    yield* sql`SELECT count(*) FROM sqlite_schema`
    return {
      ok: true,
      latencyMs: performance.now() - started,
      sqliteVersion: version?.version ?? "unknown",
      journalMode: mode?.journal_mode ?? "unknown"
    } satisfies ConnectionPool.HealthReport
  })
