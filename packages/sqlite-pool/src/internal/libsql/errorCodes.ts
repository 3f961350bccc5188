/**
 * What a libSQL server's errors mean for the pool: sqld's error codes as SQLite codes, the error a failed statement
 * carries, and whether a failed connect is worth retrying. Pure functions, no Effect: errors are recognised by their
 * class and their codes, never by their message text.
 *
 * @internal
 */
import type { AttemptFailure } from "../errors.js"
import * as Hrana from "../hranaSocket.js"

/**
 * A statement failure from the server, with the SQLite code where one applies (`SqliteCode.codeOf` finds it):
 * `code` is the SQLite name ("SQLITE_CONSTRAINT_UNIQUE"), `libsqlCode` what sqld said ("SQLITE_CONSTRAINT",
 * "SQL_PARSE_ERROR", "TRANSACTION_TIMEOUT") or the connector's own "REPLICA_BEHIND" and "STATEMENT_TIMEOUT" (the
 * server sent no answer within `statementTimeout`), undefined when the transport failed rather than the statement.
 */
export class LibsqlStatementError extends Error {
  readonly _tag = "LibsqlStatementError"
  readonly code: string | undefined
  readonly libsqlCode: string | undefined
  constructor(message: string, code: string | undefined, libsqlCode: string | undefined, cause: unknown) {
    super(message, { cause })
    this.name = "LibsqlStatementError"
    this.code = code
    this.libsqlCode = libsqlCode
  }
}

/**
 * sqld reports a constraint failure as plain SQLITE_CONSTRAINT (Hrana has no field for SQLite's extended code): the
 * kind is only in SQLite's own message, so it is read from there; an unknown wording keeps the primary code.
 */
const constraintKinds: ReadonlyArray<readonly [RegExp, string]> = [
  // SQLite reports a PRIMARY KEY violation with this message too (its extended code would be _PRIMARYKEY).
  [/UNIQUE constraint failed/, "SQLITE_CONSTRAINT_UNIQUE"],
  [/NOT NULL constraint failed/, "SQLITE_CONSTRAINT_NOTNULL"],
  [/FOREIGN KEY constraint failed/, "SQLITE_CONSTRAINT_FOREIGNKEY"],
  [/CHECK constraint failed/, "SQLITE_CONSTRAINT_CHECK"],
  [/datatype mismatch|cannot store \S+ value in \S+ column/, "SQLITE_CONSTRAINT_DATATYPE"]
]

/** sqld's own codes (beside SQLite's "SQLITE_..." ones) and the SQLite code each one amounts to. */
const libsqlCodes: ReadonlyMap<string, string> = new Map([
  // rusqlite has no name for SQLITE_ERROR itself: sqld sends it as "SQLITE_UNKNOWN"
  ["SQLITE_UNKNOWN", "SQLITE_ERROR"],
  ["SQL_PARSE_ERROR", "SQLITE_ERROR"],
  ["SQL_INPUT_ERROR", "SQLITE_ERROR"],
  ["SQL_NO_STATEMENT", "SQLITE_ERROR"],
  ["SQL_MANY_STATEMENTS", "SQLITE_ERROR"],
  ["ARGS_BOTH_POSITIONAL_AND_NAMED", "SQLITE_ERROR"],
  ["PROXY_ERROR", "SQLITE_ERROR"],
  ["ARGS_INVALID", "SQLITE_RANGE"],
  // another connection held the write lock for too long: sqld rolled this connection's transaction back
  ["TRANSACTION_TIMEOUT", "SQLITE_ABORT_ROLLBACK"],
  ["TRANSACTION_BUSY", "SQLITE_BUSY"],
  ["RESPONSE_TOO_LARGE", "SQLITE_TOOBIG"],
  ["BLOCKED", "SQLITE_PERM"]
])

/**
 * The SQLite code for a code sqld sent with a statement error (undefined for none, or for one that is neither
 * SQLite's nor a known sqld code).
 */
export const sqliteCodeOf = (libsqlCode: string | undefined, message: string): string | undefined => {
  if (libsqlCode === undefined) return undefined
  if (libsqlCode === "SQLITE_CONSTRAINT") {
    return constraintKinds.find(([pattern]) => pattern.test(message))?.[1] ?? libsqlCode
  }
  return libsqlCodes.get(libsqlCode) ?? (/^SQLITE_[A-Z_]+$/.test(libsqlCode) ? libsqlCode : undefined)
}

/** The error a statement failure carries as its cause: a server's refusal with its code, anything else without. */
export const statementFailure = (cause: unknown): LibsqlStatementError => {
  if (cause instanceof LibsqlStatementError) return cause
  if (cause instanceof Hrana.HranaServerError) {
    return new LibsqlStatementError(cause.message, sqliteCodeOf(cause.code, cause.message), cause.code, cause)
  }
  if (cause instanceof Hrana.HranaTransportError && cause.code === "ETIMEDOUT") {
    const message = `${cause.message}; whether the statement ran is unknown, and the connection is replaced`
    return new LibsqlStatementError(message, undefined, "STATEMENT_TIMEOUT", cause)
  }
  return new LibsqlStatementError(cause instanceof Error ? cause.message : String(cause), undefined, undefined, cause)
}

/** Socket error codes of a network that failed (or a server that went away): a later attempt may succeed. */
const networkCodes: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
  "EAI_AGAIN",
  "ENOTFOUND"
])

/** The message of an error and of its causes, joined (for a reason a person reads, never for a decision). */
export const messageChain = (cause: unknown): string => {
  const parts: Array<string> = []
  let current: unknown = cause
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    parts.push(current instanceof Error ? current.message : String(current))
    current = current instanceof Error ? current.cause : undefined
  }
  return parts.join(": ")
}

/**
 * Classifies a failed connect attempt (the caller adds the URL and builds the `ConnectError` with
 * `connectAttemptFailed`). `httpStatus` is what an HTTP request with the same token got, asked only when the socket
 * closed after the WebSocket upgrade (see `HttpApi.authStatus`). Network failures (refused, reset, unreachable,
 * timed out, the socket closed under the handshake) are transient; a rejected token and anything else the server
 * answered are permanent: retrying them would be a retry storm against a server that will say the same again.
 */
export const classifyConnectFailure = (
  cause: unknown,
  httpStatus: number | undefined
): Omit<AttemptFailure, "filename"> => {
  const failure = (code: string, transient: boolean, reason: string) => ({ code, transient, reason, cause })
  const rejected = (status: number | undefined) => status === 401 || status === 403
  if (rejected(httpStatus)) {
    return failure("SQLITE_AUTH", false, `the server rejected the auth token (HTTP ${httpStatus})`)
  }
  if (cause instanceof Hrana.HranaServerError) {
    if (cause.code?.startsWith("AUTH_")) {
      return failure("SQLITE_AUTH", false, `authentication failed: ${cause.message} (${cause.code})`)
    }
    const code = sqliteCodeOf(cause.code, cause.message) ?? "UNKNOWN"
    return failure(code, code === "SQLITE_BUSY", cause.message)
  }
  if (!(cause instanceof Hrana.HranaTransportError)) return failure("UNKNOWN", false, messageChain(cause))
  const { code, status } = cause
  if (rejected(status)) return failure("SQLITE_AUTH", false, `the server rejected the auth token (HTTP ${status})`)
  if (status !== undefined) {
    return failure("SQLITE_CANTOPEN", status >= 500, `the server answered HTTP ${status}: is it a libSQL server?`)
  }
  const reason = messageChain(cause)
  return code !== undefined && networkCodes.has(code)
    ? failure("SQLITE_CANTOPEN", true, reason)
    : failure("UNKNOWN", false, reason)
}
