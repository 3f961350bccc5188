/**
 * The connection a lane keeps for its single statements.
 *
 * @internal
 */
import type * as SqlConnection from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as ConnectionPool from "../ConnectionPool.js"

const acquireError = (error: { readonly message: string }) => new SqlError({ cause: error, message: error.message })

/** A lease: a pooled connection, and the raw `@effect/sql` connection under it. */
export const leaseFrom = (pool: ConnectionPool.Service) =>
  Effect.map(
    Effect.mapError(pool.acquire, acquireError),
    (pooled) => [ConnectionPool.rawConnection(pooled), pooled] as const
  )

export interface Pinned {
  readonly connection: SqlConnection.Connection
  readonly pooled: ConnectionPool.PooledConnection
  readonly scope: Scope.CloseableScope
}

/** A pinned connection unused for this long goes back to the pool (and is validated when leased again). */
const PIN_IDLE_MILLIS = 1000

export type Restore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

/**
 * The connection a lane keeps leased from its pool for single statements (a pool lease per statement would cost
 * more than the statement), and the statements running on it. Statements share it: each runs to completion inside
 * the driver, so two of them never overlap. Before each use it gets the pool's cheap check (closed? database file
 * deleted or replaced?); after PIN_IDLE_MILLIS without use (and when `mayUnpin` agrees) it goes back to the pool,
 * which validates it at the next lease. A statement that fails has the connection go back to the pool with its
 * failure once the statements running on it have ended, so the pool closes it if it is broken (a fatal SQLite
 * error, a dead handle); later statements lease it, or its replacement, again. Closing the Scope gives it back.
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
    let drainWaiter: (() => void) | undefined
    let lastUsed = 0

    /** detaches the pinned connection at once (no statement picks it up any more) and gives it back with `exit` */
    const unpin = (exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> => {
      const current = pinned
      pinned = undefined
      return current === undefined ? Effect.void : Scope.close(current.scope, exit)
    }
    yield* Effect.addFinalizer(() => unpin(Exit.void))
    yield* Effect.sleep(PIN_IDLE_MILLIS).pipe(
      Effect.zipRight(Effect.suspend(() =>
        running === 0 && pinned !== undefined && mayUnpin() &&
          clock.unsafeCurrentTimeMillis() - lastUsed >= PIN_IDLE_MILLIS
          ? unpin(Exit.void)
          : Effect.void
      )),
      Effect.forever,
      Effect.forkScoped
    )

    /** the pinned connection, if statements may use it now */
    const ready = (): Pinned | undefined =>
      pinned !== undefined && failedWith === undefined && pool.check(pinned.pooled) === undefined ? pinned : undefined
    /**
     * The pinned connection, leased (again) if there is none or it failed the check; only with no statement running.
     * While it leases, `idle` is false, so that no other fiber leases a second one.
     */
    const pin: Effect.Effect<Pinned, SqlError> = Effect.suspend(() => {
      const current = ready()
      if (current !== undefined) return Effect.succeed(current)
      const stale = pinned
      pinning = true
      return Effect.zipRight(
        stale === undefined ? Effect.void : Effect.zipRight(pool.invalidate(stale.pooled), unpin(Exit.void)),
        Effect.flatMap(Scope.make(), (scope) =>
          Scope.extend(leaseFrom(pool), scope).pipe(
            Effect.tapErrorCause((cause) => Scope.close(scope, Exit.failCause(cause))),
            Effect.map(([connection, pooled]) => pinned = { connection: wrap(connection), pooled, scope })
          ))
      ).pipe(Effect.ensuring(Effect.sync(() => pinning = false)))
    })

    // (Called by onExit as the statement ends.)
    const released = (exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> => {
      if (Exit.isFailure(exit)) failedWith ??= exit
      if (--running > 0) return Effect.void
      lastUsed = clock.unsafeCurrentTimeMillis()
      const failure = failedWith
      if (failure === undefined) {
        drainWaiter?.()
        return Effect.void
      }
      failedWith = undefined
      return Effect.zipRight(unpin(failure), Effect.sync(() => drainWaiter?.()))
    }
    /** runs `f` on `current` as one of the statements sharing it; call it where interruption is masked */
    const share = <A>(
      current: Pinned,
      f: (connection: SqlConnection.Connection) => Effect.Effect<A, SqlError>,
      restore: Restore
    ): Effect.Effect<A, SqlError> => {
      running++
      // Masked already: no onExit (and its own mask) needed.
      return Effect.matchCauseEffect(restore(f(current.connection)), {
        onFailure: (cause) => Effect.zipRight(released(Exit.failCause(cause)), Effect.failCause(cause)),
        onSuccess: (value) => Effect.as(released(Exit.void), value)
      })
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
      ready,
      pin,
      unpin,
      share,
      drained,
      draining: () => drainWaiter !== undefined,
      /** nobody leases or runs on the pinned connection: `pin` may run */
      idle: () => running === 0 && !pinning,
      touch: () => lastUsed = clock.unsafeCurrentTimeMillis()
    }
  })
