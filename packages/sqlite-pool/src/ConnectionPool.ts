/**
 * A SQLite connection pool whose connections live in Effect `Scope`s: lazy or pre-opened connections, connect
 * retries with exponential backoff, validation on acquire, first-come-first-served waiters, an acquire timeout,
 * idle and lifetime limits, statistics, metrics and spans, and a bounded shutdown. The machine itself is
 * `internal/poolCore.ts`; this module is its public surface.
 *
 * Effect's own `Pool` is not used: it serves waiters in no particular order, waits for a connect uninterruptibly
 * (an acquire timeout cannot fire meanwhile), keeps every item it ever created in its idle-TTL queue (memory grows
 * with every connection replaced) and evicts idle items on a fixed period rather than per connection.
 *
 * @since 0.1.0
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import type * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import type * as SqlClient from "@effect/sql/SqlClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as Connector from "./Connector.js"
import * as PooledClient from "./internal/client.js"
import * as MemoryDatabase from "./internal/memoryDatabase.js"
import * as PoolCore from "./internal/poolCore.js"
import * as PoolConfig from "./PoolConfig.js"
import { connectAttemptFailed, type ConnectError, HealthCheckError } from "./PoolError.js"
import type { AcquireError, PoolConfigError } from "./PoolError.js"
import type { PoolStats } from "./PoolStats.js"
import * as RetryPolicy from "./RetryPolicy.js"
import * as SqliteCode from "./SqliteCode.js"

export type { PoolStats } from "./PoolStats.js"

/**
 * A leased connection.
 *
 * @since 0.1.0
 * @category models
 */
export interface PooledConnection {
  /** unique per physical connection: 1, 2, 3 ... in creation order */
  readonly id: number
  /** the `@effect/sql-sqlite-node` client bound to this one connection */
  readonly sql: SqliteClient.SqliteClient
}

/**
 * @since 0.1.0
 * @category models
 */
export interface HealthReport {
  readonly ok: boolean
  readonly latencyMs: number
  readonly sqliteVersion: string
  readonly journalMode: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** a lease: the connection goes back to the pool when the Scope closes (or is closed, after a fatal error) */
  readonly acquire: Effect.Effect<PooledConnection, AcquireError, Scope.Scope>
  /** runs `f` with a leased connection */
  readonly use: <A, E, R>(f: (connection: PooledConnection) => Effect.Effect<A, E, R>) => Effect.Effect<
    A,
    E | AcquireError,
    R
  >
  readonly stats: Effect.Effect<PoolStats>
  /** acquires a connection like any lease and checks that the database answers */
  readonly healthCheck: Effect.Effect<HealthReport, AcquireError | HealthCheckError>
  /** closes the connection instead of returning it: when its lease ends, or at once when it is idle */
  readonly invalidate: (connection: PooledConnection) => Effect.Effect<void>
  /**
   * A cheap check of a connection of this pool, without a query: why it can no longer be used (closed, its database
   * file deleted or replaced), or undefined. For holders of long leases.
   */
  readonly check: (connection: PooledConnection) => string | undefined
  readonly config: PoolConfig.PoolConfig
  /**
   * A lease for a holder other than a caller (a lane keeping a connection, a health check), ended by `release`.
   * `reclaim` is called when another acquire would wait: a holder that keeps the connection only as an
   * optimisation gives it back then. Call it where interruption is masked; it is interruptible while it waits.
   *
   * @internal
   */
  readonly lease: (
    holder: PoolCore.Holder,
    restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>,
    reclaim?: () => void
  ) => Effect.Effect<Lease, AcquireError>
  /**
   * The invariants of the pool core that do not hold right now (empty when all do): for the model-based test.
   *
   * @internal
   */
  readonly violations: () => ReadonlyArray<string>
  /**
   * The connections open now, idle or leased (for changes every connection must get, such as an extension).
   *
   * @internal
   */
  readonly openConnections: () => ReadonlyArray<PooledConnection>
}

/**
 * A lease taken with `Service.lease`: the pooled connection, the `@effect/sql` connection under it, and how to end it.
 *
 * @internal
 */
export interface Lease {
  readonly pooled: PooledConnection
  readonly connection: SqlConnection.Connection
  /** ends the lease (once); a failure that broke the connection makes the pool close it */
  readonly release: (exit: Exit.Exit<unknown, unknown>) => void
}

/**
 * @since 0.1.0
 * @category tags
 */
export class ConnectionPool extends Context.Tag("@sqlsim/sqlite-pool/ConnectionPool")<ConnectionPool, Service>() {}

/**
 * Options beside the configuration, for the layers built on the pool.
 *
 * @since 0.1.0
 * @category models
 */
export interface MakeOptions {
  /** open read-only connections (`PRAGMA query_only`) */
  readonly readOnly?: boolean | undefined
  /** the `pool` label of the pool's metrics (default: the filename) */
  readonly label?: string | undefined
  /** the file to open instead of `config.filename` (SqlitePool resolves ":memory:" once for both of its pools) */
  readonly databaseFile?: string | undefined
  /** open each connection in a worker thread of its own (SqlitePool's Reader with `readerThreads`) */
  readonly inWorkers?: boolean | undefined
  /** what `onConnect` is told the connection is for (default "pool") */
  readonly role?: PoolConfig.NewConnection["role"] | undefined
  /** extensions every new connection loads (a list its owner may grow; SqlitePool shares one between its pools) */
  readonly extensions?: ReadonlyArray<string> | undefined
}

type Entry = PoolCore.Entry<SqliteClient.SqliteClient>

/**
 * Makes a pool from a validated configuration. Connections come from the `Connector` in the context when there is
 * one (tests and the simulator inject faults that way), from the live connector otherwise. Every connection lives
 * in a Scope of its own inside the pool's, so closing the pool closes them all.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeWithConfig = (
  config: PoolConfig.PoolConfig,
  options: MakeOptions = {}
): Effect.Effect<Service, ConnectError, Scope.Scope> =>
  Effect.gen(function*() {
    const connector = yield* Connector.current
    // Registered first, so the temporary directory of ":memory:" is removed after the pool has closed.
    const filename = options.databaseFile ?? (yield* MemoryDatabase.resolve(config.filename))
    const readOnly = options.readOnly ?? false
    const reactivity = yield* Reactivity.make
    const role = options.role ?? "pool"
    // The user's set-up of a new connection; a failure cannot be retried away, so it is permanent.
    const onConnect = (sql: SqliteClient.SqliteClient, connection: Connector.Connection) =>
      config.onConnect === undefined ?
        Effect.void :
        Effect.suspend(() => config.onConnect!({ sql, database: connection.driver?.database, role })).pipe(
          Effect.catchAllCause((cause) =>
            Effect.fail(
              connectAttemptFailed({
                filename: config.filename,
                code: "UNKNOWN",
                transient: false,
                reason: `the onConnect hook failed: ${Cause.pretty(cause).split("\n")[0]}`,
                cause: Cause.squash(cause)
              })
            )
          )
        )
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
        Effect.provideService(
          Effect.tap(
            PooledClient.make(connection, { ...config, filename }, { ...transactions, invalidate }),
            (sql) => onConnect(sql, connection)
          ),
          Reactivity.Reactivity,
          reactivity
        ),
      // A read-write connection that meets SQLITE_READONLY has lost write access (SQLite reopened its file
      // read-only): only a new connection gets it back.
      isFatal: (error) => !readOnly && SqliteCode.primary(SqliteCode.codeOf(error) ?? "") === "SQLITE_READONLY",
      label: options.label ?? config.filename
    })
    yield* core.fill

    const toLease = ({ entry, release }: PoolCore.Lease<SqliteClient.SqliteClient>): Lease => ({
      pooled: entry,
      connection: entry.connection.connection,
      release
    })
    const lease: Service["lease"] = (holder, restore, reclaim) =>
      Effect.map(Effect.suspend(() => core.acquire(holder, restore, reclaim)), toLease)

    // A lease in the current Scope, for `holder`.
    const scopedLease = (holder: PoolCore.Holder) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(lease(holder, restore), (leased) =>
          Effect.as(Effect.addFinalizer((exit) => Effect.sync(() => leased.release(exit))), leased.pooled))
      )
    const acquire = scopedLease("caller")

    // On the core's lease directly: the hot path of every caller, one Effect step fewer than `lease`.
    const use = <A, E, R>(f: (connection: PooledConnection) => Effect.Effect<A, E, R>) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(
          Effect.suspend(() =>
            core.acquire("caller", restore)
          ),
          ({ entry, release }) => Effect.onExit(restore(f(entry)), (exit) => Effect.sync(() => release(exit)))
        )
      )

    const healthCheck = Effect.scoped(Effect.flatMap(scopedLease("health"), (connection) => report(connection.sql)))
      .pipe(
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
      invalidate: (connection) => Effect.sync(() => core.invalidate(connection as Entry)),
      check: (connection) => core.check(connection as Entry),
      config,
      lease,
      violations: () => core.violations(),
      openConnections: () => core.openEntries()
    } satisfies Service
  })

/**
 * What a health check reports of a connection that answered: its SQLite version and journal mode, and how long the
 * two queries took.
 *
 * @internal
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
    } satisfies HealthReport
  })

/**
 * Validates the input and makes a pool in the current Scope.
 *
 * @example
 * const pool = yield* ConnectionPool.make({ filename: "app.db", maxConnections: 4 })
 * const rows = yield* pool.use((c) => c.sql`SELECT 1 AS one`)
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  input: PoolConfig.Input = {}
): Effect.Effect<Service, PoolConfigError | ConnectError, Scope.Scope> =>
  Effect.flatMap(PoolConfig.make(input), (config) => makeWithConfig(config))

/**
 * The `@effect/sql` connection under a leased connection's `sql`: for code that holds the lease already.
 *
 * @internal
 */
export const rawConnection = (connection: PooledConnection): SqlConnection.Connection =>
  (connection as Entry).connection.connection

/**
 * The pool as a Layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (input: PoolConfig.Input = {}): Layer.Layer<ConnectionPool, PoolConfigError | ConnectError> =>
  Layer.scoped(ConnectionPool, make(input))

/**
 * The pool as a Layer from an Effect `Config` of the input, as `@effect/sql` clients' `layerConfig`: each field a
 * `Config` (or the whole input one), read when the layer is built. A field left out takes its default.
 *
 * @example
 * const PoolLive = ConnectionPool.layerConfig({ filename: Config.string("DATABASE_FILE") })
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<PoolConfig.Input>
): Layer.Layer<ConnectionPool, ConfigError.ConfigError | PoolConfigError | ConnectError> =>
  Layer.scoped(ConnectionPool, Effect.flatMap(Config.unwrap(config), make))
