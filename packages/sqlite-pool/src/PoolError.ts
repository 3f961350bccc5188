/**
 * Typed errors of the pool. Every error is a value with a `_tag` and a message that says what to do.
 *
 * @since 0.1.0
 */
import * as internal from "./internal/errors.js"

/**
 * Invalid configuration: `field` names the offending field (or the unknown key), `message` the rule it broke.
 *
 * @since 0.1.0
 * @category errors
 */
export const PoolConfigError: typeof internal.PoolConfigError = internal.PoolConfigError
/** @since 0.1.0 */
export type PoolConfigError = internal.PoolConfigError

/**
 * Opening a connection failed. `attempts` counts every try (the first one plus retries); `transient` says whether
 * a retry could help; `code` is the SQLite result code name such as "SQLITE_CANTOPEN", or "UNKNOWN".
 *
 * @since 0.1.0
 * @category errors
 */
export const ConnectError: typeof internal.ConnectError = internal.ConnectError
/** @since 0.1.0 */
export type ConnectError = internal.ConnectError

/**
 * What one failed connect attempt says: the retry policy adds the attempts and the time spent.
 *
 * @since 0.2.0
 * @category errors
 */
export type AttemptFailure = internal.AttemptFailure

/**
 * The `ConnectError` of one failed attempt (`attempts: 1`, no time spent yet): what connectors and set-up steps fail
 * with; `RetryPolicy.retryConnect` reports the whole run of attempts.
 *
 * @example
 * import { PoolError } from "@sqlsim/sqlite-pool"
 *
 * const error = PoolError.connectAttemptFailed({
 *   filename: "app.db",
 *   code: "SQLITE_CANTOPEN",
 *   transient: true,
 *   reason: "no such directory"
 * })
 * assert.strictEqual(error.attempts, 1)
 *
 * @since 0.2.0
 * @category errors
 */
export const connectAttemptFailed: typeof internal.connectAttemptFailed = internal.connectAttemptFailed

/**
 * Who holds a connection: the innermost span the application opened around the acquire (`@effect/sql`'s own `sql.*`
 * spans are passed over), the fiber's id, since when and for how long, and with `holdWarningThreshold` set the stack
 * where a transaction or a `ConnectionPool.use` acquired it.
 *
 * @since 0.2.0
 * @category models
 */
export type Holder = internal.Holder

/**
 * No connection became available within `acquireTimeout`. Carries the last connect error (if connecting was what
 * took so long), a snapshot of the pool's statistics at the moment of the timeout, and who held the pool's
 * connections: `holder`, the lease held longest (its span, fiber, since when), and `holders`, how many leases were
 * held (statements may share a connection), and `lane`, the SqlitePool lane waited for (undefined for a
 * `ConnectionPool`). Its message names the holder and says what to do for that lane: the writer lane has one
 * connection, so its advice is to shorten the hold, find it with `holdWarningThreshold`, or raise `acquireTimeout`.
 *
 * @since 0.1.0
 * @category errors
 */
export const AcquireTimeoutError: typeof internal.AcquireTimeoutError = internal.AcquireTimeoutError
/** @since 0.1.0 */
export type AcquireTimeoutError = internal.AcquireTimeoutError

/**
 * The pool is closed (or closing): no more connections are handed out.
 *
 * @since 0.1.0
 * @category errors
 */
export const PoolClosedError: typeof internal.PoolClosedError = internal.PoolClosedError
/** @since 0.1.0 */
export type PoolClosedError = internal.PoolClosedError

/**
 * A health check reached a connection but the database did not answer as expected.
 *
 * @since 0.1.0
 * @category errors
 */
export const HealthCheckError: typeof internal.HealthCheckError = internal.HealthCheckError
/** @since 0.1.0 */
export type HealthCheckError = internal.HealthCheckError

/**
 * What an acquire can fail with.
 *
 * @since 0.1.0
 * @category errors
 */
export type AcquireError = internal.AcquireError
