/**
 * One SQLite connection in a worker thread: the other half of `threadConnector.ts`.
 *
 * Plain JavaScript on purpose: the same file runs from the sources (tsx, vitest) and from `dist` without a build step
 * of its own. It opens one better-sqlite3 handle, sets it up and caches its statements with the main-thread
 * connector's own code (`sqliteSetup.mjs`), answers "open" once, then answers each request `{ id, op, sql, params,
 * safeIntegers }` with `{ id, ok, result }` or `{ id, ok: false, error }` (the wire format: `workerProtocol.ts`).
 * Requests are handled one at a time in arrival order (better-sqlite3 is synchronous), so the main thread matches
 * answers by id.
 *
 * Rows are collected with `iterate()` rather than `all()`: `worker.terminate()` cannot stop SQLite's native code, it
 * only takes effect when the thread runs JavaScript again, and with `iterate()` that happens after every row. A
 * statement that produces rows therefore stops within a row of being cancelled; one that computes for a long time
 * before its first row (an aggregate, a sort) runs on until that row.
 *
 * @internal
 */
import { Buffer } from "node:buffer"
import { readlinkSync } from "node:fs"
import { setPriority } from "node:os"
import { setInterval } from "node:timers"
import { parentPort, workerData } from "node:worker_threads"
// The driver of the main-thread connector (this package's own dependency): one SQLite build for both.
import Database from "better-sqlite3"
import { setUp, StatementCache } from "./sqliteSetup.mjs"

const options = workerData
const port = parentPort

/**
 * Errors cross as plain data: structured clone would keep the message and drop `code`, which the pool decides by,
 * and `_tag`, which the set-up's own errors are recognised by.
 */
const describe = (error) => {
  if (error instanceof Error) {
    return {
      name: error.name,
      message: error.message,
      code: typeof error.code === "string" ? error.code : undefined,
      _tag: typeof error._tag === "string" ? error._tag : undefined,
      stack: error.stack
    }
  }
  return { name: "Error", message: String(error), code: undefined, _tag: undefined, stack: undefined }
}

/** This connection's id for sqlite3_interrupt() from the main thread, when the extension loaded. */
let interruptId

const open = () => {
  const db = new Database(options.filename)
  try {
    setUp(db, options)
    if (options.interruptExtension !== undefined) {
      // sqlite3_interrupt() from the main thread (interrupt.ts): without it, a cancelled statement runs on to its
      // next row. A failure here only costs that.
      try {
        db.loadExtension(options.interruptExtension)
        interruptId = db.prepare("SELECT sqlsim_connection_id() AS id").get()?.id
      } catch {
        interruptId = undefined
      }
    }
    if (options.testHooks === true) {
      // A worker that dies in the middle of a statement, for the fault tests.
      db.function("sqlsim_test_exit", (code) => process.exit(Number(code)))
    }
    return db
  } catch (error) {
    db.close()
    throw error
  }
}

/**
 * better-sqlite3 gives blobs as Buffers; structured clone delivers a Buffer as a plain Uint8Array. The answer says
 * whether any value is one, so that the main thread looks for them only in results that have some.
 */
const hasBlob = (rows, raw) => {
  for (const row of rows) {
    if (raw) {
      for (const value of row) if (value instanceof Uint8Array) return true
    } else {
      for (const key in row) if (row[key] instanceof Uint8Array) return true
    }
  }
  return false
}

/** Buffers are sent as Uint8Arrays already; a Uint8Array parameter (from the main thread) is bound as a blob. */
const bindable = (params) =>
  params.map((value) =>
    value instanceof Uint8Array && !Buffer.isBuffer(value)
      ? Buffer.from(value.buffer, value.byteOffset, value.byteLength)
      : value
  )

const collect = (iterator) => {
  const rows = []
  for (const row of iterator) rows.push(row)
  return rows
}

/** What `@effect/sql-sqlite-node` does for each kind of request, reproduced so that both give the same answers. */
const run = (db, message) => {
  const unprepared = message.op === "executeUnprepared"
  let statement
  try {
    statement = unprepared ? db.prepare(message.sql) : cache.prepare(message.sql)
  } catch (error) {
    return { ok: false, phase: "prepare", error: describe(error) }
  }
  try {
    const params = bindable(message.params)
    if (statement.reader) {
      statement.safeIntegers(message.safeIntegers === true)
      const raw = message.op === "executeValues"
      statement.raw(raw)
      const rows = collect(statement.iterate(...params))
      return { ok: true, result: rows, blobs: hasBlob(rows, raw) }
    }
    const info = statement.run(...params)
    return { ok: true, result: message.op === "executeRaw" ? info : [], blobs: false }
  } catch (error) {
    return { ok: false, phase: "execute", error: describe(error) }
  }
}

/** Open cursors of `executeStream`, pulled a batch at a time. */
const cursors = new Map()

const openCursor = (db, message) => {
  let statement
  try {
    // Not from the cache: a cached statement is busy while its cursor is open, and a later execute of the same SQL
    // would fail with "This statement is busy executing a query".
    statement = db.prepare(message.sql)
  } catch (error) {
    return { ok: false, phase: "prepare", error: describe(error) }
  }
  try {
    if (!statement.reader) {
      statement.run(...bindable(message.params))
      return { ok: true, result: { cursor: undefined } }
    }
    statement.safeIntegers(message.safeIntegers === true)
    cursors.set(message.id, statement.iterate(...bindable(message.params)))
    return { ok: true, result: { cursor: message.id } }
  } catch (error) {
    return { ok: false, phase: "execute", error: describe(error) }
  }
}

const pull = (message) => {
  const iterator = cursors.get(message.cursor)
  if (iterator === undefined) return { ok: true, result: { rows: [], done: true }, blobs: false }
  try {
    const rows = []
    let done = false
    while (rows.length < message.size) {
      const next = iterator.next()
      if (next.done === true) {
        done = true
        break
      }
      rows.push(next.value)
    }
    if (done) cursors.delete(message.cursor)
    return { ok: true, result: { rows, done }, blobs: hasBlob(rows, false) }
  } catch (error) {
    cursors.delete(message.cursor)
    return { ok: false, phase: "execute", error: describe(error) }
  }
}

const closeCursor = (message) => {
  const iterator = cursors.get(message.cursor)
  cursors.delete(message.cursor)
  // return() resets the statement, so the connection can run others again.
  iterator?.return?.()
  return { ok: true, result: undefined, blobs: false }
}

/**
 * A reader thread yields to the main thread: on a machine whose cores are all busy (reader threads included) the
 * event loop, which only receives answers, must still be scheduled at once. On Linux a thread's own nice value is
 * set through its kernel thread id, found as /proc/thread-self -> "<pid>/task/<tid>". Elsewhere (or when not
 * permitted) the thread keeps the default priority.
 */
const lowerPriority = (niceness) => {
  try {
    const tid = Number(readlinkSync("/proc/thread-self").split("/").pop())
    if (Number.isInteger(tid) && tid > 0) setPriority(tid, niceness)
  } catch {
    // not Linux, or not allowed: nothing to do
  }
}
if (options.niceness !== undefined && options.niceness !== 0) lowerPriority(options.niceness)

let db
/** Prepared statements, with the limits of the main-thread connection's cache. */
let cache
if (options.testHooks === true && options.stallOpen === true) {
  // Never answers "open": the main thread's deadline must end the wait. The interval keeps the thread alive.
  setInterval(() => {}, 1000)
} else if (options.testHooks === true && options.exitOnOpen !== undefined) {
  // A worker that crashes while opening.
  process.exit(options.exitOnOpen)
} else {
  try {
    db = open()
    cache = new StatementCache(db, { size: options.prepareCacheSize, timeToLiveMillis: options.prepareCacheTTLMillis })
    port.postMessage({ type: "open", ok: true, interruptId })
  } catch (error) {
    port.postMessage({ type: "open", ok: false, error: describe(error) })
  }
}

/** Closes the database and lets the thread end (once nothing else is pending: the main thread awaits "exit"). */
const shutdown = () => {
  for (const iterator of cursors.values()) iterator.return?.()
  cursors.clear()
  db?.close()
  db = undefined
  port.close()
}

/**
 * Set by the main thread when it gives this connection up while a statement may run (it interrupted it with
 * sqlite3_interrupt): requests sent before that are not run any more, and the thread ends by itself. Ending it with
 * `terminate()` instead would race SQLITE_INTERRUPT's error into an isolate that is shutting down.
 */
const stopFlag = options.stopFlag === undefined ? undefined : new Int32Array(options.stopFlag)
const stopped = () => stopFlag !== undefined && Atomics.load(stopFlag, 0) === 1

/**
 * The flag's second Int32 is 1 while this thread handles a message (and may be inside SQLite): the main thread,
 * exiting, interrupts the statement and waits for the 0 before Node stops this thread, so that SQLITE_INTERRUPT's
 * error is thrown while the isolate still runs.
 */
port.on("message", (message) => {
  if (stopFlag !== undefined) Atomics.store(stopFlag, 1, 1)
  try {
    handle(message)
  } finally {
    if (stopFlag !== undefined) {
      Atomics.store(stopFlag, 1, 0)
      Atomics.notify(stopFlag, 1)
    }
  }
})

const handle = (message) => {
  if (message.op === "close" || stopped()) {
    shutdown()
    return
  }
  if (db === undefined) {
    port.postMessage({ id: message.id, ok: false, phase: "execute", error: describe(new Error("not open")) })
    return
  }
  let answer
  switch (message.op) {
    case "openCursor":
      answer = openCursor(db, message)
      break
    case "pull":
      answer = pull(message)
      break
    case "closeCursor":
      answer = closeCursor(message)
      break
    case "loadExtension":
      answer = attempt(() => {
        db.loadExtension(message.path)
        // Statements prepared before may have been compiled without the extension's functions.
        cache.clear()
      })
      break
    case "export":
      answer = attempt(() => db.serialize())
      break
    case "backup":
      // better-sqlite3's backup runs in steps between turns of this thread's loop: the answer comes when it ends.
      db.backup(message.destination).then(
        (result) => port.postMessage({ id: message.id, ok: true, result }),
        (error) => port.postMessage({ id: message.id, ok: false, phase: "execute", error: describe(error) })
      )
      return
    default:
      answer = run(db, message)
  }
  answer.id = message.id
  port.postMessage(answer)
  // Given up while this statement ran (and interrupted): end now rather than wait for another message.
  if (stopped()) shutdown()
}

/** SqliteClient's own operations (`loadExtension`, `export`) as an answer. */
const attempt = (f) => {
  try {
    return { ok: true, result: f() }
  } catch (error) {
    return { ok: false, phase: "execute", error: describe(error) }
  }
}
