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

export const isMemory = (filename: string): boolean => filename === ":memory:"

export const resolve = (filename: string): Effect.Effect<string, never, Scope.Scope> =>
  isMemory(filename)
    ? Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "sqlsim-memory-"))),
      (directory) => Effect.sync(() => fs.rmSync(directory, { recursive: true, force: true }))
    ).pipe(Effect.map((directory) => path.join(directory, "memory.db")))
    : Effect.succeed(filename)
