/**
 * Why opening a database failed, as the `ConnectError` of one attempt: the classification of the driver's errors
 * (`Connector.classifyOpenFailure` is this one), and of the set-up's own (`sqliteSetup.mjs`), recognised by tag so
 * that an error revived from a worker thread is classified as the main thread's.
 *
 * @internal
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as DatabaseFile from "./databaseFile.js"
import { connectAttemptFailed, type ConnectError } from "./errors.js"
import * as SqliteCode from "./sqliteCode.js"

/** See `Connector.classifyOpenFailure`. */
export const classifyOpenFailure = (filename: string, cause: unknown): ConnectError => {
  const error = (code: string, transient: boolean, reason: string) =>
    connectAttemptFailed({ filename, code, transient, reason, cause })
  const message = driverMessage(cause)
  const systemCode = systemCodeOf(filename)
  // A name too long stays too long (permanent); descriptors may be freed (transient).
  if (systemCode === "ENAMETOOLONG") {
    return error(
      "SQLITE_CANTOPEN",
      false,
      "the file name is longer than the file system allows (ENAMETOOLONG); choose a shorter name or path"
    )
  }
  if (systemCode === "EMFILE" || systemCode === "ENFILE") {
    return error(
      "SQLITE_CANTOPEN",
      true,
      `too many open files (${systemCode}): the ${
        systemCode === "EMFILE" ? "process" : "system"
      } has no file descriptor left; raise the limit (ulimit -n) or open fewer connections (maxConnections)`
    )
  }
  // better-sqlite3 refuses a missing directory itself, with a TypeError and no code: asked of the file system, not
  // read from the message. The directory may yet be created (transient).
  if (!isDirectory(path.dirname(filename))) return error("SQLITE_CANTOPEN", true, "directory does not exist")
  const code = SqliteCode.codeOf(cause) ?? "UNKNOWN"
  if (SqliteCode.primary(code) === "SQLITE_CANTOPEN") {
    if (isDirectory(filename)) return error(code, false, "the path is a directory, not a database file")
    return error(code, true, message)
  }
  if (code === "SQLITE_NOTADB") return error(code, false, "the file is not a SQLite database")
  if (SqliteCode.primary(code) === "SQLITE_CORRUPT") return error(code, false, "the database file is corrupt")
  if (code === "UNKNOWN") return error(code, false, message)
  return error(code, SqliteCode.classify(code) === "transient", message)
}

/**
 * What `sqliteSetup.setUp` (or the open before it) threw, on either thread: an extension that does not load is
 * permanent (it will not load on a retry either), a read-only fallback transient, anything else the driver's.
 */
export const classifySetUpFailure = (filename: string, cause: unknown): ConnectError => {
  switch (tagOf(cause)) {
    case "ExtensionLoadError":
      return connectAttemptFailed({
        filename,
        code: SqliteCode.codeOf(cause) ?? "UNKNOWN",
        transient: false,
        reason: (cause as Error).message,
        cause
      })
    case "ReadOnlyFallbackError":
      return DatabaseFile.readOnlyFallback(filename, (cause as Error).message)
    default:
      return classifyOpenFailure(filename, cause)
  }
}

const tagOf = (cause: unknown): unknown =>
  typeof cause === "object" && cause !== null ? (cause as { _tag?: unknown })._tag : undefined

/**
 * SQLite and better-sqlite3 report a name too long or a full descriptor table as "unable to open" or "directory does
 * not exist"; the operating system says what it is.
 */
const systemCodeOf = (filename: string): unknown => {
  try {
    fs.closeSync(fs.openSync(path.dirname(filename), "r"))
    fs.statSync(filename)
    return undefined
  } catch (systemError) {
    return (systemError as { code?: unknown }).code
  }
}

/** The message of the innermost error: the driver's ("database is locked"), not a wrapper's ("Failed to prepare"). */
export const driverMessage = (cause: unknown): string => {
  let message = cause instanceof Error ? cause.message : String(cause)
  let current: unknown = cause
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    if (current.message.trim() !== "") message = current.message
    current = current.cause
  }
  return message
}

const isDirectory = (candidate: string): boolean => {
  try {
    return fs.statSync(candidate).isDirectory()
  } catch {
    return false
  }
}
