/**
 * What the connectors (this thread's and the worker threads') ask of a database file: is it a file at all, which file
 * is it (to notice it deleted or replaced under an open connection), may it be written.
 *
 * @internal
 */
import * as fs from "node:fs"
import type { FileIdentity } from "../Connector.js"
import { connectAttemptFailed, type ConnectError } from "./errors.js"

export const isFile = (filename: string): boolean => filename !== ":memory:" && filename !== ""

/**
 * The file's device, inode and birth time, or undefined when it does not exist. The birth time tells apart a file
 * created after the first was deleted and its inode number reused (where the file system keeps one; else it is 0).
 */
export const identity = (filename: string): string | undefined => {
  try {
    const stat = fs.statSync(filename)
    return `${stat.dev}:${stat.ino}:${stat.birthtimeMs}`
  } catch {
    return undefined
  }
}

export const isWritable = (filename: string): boolean => {
  try {
    fs.accessSync(filename, fs.constants.W_OK)
    return true
  } catch {
    return false
  }
}

/** Why a connection opened on `filename` when it had `opened` as its identity can no longer be used, or undefined. */
export const replacedSince = (filename: string, opened: string | undefined): string | undefined =>
  opened !== undefined && identity(filename) !== opened
    ? "the database file was deleted or replaced since the connection opened"
    : undefined

/** The files at `filename` now, or undefined for `:memory:` or a missing database file. */
export const files = (filename: string): FileIdentity | undefined => {
  if (!isFile(filename)) return undefined
  const database = identity(filename)
  if (database === undefined) return undefined
  return { database, wal: identity(`${filename}-wal`), shm: identity(`${filename}-shm`) }
}

/**
 * Before a connect, given the files a connection opened before (`previous`): when the database file at the name is
 * another one now, or none, while the old one's `-wal` or `-shm` is still beside it, why the name must not be opened.
 * SQLite would read that `-wal` into the new file (and a checkpoint would write it there); it stays while a
 * connection to the old file is open, and after it (SQLite does not delete it for a file deleted or renamed over).
 */
export const staleSidecars = (filename: string, previous: FileIdentity | undefined): ConnectError | undefined => {
  if (previous === undefined || !isFile(filename)) return undefined
  const database = identity(filename)
  if (database === previous.database) return undefined
  const stale = (["wal", "shm"] as const)
    .filter((suffix) => previous[suffix] !== undefined && identity(`${filename}-${suffix}`) === previous[suffix])
    .map((suffix) => `${filename}-${suffix}`)
  if (stale.length === 0) return undefined
  const them = stale.length === 1 ? "it" : "them"
  return connectAttemptFailed({
    filename,
    code: "SQLITE_CANTOPEN",
    transient: false,
    reason: `the database file was ${database === undefined ? "deleted" : "replaced by another"} after the pool `
      + `had opened it, and the old file's ${stale.join(" and ")} ${stale.length === 1 ? "is" : "are"} still beside `
      + `it: SQLite would read ${them} into the ${database === undefined ? "new, empty" : "new"} database. Remove `
      + `${them} (connections to the old file keep theirs open), and the next connect opens the file at the path`
  })
}

/**
 * SQLite falls back to a read-only open, silently, when the file cannot be opened for writing (permissions, an
 * immutable file, a read-only mount): every write would then fail until the connection is replaced. That is a
 * transient connect failure: a retry opens it afresh, and succeeds once the file is writable again.
 */
export const readOnlyFallback = (filename: string, reason: string): ConnectError =>
  connectAttemptFailed({ filename, code: "SQLITE_READONLY", transient: true, reason })
