/**
 * The temporary directory (TMPDIR) a command needs for an in-memory or a temporary database. A missing or read-only
 * one is the user's environment, not a bug: it is reported in one line that names the directory and says how to
 * choose another, before any work is done.
 *
 * @internal
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/**
 * The temporary directory cannot be used.
 *
 * @since 0.1.0
 * @category errors
 */
export class TemporaryDirectoryError extends Data.TaggedError("TemporaryDirectoryError")<{
  readonly directory: string
  readonly reason: string
  readonly needed: string
}> {
  override get message(): string {
    return `cannot use the temporary directory ${this.directory} (for ${this.needed}): ${this.reason}; ` +
      `set TMPDIR to a directory you can write to (TMPDIR=/path/to/dir sqlsim ...)`
  }
}

const reasonOf = (cause: unknown): string => {
  const code = (cause as { code?: unknown } | undefined)?.code
  return code === "ENOENT"
    ? "it does not exist"
    : code === "ENOTDIR"
    ? "it is not a directory"
    : code === "EACCES" || code === "EPERM" || code === "EROFS"
    ? "it is not writable"
    : code === "ENOSPC"
    ? "the disk is full"
    : cause instanceof Error
    ? cause.message
    : String(cause)
}

/** Checks that a directory can be created (and removed again) in the temporary directory. */
export const check = (needed: string): Effect.Effect<void, TemporaryDirectoryError> =>
  Effect.try({
    try: () => fs.rmdirSync(fs.mkdtempSync(path.join(os.tmpdir(), "sqlsim-check-"))),
    catch: (cause) => new TemporaryDirectoryError({ directory: os.tmpdir(), reason: reasonOf(cause), needed })
  })
