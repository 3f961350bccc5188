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
import type * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Connector from "./Connector.js"
import * as Pool from "./internal/pool.js"
import * as PoolConfig from "./PoolConfig.js"
import type { AcquireError, ConnectError, HealthCheckError, PoolConfigError } from "./PoolError.js"
import type { PoolStats } from "./PoolStats.js"

export type {
  /**
   * The pool's statistics, the type of `stats`, also reachable from the module that reports them.
   *
   * @since 0.1.0
   * @category models
   */
  PoolStats
} from "./PoolStats.js"

/**
 * A leased connection, as its holder sees it. The pool maps it back to the connection it stands for; one from
 * another pool is unknown to it (`invalidate` does nothing, `check` says so).
 *
 * @since 0.1.0
 * @category models
 */
export interface PooledConnection {
  /** 1, 2, 3 ... in the order this pool opened its connections (another pool numbers its own from 1) */
  readonly id: number
  /** the `@effect/sql-sqlite-node` client bound to this one connection */
  readonly sql: SqliteClient.SqliteClient
}

/**
 * What a health check found on a connection that answered. A connection that does not answer fails the check with
 * `HealthCheckError` instead, so `ok` is true in every report a check returns (SqlitePool's `Health.ok` combines
 * its lanes).
 *
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
   * file deleted or replaced, not a connection of this pool), or undefined. For holders of long leases.
   */
  readonly check: (connection: PooledConnection) => string | undefined
  readonly config: PoolConfig.PoolConfig
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
  /** the pool's name in its metrics, `db.client.connection.pool.name` (default: the filename) */
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

/**
 * Makes a pool from a validated configuration. Connections come from the `Connector` in the context when there is
 * one (tests and the simulator inject faults that way), from the live connector otherwise. Every connection lives
 * in a Scope of its own inside the pool's, so closing the pool closes them all. The connections' clients use the
 * `Reactivity` of the context when there is one.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeWithConfig = (
  config: PoolConfig.PoolConfig,
  options: MakeOptions = {}
): Effect.Effect<Service, ConnectError, Scope.Scope> =>
  Effect.flatMap(
    Connector.current,
    (connector) => Effect.map(Pool.make(config, { ...options, connector }), Pool.service)
  )

/**
 * Validates the input and makes a pool in the current Scope.
 *
 * @example
 * import { ConnectionPool } from "@sqlsim/sqlite-pool"
 * import * as Effect from "effect/Effect"
 *
 * export const program = Effect.gen(function*() {
 *   const pool = yield* ConnectionPool.make({ filename: "app.db", maxConnections: 4 })
 *   return yield* pool.use((c) => c.sql`SELECT 1 AS one`)
 * }).pipe(Effect.scoped)
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  input: PoolConfig.Input = {}
): Effect.Effect<Service, PoolConfigError | ConnectError, Scope.Scope> =>
  Effect.flatMap(PoolConfig.make(input), (config) => makeWithConfig(config))

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
 * import { ConnectionPool } from "@sqlsim/sqlite-pool"
 * import * as Config from "effect/Config"
 *
 * export const PoolLive = ConnectionPool.layerConfig({ filename: Config.string("DATABASE_FILE") })
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<PoolConfig.Input>
): Layer.Layer<ConnectionPool, ConfigError.ConfigError | PoolConfigError | ConnectError> =>
  Layer.scoped(ConnectionPool, Effect.flatMap(Config.unwrap(config), make))
