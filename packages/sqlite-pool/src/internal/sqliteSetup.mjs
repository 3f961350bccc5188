/**
 * What every connection does to its better-sqlite3 handle, on the main thread (`Connector.ts`, `driverConnection.ts`)
 * and in a worker thread (`readerWorker.mjs`) alike: the set-up after opening (pragmas, WAL, read-only mode,
 * extensions, a first read of the schema) and the cache of prepared statements.
 *
 * Plain JavaScript (typed by `sqliteSetup.d.mts`) so that the worker, which runs without any loader, imports the same
 * file as the main thread; it needs nothing from Effect.
 *
 * @internal
 */
import * as fs from "node:fs"

export const isFile = (filename) => filename !== ":memory:" && filename !== ""

const isWritable = (filename) => {
  try {
    fs.accessSync(filename, fs.constants.W_OK)
    return true
  } catch {
    return false
  }
}

/** An extension named in the options did not load: it will not load on a retry either. */
export class ExtensionLoadError extends Error {
  _tag = "ExtensionLoadError"
  name = "ExtensionLoadError"
  constructor(extension, cause) {
    super(`cannot load the extension ${extension}: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause
    })
    this.extension = extension
    // SQLite's code, where the driver gave one, so that the error is classified as the driver's would be.
    this.code = typeof cause?.code === "string" ? cause.code : undefined
  }
}

/**
 * SQLite fell back to a read-only open, silently, because the file or its directory is not writable: every write
 * would fail until the connection is replaced, and a retry opens it afresh once they are writable.
 */
export class ReadOnlyFallbackError extends Error {
  _tag = "ReadOnlyFallbackError"
  name = "ReadOnlyFallbackError"
  constructor() {
    super("the database file or its directory is not writable, so SQLite opened it read-only")
  }
}

/**
 * Sets up a freshly opened handle, in this order: busy timeout, page cache, foreign keys, WAL for a writable file
 * (persistent: the first connection switches it, later ones find it set), `query_only` for a read-only connection,
 * the extensions, and a read of the schema. Throws the driver's error, an `ExtensionLoadError` or a
 * `ReadOnlyFallbackError`.
 */
export const setUp = (db, options) => {
  const file = isFile(options.filename)
  if (file && !options.readOnly && (db.readonly || !isWritable(options.filename))) throw new ReadOnlyFallbackError()
  const run = (sql) => {
    const statement = db.prepare(sql)
    return statement.reader ? statement.get() : statement.run()
  }
  run(`PRAGMA busy_timeout = ${options.busyTimeoutMs}`)
  run(`PRAGMA cache_size = -${options.pageCacheKiB}`)
  run("PRAGMA foreign_keys = ON")
  // Switching to WAL can meet BUSY from another process: the pool retries it like any transient connect failure.
  if (file && !options.readOnly && run("PRAGMA journal_mode")?.journal_mode !== "wal") run("PRAGMA journal_mode = WAL")
  if (options.readOnly) run("PRAGMA query_only = ON")
  for (const extension of options.extensions ?? []) {
    try {
      db.loadExtension(extension)
    } catch (error) {
      throw new ExtensionLoadError(extension, error)
    }
  }
  // A read of the file, not just `SELECT 1`: it finds a file that is no database now, and in WAL mode it opens the
  // -wal and -shm, so that the connection can say which ones it has (`Connector.Connection.fileIdentity`).
  run("SELECT count(*) FROM sqlite_master")
}

/**
 * Prepared statements by SQL, at most `size` (0: none), each dropped at its next lookup once unused for
 * `timeToLiveMillis`. Insertion order is recency order: a hit moves to the end, the first key is the least recently
 * used.
 */
export class StatementCache {
  /** the handle statements are prepared on */
  #db
  /** the limits: `size` and `timeToLiveMillis` */
  #options
  /** sql -> { statement, usedAt (Date.now()) }, least recently used first */
  #entries = new Map()

  constructor(db, options) {
    this.#db = db
    this.#options = options
  }

  prepare(sql) {
    if (this.#options.size === 0) return this.#db.prepare(sql)
    const now = Date.now()
    const hit = this.#entries.get(sql)
    if (hit !== undefined) {
      this.#entries.delete(sql)
      if (now - hit.usedAt < this.#options.timeToLiveMillis) {
        hit.usedAt = now
        this.#entries.set(sql, hit)
        return hit.statement
      }
    }
    const statement = this.#db.prepare(sql)
    this.#entries.set(sql, { statement, usedAt: now })
    if (this.#entries.size > this.#options.size) this.#entries.delete(this.#entries.keys().next().value)
    return statement
  }

  /** Forgets every statement: after `loadExtension`, statements prepared before may lack its functions. */
  clear() {
    this.#entries.clear()
  }
}
