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
import * as Client from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as ConnectionPool from "./ConnectionPool.js"
import * as Lane from "./internal/lane.js"
import * as MemoryDatabase from "./internal/memoryDatabase.js"
import * as Transaction from "./internal/transaction.js"
import * as PoolConfig from "./PoolConfig.js"
import { AcquireTimeoutError, ConnectError, HealthCheckError, PoolClosedError } from "./PoolError.js"
import type { AcquireError, PoolConfigError } from "./PoolError.js"
import * as PoolStats from "./PoolStats.js"
import * as RetryPolicy from "./RetryPolicy.js"

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
  readonly config: PoolConfig.PoolConfig
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
 * What `make` builds.
 *
 * @since 0.1.0
 * @category models
 */
export interface Clients {
  readonly writer: Client.SqlClient
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
  config: PoolConfig.PoolConfig
): Effect.Effect<Clients, ConnectError, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function*() {
    const databaseFile = yield* MemoryDatabase.resolve(config.filename)
    const busy: RetryPolicy.BusyCounter = { retries: 0 }
    const retryBusy = RetryPolicy.retryWhileBusy(config, busy)

    const writerPool = yield* ConnectionPool.makeWithConfig(
      { ...config, maxConnections: 1, minConnections: 1 },
      { databaseFile, label: `${config.filename} (writer)` }
    )
    const writer = yield* Lane.makeLane({
      pool: writerPool,
      kind: "writer",
      retryBusy,
      withTransaction: (lane) => Transaction.makeWithTransaction({ ...lane, begin: "BEGIN IMMEDIATE", retryBusy })
    })

    const readerPool = config.readConnections === 0 ? undefined : yield* ConnectionPool.makeWithConfig(
      {
        ...config,
        maxConnections: config.readConnections,
        minConnections: Math.min(config.minConnections, config.readConnections)
      },
      { databaseFile, readOnly: true, label: `${config.filename} (readers)`, inWorkers: config.readerThreads }
    )
    const reader = readerPool === undefined ? writer : yield* Lane.makeLane({
      pool: readerPool,
      kind: "reader",
      retryBusy: (effect) => effect,
      withTransaction: (lane) => Transaction.makeWithTransaction({ ...lane, begin: "BEGIN", retryBusy: (e) => e })
    })

    const service: Service = {
      config,
      stats: Effect.gen(function*() {
        return {
          writer: yield* writerPool.stats,
          readers: readerPool === undefined ? PoolStats.empty : yield* readerPool.stats,
          busyRetries: busy.retries,
          writerWaiting: writer.waiting()
        }
      }),
      // Through the lanes, as statements between the app's: never behind a connection a lane keeps.
      healthCheck: Effect.gen(function*() {
        const writerHealth = yield* laneHealth(writer.client, config.filename)
        const readersHealth = readerPool === undefined ? undefined : yield* laneHealth(reader.client, config.filename)
        return {
          ok: writerHealth.ok && (readersHealth?.ok ?? true),
          writer: writerHealth,
          readers: readersHealth
        }
      }).pipe(Effect.withSpan("sqlsim.healthCheck", { captureStackTrace: false }))
    }
    return { writer: writer.client, reader: reader.client, service }
  })

/** A lane's health: the pool's own failure (connect, timeout, closed) as itself, anything else as HealthCheckError. */
const laneHealth = (
  client: Client.SqlClient,
  filename: string
): Effect.Effect<ConnectionPool.HealthReport, AcquireError | HealthCheckError> =>
  Effect.mapError(
    ConnectionPool.report(client),
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
  input: PoolConfig.Input = {}
): Effect.Effect<Clients, PoolConfigError | ConnectError, Scope.Scope | Reactivity.Reactivity> =>
  Effect.flatMap(PoolConfig.make(input), makeWithConfig)

const toContext = (clients: Clients) =>
  Context.make(Client.SqlClient, clients.writer).pipe(
    Context.add(Reader, clients.reader),
    Context.add(SqlitePool, clients.service)
  )

/**
 * The Layer: `SqlClient.SqlClient` (writer lane), `SqlitePool.Reader` and `SqlitePool.SqlitePool`.
 *
 * @example
 * const SqlLive = SqlitePool.layer({ filename: "app.db", readConnections: 4 })
 * program.pipe(Effect.provide(SqlLive))
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  input: PoolConfig.Input = {}
): Layer.Layer<Client.SqlClient | SqlitePool | Reader, PoolConfigError | ConnectError> =>
  Layer.scopedContext(Effect.map(make(input), toContext)).pipe(Layer.provide(Reactivity.layer))

/**
 * The Layer configured from environment variables (`PoolConfig.environmentVariables`), overlaid by `overrides`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  overrides: PoolConfig.Input = {}
): Layer.Layer<Client.SqlClient | SqlitePool | Reader, PoolConfigError | ConnectError> =>
  Layer.scopedContext(
    Effect.map(Effect.flatMap(PoolConfig.fromConfig(overrides), makeWithConfig), toContext)
  ).pipe(Layer.provide(Reactivity.layer))
