/**
 * A connection that lives in a worker thread (`readerWorker.mjs`): statements run there and their answers come back
 * by message, so a long or CPU-heavy read never blocks the main thread's event loop, and several of them can use
 * several cores.
 *
 * What crosses: the request (SQL, parameters, whether safe integers are on) and the answer (rows, copied once by the
 * structured clone of `postMessage`, never JSON). Blobs arrive as Uint8Arrays and are rewrapped as Buffers (a view,
 * no copy), which is what better-sqlite3 gives on the main thread. Errors arrive as data and are rebuilt with their
 * SQLite `code`, so `SqliteCode.codeOf` classifies them as it does the main thread's.
 *
 * Cancellation: interrupting a statement stops its SQLite work with sqlite3_interrupt() (interrupt.ts: SQLITE_INTERRUPT
 * from SQLite's next jump instruction, an aggregate or a sort included) and terminates the worker. The fiber fails as
 * interrupted at once; from then on `check()` reports the connection dead so the pool replaces it. Where the
 * interrupt extension could not be built, `terminate()` alone cannot stop SQLite's native code: the thread then ends
 * at the worker's next row (see readerWorker.mjs). The scope's finalizer waits for the exit only so long.
 *
 * The worker's lifecycle and its requests are `workerConnection.ts` (no Effect); this module makes Effects of them.
 *
 * @internal
 */
import * as Client from "@effect/sql/SqlClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Worker } from "node:worker_threads"
import type { Connection, ConnectOptions, InvalidConnection } from "../Connector.js"
import * as DatabaseFile from "./databaseFile.js"
import { ClosedConnection, type DriverExtras } from "./driverConnection.js"
import { connectAttemptFailed, type ConnectError } from "./errors.js"
import * as Interrupt from "./interrupt.js"
import { classifySetUpFailure } from "./openFailure.js"
import { type OpenOutcome, type RequestFailure, WorkerConnection } from "./workerConnection.js"
import { type Answer, type Request, revive, toBuffers } from "./workerProtocol.js"

/**
 * How to open a connection in a worker: the connector's options and the deadlines of the thread itself.
 */
export interface ThreadConnectOptions extends ConnectOptions {
  /** longest wait for the worker's "open" answer; a worker that does not answer is a transient ConnectError */
  readonly openTimeout?: Duration.DurationInput | undefined
  /** longest wait for `validate`'s answer; a worker that does not answer is stopped and reported dead */
  readonly probeTimeout?: Duration.DurationInput | undefined
  /** how long closing waits for the thread to exit (it cannot exit while SQLite is inside one step) */
  readonly closeTimeout?: Duration.DurationInput | undefined
  /** the worker thread's nice value on Linux (default 10: the event loop is scheduled first when cores are busy) */
  readonly niceness?: number | undefined
  /** rows per message of `executeStream` */
  readonly streamBatchSize?: number | undefined
  /**
   * test hooks in the worker: a SQL function `sqlsim_test_exit(code)`, a worker that never answers "open", or one
   * that exits with `exitOnOpen` instead
   */
  readonly testHooks?: { readonly stallOpen?: boolean; readonly exitOnOpen?: number } | undefined
}

/**
 * A connection of the Connector seam, with its worker beside it (the thread id for diagnostics; the Worker itself
 * for tests that stop it from outside).
 */
export interface ThreadConnection extends Connection {
  readonly threadId: number
  readonly worker: Worker
}

export { liveWorkers } from "./workerConnection.js"

/** The messages of the main-thread connection's failures (driverConnection.ts), so both kinds read alike. */
const statementError = (answer: Answer): SqlError =>
  new SqlError({
    cause: revive(answer.error!),
    message: answer.phase === "prepare" ? "Failed to prepare statement" : "Failed to execute statement"
  })

/**
 * A request that got no answer, as a SqlError: one that never ran says so with a `ClosedConnection` cause, so that
 * the lane may run it on another connection.
 */
const requestError = (failure: RequestFailure): SqlError => {
  switch (failure._tag) {
    case "NotSent":
      return new SqlError({
        message: `the connection cannot be used: ${failure.reason}`,
        cause: new ClosedConnection(failure.reason)
      })
    case "NeverRan":
      return new SqlError({
        message: `the statement never ran: ${failure.reason}`,
        cause: new ClosedConnection(failure.reason)
      })
    case "Lost":
      return new SqlError({ message: failure.reason, cause: failure.cause ?? new Error(failure.reason) })
    case "NotSendable":
      return new SqlError({ message: "Failed to execute statement", cause: failure.cause })
  }
}

/** One request as an Effect; interrupting it stops the worker (`interrupted` is then the connection's reason). */
const request = (
  worker: WorkerConnection,
  message: Request,
  interrupted = "the worker thread was stopped: a statement running on it was interrupted"
): Effect.Effect<Answer, SqlError> =>
  Effect.async<Answer, SqlError>((resume) => {
    const id = worker.send(
      message,
      (answer) => resume(answer.ok ? Effect.succeed(answer) : Effect.fail(statementError(answer))),
      (failure) => resume(Effect.fail(requestError(failure)))
    )
    if (id !== undefined) return Effect.sync(() => worker.cancel(id, interrupted))
  })

/**
 * Opens one connection in a new worker thread, in the given Scope: closing the Scope closes the database and ends
 * the thread. One attempt, no retries.
 */
export const connect = (options: ThreadConnectOptions): Effect.Effect<ThreadConnection, ConnectError, Scope.Scope> =>
  Effect.gen(function*() {
    const { filename } = options
    const stale = DatabaseFile.staleSidecars(filename, options.previousFile)
    if (stale !== undefined) return yield* stale
    // Built once per process (the first open waits for it); undefined where it cannot be: workers are then only
    // terminated, and a statement runs on to its next row.
    const interrupter = yield* Effect.promise(() => Interrupt.interrupter())
    const worker = yield* Effect.acquireRelease(
      Effect.try({
        try: () => new WorkerConnection(workerSettings(options), interrupter),
        catch: (cause) =>
          connectAttemptFailed({
            filename,
            code: "UNKNOWN",
            transient: true,
            reason: "cannot start a worker thread",
            cause
          })
      }),
      (worker) => Effect.promise(() => worker.close(Duration.toMillis(options.closeTimeout ?? "2 seconds")))
    )
    yield* awaitOpen(worker, options)
    const identity = DatabaseFile.isFile(filename) ? DatabaseFile.identity(filename) : undefined
    return {
      ...operations(worker, options),
      check: () => worker.closedReason(),
      checkFile: () => DatabaseFile.replacedSince(filename, identity),
      fileIdentity: DatabaseFile.files(filename),
      threadId: worker.worker.threadId,
      worker: worker.worker
    }
  }).pipe(
    Effect.withSpan("sqlsim.connect", {
      attributes: { "db.system.name": "sqlite", "db.namespace": options.filename, "sqlsim.thread": true }
    })
  )

const workerSettings = (options: ThreadConnectOptions) => ({
  filename: options.filename,
  readOnly: options.readOnly,
  busyTimeoutMs: Math.round(Duration.toMillis(options.busyTimeout)),
  pageCacheKiB: options.pageCacheKiB,
  prepareCacheSize: options.prepareCacheSize ?? 200,
  prepareCacheTTLMillis: Duration.toMillis(options.prepareCacheTTL ?? Duration.minutes(10)),
  niceness: options.niceness ?? 10,
  // The pool's extensions as of this open; `loadExtension` adds later ones to the open worker.
  extensions: [...(options.extensions ?? [])],
  testHooks: options.testHooks !== undefined,
  stallOpen: options.testHooks?.stallOpen === true,
  exitOnOpen: options.testHooks?.exitOnOpen
})

/**
 * Waits for the worker's "open" answer, within `openTimeout`. A worker that failed to open, crashed or did not
 * answer is of no further use: it is stopped now, not when the Scope closes.
 */
const awaitOpen = (worker: WorkerConnection, options: ThreadConnectOptions): Effect.Effect<void, ConnectError> => {
  const { filename } = options
  const openTimeout = Duration.decode(options.openTimeout ?? "10 seconds")
  return Effect.promise(() => worker.opened).pipe(
    Effect.timeoutFail({
      duration: openTimeout,
      onTimeout: () =>
        connectAttemptFailed({
          filename,
          code: "UNKNOWN",
          transient: true,
          reason: `the worker thread did not answer within ${Duration.format(openTimeout)}`
        })
    }),
    Effect.flatMap((outcome) => openFailure(filename, outcome)),
    Effect.tapError((error) => Effect.sync(() => worker.stop(error.reason)))
  )
}

const openFailure = (filename: string, outcome: OpenOutcome): Effect.Effect<void, ConnectError> => {
  switch (outcome._tag) {
    case "Opened":
      return Effect.void
    case "Failed":
      return Effect.fail(classifySetUpFailure(filename, outcome.cause))
    case "Crashed":
      // Nothing says that the next worker would crash too.
      return Effect.fail(
        connectAttemptFailed({
          filename,
          code: "UNKNOWN",
          transient: true,
          reason: outcome.reason,
          cause: outcome.cause
        })
      )
  }
}

/** The `@effect/sql` connection, the probe and SqliteClient's own operations, each a request to the worker. */
const operations = (worker: WorkerConnection, options: ThreadConnectOptions) => {
  const statement = (
    op: "execute" | "executeRaw" | "executeValues" | "executeUnprepared",
    sql: string,
    params: ReadonlyArray<unknown>
  ) =>
    Effect.withFiberRuntime<ReadonlyArray<any>, SqlError>((fiber) =>
      Effect.map(
        request(worker, { op, sql, params, safeIntegers: Context.get(fiber.currentContext, Client.SafeIntegers) }),
        (answer) => {
          const result = answer.result as Array<any>
          if (answer.blobs === true) toBuffers(result)
          return result
        }
      )
    )
  const withRows = (
    rows: Effect.Effect<ReadonlyArray<any>, SqlError>,
    transformRows: (<A extends object>(rows: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined
  ) => transformRows ? Effect.map(rows, transformRows) : rows

  const connection: SqlConnection.Connection = {
    execute: (sql, params, transformRows) => withRows(statement("execute", sql, params), transformRows),
    executeRaw: (sql, params) => statement("executeRaw", sql, params),
    executeValues: (sql, params) =>
      statement("executeValues", sql, params) as Effect.Effect<ReadonlyArray<ReadonlyArray<unknown>>, SqlError>,
    executeUnprepared: (sql, params, transformRows) =>
      withRows(statement("executeUnprepared", sql, params ?? []), transformRows),
    executeStream: (sql, params, transformRows) =>
      stream(worker, sql, params, transformRows, options.streamBatchSize ?? 256)
  }

  const probeTimeout = Duration.decode(options.probeTimeout ?? "5 seconds")
  const probeTimedOut = `the worker thread did not answer a probe within ${Duration.format(probeTimeout)}`
  const probe: Effect.Effect<void, InvalidConnection> = request(
    worker,
    { op: "execute", sql: "SELECT 1", params: [], safeIntegers: false },
    probeTimedOut
  ).pipe(
    Effect.timeoutFail({ duration: probeTimeout, onTimeout: () => new SqlError({ message: probeTimedOut }) }),
    Effect.asVoid,
    Effect.mapError((error) => ({
      reason: error.cause instanceof Error ? error.cause.message : error.message,
      cause: error
    }))
  )
  // A probe is a round trip to the worker, as dear as the statement it would precede. A live, idle worker that
  // answered within the last second is known to work (a dead one is reported by `check` without any probe).
  const validate: Effect.Effect<void, InvalidConnection> = Effect.suspend(() =>
    worker.answeredWithin(1_000) ? Effect.void : probe
  )

  // SqliteClient's own operations, run in the worker on its handle (which cannot cross threads: no `database`).
  const driver: DriverExtras = {
    database: undefined,
    export: Effect.map(request(worker, { op: "export" }), (answer) => answer.result as Uint8Array),
    backup: (destination) =>
      Effect.map(
        request(worker, { op: "backup", destination }),
        (answer) => answer.result as { totalPages: number; remainingPages: number }
      ),
    loadExtension: (path) => Effect.asVoid(request(worker, { op: "loadExtension", path }))
  }
  return { connection, validate, driver }
}

/** `executeStream`: a cursor in the worker, pulled `batchSize` rows per request, closed when the stream ends. */
const stream = (
  worker: WorkerConnection,
  sql: string,
  params: ReadonlyArray<unknown>,
  transformRows: (<A extends object>(rows: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined,
  batchSize: number
): Stream.Stream<any, SqlError> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const safeIntegers = yield* Effect.withFiberRuntime<boolean>((fiber) =>
      Effect.succeed(Context.get(fiber.currentContext, Client.SafeIntegers))
    )
    const cursor = yield* Effect.acquireRelease(
      Effect.map(
        request(worker, { op: "openCursor", sql, params, safeIntegers }),
        (answer) => (answer.result as { cursor: number | undefined }).cursor
      ),
      // An interrupted pull stopped the worker already; otherwise the cursor is reset in the worker.
      (cursor) =>
        cursor === undefined || worker.closedReason() !== undefined
          ? Effect.void
          : Effect.ignore(request(worker, { op: "closeCursor", cursor }))
    )
    if (cursor === undefined) return Stream.empty
    return Stream.paginateChunkEffect(undefined, () =>
      Effect.map(request(worker, { op: "pull", cursor, size: batchSize }), (answer) => {
        const { done, rows } = answer.result as { rows: Array<any>; done: boolean }
        if (answer.blobs === true) {
          toBuffers(rows)
        }
        const chunk = Chunk.unsafeFromArray(transformRows ? transformRows(rows) : rows)
        return [chunk, done ? Option.none() : Option.some(undefined)] as const
      }))
  }))
