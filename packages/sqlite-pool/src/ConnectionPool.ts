/**
 * A SQLite connection pool on Effect's `Pool` and `Scope`: lazy or pre-opened connections, connect retries with
 * exponential backoff, validation on acquire, first-come-first-served waiters, an acquire timeout, statistics,
 * metrics and spans, and a bounded shutdown.
 *
 * @since 0.1.0
 */
import type * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import { identity } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Pool from "effect/Pool"
import * as Scope from "effect/Scope"
import * as Connector from "./Connector.js"
import * as FairGate from "./internal/fairGate.js"
import * as MemoryDatabase from "./internal/memoryDatabase.js"
import { StatsRecorder } from "./internal/stats.js"
import * as PoolConfig from "./PoolConfig.js"
import { AcquireTimeoutError, ConnectError, HealthCheckError, PoolClosedError } from "./PoolError.js"
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
  /** the `pool` label of the pool's metrics (default: the filename) */
  readonly label?: string | undefined
  /** the file to open instead of `config.filename` (SqlitePool resolves ":memory:" once for both of its pools) */
  readonly databaseFile?: string | undefined
}

interface ConnectFailure {
  readonly error: ConnectError
  /** failures are numbered in the order they happen */
  readonly number: number
}

interface Entry extends PooledConnection {
  readonly connection: Connector.Connection
  readonly createdAt: number
  readonly close: Effect.Effect<void>
  leases: number
  lastReleasedAt: number
  closed: boolean
  invalidated: boolean
  /** leased right now */
  leased: boolean
}

/**
 * Makes a pool from a validated configuration. Connections come from the `Connector` in the context when there is
 * one (tests and the simulator inject faults that way), from the live connector otherwise.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeWithConfig = (
  config: PoolConfig.PoolConfig,
  options: MakeOptions = {}
): Effect.Effect<Service, ConnectError, Scope.Scope> =>
  Effect.gen(function*() {
    const connector = yield* Effect.serviceOption(Connector.Connector).pipe(
      Effect.flatMap(Option.match({ onNone: () => Connector.makeLive, onSome: Effect.succeed }))
    )
    // Registered first, so the temporary directory of ":memory:" is removed after the pool has closed.
    const filename = options.databaseFile ?? (yield* MemoryDatabase.resolve(config.filename))
    const outerScope = yield* Effect.scope
    const stats = new StatsRecorder(options.label ?? config.filename)
    const connectOptions: Connector.ConnectOptions = {
      filename,
      readOnly: options.readOnly ?? false,
      busyTimeout: config.busyTimeout,
      pageCacheKiB: config.pageCacheKiB
    }
    const retrySchedule = RetryPolicy.schedule(config)
    const openEntries = new Set<Entry>()
    let nextId = 1
    let lastConnectError: ConnectError | undefined
    let isClosed = false
    const closedError = new PoolClosedError({ filename: config.filename })

    // Effect's Pool keeps a failed connect as an item until some getter takes it, possibly one that started waiting
    // after the failure (its own waiter timed out): numbering failures lets an acquire skip such stale ones.
    let connectsFailed = 0

    // One connection, with retries of transient failures. Runs in the Pool's item scope: closing it closes the handle.
    const connectWithRetry: Effect.Effect<Entry, ConnectFailure, Scope.Scope> = Effect.gen(function*() {
      const startedAt = yield* Clock.currentTimeMillis
      let attempts = 0
      const attempt = Effect.suspend(() => {
        if (attempts++ > 0) stats.count("retries")
        return connector.connect(connectOptions)
      }).pipe(Effect.tapError((error) =>
        Effect.sync(() => {
          stats.count("connectFailures")
          lastConnectError = error
        })
      ))
      const itemScope = yield* Effect.scope
      const connectionScope = yield* Scope.fork(itemScope, ExecutionStrategy.sequential)
      return yield* Effect.uninterruptibleMask((restore) =>
        restore(
          Scope.extend(
            Effect.retry(attempt, { schedule: retrySchedule, while: (error) => error.transient }),
            connectionScope
          )
        ).pipe(
          Effect.catchAll((error) =>
            Effect.flatMap(Clock.currentTimeMillis, (now) =>
              Effect.fail({
                error: new ConnectError({ ...error, cause: error.cause, attempts, elapsedMs: now - startedAt }),
                number: ++connectsFailed
              }))
          ),
          Effect.tapErrorCause((cause) => Scope.close(connectionScope, Exit.failCause(cause))),
          Effect.flatMap((connection) =>
            Effect.gen(function*() {
              const now = yield* Clock.currentTimeMillis
              const entry: Entry = {
                id: nextId++,
                sql: connection.sql,
                connection,
                createdAt: now,
                close: Scope.close(connectionScope, Exit.void),
                leases: 0,
                lastReleasedAt: now,
                closed: false,
                invalidated: false,
                leased: false
              }
              stats.count("created")
              openEntries.add(entry)
              yield* Scope.addFinalizer(
                connectionScope,
                Effect.sync(() => {
                  if (entry.closed) return
                  entry.closed = true
                  openEntries.delete(entry)
                  if (entry.invalidated) stats.count("invalidated")
                  stats.count("closed")
                })
              )
              return entry
            })
          )
        )
      )
    })

    const poolScope = yield* Scope.make()
    const pool = yield* Scope.extend(
      Pool.makeWithTTL({
        acquire: connectWithRetry,
        min: config.minConnections,
        max: config.maxConnections,
        timeToLive: config.idleTimeToLive,
        timeToLiveStrategy: "usage"
      }),
      poolScope
    )
    const gate = FairGate.make<PoolClosedError>(config.maxConnections)

    // Leases not ended yet. Shutdown ends those that outlive shutdownTimeout itself, so that the statistics stay
    // consistent (inUse + idle == open) once their connections are closed under them.
    const activeLeases = new Set<Lease>()
    const endLease = (lease: Lease) => {
      if (lease.ended) return
      lease.ended = true
      activeLeases.delete(lease)
      stats.endLease()
    }

    // Shutdown: refuse new acquires and fail waiters at once, give leases shutdownTimeout to end, then close every
    // handle. The wait is made interruptible explicitly: finalizers are not, and a timeout inside one never fires.
    const drained = yield* Deferred.make<void>()
    const shutdown = Effect.gen(function*() {
      isClosed = true
      yield* gate.close(closedError)
      if (stats.leased > 0) {
        yield* Effect.interruptible(Deferred.await(drained)).pipe(
          Effect.timeoutOption(config.shutdownTimeout),
          Effect.asVoid
        )
      }
      const closePool = Scope.close(poolScope, Exit.void)
      if (stats.leased === 0) return yield* closePool
      // Leases outlived shutdownTimeout: end them, close their handles now (their next statement fails with a
      // SqlError), and let the Pool's own shutdown finish in the background when their scopes close.
      activeLeases.forEach(endLease)
      yield* Effect.forEach(openEntries, (entry) => entry.close, { discard: true })
      yield* Effect.forkDaemon(closePool)
    })
    yield* Scope.addFinalizer(outerScope, shutdown)

    // Connections the Pool holds but that are being validated by an acquire (not yet leased, not idle either).
    let validating = 0
    const idleInPool = () => stats.idle - validating

    // The part of an acquire that can wait: a slot from the fair gate (unless one was taken already), then a
    // validated connection from the Pool.
    const checkout = (
      leaseScope: Scope.Scope,
      hasSlot: boolean,
      failuresBefore: number
    ): Effect.Effect<Entry, ConnectError | PoolClosedError> =>
      Effect.gen(function*() {
        if (!hasSlot) {
          yield* Effect.uninterruptibleMask((restore) =>
            Effect.zipRight(restore(gate.take), Scope.addFinalizer(leaseScope, gate.release))
          )
        }
        while (true) {
          const attemptScope = yield* Scope.fork(leaseScope, ExecutionStrategy.sequential)
          // Effect's Pool waits for a connect in progress uninterruptibly: disconnected, the wait ends as soon as
          // acquireTimeout (or the caller) interrupts it, and a connection that arrives later goes straight back
          // to the pool through the finalizer it adds to the then closed attemptScope. With an idle connection
          // there is nothing to wait for, and no extra fiber is spent.
          const get = Scope.extend(pool.get, attemptScope)
          const got = yield* Effect.either(idleInPool() > 0 ? get : Effect.disconnect(get))
          if (got._tag === "Left") {
            yield* Scope.close(attemptScope, Exit.void)
            if (got.left.number <= failuresBefore) continue
            return yield* Effect.fail(got.left.error)
          }
          const entry = got.right
          validating++
          const problem = yield* Effect.ensuring(validationProblem(entry), Effect.sync(() => validating--))
          if (problem === undefined) return entry
          yield* Effect.logDebug(`sqlsim: connection ${entry.id} replaced: ${problem}`)
          entry.invalidated = true
          yield* pool.invalidate(entry)
          yield* Scope.close(attemptScope, Exit.void)
        }
      })

    const validationProblem = (entry: Entry): Effect.Effect<string | undefined> =>
      Effect.gen(function*() {
        if (entry.closed) return "it was closed"
        const now = yield* Clock.currentTimeMillis
        if (config.maxLifetime !== null && now - entry.createdAt >= Duration.toMillis(config.maxLifetime)) {
          return "it reached maxLifetime"
        }
        // A connection never leased is probed too: one opened for minConnections may have sat idle for hours.
        // `lastReleasedAt` starts at the creation time, so validationInterval also spares a brand-new connection.
        if (now - entry.lastReleasedAt < Duration.toMillis(config.validationInterval)) return undefined
        const result = yield* Effect.either(entry.connection.validate).pipe(
          Effect.withSpan("sqlsim.validate", {
            attributes: { "sqlsim.connection.id": entry.id },
            captureStackTrace: false
          })
        )
        return result._tag === "Left" ? result.left.reason : undefined
      })

    const withAcquireTimeout = Effect.timeoutFail({
      duration: config.acquireTimeout,
      onTimeout: () => {
        stats.count("timeouts")
        return new AcquireTimeoutError({
          waitedMs: Duration.toMillis(config.acquireTimeout),
          stats: stats.snapshot(),
          lastError: lastConnectError
        })
      }
    })

    const acquire: Effect.Effect<PooledConnection, AcquireError, Scope.Scope> = Effect.gen(function*() {
      if (isClosed) return yield* Effect.fail(closedError)
      const leaseScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
      const failuresBefore = connectsFailed
      // Fast path: a free slot, nobody waiting, an idle connection: nothing can wait, so no timeout fiber is needed.
      const hasSlot = yield* Effect.uninterruptible(Effect.suspend(() =>
        gate.unsafeTryTake() ? Effect.as(Scope.addFinalizer(leaseScope, gate.release), true) : Effect.succeed(false)
      ))
      const immediate = hasSlot && idleInPool() > 0
      stats.startWaiting()
      const entry = yield* checkout(leaseScope, hasSlot, failuresBefore).pipe(
        immediate ? identity : withAcquireTimeout,
        Effect.ensuring(Effect.sync(() =>
          stats.stopWaiting()
        )),
        Effect.onExit((exit) => Exit.isFailure(exit) ? Scope.close(leaseScope, exit) : Effect.void)
      )
      return yield* Effect.uninterruptible(Effect.gen(function*() {
        stats.lease(entry.leases++ > 0)
        entry.leased = true
        const lease: Lease = { ended: false }
        activeLeases.add(lease)
        yield* Scope.addFinalizerExit(leaseScope, (exit) =>
          Effect.gen(function*() {
            entry.lastReleasedAt = yield* Clock.currentTimeMillis
            endLease(lease)
            if (stats.leased === 0 && isClosed) yield* Deferred.succeed(drained, undefined)
            entry.leased = false
            // Handed to the Pool while it still counts the connection as in use, so it is closed, not reused.
            if (entry.invalidated || (Exit.isFailure(exit) && (yield* leaseBrokeConnection(entry, exit.cause)))) {
              entry.invalidated = true
              yield* pool.invalidate(entry)
            }
          }))
        return entry satisfies PooledConnection
      }))
    }).pipe(
      Effect.withSpan("sqlsim.acquire", {
        attributes: { "db.system.name": "sqlite", "db.namespace": config.filename },
        captureStackTrace: false
      })
    )

    const use = <A, E, R>(f: (connection: PooledConnection) => Effect.Effect<A, E, R>) =>
      Effect.scoped(Effect.flatMap(acquire, f))

    const healthCheck = use((connection) =>
      Effect.gen(function*() {
        const started = performance.now()
        const [version] = yield* connection.sql<{ version: string }>`SELECT sqlite_version() AS version`
        const [mode] = yield* connection.sql<{ journal_mode: string }>`PRAGMA journal_mode`
        return {
          ok: true,
          latencyMs: performance.now() - started,
          sqliteVersion: version?.version ?? "unknown",
          journalMode: mode?.journal_mode ?? "unknown"
        }
      }).pipe(
        Effect.mapError((cause) => new HealthCheckError({ filename: config.filename, reason: cause.message, cause }))
      )
    ).pipe(Effect.withSpan("sqlsim.healthCheck", { captureStackTrace: false }))

    const invalidate = (connection: PooledConnection) =>
      Effect.suspend(() => {
        const entry = connection as Entry
        if (!openEntries.has(entry)) return Effect.void
        entry.invalidated = true
        // A leased connection is passed to the Pool when its lease ends: marked invalid in the Pool now, it would no
        // longer count towards maxConnections and the Pool could open one more while the lease goes on.
        return entry.leased ? Effect.void : pool.invalidate(entry)
      })

    // minConnections are opened (and verified) before the pool is handed out: a failure fails the construction.
    if (config.minConnections > 0) {
      yield* Effect.scoped(
        Effect.forEach(Array.from({ length: config.minConnections }), () =>
          Effect.mapError(pool.get, (failure) => failure.error), {
          concurrency: config.minConnections,
          discard: true
        })
      )
    }

    return {
      acquire,
      use,
      stats: Effect.sync(() =>
        stats.snapshot()
      ),
      healthCheck,
      invalidate,
      config
    } satisfies Service
  })

interface Lease {
  ended: boolean
}

/**
 * Whether a lease that ended with `cause` left its connection unusable: a fatal SQLite code says so at once; a
 * failure that carries no SQLite code at all (such as the driver's "The database connection is not open") is
 * settled by probing the connection. A failure with a caller's code (syntax, constraint) proves SQLite answered.
 */
const leaseBrokeConnection = (entry: Entry, cause: Cause.Cause<unknown>): Effect.Effect<boolean> => {
  const errors = [...Cause.failures(cause), ...Cause.defects(cause)]
  if (errors.some(SqliteCode.isFatal)) return Effect.succeed(true)
  if (errors.length === 0 || errors.some((error) => SqliteCode.codeOf(error) !== undefined)) {
    return Effect.succeed(false)
  }
  return Effect.isFailure(entry.connection.validate)
}

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
 * The pool as a Layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (input: PoolConfig.Input = {}): Layer.Layer<ConnectionPool, PoolConfigError | ConnectError> =>
  Layer.scoped(ConnectionPool, make(input))

/**
 * The pool as a Layer configured from environment variables (`PoolConfig.environmentVariables`), overlaid by
 * `overrides`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  overrides: PoolConfig.Input = {}
): Layer.Layer<ConnectionPool, PoolConfigError | ConnectError> =>
  Layer.scoped(ConnectionPool, Effect.flatMap(PoolConfig.fromConfig(overrides), (config) => makeWithConfig(config)))
