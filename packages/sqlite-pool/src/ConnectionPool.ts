/**
 * A SQLite connection pool whose connections live in Effect `Scope`s: lazy or pre-opened connections, connect
 * retries with exponential backoff, validation on acquire, first-come-first-served waiters, an acquire timeout,
 * idle and lifetime limits, statistics, metrics and spans, and a bounded shutdown.
 *
 * Effect's own `Pool` is not used: it serves waiters in no particular order, waits for a connect uninterruptibly
 * (an acquire timeout cannot fire meanwhile), keeps every item it ever created in its idle-TTL queue (memory grows
 * with every connection replaced) and evicts idle items on a fixed period rather than per connection.
 *
 * @since 0.1.0
 */
import type * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Connector from "./Connector.js"
import * as Deadlines from "./internal/deadlines.js"
import * as FairGate from "./internal/fairGate.js"
import * as Handoff from "./internal/handoff.js"
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
  /**
   * A cheap check of a connection of this pool, without a query: why it can no longer be used (closed, its database
   * file deleted or replaced), or undefined. For holders of long leases.
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
  /** the `pool` label of the pool's metrics (default: the filename) */
  readonly label?: string | undefined
  /** the file to open instead of `config.filename` (SqlitePool resolves ":memory:" once for both of its pools) */
  readonly databaseFile?: string | undefined
}

interface Entry extends PooledConnection {
  readonly connection: Connector.Connection
  /** the raw `@effect/sql` connection under `sql` */
  readonly raw: SqlConnection.Connection
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
 * Every connection lives in a Scope of its own inside the pool's Scope, so closing the pool closes them all.
 * Acquires queue at a first-come-first-served gate of `maxConnections` slots; a slot holder takes the most
 * recently returned idle connection (validated first), or opens one, or waits for one being opened.
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
    const poolScope = yield* Scope.make()
    const gate = FairGate.make<PoolClosedError>(config.maxConnections)
    const idle = Handoff.make<Entry>()
    let connecting = 0
    let nextId = 1
    let lastConnectError: ConnectError | undefined
    let isClosed = false
    const closedError = new PoolClosedError({ filename: config.filename })
    const clock = yield* Effect.clock
    const idleTimeToLive = Duration.toMillis(config.idleTimeToLive)
    const maxLifetime = config.maxLifetime === null ? Infinity : Duration.toMillis(config.maxLifetime)
    const validationInterval = Duration.toMillis(config.validationInterval)
    const acquireTimeout = Duration.toMillis(config.acquireTimeout)
    const timedOut = () => {
      stats.count("timeouts")
      return new AcquireTimeoutError({ waitedMs: acquireTimeout, stats: stats.snapshot(), lastError: lastConnectError })
    }
    const deadlines = Number.isFinite(acquireTimeout)
      ? yield* Scope.extend(Deadlines.make(acquireTimeout, timedOut), poolScope)
      : undefined

    // One physical connection, with retries of transient failures, in a Scope of its own.
    const connectWithRetry: Effect.Effect<Entry, ConnectError> = Effect.gen(function*() {
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
      const connectionScope = yield* Scope.fork(poolScope, ExecutionStrategy.sequential)
      return yield* Effect.uninterruptibleMask((restore) =>
        restore(
          Scope.extend(
            Effect.retry(attempt, { schedule: retrySchedule, while: (error) => error.transient }),
            connectionScope
          )
        ).pipe(
          Effect.catchAll((error) =>
            Effect.flatMap(Clock.currentTimeMillis, (now) =>
              Effect.fail(
                new ConnectError({ ...error, cause: error.cause, attempts, elapsedMs: now - startedAt })
              ))
          ),
          Effect.tapErrorCause((cause) => Scope.close(connectionScope, Exit.failCause(cause))),
          Effect.flatMap((connection) =>
            Effect.gen(function*() {
              const now = yield* Clock.currentTimeMillis
              // Reserved once: a reservation only guards SqliteClient's own semaphore, and a lease is exclusive.
              // (SqliteClient's reserve takes a permit and cannot fail.)
              const raw = yield* Effect.orDie(Effect.scoped(connection.sql.reserve))
              const entry: Entry = {
                id: nextId++,
                sql: connection.sql,
                raw,
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
                  idle.remove(entry)
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

    // Closes a connection that is not leased. A checkout waiting because the pool was full may now open one, and
    // minConnections are topped up in the background.
    const retire = (entry: Entry): Effect.Effect<void> =>
      Effect.suspend(() => {
        idle.remove(entry)
        return Effect.zipRight(
          entry.close,
          Effect.suspend(() => {
            idle.wakeOne()
            return !isClosed && openEntries.size + connecting < config.minConnections
              ? connectInBackground(() => false)
              : Effect.void
          })
        )
      })

    // A connect runs on a fiber of the pool's, not of the acquire that asked for it: an acquire that times out or is
    // interrupted leaves it running, and its connection then goes to the next waiter or joins the idle ones.
    // `deliver` returns false when the acquire is gone.
    const connectInBackground = (deliver: (exit: Exit.Exit<Entry, ConnectError>) => boolean): Effect.Effect<void> =>
      Effect.suspend(() => {
        connecting++
        // Interruptible even when forked from an uninterruptible region (a fork inherits it): closing the pool must
        // be able to stop a connect that is still retrying.
        return Effect.interruptible(connectWithRetry).pipe(
          Effect.exit,
          Effect.flatMap((exit) =>
            Effect.sync(() => {
              connecting--
              const delivered = deliver(exit)
              // A failed connect frees its place: a checkout waiting because the pool was full may open one now.
              if (Exit.isFailure(exit)) idle.wakeOne()
              else if (!delivered) idle.offer(exit.value)
            })
          ),
          Effect.forkIn(poolScope),
          Effect.asVoid
        )
      })

    // What a checkout holds: the connection it got, until the lease is registered (an interruption gives it back).
    interface Holder {
      entry: Entry | undefined
    }
    type Deadline = Deadlines.Deadline<AcquireTimeoutError>
    type Resume = (effect: Effect.Effect<void, ConnectError | PoolClosedError>) => void
    const pendingOpens = new Set<Resume>()

    /** Opens a connection into `holder` and waits for it (interruptibly: the connect itself goes on). */
    const openOwn = (
      holder: Holder,
      deadline: Deadline | undefined
    ): Effect.Effect<void, ConnectError | PoolClosedError | AcquireTimeoutError> =>
      Effect.suspend(() => {
        let resume: Resume | undefined
        let arrived: Exit.Exit<Entry, ConnectError> | undefined
        let abandoned = false
        const deliver = (exit: Exit.Exit<Entry, ConnectError>) => {
          if (abandoned) return false
          if (Exit.isSuccess(exit)) holder.entry = exit.value
          if (resume === undefined) {
            arrived = exit
          } else {
            pendingOpens.delete(resume)
            resume(Exit.asVoid(exit))
          }
          return true
        }
        const arrival = Deadlines.wait(deadline, (callback: Resume) => {
          if (arrived !== undefined) {
            callback(Exit.asVoid(arrived))
          } else {
            resume = callback
            pendingOpens.add(callback)
          }
          return () => pendingOpens.delete(callback)
        })
        // Once the connect has started, a checkout that stops waiting for any reason (interrupted, past its deadline,
        // even before it began to wait) abandons it: the connection then goes to the next waiter or the idle list.
        return Effect.uninterruptibleMask((restore) =>
          Effect.zipRight(
            connectInBackground(deliver),
            Effect.onError(restore(arrival), () => Effect.sync(() => abandoned = true))
          )
        )
      })

    const checkEntry = (entry: Entry): string | undefined => entry.closed ? "it was closed" : entry.connection.check?.()

    // What a connection taken for a lease needs before it is handed out: nothing, a probe, or replacing.
    const quickCheck = (entry: Entry, fresh: boolean): string | "probe" | undefined => {
      const problem = checkEntry(entry)
      if (problem !== undefined) return problem
      const now = clock.unsafeCurrentTimeMillis()
      if (now - entry.createdAt >= maxLifetime) return "it reached maxLifetime"
      if (fresh) return undefined // opened and verified for this very acquire
      if (entry.leases > 0 && now - entry.lastReleasedAt < validationInterval) return undefined
      return "probe"
    }

    // Validates a connection taken for a lease; a broken one is closed (and counted as invalidated).
    const validated = (entry: Entry, fresh: boolean): Effect.Effect<boolean> => {
      const check = quickCheck(entry, fresh)
      if (check === undefined) return succeedTrue
      const problem = check !== "probe" ? Effect.succeed(check) : Effect.match(entry.connection.validate, {
        onFailure: (invalid) => invalid.reason,
        onSuccess: () => undefined
      })
      return Effect.flatMap(problem, (problem) => {
        if (problem === undefined) return succeedTrue
        entry.invalidated = problem !== "it reached maxLifetime"
        return Effect.logDebug(`sqlsim: connection ${entry.id} replaced: ${problem}`).pipe(
          Effect.zipRight(Effect.uninterruptible(retire(entry))),
          Effect.as(false)
        )
      })
    }

    // The part of an acquire that can wait: a slot from the fair gate (unless one was taken already), then an idle
    // connection (or the one already in hand), a new one, or one being opened for an acquire that gave up.
    const checkout = (
      leaseScope: Scope.Scope,
      hasSlot: boolean,
      holder: Holder,
      deadline: Deadline | undefined
    ): Effect.Effect<Entry, AcquireError> =>
      Effect.gen(function*() {
        if (!hasSlot) {
          yield* Effect.uninterruptibleMask((restore) =>
            Effect.zipRight(restore(gate.takeBefore(deadline)), Scope.addFinalizer(leaseScope, gate.release))
          )
        }
        while (true) {
          if (isClosed) return yield* Effect.fail(closedError)
          holder.entry ??= idle.poll()
          let fresh = false
          if (holder.entry === undefined) {
            if (openEntries.size + connecting < config.maxConnections) {
              yield* openOwn(holder, deadline)
              fresh = true
            } else {
              yield* idle.await((entry) => holder.entry = entry, deadline)
            }
          }
          const entry = holder.entry
          if (entry === undefined) continue // woken to look again
          if (yield* validated(entry, fresh)) return entry
          holder.entry = undefined
          // Replacing connections must not starve the timers (acquireTimeout among them).
          yield* Effect.yieldNow()
          if (deadline?.expired === true) return yield* Effect.fail(deadline.timeout())
        }
      })

    // Leases not ended yet. Shutdown ends those that outlive shutdownTimeout itself, so that the statistics stay
    // consistent (inUse + idle == open) once their connections are closed under them.
    const activeLeases = new Set<Lease>()
    const endLease = (lease: Lease) => {
      if (lease.ended) return
      lease.ended = true
      activeLeases.delete(lease)
      stats.endLease()
    }

    // Shutdown: refuse new acquires and fail every waiter at once, give leases shutdownTimeout to end, then close
    // every connection (leased ones too) and stop the background fibers. The wait is made interruptible explicitly:
    // finalizers are not, and a timeout inside one never fires.
    const drained = yield* Deferred.make<void>()
    const shutdown = Effect.gen(function*() {
      isClosed = true
      yield* gate.close(closedError)
      for (const resume of pendingOpens) resume(Exit.fail(closedError))
      pendingOpens.clear()
      idle.wakeAll()
      if (stats.leased > 0) {
        yield* Effect.interruptible(Deferred.await(drained)).pipe(
          Effect.timeoutOption(config.shutdownTimeout),
          Effect.asVoid
        )
      }
      activeLeases.forEach(endLease)
      yield* Scope.close(poolScope, Exit.void)
    })
    yield* Scope.addFinalizer(outerScope, shutdown)

    // Registers the lease: from here on the lease scope owns the connection. Runs uninterruptibly.
    const lease = (entry: Entry, leaseScope: Scope.Scope): Effect.Effect<Entry> => {
      stats.lease(entry.leases++ > 0)
      entry.leased = true
      const lease: Lease = { ended: false }
      activeLeases.add(lease)
      return Effect.as(Scope.addFinalizerExit(leaseScope, (exit) => release(entry, lease, exit)), entry)
    }

    const release = (entry: Entry, lease: Lease, exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> => {
      entry.lastReleasedAt = clock.unsafeCurrentTimeMillis()
      entry.leased = false
      endLease(lease)
      if (stats.leased === 0 && isClosed) Deferred.unsafeDone(drained, Exit.void)
      if (entry.closed) return Effect.void
      if (entry.invalidated) return retire(entry)
      if (Exit.isFailure(exit)) {
        return Effect.flatMap(leaseBrokeConnection(entry, exit.cause), (broke) => {
          if (!broke) return Effect.sync(() => idle.offer(entry))
          entry.invalidated = true
          return retire(entry)
        })
      }
      idle.offer(entry)
      return Effect.void
    }

    const giveBack = (holder: Holder) =>
      Effect.suspend(() => {
        const entry = holder.entry
        holder.entry = undefined
        if (entry === undefined || entry.closed) return Effect.void
        return entry.invalidated ? retire(entry) : Effect.sync(() => idle.offer(entry))
      })

    // An acquire that may wait: under acquireTimeout, counted in `waiting`, in a span.
    const slowAcquire = (
      leaseScope: Scope.Scope,
      hasSlot: boolean,
      inHand: Entry | undefined,
      restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
    ): Effect.Effect<Entry, AcquireError> => {
      const holder: Holder = { entry: inHand }
      stats.startWaiting()
      const deadline = deadlines?.start()
      // The span times the wait; it is not made the parent of what runs inside (that would copy the fiber's context
      // on every wait, a third of the cost of a waiting acquire).
      return Effect.useSpan("sqlsim.acquire", acquireSpan, () =>
        restore(checkout(leaseScope, hasSlot, holder, deadline)).pipe(
          Effect.onExit((exit) => {
            stats.stopWaiting()
            deadlines?.end(deadline)
            return Exit.isFailure(exit) ? giveBack(holder) : Effect.void
          }),
          Effect.flatMap((entry) =>
            lease(entry, leaseScope)
          )
        ))
    }
    const acquireSpan = {
      attributes: { "db.system.name": "sqlite", "db.namespace": config.filename },
      captureStackTrace: false
    } as const

    // A lease in `leaseScope` (which the caller closes when the lease ends, or at once if the acquire fails).
    // Fast path: a free slot, nobody waiting, an idle connection that passes validation: nothing can wait, so neither
    // a deadline nor an acquire span is spent on it.
    const acquireIn = (leaseScope: Scope.Scope): Effect.Effect<Entry, AcquireError> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.suspend(() => {
          if (isClosed) {
            return Effect.fail(closedError)
          }
          if (!gate.unsafeTryTake()) {
            return slowAcquire(leaseScope, false, undefined, restore)
          }
          const releaseSlot = Scope.addFinalizer(leaseScope, gate.release)
          const candidate = idle.poll()
          if (candidate === undefined) {
            return Effect.zipRight(releaseSlot, slowAcquire(leaseScope, true, undefined, restore))
          }
          // A probe is a local SQLite call: it cannot wait, so it needs no timeout either. A connection that fails it
          // has been replaced by the time the slow path starts.
          return Effect.zipRight(
            releaseSlot,
            Effect.flatMap(
              validated(candidate, false),
              (ok) =>
                ok ? lease(candidate, leaseScope) : slowAcquire(leaseScope, true, undefined, restore)
            )
          )
        })
      )

    const acquire: Effect.Effect<PooledConnection, AcquireError, Scope.Scope> = Effect.flatMap(
      Effect.scope,
      (scope) =>
        Effect.flatMap(Scope.fork(scope, ExecutionStrategy.sequential), (leaseScope) =>
          Effect.onExit(
            acquireIn(leaseScope),
            (exit) => Exit.isFailure(exit) ? Scope.close(leaseScope, exit) : Effect.void
          ))
    )

    const use = <A, E, R>(f: (connection: PooledConnection) => Effect.Effect<A, E, R>) =>
      Effect.acquireUseRelease(
        Scope.make(),
        (leaseScope) => Effect.flatMap(acquireIn(leaseScope), f),
        (leaseScope, exit) => Scope.close(leaseScope, exit)
      )

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
        // A leased connection is closed when its lease ends; an idle one at once.
        return entry.leased ? Effect.void : retire(entry)
      })

    // Idle connections above minConnections are closed once idle for idleTimeToLive, and idle connections older
    // than maxLifetime are retired. The reaper sleeps until the next such moment.
    const reap: Effect.Effect<void> = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      let wake = Math.min(idleTimeToLive, maxLifetime)
      // Oldest release first: the idle list is last-in first-out.
      for (const entry of [...idle.entries()]) {
        const idleFor = now - entry.lastReleasedAt
        const age = now - entry.createdAt
        const surplus = openEntries.size > config.minConnections
        if ((surplus && idleFor >= idleTimeToLive) || age >= maxLifetime) {
          yield* retire(entry)
          continue
        }
        if (surplus) wake = Math.min(wake, idleTimeToLive - idleFor)
        wake = Math.min(wake, maxLifetime - age)
      }
      yield* Effect.sleep(Duration.millis(Math.max(wake, 1)))
    }).pipe(Effect.forever)
    if (Number.isFinite(Math.min(idleTimeToLive, maxLifetime))) yield* Effect.forkIn(reap, poolScope)

    // minConnections are opened (and verified) before the pool is handed out: a failure fails the construction.
    if (config.minConnections > 0) {
      const opened = yield* Effect.forEach(
        Array.from({ length: config.minConnections }),
        () => connectWithRetry,
        { concurrency: config.minConnections }
      ).pipe(Effect.tapErrorCause(() => Scope.close(poolScope, Exit.void)))
      opened.forEach((entry) => idle.offer(entry))
    }

    return {
      acquire,
      use,
      stats: Effect.sync(() => stats.snapshot()),
      healthCheck,
      invalidate,
      check: (connection) => checkEntry(connection as Entry),
      config
    } satisfies Service
  })

const succeedTrue = Effect.succeed(true)

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
 * The raw `@effect/sql` connection under a leased connection's `sql`, reserved once when it was opened: for code that
 * holds the lease already (the SqlitePool lanes), so that a statement needs no reservation of its own.
 *
 * @internal
 */
export const rawConnection = (connection: PooledConnection): SqlConnection.Connection => (connection as Entry).raw

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
