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
import { Worker } from "node:worker_threads"
import { classifyOpenFailure, type Connection, type ConnectOptions, type InvalidConnection } from "../Connector.js"
import { ConnectError } from "../PoolError.js"
import * as SqliteCode from "../SqliteCode.js"
import * as DatabaseFile from "./databaseFile.js"
import { ClosedConnection, type DriverExtras } from "./driverConnection.js"
import * as Interrupt from "./interrupt.js"

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
  /** test hooks in the worker: a SQL function `sqlsim_test_exit(code)`, or a worker that never answers "open" */
  readonly testHooks?: { readonly stallOpen?: boolean } | undefined
}

/**
 * A connection of the Connector seam, with its worker beside it (the thread id for diagnostics; the Worker itself
 * for tests that stop it from outside).
 */
export interface ThreadConnection extends Connection {
  readonly threadId: number
  readonly worker: Worker
}

const workerUrl = new URL("./readerWorker.mjs", import.meta.url)

const running = new Set<Worker>()

/** The workers alive in this process, for tests that stop them from outside the pool. */
export const liveWorkers = (): ReadonlyArray<Worker> => [...running]

interface WireError {
  readonly name: string
  readonly message: string
  readonly code: string | undefined
  readonly stack: string | undefined
}

interface Answer {
  readonly id: number
  readonly ok: boolean
  readonly phase?: "prepare" | "execute"
  readonly result?: unknown
  readonly blobs?: boolean
  readonly error?: WireError
}

type Request =
  | {
    readonly op: "execute" | "executeRaw" | "executeValues" | "executeUnprepared" | "openCursor"
    readonly sql: string
    readonly params: ReadonlyArray<unknown>
    readonly safeIntegers: boolean
  }
  | { readonly op: "pull"; readonly cursor: number; readonly size: number }
  | { readonly op: "closeCursor"; readonly cursor: number }
  | { readonly op: "loadExtension"; readonly path: string }
  | { readonly op: "export" }
  | { readonly op: "backup"; readonly destination: string }

/** An Error like the worker's, with its SQLite code, so that the cause chain reads as on the main thread. */
const revive = (wire: WireError): Error => {
  const error = new Error(wire.message) as Error & { code?: string }
  error.name = wire.name
  if (wire.code !== undefined) error.code = wire.code
  if (wire.stack !== undefined) error.stack = wire.stack
  return error
}

/** The messages of the main-thread connection's failures (driverConnection.ts), so both kinds read alike. */
const statementError = (answer: Answer): SqlError =>
  new SqlError({
    cause: revive(answer.error!),
    message: answer.phase === "prepare" ? "Failed to prepare statement" : "Failed to execute statement"
  })

/** Blob values back as Buffers (views on the received bytes), as better-sqlite3 returns them on the main thread. */
const toBuffers = (rows: Array<any>): void => {
  for (const row of rows) {
    if (Array.isArray(row)) {
      for (let index = 0; index < row.length; index++) {
        const value = row[index]
        if (value instanceof Uint8Array) row[index] = Buffer.from(value.buffer, value.byteOffset, value.byteLength)
      }
    } else {
      for (const key in row) {
        const value = row[key]
        if (value instanceof Uint8Array) row[key] = Buffer.from(value.buffer, value.byteOffset, value.byteLength)
      }
    }
  }
}

type OpenOutcome =
  | { readonly _tag: "opened"; readonly readonly: boolean; readonly interruptId: number | undefined }
  | { readonly _tag: "failed"; readonly cause: unknown }

/**
 * Opens one connection in a new worker thread, in the given Scope: closing the Scope closes the database and ends
 * the thread. One attempt, no retries.
 */
export const connect = (options: ThreadConnectOptions): Effect.Effect<ThreadConnection, ConnectError, Scope.Scope> =>
  Effect.gen(function*() {
    const { filename } = options
    const openTimeout = Duration.decode(options.openTimeout ?? "10 seconds")
    const probeTimeout = Duration.decode(options.probeTimeout ?? "5 seconds")
    const closeTimeout = Duration.toMillis(options.closeTimeout ?? "2 seconds")
    const batchSize = options.streamBatchSize ?? 256

    // Built once per process (the first open waits for it); undefined where it cannot be: workers are then only
    // terminated, and a statement runs on to its next row.
    const interrupter = yield* Effect.promise(() => Interrupt.interrupter())
    /** the worker connection's id for sqlite3_interrupt, once it opened with the extension */
    let interruptId: number | undefined
    /** Shared with the worker: 1 once the main thread has given the connection up (see `end`). */
    const stopFlag = new Int32Array(new SharedArrayBuffer(4))
    /**
     * Ends a worker that may be running a statement. With the interrupt extension: the flag tells it to run nothing
     * more, sqlite3_interrupt stops the statement at SQLite's next jump, and the worker closes its database and ends
     * by itself. Without it, `terminate()`, which takes effect at the statement's next row.
     */
    const end = () => {
      if (interrupter !== undefined && interruptId !== undefined) {
        Atomics.store(stopFlag, 0, 1)
        interrupter.interrupt(interruptId)
      } else {
        void worker.terminate()
      }
    }
    const pending = new Map<number, (answer: Effect.Effect<Answer, SqlError>) => void>()
    let nextId = 1
    let dead: string | undefined
    /** when the worker last answered a statement (performance.now()) */
    let answeredAt = -Infinity
    let exited = false
    let settleOpen: (outcome: OpenOutcome) => void = () => {}
    const opened = new Promise<OpenOutcome>((resolve) => (settleOpen = resolve))
    let exitedResolve: () => void = () => {}
    const exit = new Promise<void>((resolve) => (exitedResolve = resolve))

    // Every statement still waiting fails: the worker will not answer it any more. It runs requests in the order
    // sent, so only the oldest can have started; the others never ran, and say so (ClosedConnection), so that the
    // lane may run them on another connection.
    const failPending = (reason: string, cause: unknown, oldestMayHaveRun = true) => {
      const waiting = [...pending.values()]
      pending.clear()
      waiting.forEach((resume, index) =>
        resume(Effect.fail(
          index === 0 && oldestMayHaveRun
            ? new SqlError({ message: reason, cause: cause ?? new Error(reason) })
            : new SqlError({ message: `the statement never ran: ${reason}`, cause: new ClosedConnection(reason) })
        ))
      )
    }

    const worker = yield* Effect.acquireRelease(
      Effect.try({
        try: () =>
          new Worker(workerUrl, {
            workerData: {
              filename,
              readOnly: options.readOnly,
              busyTimeoutMs: Math.round(Duration.toMillis(options.busyTimeout)),
              pageCacheKiB: options.pageCacheKiB,
              prepareCacheSize: options.prepareCacheSize ?? 200,
              prepareCacheTTLMillis: Duration.toMillis(options.prepareCacheTTL ?? Duration.minutes(10)),
              niceness: options.niceness ?? 10,
              // The pool's extensions as of this open; `loadExtension` adds later ones to the open worker.
              extensions: [...(options.extensions ?? [])],
              interruptExtension: interrupter?.extension,
              stopFlag: stopFlag.buffer,
              testHooks: options.testHooks !== undefined,
              stallOpen: options.testHooks?.stallOpen === true
            },
            // The worker is plain JavaScript: it needs none of the loaders (tsx, vitest) the main thread runs with,
            // and starts faster without them.
            execArgv: []
          }),
        catch: (cause) =>
          new ConnectError({
            filename,
            attempts: 1,
            code: "UNKNOWN",
            transient: true,
            reason: "cannot start a worker thread",
            elapsedMs: 0,
            cause
          })
      }).pipe(Effect.tap((worker) =>
        Effect.sync(() => {
          worker.on("message", (message: Answer & { type?: "open"; readonly?: boolean; interruptId?: number }) => {
            if (message.type === "open") {
              if (message.ok) interruptId = message.interruptId
              settleOpen(
                message.ok
                  ? { _tag: "opened", readonly: message.readonly === true, interruptId: message.interruptId }
                  : { _tag: "failed", cause: revive(message.error!) }
              )
              return
            }
            const resume = pending.get(message.id)
            if (resume === undefined) return
            pending.delete(message.id)
            answeredAt = performance.now()
            if (pending.size === 0) worker.unref()
            resume(message.ok ? Effect.succeed(message) : Effect.fail(statementError(message)))
          })
          worker.on("error", (error) => {
            // An uncaught exception in the worker: it exits next.
            dead ??= `the worker thread failed: ${error.message}`
            settleOpen({ _tag: "failed", cause: error })
            failPending(`the worker thread failed while running the statement: ${error.message}`, error)
          })
          worker.on("messageerror", (error) => {
            dead ??= `an answer of the worker thread could not be read: ${error.message}`
            void worker.terminate()
            failPending(dead, error)
          })
          running.add(worker)
          worker.on("exit", (code) => {
            running.delete(worker)
            exited = true
            dead ??= `the worker thread exited (code ${code})`
            settleOpen({ _tag: "failed", cause: new Error(`the worker thread exited (code ${code}) before opening`) })
            failPending(`the worker thread exited (code ${code}) while running the statement`, undefined)
            exitedResolve()
          })
          // Like a main-thread handle, an idle connection does not keep the process alive; one running a statement
          // does (see `request`).
          worker.unref()
        })
      )),
      (worker) =>
        Effect.promise(async () => {
          if (!exited) {
            if (dead === undefined && pending.size === 0) {
              // Gently when idle: the worker closes its database and lets its thread end.
              dead = "the connection was closed"
              worker.postMessage({ op: "close" })
            } else {
              // A busy worker would read the close request only after its statement: stop it now.
              if (dead === undefined) {
                dead = "the connection was closed while a statement ran on it"
                failPending(dead, undefined)
              }
              end()
            }
            if (!(await exitedWithin(exit, closeTimeout))) {
              void worker.terminate()
              if (!(await exitedWithin(exit, closeTimeout))) {
                // Still inside one SQLite step: it ends at its next row. Nothing more can be done from here, and
                // it must not keep the process alive.
                worker.unref()
              }
            }
          }
          dead ??= "the connection was closed"
        })
    )

    /** Ends the worker; every statement waiting on it fails. The pool learns it through `check()`. */
    const stop = (reason: string, oldestMayHaveRun = true) => {
      if (dead !== undefined) return
      dead = reason
      end()
      failPending(reason, undefined, oldestMayHaveRun)
    }

    const outcome = yield* Effect.promise(() => opened).pipe(
      Effect.timeoutFail({
        duration: openTimeout,
        onTimeout: () =>
          new ConnectError({
            filename,
            attempts: 1,
            code: "UNKNOWN",
            transient: true,
            reason: `the worker thread did not answer within ${Duration.format(openTimeout)}`,
            elapsedMs: 0,
            cause: undefined
          })
      }),
      // A worker that failed to open or did not answer is of no further use: end it now, not when the Scope closes.
      Effect.tapError((error) => Effect.sync(() => stop(error.reason)))
    )
    if (outcome._tag === "failed") {
      const message = outcome.cause instanceof Error ? outcome.cause.message : ""
      // As on the main thread: an extension that does not load will not load on a retry either.
      const error = message.startsWith("cannot load the extension")
        ? new ConnectError({
          filename,
          attempts: 1,
          code: SqliteCode.codeOf(outcome.cause) ?? "UNKNOWN",
          transient: false,
          reason: message,
          elapsedMs: 0,
          cause: outcome.cause
        })
        : classifyOpenFailure(filename, outcome.cause)
      stop(error.reason)
      return yield* Effect.fail(error)
    }
    if (!options.readOnly && outcome.readonly) {
      // As the main-thread connector: SQLite fell back to a read-only open because the file or its directory is not
      // writable; a retry opens it afresh once they are.
      const reason = "the database opened read-only: its file or directory is not writable"
      stop(reason)
      return yield* Effect.fail(DatabaseFile.readOnlyFallback(filename, reason))
    }

    const identity = DatabaseFile.isFile(filename) ? DatabaseFile.identity(filename) : undefined

    const request = (
      message: Request,
      interrupted = "the worker thread was stopped: a statement running on it was interrupted"
    ): Effect.Effect<Answer, SqlError> =>
      Effect.async<Answer, SqlError>((resume) => {
        if (dead !== undefined) {
          // The statement never reached a worker: ClosedConnection tells the pool that running it elsewhere is safe.
          resume(Effect.fail(
            new SqlError({ message: `the connection cannot be used: ${dead}`, cause: new ClosedConnection(dead) })
          ))
          return
        }
        const id = nextId++
        pending.set(id, resume)
        worker.ref()
        try {
          worker.postMessage({ ...message, id })
        } catch (cause) {
          // A parameter that cannot be cloned (a function, a symbol): nothing was sent.
          pending.delete(id)
          if (pending.size === 0) worker.unref()
          resume(Effect.fail(new SqlError({ message: "Failed to execute statement", cause })))
          return
        }
        return Effect.sync(() => {
          // The oldest request is the one the worker runs; those behind it have not started.
          const running = pending.keys().next().value === id
          if (pending.delete(id)) stop(interrupted, !running)
        })
      })

    const statement = (
      op: "execute" | "executeRaw" | "executeValues" | "executeUnprepared",
      sql: string,
      params: ReadonlyArray<unknown>
    ) =>
      Effect.withFiberRuntime<ReadonlyArray<any>, SqlError>((fiber) =>
        Effect.map(
          request({ op, sql, params, safeIntegers: Context.get(fiber.currentContext, Client.SafeIntegers) }),
          (answer) => {
            const result = answer.result as Array<any>
            if (answer.blobs === true) toBuffers(result)
            return result
          }
        )
      )

    const stream = (
      sql: string,
      params: ReadonlyArray<unknown>,
      transformRows: (<A extends object>(rows: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined
    ): Stream.Stream<any, SqlError> =>
      Stream.unwrapScoped(Effect.gen(function*() {
        const safeIntegers = yield* Effect.withFiberRuntime<boolean>((fiber) =>
          Effect.succeed(Context.get(fiber.currentContext, Client.SafeIntegers))
        )
        const cursor = yield* Effect.acquireRelease(
          Effect.map(
            request({ op: "openCursor", sql, params, safeIntegers }),
            (answer) => (answer.result as { cursor: number | undefined }).cursor
          ),
          // An interrupted pull stopped the worker already; otherwise the cursor is reset in the worker.
          (cursor) =>
            cursor === undefined || dead !== undefined
              ? Effect.void
              : Effect.ignore(request({ op: "closeCursor", cursor }))
        )
        if (cursor === undefined) return Stream.empty
        return Stream.paginateChunkEffect(undefined, () =>
          Effect.map(request({ op: "pull", cursor, size: batchSize }), (answer) => {
            const { done, rows } = answer.result as { rows: Array<any>; done: boolean }
            if (answer.blobs === true) {
              toBuffers(rows)
            }
            const chunk = Chunk.unsafeFromArray(transformRows ? transformRows(rows) : rows)
            return [chunk, done ? Option.none() : Option.some(undefined)] as const
          }))
      }))

    const connection: SqlConnection.Connection = {
      execute(sql, params, transformRows) {
        const rows = statement("execute", sql, params)
        return transformRows ? Effect.map(rows, transformRows) : rows
      },
      executeRaw(sql, params) {
        return statement("executeRaw", sql, params)
      },
      executeValues(sql, params) {
        return statement("executeValues", sql, params) as Effect.Effect<ReadonlyArray<ReadonlyArray<unknown>>, SqlError>
      },
      executeUnprepared(sql, params, transformRows) {
        const rows = statement("executeUnprepared", sql, params ?? [])
        return transformRows ? Effect.map(rows, transformRows) : rows
      },
      executeStream(sql, params, transformRows) {
        return stream(sql, params, transformRows)
      }
    }

    const check = () => dead
    const checkFile = () => DatabaseFile.replacedSince(filename, identity)

    const probeTimedOut = `the worker thread did not answer a probe within ${Duration.format(probeTimeout)}`
    const probe: Effect.Effect<void, InvalidConnection> = request(
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
      dead === undefined && pending.size === 0 && performance.now() - answeredAt < 1_000 ? Effect.void : probe
    )

    // SqliteClient's own operations, run in the worker on its handle (which cannot cross threads: no `database`).
    const driver: DriverExtras = {
      database: undefined,
      export: Effect.map(request({ op: "export" }), (answer) => answer.result as Uint8Array),
      backup: (destination) =>
        Effect.map(
          request({ op: "backup", destination }),
          (answer) => answer.result as { totalPages: number; remainingPages: number }
        ),
      loadExtension: (path) => Effect.asVoid(request({ op: "loadExtension", path }))
    }

    return { connection, validate, check, checkFile, driver, threadId: worker.threadId, worker }
  }).pipe(
    Effect.withSpan("sqlsim.connect", {
      attributes: { "db.system.name": "sqlite", "db.namespace": options.filename, "sqlsim.thread": true }
    })
  )

const exitedWithin = (exit: Promise<void>, millis: number): Promise<boolean> =>
  new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), millis)
    void exit.then(() => {
      clearTimeout(timer)
      resolve(true)
    })
  })
