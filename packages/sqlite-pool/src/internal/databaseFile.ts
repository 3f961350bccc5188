/**
 * What the connectors (this thread's and the worker threads') ask of a database file: is it a file at all, which file
 * is it (to notice it deleted or replaced under an open connection), may it be written.
 *
 * @internal
 */
import * as fs from "node:fs"
import { connectAttemptFailed, type ConnectError } from "./errors.js"

export const isFile = (filename: string): boolean => filename !== ":memory:" && filename !== ""

/** The file's device and inode, or undefined when it does not exist. */
export const identity = (filename: string): string | undefined => {
  try {
    const stat = fs.statSync(filename)
    return `${stat.dev}:${stat.ino}`
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

/**
 * SQLite falls back to a read-only open, silently, when the file cannot be opened for writing (permissions, an
 * immutable file, a read-only mount): every write would then fail until the connection is replaced. That is a
 * transient connect failure: a retry opens it afresh, and succeeds once the file is writable again.
 */
export const readOnlyFallback = (filename: string, reason: string): ConnectError =>
  connectAttemptFailed({ filename, code: "SQLITE_READONLY", transient: true, reason })
