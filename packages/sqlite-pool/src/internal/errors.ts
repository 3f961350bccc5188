/**
 * Typed errors of the pool. Every error is a value with a `_tag` and a message that says what to do.
 *
 * The implementation behind the public module of the same name, which documents each export.
 *
 * @internal
 */
import * as Data from "effect/Data"
import type { PoolStats } from "../PoolStats.js"

/**
 * Invalid configuration: `field` names the offending field (or the unknown key), `message` the rule it broke.
 */
export class PoolConfigError extends Data.TaggedError("PoolConfigError")<{
  readonly field: string
  readonly message: string
}> {}

/**
 * Opening a connection failed. `attempts` counts every try (the first one plus retries); `transient` says whether
 * a retry could help; `code` is the SQLite result code name such as "SQLITE_CANTOPEN", or "UNKNOWN".
 */
export class ConnectError extends Data.TaggedError("ConnectError")<{
  readonly filename: string
  readonly attempts: number
  readonly code: string
  readonly transient: boolean
  readonly reason: string
  readonly elapsedMs: number
  readonly cause: unknown
}> {
  override get message(): string {
    const tries = this.attempts === 1
      ? "after 1 attempt"
      : `gave up after ${this.attempts} attempts over ${Math.round(this.elapsedMs)} ms`
    const advice = this.transient ? "" : " (not retried: the error is permanent)"
    return `cannot open ${this.filename}: ${this.reason} (${this.code}), ${tries}${advice}`
  }
}

/**
 * What one failed connect attempt says: the retry policy adds the attempts and the time spent.
 */
export interface AttemptFailure {
  readonly filename: string
  readonly code: string
  readonly transient: boolean
  readonly reason: string
  readonly cause?: unknown
}

/**
 * The `ConnectError` of one failed attempt (`attempts: 1`, no time spent yet): what connectors and set-up steps fail
 * with; `RetryPolicy.retryConnect` reports the whole run of attempts.
 */
export const connectAttemptFailed = (failure: AttemptFailure): ConnectError =>
  new ConnectError({ ...failure, attempts: 1, elapsedMs: 0, cause: failure.cause })

/**
 * Who holds a connection: the innermost span the application opened around the acquire (the client's own `sql.*`
 * spans are passed over), the fiber, for how long, and, with `holdWarningThreshold` set, where it was acquired.
 */
export interface Holder {
  /** undefined when the holder ran outside any span */
  readonly span: string | undefined
  /** the holding fiber's id, as Effect prints it ("#12") */
  readonly fiber: string
  /** when it acquired the connection (the clock's epoch milliseconds) */
  readonly since: number
  /** how long it had held the connection, in milliseconds */
  readonly heldMs: number
  /**
   * the stack where it was acquired: captured only with `holdWarningThreshold` set, and only for a transaction or a
   * `ConnectionPool.use` (a single statement's lease is taken when `@effect/sql` runs it, far from the caller's code)
   */
  readonly site: string | undefined
}

/** One line about a holder, for messages. */
export const describeHolder = (holder: Holder): string =>
  `${holder.span === undefined ? "a fiber outside any span" : `span "${holder.span}"`} (fiber ${holder.fiber}), ` +
  `held for ${Math.round(holder.heldMs)} ms`

/**
 * No connection became available within `acquireTimeout`. Carries the last connect error (if connecting was what
 * took so long), a snapshot of the pool's statistics at the moment of the timeout, and who held the pool's
 * connections: the lease held longest (`holder`) and how many leases were held (`holders`; several statements may
 * share one connection). Its advice fits what was waited for (`lane`): the writer lane, which has one connection,
 * or a pool sized by `readConnections` or `maxConnections`.
 */
export class AcquireTimeoutError extends Data.TaggedError("AcquireTimeoutError")<{
  readonly waitedMs: number
  readonly stats: PoolStats
  readonly lastError: ConnectError | undefined
  readonly holder: Holder | undefined
  readonly holders: number
  /** the SqlitePool lane it waited for; undefined for a ConnectionPool */
  readonly lane: "writer" | "reader" | undefined
}> {
  override get message(): string {
    const s = this.stats
    const last = this.lastError ? `; last connect error: ${this.lastError.message}` : ""
    const others = this.holders > 1 ? ` and ${this.holders - 1} more lease(s)` : ""
    const held = this.holder === undefined ? "" : `; held longest by ${describeHolder(this.holder)}${others}`
    return `no connection available after ${Math.round(this.waitedMs)} ms ` +
      `(open ${s.open}, in use ${s.inUse}, waiting ${s.waiting})${held}; ${advice[this.lane ?? "pool"]}${last}`
  }
}

/** What to do about a timeout, by what was waited for: each pool is sized by its own option, the writer by none. */
const advice = {
  writer: "the writer lane is one connection: shorten what holds it, set holdWarningThreshold to log where a long " +
    "hold was acquired, or raise acquireTimeout",
  reader: "raise acquireTimeout or readConnections, or hold Reader connections for less time",
  pool: "raise acquireTimeout or maxConnections, or hold connections for less time"
} as const

/**
 * The pool is closed (or closing): no more connections are handed out.
 */
export class PoolClosedError extends Data.TaggedError("PoolClosedError")<{
  readonly filename: string
}> {
  override get message(): string {
    return `the connection pool for ${this.filename} is closed; acquire connections only while its scope is open`
  }
}

/**
 * A health check reached a connection but the database did not answer as expected.
 */
export class HealthCheckError extends Data.TaggedError("HealthCheckError")<{
  readonly filename: string
  readonly reason: string
  readonly cause: unknown
}> {
  override get message(): string {
    return `health check of ${this.filename} failed: ${this.reason}`
  }
}

/**
 * What an acquire can fail with.
 */
export type AcquireError = ConnectError | AcquireTimeoutError | PoolClosedError
