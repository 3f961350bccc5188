/**
 * The pooled, retrying, observable SQLite layer for Effect: one namespace per module.
 *
 * @since 0.1.0
 */

/**
 * A SQLite connection pool whose connections live in Effect `Scope`s.
 *
 * @since 0.1.0
 */
export * as ConnectionPool from "./ConnectionPool.js"

/**
 * The seam through which the pool opens connections, and the live better-sqlite3 connector.
 *
 * @since 0.1.0
 */
export * as Connector from "./Connector.js"

/**
 * `SqlitePool` on a libSQL server (`sqld`) instead of a local file.
 *
 * @since 0.1.0
 */
export * as LibsqlConnector from "./LibsqlConnector.js"

/**
 * The pools' configuration: Schemas from what a user writes to the resolved value.
 *
 * @since 0.1.0
 */
export * as PoolConfig from "./PoolConfig.js"

/**
 * Typed errors of the pool, each with a message that says what to do.
 *
 * @since 0.1.0
 */
export * as PoolError from "./PoolError.js"

/**
 * The pool's statistics: counters since the pool was made and gauges of its current state.
 *
 * @since 0.1.0
 */
export * as PoolStats from "./PoolStats.js"

/**
 * The retry policy of connects and busy writes: capped exponential backoff.
 *
 * @since 0.1.0
 */
export * as RetryPolicy from "./RetryPolicy.js"

/**
 * What a SQLite result code means for the pool: retry, replace the connection, or the caller's.
 *
 * @since 0.1.0
 */
export * as SqliteCode from "./SqliteCode.js"

/**
 * The Layer Effect apps provide: `SqlClient` on a writer lane and a `Reader` pool.
 *
 * @since 0.1.0
 */
export * as SqlitePool from "./SqlitePool.js"
