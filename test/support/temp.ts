/**
 * Scoped temporary directories and database paths: real files, removed with everything in them when the Scope closes.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** A fresh temporary directory, removed with everything in it when the Scope closes. */
export const tempDir: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "sqlsim-reliability-"))),
  (directory) => Effect.sync(() => fs.rmSync(directory, { recursive: true, force: true }))
)

/** A database path inside a fresh temporary directory (the file itself does not exist yet). */
export const tempDatabase: Effect.Effect<string, never, Scope.Scope> = Effect.map(
  tempDir,
  (directory) => path.join(directory, "test.db")
)

/** Removes a database file and its WAL companions, as an operator (or a cleanup job) would. */
export const removeDatabaseFiles = (filename: string): void => {
  for (const suffix of ["", "-wal", "-shm", "-journal"]) fs.rmSync(filename + suffix, { force: true })
}
