/**
 * A lane: an `@effect/sql` client whose statements run on leases of one pool core. Single statements take shared
 * leases (several statements on one connection; each runs to completion inside the driver), transactions, streams
 * and SqliteClient's `export`/`backup` exclusive ones, all served in arrival order by the core's one queue. The
 * writer lane (a pool of one) retries SQLITE_BUSY from other processes asynchronously, on the exponential schedule,
 * so the event loop never blocks in SQLite's busy handler; the reader lane turns SQLITE_READONLY into a message that
 * says where writes go.
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
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Connector from "../Connector.js"
import * as PooledClient from "./client.js"
import { isClosedConnection } from "./driverConnection.js"
import type { AcquireError } from "./errors.js"
import type * as Pool from "./pool.js"
import type * as PoolCore from "./poolCore.js"
import * as ReaderRoute from "./readerRoute.js"
import { isReadOnlyStatement } from "./readOnlyStatement.js"
import * as SqliteCode from "./sqliteCode.js"

type Entry = Pool.Entry
type Statement<A> = (connection: SqlConnection.Connection) => Effect.Effect<A, SqlError>
type Restore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

/** A pool failure as the `SqlError` an `@effect/sql` client fails with; the pool's error stays its cause. */
export const acquireError = (error: AcquireError) => new SqlError({ cause: error, message: error.message })

const mapErrors = (
  connection: SqlConnection.Connection,
  f: (error: SqlError) => SqlError
): SqlConnection.Connection => ({
  execute: (sql, params, transformRows) => Effect.mapError(connection.execute(sql, params, transformRows), f),
  executeRaw: (sql, params) => Effect.mapError(connection.executeRaw(sql, params), f),
  executeStream: (sql, params, transformRows) =>
    Stream.mapError(connection.executeStream(sql, params, transformRows), f),
  executeValues: (sql, params) => Effect.mapError(connection.executeValues(sql, params), f),
  executeUnprepared: (sql, params, transformRows) =>
    Effect.mapError(connection.executeUnprepared(sql, params, transformRows), f)
})

/** Makes each connection's view once (not once per statement): the view lives as long as the connection. */
const cached = <K extends object, V>(make: (key: K) => V) => {
  const made = new WeakMap<K, V>()
  return (key: K): V => {
    let found = made.get(key)
    if (found === undefined) {
      found = make(key)
      made.set(key, found)
    }
    return found
  }
}

const refusedWrite = (sql: string) =>
  new SqlError({
    cause: Object.assign(new Error(`attempt to write a readonly database: ${sql.trim().slice(0, 60)}`), {
      code: "SQLITE_READONLY"
    }),
    message: "Failed to execute statement"
  })

/** A connection that runs only what `isReadOnlyStatement` recognises as a read (a connector with no view of its own). */
const refusingWritesByText = (connection: SqlConnection.Connection): SqlConnection.Connection => {
  const guarded = <A>(sql: string, run: () => Effect.Effect<A, SqlError>) =>
    isReadOnlyStatement(sql) ? run() : Effect.fail(refusedWrite(sql))
  return {
    execute: (sql, params, rows) => guarded(sql, () => connection.execute(sql, params, rows)),
    executeRaw: (sql, params) => guarded(sql, () => connection.executeRaw(sql, params)),
    executeValues: (sql, params) => guarded(sql, () => connection.executeValues(sql, params)),
    executeUnprepared: (sql, params, rows) => guarded(sql, () => connection.executeUnprepared(sql, params, rows)),
    executeStream: (sql, params, rows) =>
      isReadOnlyStatement(sql) ? connection.executeStream(sql, params, rows) : Stream.fail(refusedWrite(sql))
  }
}

/** The Reader's view of a writer connection (`readConnections: 0`): the same connection, refusing writes. */
const readOnlyView = cached((connection: Connector.Connection) =>
  connection.readOnly ?? refusingWritesByText(connection.connection)
)

const writable = (connection: Connector.Connection) => connection.connection

const readOnlyMessage = (error: SqlError): SqlError =>
  SqliteCode.codeOf(error)?.startsWith("SQLITE_READONLY") === true
    ? new SqlError({
      cause: error.cause,
      message: "SqlitePool.Reader is read-only: run writes through SqlClient.SqlClient (the writer lane)"
    })
    : error

/** A Reader connection: its SQLITE_READONLY failures say where writes go. */
const readerConnection = cached((connection: SqlConnection.Connection) => mapErrors(connection, readOnlyMessage))

/** Ends a lease: gives its connection back to the core, then tells `afterLease` (the writer's WAL watch). */
const endLease = (
  release: PoolCore.Lease<unknown>["release"],
  exit: Exit.Exit<unknown, unknown>,
  afterLease: (() => void) | undefined
) =>
  Effect.sync(() => {
    release(exit)
    afterLease?.()
  })

/** What a lane's statements run on: a Reader's connections say where writes go, and on the writer's pool refuse them. */
const statementConnection = (kind: "writer" | "reader", onWriterPool: boolean) => {
  const wrapReader = kind === "reader" ? readerConnection : identity<SqlConnection.Connection>
  const view = onWriterPool ? readOnlyView : writable
  return (entry: Entry) => wrapReader(view(entry.connection))
}

/** The main-thread route of a Reader with `readerThreads` (readerRoute.ts): its connection's pool, and what it learned. */
export interface MainThread {
  readonly core: Pool.Core
  readonly book: ReaderRoute.RouteBook
}

const isOverBudget = (error: SqlError) => SqliteCode.codeOf(error) === "SQLITE_INTERRUPT"

const overBudget = (error: SqlError) =>
  new SqlError({
    cause: error.cause,
    message: `the statement ran over the main thread's budget of ${ReaderRoute.BUDGET_MILLIS} ms and was ` +
      "interrupted: it is forced onto the main thread (SqlitePool.onMainThread); run it without forcing it, or with " +
      "SqlitePool.onWorker"
  })

export interface Lane {
  readonly client: Client.SqlClient
  /** an exclusive lease in the current Scope: the connection, and the pool's entry behind it */
  readonly lease: Effect.Effect<readonly [SqlConnection.Connection, Entry], SqlError, Scope.Scope>
  readonly core: Pool.Core
}

/** What a lane is made of. */
export interface LaneOptions {
  readonly core: Pool.Core
  readonly kind: "writer" | "reader"
  readonly retryBusy: <A>(effect: Effect.Effect<A, SqlError>) => Effect.Effect<A, SqlError>
  readonly withTransaction: (lane: {
    readonly lease: Lane["lease"]
    readonly invalidate: (entry: Entry) => Effect.Effect<void>
    readonly spanAttributes: ReadonlyArray<readonly [string, unknown]>
    readonly captureSite: boolean
  }) => Client.SqlClient["withTransaction"]
  /** SqliteClient's name transforms and span attributes */
  readonly client: PooledClient.Options
  /** the pool's connections live in worker threads (`readerThreads`) */
  readonly inWorkers?: boolean | undefined
  /** with `readerThreads`: the main thread's connection, where statements not known long run (readerRoute.ts) */
  readonly mainThread?: MainThread | undefined
  /** a reader lane on the writer's pool (`readConnections: 0`): statements run on each connection's read-only view */
  readonly onWriterPool?: boolean | undefined
  /** called after each of the lane's leases ends (the writer's WAL watch) */
  readonly afterLease?: (() => void) | undefined
}

export const makeLane = (options: LaneOptions): Effect.Effect<Lane, never, Reactivity.Reactivity> =>
  Effect.gen(function*() {
    const { afterLease, core, kind } = options
    const wrap = statementConnection(kind, options.onWriterPool === true)
    // Connections in worker threads run statements in parallel: a lease each spreads them over the workers, where
    // sharing one connection would queue them in one worker.
    const statementMode: PoolCore.Mode = options.inWorkers === true ? "exclusive" : "shared"
    const { mainThread } = options
    const acquire = (restore: Restore, mode: PoolCore.Mode) =>
      Effect.mapError(core.acquire(mode, core.laneLease, restore), acquireError)

    // With a main-thread route, a lease of the workers' pool (a transaction's, a stream's) is counted as theirs.
    const onWorkers = mainThread === undefined
      ? Effect.void
      : Effect.zipRight(
        Effect.sync(() => mainThread.book.ran("worker")),
        Effect.annotateCurrentSpan("sqlsim.route", "worker")
      )
    const lease: Lane["lease"] = Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(Effect.zipRight(onWorkers, acquire(restore, "exclusive")), ({ entry, release }) =>
        Effect.as(
          Effect.addFinalizer((exit) => endLease(release, exit, afterLease)),
          [wrap(entry), entry] as const
        ))
    )
    const statement = <A>(f: Statement<A>): Effect.Effect<A, SqlError> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(acquire(restore, statementMode), ({ entry, release }) =>
          Effect.onExit(
            restore(f(wrap(entry))),
            (exit) => endLease(release, exit, afterLease)
          ))
      )
    // Outside a transaction a statement retries SQLITE_BUSY (inside one, BEGIN IMMEDIATE holds the lock already).
    // A statement that found its connection closed never ran (or, on a libSQL Reader, was a read that changed
    // nothing): it runs again on another connection, the pool having closed that one as the statement's lease
    // ended. Other idle connections may be closed too (a server gone takes all of its sockets, and a socket's close
    // can arrive after the next statement took it): each attempt retires one, so after one attempt per connection of
    // the pool the next one is on a new connection.
    // The client's acquirer is free: a statement finds its connection when it runs.
    const once = <A>(f: Statement<A>) => statement((connection) => options.retryBusy(f(connection)))
    const run = <A>(f: Statement<A>, attemptsLeft = core.config.maxConnections): Effect.Effect<A, SqlError> =>
      Effect.catchIf(
        once(f),
        (error) => attemptsLeft > 0 && isClosedConnection(error),
        () => run(f, attemptsLeft - 1)
      )
    const routed = mainThread === undefined
      ? <A>(_sql: string, f: Statement<A>) => run(f)
      : routeStatements(mainThread, wrap, onWorkers, run)
    const acquirer = Effect.succeed<SqlConnection.Connection>({
      execute: (sql, params, rows) => routed(sql, (c) => c.execute(sql, params, rows)),
      executeRaw: (sql, params) => routed(sql, (c) => c.executeRaw(sql, params)),
      executeValues: (sql, params) => routed(sql, (c) => c.executeValues(sql, params)),
      executeUnprepared: (sql, params, rows) => routed(sql, (c) => c.executeUnprepared(sql, params, rows)),
      // A stream holds an exclusive lease until it ends (better-sqlite3 runs nothing else on a connection meanwhile).
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
      captureSite: core.holdWarningMillis !== undefined,
      invalidate: (entry) => Effect.sync(() => core.invalidate(entry)),
      spanAttributes: clientOptions.spanAttributes
    })
    return { client: Object.assign(client, { withTransaction }), lease, core }
  })

/**
 * A Reader's statements routed (readerRoute.ts): the fiber's forced route, else the workers for a text known long,
 * else the main thread's connection. This runs before every Reader statement, so the main-thread path builds nothing
 * it does not run: the worker route is built only when it is taken.
 */
const routeStatements = (
  main: MainThread,
  wrap: (entry: Entry) => SqlConnection.Connection,
  onWorkers: Effect.Effect<void>,
  run: <A>(f: Statement<A>) => Effect.Effect<A, SqlError>
) => {
  const { book, core } = main
  const onWorker = <A>(f: Statement<A>) => Effect.zipRight(onWorkers, run(f))
  // A statement on the main thread's connection; on a worker instead where the connection has no time budget (a
  // connector that keeps no handle on this thread), was closed before the statement ran, or the statement ran over
  // the budget (SQLite interrupted it: a read outside a transaction runs again safely) unless forced.
  const onMainThread = <A>(sql: string, f: Statement<A>, forced: boolean): Effect.Effect<A, SqlError> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(
        Effect.mapError(core.acquire("shared", core.laneLease, restore), acquireError),
        ({ entry, release }) => {
          const { connection } = entry
          if (!book.isBudgeted(connection)) {
            release(Exit.void)
            return restore(onWorker(f))
          }
          book.ran("mainThread")
          const started = performance.now()
          const ran = Effect.onExit(restore(f(wrap(entry))), (exit) =>
            Effect.sync(() => {
              release(exit)
              if (exit._tag === "Success") book.ended(sql, connection, performance.now() - started)
            }))
          return Effect.catchIf(ran, (error) => isOverBudget(error) || isClosedConnection(error), (error) => {
            if (!isOverBudget(error)) return restore(onWorker(f))
            book.ranOverBudget(sql, connection)
            return forced ? Effect.fail(overBudget(error)) : restore(onWorker(f))
          })
        }
      )
    )
  // The forced route is read and the span annotated through the fiber itself.
  return <A>(sql: string, f: Statement<A>): Effect.Effect<A, SqlError> =>
    Effect.withFiberRuntime((fiber) => {
      const forced = fiber.getFiberRef(ReaderRoute.forcedRoute)
      if (forced === "worker" || (forced === undefined && book.isLong(sql))) return onWorker(f)
      const span = fiber.currentSpan
      if (span?._tag === "Span") span.attribute("sqlsim.route", "mainThread")
      return onMainThread(sql, f, forced === "mainThread")
    })
}
