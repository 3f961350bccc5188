/**
 * What a SQLite result code means for the pool: retry it, throw the connection away, or hand it to the caller.
 * Pure functions, after sqlite.org's result-code table.
 *
 * @since 0.1.0
 */
import * as internal from "./internal/sqliteCode.js"

/**
 * - `transient`: retry with backoff (BUSY, LOCKED, PROTOCOL, CANTOPEN while opening)
 * - `fatal`: the connection is unusable, evict and reopen (CORRUPT, NOTADB, IOERR family, READONLY_DBMOVED)
 * - `caller`: the caller's problem, never retried (SQL errors, constraints, READONLY, FULL, ...)
 *
 * @since 0.1.0
 * @category models
 */
export type Classification = internal.Classification

/**
 * The primary code name of an extended one: "SQLITE_IOERR_SHORT_READ" -> "SQLITE_IOERR".
 *
 * @since 0.1.0
 * @category utils
 */
export const primary: typeof internal.primary = internal.primary

/**
 * Classifies a SQLite result code name such as "SQLITE_BUSY_SNAPSHOT".
 *
 * @since 0.1.0
 * @category utils
 */
export const classify: typeof internal.classify = internal.classify

/**
 * The SQLite code carried by an error or one of its causes (better-sqlite3's `SqliteError.code`, possibly wrapped
 * in an `SqlError` or a defect), or undefined.
 *
 * @since 0.1.0
 * @category utils
 */
export const codeOf: typeof internal.codeOf = internal.codeOf

/**
 * True when an error (or its cause) carries a SQLite code that makes the connection unusable.
 *
 * @since 0.1.0
 * @category utils
 */
export const isFatal: typeof internal.isFatal = internal.isFatal

/**
 * True when an error (or its cause) is SQLITE_BUSY or SQLITE_LOCKED: worth retrying after a delay.
 *
 * @since 0.1.0
 * @category utils
 */
export const isBusy: typeof internal.isBusy = internal.isBusy
