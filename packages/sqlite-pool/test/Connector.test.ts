import { describe, expect, it } from "@effect/vitest"
import { Connector, PoolError } from "@sqlsim/sqlite-pool"
import Database from "better-sqlite3"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as path from "node:path"
import { randomBytes, tempDir } from "./utils.js"

const options = (filename: string, overrides: Partial<Connector.ConnectOptions> = {}): Connector.ConnectOptions => ({
  filename,
  readOnly: false,
  busyTimeout: Duration.zero,
  pageCacheKiB: 2000,
  ...overrides
})

/** Opens one connection with the live connector in the current Scope, with a client to run statements on it. */
const open = (connectOptions: Connector.ConnectOptions) =>
  Effect.gen(function*() {
    const connection = yield* Effect.flatMap(Connector.makeLive, (live) => live.connect(connectOptions))
    return { ...connection, sql: yield* Connector.client(connection, connectOptions.filename) }
  })

/** The ConnectError of an open that must fail. */
const openFailure = (filename: string) => Effect.flip(Effect.scoped(open(options(filename))))

const pragma = (connection: Effect.Effect.Success<ReturnType<typeof open>>, name: string) =>
  Effect.map(connection.sql.unsafe<Record<string, unknown>>(`PRAGMA ${name}`), (rows) => Object.values(rows[0]!)[0])

describe("Connector (live)", () => {
  it.scoped("opens a file in WAL mode with the pragmas of the configuration", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "app.db")
      const connection = yield* open(options(filename, { busyTimeout: Duration.millis(250), pageCacheKiB: 512 }))
      expect(yield* pragma(connection, "journal_mode")).toBe("wal")
      expect(yield* pragma(connection, "busy_timeout")).toBe(250)
      expect(yield* pragma(connection, "foreign_keys")).toBe(1)
      expect(yield* pragma(connection, "cache_size")).toBe(-512)
      expect(yield* pragma(connection, "query_only")).toBe(0)
      expect(fs.existsSync(filename)).toBe(true)
      yield* connection.validate
    }))

  it.scoped("a read-only connection refuses writes with SQLITE_READONLY and still reads", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "app.db")
      const writer = yield* open(options(filename))
      yield* writer.sql`CREATE TABLE note (text TEXT)`
      yield* writer.sql`INSERT INTO note VALUES ('kept')`
      const reader = yield* open(options(filename, { readOnly: true }))
      expect(yield* pragma(reader, "query_only")).toBe(1)
      const refused = yield* Effect.flip(reader.sql`INSERT INTO note VALUES ('refused')`)
      expect((refused.cause as { code?: string }).code).toBe("SQLITE_READONLY")
      expect(yield* reader.sql`SELECT text FROM note`).toEqual([{ text: "kept" }])
    }))

  it.scoped("closing the connection's Scope closes the handle, and validate then fails", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "app.db")
      const scope = yield* Scope.make()
      const connection = yield* Scope.extend(open(options(filename)), scope)
      yield* connection.validate
      yield* Scope.close(scope, Exit.void)
      const problem = yield* Effect.flip(connection.validate)
      expect(problem.reason).toBe("the connection was closed")
      expect(connection.check()).toBe("the connection was closed")
      expect(Exit.isFailure(yield* Effect.exit(connection.sql`SELECT 1`))).toBe(true)
    }))

  it.scoped("checkFile reports a database file deleted since the connection opened; check, the O(1) one, does not", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "app.db")
      const connection = yield* open(options(filename))
      expect(connection.checkFile?.()).toBeUndefined()
      fs.rmSync(filename)
      expect(connection.checkFile?.()).toMatch(/deleted or replaced/)
      expect(connection.check()).toBeUndefined()
    }))

  it.scoped("checkFile reports a database file replaced by another one", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const filename = path.join(directory, "app.db")
      const connection = yield* open(options(filename))
      const replacement = path.join(directory, "replacement.db")
      new Database(replacement).close()
      fs.renameSync(replacement, filename)
      expect(connection.checkFile?.()).toMatch(/deleted or replaced/)
    }))
})

describe("Connector: open failures, produced for real and classified", () => {
  it.scoped("a path that is a directory is permanent SQLITE_CANTOPEN", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const error = yield* openFailure(directory)
      expect(error).toBeInstanceOf(PoolError.ConnectError)
      expect(error).toMatchObject({ code: "SQLITE_CANTOPEN", transient: false, attempts: 1, filename: directory })
      expect(error.reason).toMatch(/directory/)
      expect(error.message).toContain(directory)
      expect(error.message).toContain("not retried")
    }))

  it.scoped("a missing parent directory is transient SQLITE_CANTOPEN (it may appear a moment later)", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "later", "app.db")
      const error = yield* openFailure(filename)
      expect(error).toMatchObject({ code: "SQLITE_CANTOPEN", transient: true, attempts: 1 })
      expect(error.reason).toBe("directory does not exist")
      expect(error.message).not.toContain("not retried")
    }))

  it.scoped("a file of random bytes is permanent SQLITE_NOTADB", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "random.db")
      fs.writeFileSync(filename, randomBytes(16 * 1024))
      const error = yield* openFailure(filename)
      expect(error).toMatchObject({ code: "SQLITE_NOTADB", transient: false, attempts: 1 })
      expect(error.reason).toMatch(/not a SQLite database/)
    }))

  it.scoped("a database whose pages are garbage behind a valid header is permanent SQLITE_CORRUPT", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "corrupt.db")
      const database = new Database(filename)
      database.exec("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('x')")
      database.close()
      const size = fs.statSync(filename).size
      const descriptor = fs.openSync(filename, "r+")
      // Keep the 100-byte header, overwrite the schema page and everything after it.
      fs.writeSync(descriptor, randomBytes(size - 100), 0, size - 100, 100)
      fs.closeSync(descriptor)
      const error = yield* openFailure(filename)
      expect(error).toMatchObject({ code: "SQLITE_CORRUPT", transient: false, attempts: 1 })
      expect(error.reason).toMatch(/corrupt/)
    }))

  it.scoped("a database locked by another connection is transient SQLITE_BUSY", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "locked.db")
      const holder = new Database(filename)
      yield* Effect.addFinalizer(() => Effect.sync(() => holder.close()))
      // A rollback-journal database with an exclusive lock: nobody else can even read its header.
      holder.exec("PRAGMA journal_mode = DELETE; PRAGMA locking_mode = EXCLUSIVE; CREATE TABLE t (x); BEGIN EXCLUSIVE")
      const error = yield* openFailure(filename)
      expect(error.code).toMatch(/^SQLITE_BUSY/)
      expect(error.transient).toBe(true)
      expect(error.reason).toBe("database is locked")
      holder.exec("COMMIT")
    }))
})

describe("Connector.classifyOpenFailure", () => {
  it("maps better-sqlite3's TypeError for a missing directory to transient CANTOPEN", () => {
    const error = Connector.classifyOpenFailure(
      "/nowhere/app.db",
      new TypeError("Cannot open database because the directory does not exist")
    )
    expect(error).toMatchObject({ code: "SQLITE_CANTOPEN", transient: true, attempts: 1, filename: "/nowhere/app.db" })
  })

  it("uses the code of a driver error and its classification", () => {
    const busy = Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" })
    expect(Connector.classifyOpenFailure("a.db", busy)).toMatchObject({ code: "SQLITE_BUSY", transient: true })
    const perm = Object.assign(new Error("access permission denied"), { code: "SQLITE_PERM" })
    expect(Connector.classifyOpenFailure("a.db", perm)).toMatchObject({ code: "SQLITE_PERM", transient: false })
  })

  it("is decided by the code and the file system, not by the message's text", () => {
    // The directory (the working directory) exists: a message that says otherwise does not make the error transient.
    const misleading = Object.assign(new Error("directory does not exist"), { code: "SQLITE_PERM" })
    expect(Connector.classifyOpenFailure("a.db", misleading)).toMatchObject({ code: "SQLITE_PERM", transient: false })
  })

  it("anything without a SQLite code is UNKNOWN and not retried", () => {
    const error = Connector.classifyOpenFailure("a.db", "something odd")
    expect(error).toMatchObject({ code: "UNKNOWN", transient: false })
    expect(error.cause).toBe("something odd")
  })
})
