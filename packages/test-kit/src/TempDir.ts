/**
 * Scoped temporary directories and database paths: real files, removed with everything in them when the Scope
 * closes (Effect's `FileSystem.makeTempDirectoryScoped`, on Node's file system).
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as path from "node:path"

/** A fresh temporary directory, removed with everything in it when the Scope closes. */
export const tempDir: Effect.Effect<string, never, Scope.Scope> = Effect.flatMap(
  FileSystem.FileSystem,
  (fileSystem) => fileSystem.makeTempDirectoryScoped({ prefix: "sqlsim-test-" })
).pipe(Effect.orDie, Effect.provide(NodeFileSystem.layer))

/** A database path inside a fresh temporary directory (the file itself does not exist yet). */
export const tempDatabase: Effect.Effect<string, never, Scope.Scope> = Effect.map(
  tempDir,
  (directory) => path.join(directory, "test.db")
)

/** Removes a database file and its WAL companions, as an operator (or a cleanup job) would. */
export const removeDatabaseFiles = (filename: string): void => {
  for (const suffix of ["", "-wal", "-shm", "-journal"]) fs.rmSync(filename + suffix, { force: true })
}

/** Cryptographically random bytes: certainly not a SQLite header. */
export const randomBytes = (size: number): Buffer => {
  const bytes = Buffer.alloc(size)
  for (let offset = 0; offset < size; offset += 65536) {
    globalThis.crypto.getRandomValues(bytes.subarray(offset, Math.min(size, offset + 65536)))
  }
  return bytes
}
