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
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { identity } from "effect/Function"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as ConnectionPool from "../ConnectionPool.js"
import * as Connector from "../Connector.js"
import { PoolClosedError } from "../PoolError.js"
import * as SqliteCode from "../SqliteCode.js"
import * as PooledClient from "./client.js"
import * as FairGate from "./fairGate.js"
import { acquireError, leaseFrom, makePin, type Restore } from "./pin.js"

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

/**
 * The writer's lane: one connection (the writer pool has one), pinned for statements as `makePin` describes.
 *
 * Who may use it when: a transaction (or `reserve`) holds the lane alone, from BEGIN to its end. Single statements
 * outside a transaction share it, and while the lane is free they run at once, without queueing. Everything that
 * needs the lane alone takes the first-come-first-served gate, then waits for the statements already running to
 * finish; statements that arrive while the gate is held or asked for queue in it, behind the transaction. So a
 * statement never lands inside a transaction, a transaction never waits behind statements that came after it, and
 * concurrent statements do not queue behind each other (with a queue there, a fiber paused by the scheduler while it
 * held the lane made every other fiber queue for every statement after it).
 */
const makeWriterLane = (pool: ConnectionPool.Service) =>
  Effect.gen(function*() {
    const gate = FairGate.make<SqlError>(1)
    // The kept connection may go back to the pool whenever no transaction holds the lane.
    const pinned = yield* makePin(pool, identity, () => !gate.held())
    // Closing: everything queued fails at once; what runs (a transaction, its statements) ends on its own, and the
    // kept connection goes back to the pool when it has (the pool's shutdown gives that shutdownTimeout).
    yield* Effect.addFinalizer(() => gate.close(closedError(pool)))

    const releaseAlone = (exit: Exit.Exit<unknown, unknown>) =>
      Effect.sync(() => {
        if (Exit.isFailure(exit)) pinned.unpin(exit)
        pinned.touch()
        gate.unsafeRelease()
        pinned.settle()
      })
    /** runs where interruption is masked; interruptible only while it waits */
    const takeAlone = (restore: Restore) =>
      Effect.zipRight(
        restore(gate.take),
        Effect.onInterrupt(restore(pinned.drained), () => releaseAlone(Exit.void))
      )

    const lease: Lane["lease"] = Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(Effect.scope, (scope) =>
        takeAlone(restore).pipe(
          Effect.zipRight(Scope.addFinalizerExit(scope, releaseAlone)),
          Effect.zipRight(restore(pinned.pin)),
          Effect.map(({ connection, pooled }) => [connection, pooled] as const)
        ))
    )

    const statement = <A>(
      f: (connection: SqlConnection.Connection) => Effect.Effect<A, SqlError>
    ): Effect.Effect<A, SqlError> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.suspend(() => {
          const current = gate.free() ? pinned.ready() : undefined
          if (current !== undefined) return pinned.share(current, f, restore)
          // No kept connection (given back after a second idle, or replaced), and nobody else needs the lane:
          // keep one again and share it, rather than hold the lane alone for a statement that may wait out a lock.
          if (gate.free() && pinned.idle()) {
            return Effect.flatMap(restore(pinned.pin), (p) => pinned.share(p, f, restore))
          }
          return Effect.zipRight(
            takeAlone(restore),
            Effect.onExit(restore(Effect.flatMap(pinned.pin, (p) => f(p.connection))), releaseAlone)
          )
        })
      )
    // Waiting: those in the gate, and the gate's holder while statements running without it finish.
    const waiting = () => gate.waiting() + (pinned.draining() ? 1 : 0)
    return { lease, statement, waiting }
  })

/** What work queued on a lane ends with when the layer closes: the pool's PoolClosedError, as a SqlError. */
const closedError = (pool: ConnectionPool.Service) =>
  acquireError(new PoolClosedError({ filename: pool.config.filename }))

/**
 * The Reader's lane. Transactions lease a connection of the reader pool each. Single statements share one pinned
 * connection as `makePin` describes when the pool has more than one, so the others stay for transactions; a
 * statement that finds no usable pinned connection while others still run on it, or a pool of one, takes a lease of
 * its own.
 */
const makeReaderLane = (pool: ConnectionPool.Service, inWorkers: boolean) =>
  Effect.gen(function*() {
    const readOnly = wrapper(readOnlyMessage)
    const lease: Lane["lease"] = Effect.map(
      leaseFrom(pool),
      ([connection, pooled]) => [readOnly(connection), pooled] as const
    )
    const leased = <A>(f: (connection: SqlConnection.Connection) => Effect.Effect<A, SqlError>) =>
      Effect.scoped(Effect.flatMap(lease, ([connection]) => f(connection)))
    const waiting = () => 0
    // Connections in worker threads run statements in parallel: a lease each spreads them over the workers, where
    // one shared connection would queue them in one worker.
    if (pool.config.maxConnections < 2 || inWorkers) return { lease, statement: leased, waiting }
    const pinned = yield* makePin(pool, readOnly, () => true)
    const statement = <A>(
      f: (connection: SqlConnection.Connection) => Effect.Effect<A, SqlError>
    ): Effect.Effect<A, SqlError> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.suspend(() => {
          const current = pinned.ready()
          if (current !== undefined) return pinned.share(current, f, restore)
          if (!pinned.idle()) return restore(leased(f))
          return Effect.flatMap(restore(pinned.pin), (p) => pinned.share(p, f, restore))
        })
      )
    return { lease, statement, waiting }
  })

export const makeLane = (options: {
  readonly pool: ConnectionPool.Service
  readonly kind: "writer" | "reader"
  readonly retryBusy: <A>(effect: Effect.Effect<A, SqlError>) => Effect.Effect<A, SqlError>
  readonly withTransaction: (lane: {
    readonly lease: Lane["lease"]
    readonly invalidate: ConnectionPool.Service["invalidate"]
    readonly spanAttributes: ReadonlyArray<readonly [string, unknown]>
  }) => Client.SqlClient["withTransaction"]
  /** SqliteClient's name transforms and span attributes */
  readonly client: PooledClient.Options
  /** the pool's connections live in worker threads (`readerThreads`) */
  readonly inWorkers?: boolean | undefined
}): Effect.Effect<Lane, never, Reactivity.Reactivity | Scope.Scope> =>
  Effect.gen(function*() {
    const { kind, pool } = options
    const { lease, statement, waiting } = kind === "writer"
      ? yield* makeWriterLane(pool)
      : yield* makeReaderLane(pool, options.inWorkers === true)
    // Outside a transaction a statement retries SQLITE_BUSY (inside one, BEGIN IMMEDIATE holds the lock already).
    // A statement that found its kept connection's handle closed never ran: it runs once more, on the replacement.
    // The client's acquirer is free: a statement finds its connection when it runs.
    const once = <A>(f: (connection: SqlConnection.Connection) => Effect.Effect<A, SqlError>) =>
      statement((connection) => options.retryBusy(f(connection)))
    const run = <A>(f: (connection: SqlConnection.Connection) => Effect.Effect<A, SqlError>) =>
      Effect.catchIf(once(f), Connector.isClosedConnection, () => once(f))
    const acquirer = Effect.succeed<SqlConnection.Connection>({
      execute: (sql, params, rows) => run((c) => c.execute(sql, params, rows)),
      executeRaw: (sql, params) => run((c) => c.executeRaw(sql, params)),
      executeValues: (sql, params) => run((c) => c.executeValues(sql, params)),
      executeUnprepared: (sql, params, rows) => run((c) => c.executeUnprepared(sql, params, rows)),
      // A stream holds a lease until it ends.
      executeStream: (sql, params, rows) =>
        Stream.unwrapScoped(Effect.map(lease, ([c]) => c.executeStream(sql, params, rows)))
    })
    const clientOptions = PooledClient.clientOptions(options.client, [["sqlsim.lane", kind]])
    const client = yield* Client.make({
      acquirer,
      transactionAcquirer: Effect.map(lease, ([connection]) => connection),
      ...clientOptions
    })
    const withTransaction = options.withTransaction({
      lease,
      invalidate: pool.invalidate,
      spanAttributes: clientOptions.spanAttributes
    })
    return { client: Object.assign(client, { withTransaction }), lease, pool, waiting }
  })
