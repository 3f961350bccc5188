/**
 * The Layer Effect apps provide: `SqlClient.SqlClient` from `@effect/sql` on pooled, retrying, observable SQLite
 * connections. SQLite allows one writer at a time, so every `SqlClient` statement and transaction runs on a single
 * writer connection (transactions begin with `BEGIN IMMEDIATE`; contention inside the process queues in Effect, busy
 * locks from other processes are retried asynchronously). Reads that opt in run on `SqlitePool.Reader`, a pool of
 * read-only connections that never waits behind an open write transaction (WAL).
 *
 * @since 0.1.0
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Client from "@effect/sql/SqlClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type * as ConnectionPool from "./ConnectionPool.js"
import * as Connector from "./Connector.js"
import * as Lanes from "./internal/lanes.js"
import * as Pool from "./internal/pool.js"
import * as ReaderRoute from "./internal/readerRoute.js"
import * as PoolConfig from "./PoolConfig.js"
import { AcquireTimeoutError, ConnectError, HealthCheckError, PoolClosedError } from "./PoolError.js"
import type * as PoolError from "./PoolError.js"
import type { AcquireError, PoolConfigError } from "./PoolError.js"
import * as PoolStats from "./PoolStats.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  readonly writer: PoolStats.PoolStats
  readonly readers: PoolStats.PoolStats
  /** statements, BEGINs and COMMITs retried because another connection held the lock (SQLITE_BUSY/LOCKED) */
  readonly busyRetries: number
  /** transactions and statements waiting for the writer lane right now (queued, or waiting for running statements) */
  readonly writerWaiting: number
  /**
   * who holds the writer right now (the lease held longest when statements share it: its span, fiber, since when);
   * undefined when nobody does
   */
  readonly writerHolder: PoolError.Holder | undefined
  /** leases of either lane held longer than `holdWarningThreshold` so far (each warned about once) */
  readonly holdWarnings: number
  /** the same by the holder's span name (the innermost span of the application's around the acquire; "" for none) */
  readonly holdWarningsBySpan: Readonly<Record<string, number>>
  /** the WAL as the writer lane watches it; undefined on a connector with replicas (the WAL is the server's) */
  readonly wal: WalStats | undefined
  /** on a connector with replicas (`LibsqlConnector`): each replica's lag behind the primary; undefined on a file */
  readonly replication: Connector.Replication | undefined
  /**
   * with `readerThreads` (and the interrupt extension built): where the Reader's statements ran, how many texts it
   * learned long and how many ran over the main thread's budget; undefined otherwise (every read runs on workers)
   */
  readonly readerRoutes: ReaderRoutes | undefined
}

/**
 * Where the Reader's statements ran since the layer opened, with `readerThreads`: `mainThread` statements on the
 * main thread's connection (those interrupted over its budget included), `worker` statements, transactions and
 * streams on worker connections, `learnedLong` statement texts that run on the workers from then on, `overBudget`
 * statements SQLite interrupted on the main thread (run again on a worker unless forced onto the main thread).
 *
 * @since 0.1.0
 * @category models
 */
export interface ReaderRoutes {
  readonly mainThread: number
  readonly worker: number
  readonly learnedLong: number
  readonly overBudget: number
}

/**
 * The `-wal` file as the writer lane watches it (see `walCheckpointBytes`); counts are this pool's since it was made.
 *
 * @since 0.2.0
 * @category models
 */
export interface WalStats {
  /** the -wal's size in bytes when the writer lane last looked (at most once a second, after a write) */
  readonly bytes: number
  /** checkpoints past `walCheckpointBytes` that a reader's snapshot kept from finishing */
  readonly checkpointsBlocked: number
  /** checkpoints that emptied the -wal */
  readonly truncations: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Health {
  readonly ok: boolean
  readonly writer: ConnectionPool.HealthReport
  /** undefined when readConnections is 0 (reads run on the writer) */
  readonly readers: ConnectionPool.HealthReport | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly stats: Effect.Effect<Stats>
  readonly healthCheck: Effect.Effect<Health, AcquireError | HealthCheckError>
  readonly config: PoolConfig.SqliteConfig
}

/**
 * The pool's statistics and health.
 *
 * @since 0.1.0
 * @category tags
 */
export class SqlitePool extends Context.Tag("@sqlsim/sqlite-pool/SqlitePool")<SqlitePool, Service>() {}

/**
 * A `SqlClient`-shaped client on read-only connections: never blocked by an open write transaction; a write through
 * it fails with a `SqlError`. Inside a transaction of the writer, its statements run on that transaction.
 *
 * @since 0.1.0
 * @category tags
 */
export class Reader extends Context.Tag("@sqlsim/sqlite-pool/SqlitePool/Reader")<Reader, Client.SqlClient>() {}

/**
 * Runs the effect's `SqlitePool.Reader` statements on worker threads with `readerThreads`, whatever the Reader
 * learned of them: for a read that must never hold the event loop (an aggregate, a report). Without `readerThreads`
 * it changes nothing.
 *
 * @example
 * import { SqlitePool } from "@sqlsim/sqlite-pool"
 * import * as Effect from "effect/Effect"
 *
 * // An aggregate that must never run on the main thread, whatever the route has learned.
 * export const report = SqlitePool.onWorker(Effect.flatMap(
 *   SqlitePool.Reader,
 *   (reader) => reader`SELECT region, sum(total) AS total FROM orders GROUP BY region`
 * ))
 *
 * @since 0.1.0
 * @category combinators
 */
export const onWorker = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.locally(effect, ReaderRoute.forcedRoute, "worker")

/**
 * Runs the effect's `SqlitePool.Reader` statements on the main thread's Reader connection with `readerThreads`,
 * even those learned long. The main thread's time budget still applies: a statement over it fails with a
 * `SqlError` (SQLITE_INTERRUPT) instead of moving to a worker. Statements inside a Reader transaction run on the
 * transaction's connection (a worker's). Without `readerThreads`, or without the interrupt extension, it changes
 * nothing.
 *
 * @since 0.1.0
 * @category combinators
 */
export const onMainThread = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.locally(effect, ReaderRoute.forcedRoute, "mainThread")

/**
 * What `make` builds.
 *
 * @since 0.1.0
 * @category models
 */
export interface Clients {
  /** the writer lane, which is also the layer's `SqliteClient.SqliteClient` */
  readonly writer: SqliteClient.SqliteClient
  readonly reader: Client.SqlClient
  readonly service: Service
}

/**
 * Builds the writer lane, the reader lane and the service in the current Scope from a validated configuration.
 * The writer connection is opened (and the file switched to WAL) before this returns.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeWithConfig = (
  config: PoolConfig.SqliteConfig
): Effect.Effect<Clients, ConnectError, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function*() {
    const connector = yield* Connector.current
    const { busy, mainThread, reader, readerClient, wal, writer, writerClient } = yield* Lanes.make(config, connector)
    const service: Service = {
      config,
      stats: Effect.gen(function*() {
        const writerStats = writer.core.snapshot()
        return {
          writer: writerStats,
          readers: reader === undefined ? PoolStats.empty : reader.core.snapshot(),
          busyRetries: busy.retries,
          writerWaiting: writerStats.waiting,
          writerHolder: writer.core.oldestHolder(),
          holdWarnings: writer.core.stats.holdWarnings + (reader?.core.stats.holdWarnings ?? 0),
          holdWarningsBySpan: bySpan(writer.core.stats.holdWarningsBySpan, reader?.core.stats.holdWarningsBySpan),
          wal: wal?.snapshot(),
          replication: connector.replication === undefined ? undefined : yield* connector.replication,
          readerRoutes: mainThread?.book.snapshot()
        }
      }),
      // Through the lanes, as statements between the app's.
      healthCheck: Effect.gen(function*() {
        const writerHealth = yield* laneHealth(writer.client, config.filename)
        const readersHealth = reader === undefined ? undefined : yield* laneHealth(reader.client, config.filename)
        return {
          ok: writerHealth.ok && (readersHealth?.ok ?? true),
          writer: writerHealth,
          readers: readersHealth
        }
      }).pipe(Effect.withSpan("sqlsim.healthCheck", { captureStackTrace: false }))
    }
    return { writer: writerClient, reader: readerClient, service }
  })

/** Both lanes' hold warnings by span, added up, in span order (so that equal runs give equal objects). */
const bySpan = (
  writer: ReadonlyMap<string, number>,
  reader: ReadonlyMap<string, number> | undefined
): Record<string, number> => {
  const total = new Map(writer)
  for (const [span, n] of reader ?? []) total.set(span, (total.get(span) ?? 0) + n)
  return Object.fromEntries([...total].sort(([a], [b]) => a.localeCompare(b)))
}

/** A lane's health: the pool's own failure (connect, timeout, closed) as itself, anything else as HealthCheckError. */
const laneHealth = (
  client: Client.SqlClient,
  filename: string
): Effect.Effect<ConnectionPool.HealthReport, AcquireError | HealthCheckError> =>
  Effect.mapError(
    Pool.report(client),
    (error): AcquireError | HealthCheckError =>
      isAcquireError(error.cause)
        ? error.cause
        : new HealthCheckError({ filename, reason: error.message, cause: error })
  )

const isAcquireError = (cause: unknown): cause is AcquireError =>
  cause instanceof ConnectError || cause instanceof AcquireTimeoutError || cause instanceof PoolClosedError

/**
 * Validates the input and builds the clients in the current Scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  input: PoolConfig.SqliteInput = {}
): Effect.Effect<Clients, PoolConfigError | ConnectError, Scope.Scope | Reactivity.Reactivity> =>
  Effect.flatMap(PoolConfig.makeSqlite(input), makeWithConfig)

const toContext = (clients: Clients) =>
  Context.make(Client.SqlClient, clients.writer).pipe(
    Context.add(SqliteClient.SqliteClient, clients.writer),
    Context.add(Reader, clients.reader),
    Context.add(SqlitePool, clients.service)
  )

/**
 * The Layer: `SqlClient.SqlClient` and `SqliteClient.SqliteClient` (both the writer lane), `SqlitePool.Reader` and
 * `SqlitePool.SqlitePool`. Code written for `@effect/sql-sqlite-node` (its `SqliteMigrator` among it) runs on it.
 *
 * @example
 * import * as SqlClient from "@effect/sql/SqlClient"
 * import { SqlitePool } from "@sqlsim/sqlite-pool"
 * import * as Effect from "effect/Effect"
 *
 * const program = Effect.gen(function*() {
 *   const sql = yield* SqlClient.SqlClient
 *   return yield* sql`SELECT 1 AS one`
 * })
 *
 * const SqlLive = SqlitePool.layer({ filename: "app.db", readConnections: 4 })
 * export const main = program.pipe(Effect.provide(SqlLive))
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  input: PoolConfig.SqliteInput = {}
): Layer.Layer<
  Client.SqlClient | SqliteClient.SqliteClient | SqlitePool | Reader,
  PoolConfigError | ConnectError
> => Layer.scopedContext(Effect.map(make(input), toContext)).pipe(Layer.provide(Reactivity.layer))

/**
 * The Layer from an Effect `Config` of the input, as `@effect/sql` clients' `layerConfig`: each field a `Config`
 * (or the whole input one), read when the layer is built. A field left out takes its default.
 *
 * @example
 * import { SqlitePool } from "@sqlsim/sqlite-pool"
 * import * as Config from "effect/Config"
 *
 * export const SqlLive = SqlitePool.layerConfig({
 *   filename: Config.string("DATABASE_FILE"),
 *   readConnections: Config.integer("READ_CONNECTIONS").pipe(Config.withDefault(4))
 * })
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<PoolConfig.SqliteInput>
): Layer.Layer<
  Client.SqlClient | SqliteClient.SqliteClient | SqlitePool | Reader,
  ConfigError.ConfigError | PoolConfigError | ConnectError
> =>
  Layer.scopedContext(Effect.map(Effect.flatMap(Config.unwrap(config), make), toContext)).pipe(
    Layer.provide(Reactivity.layer)
  )
