/**
 * The connection a lane keeps for its single statements.
 *
 * @internal
 */
import type * as SqlConnection from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as ConnectionPool from "../ConnectionPool.js"
import type { AcquireError } from "../PoolError.js"

export type Restore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

/** A pool failure as the `SqlError` an `@effect/sql` client fails with; the pool's error stays its cause. */
export const acquireError = (error: AcquireError) => new SqlError({ cause: error, message: error.message })

/** A lease of a caller's own, in the current Scope: the raw connection and the pooled connection behind it. */
export const leaseFrom = (pool: ConnectionPool.Service) =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Effect.mapError(pool.lease("caller", restore), acquireError), (leased) =>
      Effect.as(
        Effect.addFinalizer((exit) => Effect.sync(() => leased.release(exit))),
        [leased.connection, leased.pooled] as const
      ))
  )

export interface Pinned {
  readonly connection: SqlConnection.Connection
  readonly pooled: ConnectionPool.PooledConnection
  readonly lease: ConnectionPool.Lease
}

/** A pinned connection unused for this long goes back to the pool (and is validated when leased again). */
const PIN_IDLE_MILLIS = 1000

/**
 * The connection a lane keeps leased from its pool for single statements (a pool lease per statement would cost
 * more than the statement), and the statements running on it. Statements share it: each runs to completion inside
 * the driver, so two of them never overlap. Before each use it gets the pool's cheap check (closed? database file
 * deleted or replaced?).
 *
 * Keeping it is an optimisation that must never lower capacity: the lease is taken with a `reclaim` callback, and
 * when another acquire of the pool would wait, the connection goes back at once if no statement runs on it, or as
 * soon as the last running one ends (when `mayUnpin` agrees: the writer lane's transaction holds it otherwise). It
 * also goes back after PIN_IDLE_MILLIS without use, and with the failure of a statement that failed, once the
 * statements running on it have ended, so that the pool closes it if it is broken. Closing the lane's Scope gives it
 * back as soon as nothing runs on it.
 */
export const makePin = (
  pool: ConnectionPool.Service,
  wrap: (connection: SqlConnection.Connection) => SqlConnection.Connection,
  mayUnpin: () => boolean
) =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    let pinned: Pinned | undefined
    let pinning = false
    /** statements running on the pinned connection */
    let running = 0
    /** the first failure among them: the connection goes back with it once they have ended */
    let failedWith: Exit.Exit<unknown, unknown> | undefined
    /** the pool (or the lane's closing) asked for the connection back */
    let wanted = false
    let drainWaiter: (() => void) | undefined
    let lastUsed = 0

    /** detaches the pinned connection at once (no statement picks it up any more) and gives it back with `exit` */
    const unpin = (exit: Exit.Exit<unknown, unknown>): void => {
      const current = pinned
      pinned = undefined
      wanted = false
      current?.lease.release(exit)
    }
    /** gives the connection back if it is wanted and free: nothing runs on it and the lane agrees */
    const settle = () => {
      if (wanted && running === 0 && mayUnpin()) unpin(Exit.void)
    }
    const reclaim = () => {
      wanted = true
      settle()
    }
    yield* Effect.addFinalizer(() => Effect.sync(reclaim))
    yield* Effect.sleep(PIN_IDLE_MILLIS).pipe(
      Effect.zipRight(Effect.sync(() => {
        if (
          pinned !== undefined && running === 0 && mayUnpin() &&
          clock.unsafeCurrentTimeMillis() - lastUsed >= PIN_IDLE_MILLIS
        ) unpin(Exit.void)
      })),
      Effect.forever,
      Effect.forkScoped
    )

    /** the pinned connection, if statements may use it now */
    const ready = (): Pinned | undefined =>
      pinned !== undefined && failedWith === undefined && !wanted && pool.check(pinned.pooled) === undefined
        ? pinned
        : undefined
    /**
     * The pinned connection, leased (again) if there is none or it failed the check; only with no statement running.
     * While it leases, `idle` is false, so that no other fiber leases a second one.
     */
    const pin: Effect.Effect<Pinned, SqlError> = Effect.uninterruptibleMask((restore) =>
      Effect.suspend(() => {
        const current = ready()
        if (current !== undefined) return Effect.succeed(current)
        const stale = pinned
        pinning = true
        // A kept connection that failed its check is closed rather than given back.
        const dropStale = stale === undefined ? Effect.void : Effect.zipRight(
          wanted ? Effect.void : pool.invalidate(stale.pooled),
          Effect.sync(() => unpin(Exit.void))
        )
        return Effect.zipRight(dropStale, pool.lease("lane", restore, reclaim)).pipe(
          Effect.mapError(acquireError),
          Effect.map((lease) => {
            lastUsed = clock.unsafeCurrentTimeMillis()
            return pinned = { connection: wrap(lease.connection), pooled: lease.pooled, lease }
          }),
          Effect.ensuring(Effect.sync(() => pinning = false))
        )
      })
    )

    // (Called as a statement ends.)
    const released = (exit: Exit.Exit<unknown, unknown>): void => {
      if (Exit.isFailure(exit)) failedWith ??= exit
      if (--running > 0) return
      lastUsed = clock.unsafeCurrentTimeMillis()
      const failure = failedWith
      failedWith = undefined
      if (failure !== undefined) unpin(failure)
      else settle()
      drainWaiter?.()
    }
    /** runs `f` on `current` as one of the statements sharing it; call it where interruption is masked */
    const share = <A>(
      current: Pinned,
      f: (connection: SqlConnection.Connection) => Effect.Effect<A, SqlError>,
      restore: Restore
    ): Effect.Effect<A, SqlError> => {
      running++
      return Effect.onExit(restore(f(current.connection)), (exit) => Effect.sync(() => released(exit)))
    }
    /** waits until no statement runs on the pinned connection (and a failed one has gone back to the pool) */
    const drained = Effect.async<void>((resume) => {
      if (running === 0) return resume(Effect.void)
      drainWaiter = () => {
        drainWaiter = undefined
        resume(Effect.void)
      }
      return Effect.sync(() => drainWaiter = undefined)
    })
    return {
      /** asks for the connection back (the lane is closing): at once if it is free, else when it is */
      reclaim,
      ready,
      pin,
      /** gives the connection back with the failure `exit` (a transaction that failed on it) */
      unpin,
      share,
      drained,
      /** the lane no longer holds it alone: a pending reclaim may now be honoured */
      settle,
      draining: () => drainWaiter !== undefined,
      /** nobody leases or runs on the pinned connection: `pin` may run */
      idle: () => running === 0 && !pinning,
      touch: () => lastUsed = clock.unsafeCurrentTimeMillis()
    }
  })
