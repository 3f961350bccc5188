/**
 * The messages between `workerConnection.ts` (the main thread) and `readerWorker.mjs` (the worker thread). Requests
 * carry an `id`; the worker answers each, in the order received, with `{ id, ok, result }` or `{ id, ok: false,
 * phase, error }`. Its first message, unasked, is `{ type: "open" }`. Needs nothing from Effect.
 *
 * @internal
 */

/** An error as the worker sends it: structured clone would keep the message and drop `code` and `_tag`. */
export interface WireError {
  readonly name: string
  readonly message: string
  /** SQLite's code ("SQLITE_BUSY"), what the pool decides by */
  readonly code: string | undefined
  /** the tag of the set-up's own errors (`sqliteSetup.mjs`: "ExtensionLoadError", "ReadOnlyFallbackError") */
  readonly _tag: string | undefined
  readonly stack: string | undefined
}

/** Settings of one worker, given as its `workerData`. */
export interface WorkerSettings {
  readonly filename: string
  readonly readOnly: boolean
  readonly busyTimeoutMs: number
  readonly pageCacheKiB: number
  readonly prepareCacheSize: number
  readonly prepareCacheTTLMillis: number
  /** the worker thread's nice value on Linux */
  readonly niceness: number
  readonly extensions: ReadonlyArray<string>
  /** the sqlite3_interrupt extension (interrupt.ts), when it could be built */
  readonly interruptExtension: string | undefined
  /**
   * a SharedArrayBuffer of two Int32s: the first 1 once the main thread has given the connection up, the second 1
   * while the worker handles a message
   */
  readonly stopFlag: SharedArrayBuffer
  /** test hooks: the SQL function `sqlsim_test_exit(code)` */
  readonly testHooks: boolean
  /** test hook: never answer "open" */
  readonly stallOpen: boolean
  /** test hook: exit with this code instead of answering "open" */
  readonly exitOnOpen: number | undefined
}

export type Request =
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

/** The answer to one request. */
export interface Answer {
  readonly id: number
  readonly ok: boolean
  /** where a failed statement failed: the messages say "Failed to prepare" or "Failed to execute" */
  readonly phase?: "prepare" | "execute"
  readonly result?: unknown
  /** whether any value of the rows is a blob (then they are rewrapped as Buffers) */
  readonly blobs?: boolean
  readonly error?: WireError
}

/** The worker's first message: its database is open and set up, or why not. */
export interface OpenAnswer {
  readonly type: "open"
  readonly ok: boolean
  /** this connection's id for sqlite3_interrupt(), when the extension loaded */
  readonly interruptId?: number | undefined
  readonly error?: WireError
}

/** An Error like the worker's, with its SQLite code and tag, so that it is classified as on the main thread. */
export const revive = (wire: WireError): Error => {
  const error = new Error(wire.message) as Error & { code?: string; _tag?: string }
  error.name = wire.name
  if (wire.code !== undefined) error.code = wire.code
  if (wire._tag !== undefined) error._tag = wire._tag
  if (wire.stack !== undefined) error.stack = wire.stack
  return error
}

/** Blob values back as Buffers (views on the received bytes), as better-sqlite3 returns them on the main thread. */
export const toBuffers = (rows: Array<any>): void => {
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
