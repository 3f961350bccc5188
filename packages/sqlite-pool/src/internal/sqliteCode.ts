/**
 * What a SQLite result code means for the pool: retry it, throw the connection away, or hand it to the caller.
 * Pure functions, after sqlite.org's result-code table.
 *
 * The implementation behind the public module of the same name, which documents each export.
 *
 * @internal
 */

/**
 * - `transient`: retry with backoff (BUSY, LOCKED, PROTOCOL, CANTOPEN while opening)
 * - `fatal`: the connection is unusable, evict and reopen (CORRUPT, NOTADB, IOERR family, READONLY_DBMOVED)
 * - `caller`: the caller's problem, never retried (SQL errors, constraints, READONLY, FULL, ...)
 */
export type Classification = "transient" | "fatal" | "caller"

const fatalPrimary = new Set(["SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_IOERR"])
const transientPrimary = new Set(["SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_PROTOCOL", "SQLITE_CANTOPEN"])

/**
 * The primary code name of an extended one: "SQLITE_IOERR_SHORT_READ" -> "SQLITE_IOERR".
 */
export const primary = (code: string): string => {
  const parts = code.split("_")
  return parts.length > 2 ? `${parts[0]}_${parts[1]}` : code
}

/**
 * Classifies a SQLite result code name such as "SQLITE_BUSY_SNAPSHOT".
 */
export const classify = (code: string): Classification => {
  if (code === "SQLITE_READONLY_DBMOVED") return "fatal"
  const base = primary(code)
  if (fatalPrimary.has(base)) return "fatal"
  if (transientPrimary.has(base)) return "transient"
  return "caller"
}

/**
 * The SQLite code carried by an error or one of its causes (better-sqlite3's `SqliteError.code`, possibly wrapped
 * in an `SqlError` or a defect), or undefined.
 */
export const codeOf = (error: unknown): string | undefined => {
  let current: unknown = error
  for (let depth = 0; depth < 5 && typeof current === "object" && current !== null; depth++) {
    const code = (current as { code?: unknown }).code
    if (typeof code === "string" && code.startsWith("SQLITE_")) return code
    current = (current as { cause?: unknown }).cause
  }
  return undefined
}

/**
 * True when an error (or its cause) carries a SQLite code that makes the connection unusable.
 */
export const isFatal = (error: unknown): boolean => {
  const code = codeOf(error)
  return code !== undefined && classify(code) === "fatal"
}

/**
 * True when an error (or its cause) is SQLITE_BUSY or SQLITE_LOCKED: worth retrying after a delay.
 */
export const isBusy = (error: unknown): boolean => {
  const code = codeOf(error)
  return code !== undefined && (primary(code) === "SQLITE_BUSY" || primary(code) === "SQLITE_LOCKED")
}
