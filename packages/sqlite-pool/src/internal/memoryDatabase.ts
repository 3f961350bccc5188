/**
 * ":memory:" as one private database file in a fresh temporary directory, so that every connection of a pool (and
 * the writer and readers of a SqlitePool) sees the same database with WAL semantics. SQLite's own ":memory:" is
 * private to each connection, and a shared cache needs URI filenames that better-sqlite3 only honours with
 * SQLITE_USE_URI set before it loads. The directory is removed when the Scope closes.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { connectAttemptFailed, type ConnectError } from "./errors.js"

export const isMemory = (filename: string): boolean => filename === ":memory:"

export const resolve = (filename: string): Effect.Effect<string, ConnectError, Scope.Scope> =>
  isMemory(filename)
    ? Effect.acquireRelease(
      Effect.try({
        try: () => fs.mkdtempSync(path.join(os.tmpdir(), "sqlsim-memory-")),
        // The user's environment, not a bug: say which directory and how to choose another.
        catch: (cause) =>
          connectAttemptFailed({
            filename,
            code: "SQLITE_CANTOPEN",
            transient: false,
            reason: `cannot create the in-memory database's directory in ${os.tmpdir()} (${
              (cause as { code?: unknown }).code ?? String(cause)
            }); set TMPDIR to a directory you can write to`,
            cause
          })
      }),
      // A directory that cannot be removed (already gone, or its parent made read-only) is left behind, not a crash.
      (directory) => Effect.ignore(Effect.try(() => fs.rmSync(directory, { recursive: true, force: true })))
    ).pipe(Effect.map((directory) => path.join(directory, "memory.db")))
    : Effect.succeed(filename)
