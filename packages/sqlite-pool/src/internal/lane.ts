/**
 * A lane: an `@effect/sql` client whose connections come from a ConnectionPool. The writer lane (a pool of one)
 * retries SQLITE_BUSY from other processes asynchronously, on the exponential schedule, so the event loop never
 * blocks in SQLite's busy handler; the reader lane turns SQLITE_READONLY into a message that says where writes go.
 *
 * @internal
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as Client from "@effect/sql/SqlClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Statement from "@effect/sql/Statement"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as ConnectionPool from "../ConnectionPool.js"
import * as SqliteCode from "../SqliteCode.js"
import * as FairGate from "./fairGate.js"

const mapConnection = (
  connection: SqlConnection.Connection,
  wrap: <A>(effect: Effect.Effect<A, SqlError>) => Effect.Effect<A, SqlError>
): SqlConnection.Connection => ({
  execute: (sql, params, transformRows) => wrap(connection.execute(sql, params, transformRows)),
  executeRaw: (sql, params) => wrap(connection.executeRaw(sql, params)),
  executeStream: (sql, params, transformRows) => connection.executeStream(sql, params, transformRows),
  executeValues: (sql, params) => wrap(connection.executeValues(sql, params)),
  executeUnprepared: (sql, params, transformRows) => wrap(connection.executeUnprepared(sql, params, transformRows))
})

/** Wraps each raw connection once (not once per statement): the wrapper lives as long as the connection. */
const wrapper = (wrap: <A>(effect: Effect.Effect<A, SqlError>) => Effect.Effect<A, SqlError>) => {
  const wrapped = new WeakMap<SqlConnection.Connection, SqlConnection.Connection>()
  return (connection: SqlConnection.Connection): SqlConnection.Connection => {
    let found = wrapped.get(connection)
    if (found === undefined) {
      found = mapConnection(connection, wrap)
      wrapped.set(connection, found)
    }
    return found
  }
}

const readOnlyMessage = <A>(effect: Effect.Effect<A, SqlError>): Effect.Effect<A, SqlError> =>
  Effect.catchIf(
    effect,
    (error) => SqliteCode.codeOf(error)?.startsWith("SQLITE_READONLY") === true,
    (error) =>
      Effect.fail(
        new SqlError({
          cause: error.cause,
          message: "SqlitePool.Reader is read-only: run writes through SqlClient.SqlClient (the writer lane)"
        })
      )
  )

const acquireError = (error: { readonly message: string }) => new SqlError({ cause: error, message: error.message })

export interface Lane {
  readonly client: Client.SqlClient
  /** a lease of one raw connection with the pooled connection behind it (for transactions) */
  readonly lease: Effect.Effect<
    readonly [SqlConnection.Connection, ConnectionPool.PooledConnection],
    SqlError,
    Scope.Scope
  >
  readonly pool: ConnectionPool.Service
  /** transactions and statements waiting for the lane (the writer's; 0 for readers, who wait in the pool) */
  readonly waiting: () => number
}

/** A lease: a pooled connection, and the raw `@effect/sql` connection under it. */
const leaseFrom = (pool: ConnectionPool.Service) =>
  Effect.map(
    Effect.mapError(pool.acquire, acquireError),
    (pooled) => [ConnectionPool.rawConnection(pooled), pooled] as const
  )

interface Pinned {
  readonly connection: SqlConnection.Connection
  readonly pooled: ConnectionPool.PooledConnection
  readonly scope: Scope.CloseableScope
}

/** A pinned writer connection unused for this long goes back to the pool (and is validated when leased again). */
const PIN_IDLE_MILLIS = 1000

/**
 * The writer's lane. The one writer connection stays leased from the writer pool while the lane works (a pool lease
 * per statement would cost more than the statement). Before each use the pinned connection gets the pool's cheap
 * check (closed? database file deleted or replaced?); after PIN_IDLE_MILLIS without use it goes back to the pool,
 * which validates it at the next lease. A statement or transaction that fails hands the connection back to the pool
 * with its failure, so the pool closes it if it is broken (a fatal SQLite error, a dead handle); the next statement
 * leases it, or its replacement, again. Closing the lane's Scope gives the connection back.
 *
 * Who may use the connection when: a transaction (or `reserve`) holds the lane alone, from BEGIN to its end. Single
 * statements outside a transaction share it: each runs to completion inside the driver, so two of them never
 * overlap, and while the lane is free they run at once, without queueing. Everything that needs the lane alone takes
 * the first-come-first-served gate, then waits for statements already running to finish; statements that arrive
 * while the gate is held or asked for queue in it, behind the transaction. So a statement never lands inside a
 * transaction, a transaction never waits behind statements that came after it, and concurrent statements do not
 * queue behind each other (with a queue there, a fiber paused by the scheduler while it held the lane made every
 * other fiber queue for every statement after it).
 */
const makeWriterLane = (pool: ConnectionPool.Service) =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    const gate = FairGate.make<never>(1)
    let pinned: Pinned | undefined
    /** statements running without the gate */
    let running = 0
    /** the first failure of a statement that ran without the gate: the connection goes back with it once they end */
    let failedWith: Exit.Exit<unknown, unknown> | undefined
    /** the gate's holder, waiting for the statements running without the gate to end */
    let drainWaiter: (() => void) | undefined
    let lastUsed = 0

    const unpin = (exit: Exit.Exit<unknown, unknown>) =>
      Effect.suspend(() => {
        const current = pinned
        pinned = undefined
        return current === undefined ? Effect.void : Scope.close(current.scope, exit)
      })
    yield* Effect.addFinalizer(() => unpin(Exit.void))
    // Gives an idle pinned connection back to the pool.
    yield* Effect.sleep(PIN_IDLE_MILLIS).pipe(
      Effect.zipRight(Effect.suspend(() =>
        gate.free() && running === 0 && pinned !== undefined &&
          clock.unsafeCurrentTimeMillis() - lastUsed >= PIN_IDLE_MILLIS
          ? unpin(Exit.void)
          : Effect.void
      )),
      Effect.forever,
      Effect.forkScoped
    )
    /** the pinned connection if it passes the cheap check */
    const ready = (): Pinned | undefined =>
      pinned !== undefined && pool.check(pinned.pooled) === undefined ? pinned : undefined
    const pin: Effect.Effect<Pinned, SqlError> = Effect.suspend(() => {
      if (pinned !== undefined) {
        if (ready() !== undefined) return Effect.succeed(pinned)
        return Effect.zipRight(Effect.zipRight(pool.invalidate(pinned.pooled), unpin(Exit.void)), pin)
      }
      return Effect.flatMap(Scope.make(), (scope) =>
        Scope.extend(leaseFrom(pool), scope).pipe(
          Effect.tapErrorCause((cause) => Scope.close(scope, Exit.failCause(cause))),
          Effect.map(([connection, pooled]) => pinned = { connection, pooled, scope })
        ))
    })

    // Alone on the lane: the gate, then the end of the statements running without it (and the hand-back of the
    // connection if one of them failed).
    const drained = Effect.async<void>((resume) => {
      if (running === 0) return resume(Effect.void)
      drainWaiter = () => {
        drainWaiter = undefined
        resume(Effect.void)
      }
      return Effect.sync(() => drainWaiter = undefined)
    })
    const releaseAlone = (exit: Exit.Exit<unknown, unknown>) => {
      const release = Effect.sync(() => {
        lastUsed = clock.unsafeCurrentTimeMillis()
        gate.unsafeRelease()
      })
      return Exit.isSuccess(exit) ? release : Effect.zipRight(unpin(exit), release)
    }
    /** runs where interruption is masked; interruptible only while it waits */
    const takeAlone = (restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>) =>
      Effect.zipRight(
        restore(gate.take),
        Effect.onInterrupt(restore(drained), () => releaseAlone(Exit.void))
      )
    const releaseShared = (exit: Exit.Exit<unknown, unknown>) =>
      Effect.suspend(() => {
        if (Exit.isFailure(exit)) failedWith ??= exit
        if (--running > 0) return Effect.void
        lastUsed = clock.unsafeCurrentTimeMillis()
        const failure = failedWith
        failedWith = undefined
        const wake = Effect.sync(() => drainWaiter?.())
        return failure === undefined ? wake : Effect.zipRight(unpin(failure), wake)
      })

    const lease: Lane["lease"] = Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(Effect.scope, (scope) =>
        takeAlone(restore).pipe(
          Effect.zipRight(Scope.addFinalizerExit(scope, releaseAlone)),
          Effect.zipRight(restore(pin)),
          Effect.map(({ connection, pooled }) => [connection, pooled] as const)
        ))
    )

    const statement = <A>(
      f: (connection: SqlConnection.Connection) => Effect.Effect<A, SqlError>
    ): Effect.Effect<A, SqlError> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.suspend(() => {
          const current = gate.free() && failedWith === undefined ? ready() : undefined
          if (current !== undefined) {
            running++
            return Effect.onExit(restore(f(current.connection)), releaseShared)
          }
          return Effect.zipRight(
            takeAlone(restore),
            Effect.onExit(restore(Effect.flatMap(pin, (p) => f(p.connection))), releaseAlone)
          )
        })
      )
    // Waiting: those in the gate, and the gate's holder while statements running without it finish.
    const waiting = () => gate.waiting() + (drainWaiter === undefined ? 0 : 1)
    return { lease, statement, waiting }
  })

export const makeLane = (options: {
  readonly pool: ConnectionPool.Service
  readonly kind: "writer" | "reader"
  readonly retryBusy: <A>(effect: Effect.Effect<A, SqlError>) => Effect.Effect<A, SqlError>
  readonly withTransaction: (lane: Pick<Lane, "lease" | "pool">) => Client.SqlClient["withTransaction"]
}): Effect.Effect<Lane, never, Reactivity.Reactivity | Scope.Scope> =>
  Effect.gen(function*() {
    const { kind, pool, retryBusy } = options
    let lease: Lane["lease"]
    let acquirer: Effect.Effect<SqlConnection.Connection, SqlError, Scope.Scope>
    let waiting = () => 0
    if (kind === "writer") {
      // One statement holds the lane while it runs; outside a transaction it retries SQLITE_BUSY (inside one,
      // BEGIN IMMEDIATE holds the lock already). The client's acquirer is free: the statement takes the lane.
      const writer = yield* makeWriterLane(pool)
      const { statement } = writer
      lease = writer.lease
      waiting = writer.waiting
      acquirer = Effect.succeed<SqlConnection.Connection>({
        execute: (sql, params, rows) => statement((c) => retryBusy(c.execute(sql, params, rows))),
        executeRaw: (sql, params) => statement((c) => retryBusy(c.executeRaw(sql, params))),
        executeValues: (sql, params) => statement((c) => retryBusy(c.executeValues(sql, params))),
        executeUnprepared: (sql, params, rows) => statement((c) => retryBusy(c.executeUnprepared(sql, params, rows))),
        // A stream holds the lane until it ends.
        executeStream: (sql, params, rows) =>
          Stream.unwrapScoped(Effect.map(writer.lease, ([c]) => c.executeStream(sql, params, rows)))
      })
    } else {
      // Readers: a pool lease per statement, writes answered with a message that says where they go.
      const readOnly = wrapper(readOnlyMessage)
      lease = Effect.map(leaseFrom(pool), ([connection, pooled]) => [readOnly(connection), pooled] as const)
      acquirer = Effect.map(lease, ([connection]) => connection)
    }
    const client = yield* Client.make({
      acquirer,
      transactionAcquirer: Effect.map(lease, ([connection]) => connection),
      compiler: Statement.makeCompilerSqlite(),
      spanAttributes: [["db.system.name", "sqlite"], ["sqlsim.lane", kind]]
    })
    const withTransaction = options.withTransaction({ lease, pool })
    return { client: Object.assign(client, { withTransaction }), lease, pool, waiting }
  })
