/**
 * Dead connections: a connection whose handle was closed underneath the pool, or whose database file was deleted or
 * replaced, is never handed out again; the next acquire gets a working connection (to the file now at the path), and
 * the statistics count the dead one as invalidated and closed.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { ConnectionPool, Connector, SqlitePool } from "@sqlsim/sqlite-pool"
import * as FaultConnector from "@sqlsim/test-kit/FaultConnector"
import { removeDatabaseFiles, tempDir } from "@sqlsim/test-kit/TempDir"
import Database from "better-sqlite3"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as path from "node:path"
import { databaseDescriptors } from "./support/descriptors.js"
import { violations } from "./support/invariants.js"

const setup = (maxConnections = 1) =>
  Effect.gen(function*() {
    const directory = yield* tempDir
    const filename = path.join(directory, "app.db")
    const connector = yield* FaultConnector.make(directory)
    const pool = yield* ConnectionPool.make({ filename, maxConnections }).pipe(
      Effect.provideService(Connector.Connector, connector.service)
    )
    return { directory, filename, connector, pool }
  })

/** SqlitePool (2 read connections) on a fresh file, its connections from the fault connector. */
const sqlitePool = Effect.gen(function*() {
  const directory = yield* tempDir
  const filename = path.join(directory, "app.db")
  const connector = yield* FaultConnector.make(directory)
  const context = yield* Effect.provideService(
    Layer.build(SqlitePool.layer({ filename, readConnections: 2 })),
    Connector.Connector,
    connector.service
  )
  return {
    connector,
    filename,
    sql: Context.get(context, SqlClient.SqlClient),
    reader: Context.get(context, SqlitePool.Reader),
    pool: Context.get(context, SqlitePool.SqlitePool)
  }
})

/** The id of the connection a lease got, and proof that it answers. */
const probe = (pool: ConnectionPool.Service) =>
  pool.use((connection) =>
    Effect.map(connection.sql<{ one: number }>`SELECT 1 AS one`, (rows) => {
      expect(rows).toEqual([{ one: 1 }])
      return connection.id
    })
  )

/** Holds `n` leases at once, so the pool opens `n` connections, then gives them all back. */
const openConnections = (pool: ConnectionPool.Service, n: number) =>
  Effect.scoped(Effect.forEach(Array.from({ length: n }), () => Effect.map(pool.acquire, (c) => c.id)))

describe("dead connections", () => {
  it.scoped("an idle connection whose handle was closed underneath is replaced, not handed out", () =>
    Effect.gen(function*() {
      const { connector, pool } = yield* setup()
      expect(yield* probe(pool)).toBe(1)
      yield* connector.closeHandle(1)
      expect(yield* probe(pool)).toBe(2)
      expect(yield* probe(pool)).toBe(2)
      const stats = yield* pool.stats
      expect(stats).toMatchObject({ created: 2, invalidated: 1, closed: 1, open: 1 })
      expect(violations(stats, 1)).toEqual([])
      expect(connector.liveHandles()).toEqual([2])
    }))

  it.scoped("when every idle connection is dead, concurrent acquires all get new working ones", () =>
    Effect.gen(function*() {
      const { connector, pool } = yield* setup(3)
      expect((yield* openConnections(pool, 3)).sort()).toEqual([1, 2, 3])
      yield* Effect.forEach([1, 2, 3], connector.closeHandle)
      // Three leases held at the same time: each must be a distinct, new, working connection.
      const ids = yield* Effect.scoped(Effect.forEach(
        [1, 2, 3],
        () => Effect.flatMap(pool.acquire, (connection) => Effect.as(connection.sql`SELECT 1`, connection.id)),
        { concurrency: "unbounded" }
      ))
      expect(ids.every((id) => id > 3)).toBe(true)
      expect(new Set(ids).size).toBe(3)
      const stats = yield* pool.stats
      expect(stats).toMatchObject({ created: 6, invalidated: 3, closed: 3, open: 3, inUse: 0 })
      expect(connector.openHandles()).toBe(3)
    }))

  it.scoped("a handle closed during a lease: the statement fails with a SqlError, and the connection is not reused", () =>
    Effect.gen(function*() {
      const { connector, pool } = yield* setup()
      const failure = yield* pool.use((connection) =>
        Effect.zipRight(connector.closeHandle(connection.id), connection.sql`SELECT 1`)
      ).pipe(Effect.flip)
      expect(failure._tag).toBe("SqlError")
      expect(yield* probe(pool)).toBe(2)
      expect(yield* pool.stats).toMatchObject({ created: 2, invalidated: 1, closed: 1, open: 1, inUse: 0 })
    }))

  it.scoped("a database file deleted under an idle connection: the next acquire opens the file now at the path", () =>
    Effect.gen(function*() {
      const { filename, pool } = yield* setup()
      yield* pool.use((connection) => connection.sql`CREATE TABLE t (x INTEGER)`)
      removeDatabaseFiles(filename)
      // The old handle would still answer (from the deleted inode): the pool must notice the file is gone.
      const tables = yield* pool.use((connection) =>
        Effect.map(connection.sql<{ name: string }>`SELECT name FROM sqlite_master`, (rows) => ({
          id: connection.id,
          names: rows.map((row) => row.name)
        }))
      )
      expect(tables).toEqual({ id: 2, names: [] })
      // Writes land in the new file, where other processes look.
      yield* pool.use((connection) => connection.sql`CREATE TABLE after_delete (x INTEGER)`)
      const outside = new Database(filename, { readonly: true })
      try {
        expect(outside.prepare("SELECT name FROM sqlite_master").all()).toEqual([{ name: "after_delete" }])
      } finally {
        outside.close()
      }
      expect((yield* pool.stats).invalidated).toBe(1)
      // The old handle (to the deleted inode) is closed, not leaked.
      expect(databaseDescriptors(filename).filter((target) => target.endsWith("(deleted)"))).toEqual([])
    }))

  it.scoped("a database file replaced by another database: the next acquire sees the replacement", () =>
    Effect.gen(function*() {
      const { directory, filename, pool } = yield* setup()
      yield* pool.use((connection) => connection.sql`CREATE TABLE original (x INTEGER)`)
      const replacement = path.join(directory, "replacement.db")
      const other = new Database(replacement)
      other.exec("CREATE TABLE marker (what TEXT); INSERT INTO marker VALUES ('replacement')")
      other.close()
      removeDatabaseFiles(filename)
      fs.renameSync(replacement, filename)
      const rows = yield* pool.use((connection) => connection.sql<{ what: string }>`SELECT what FROM marker`)
      expect(rows).toEqual([{ what: "replacement" }])
      expect(yield* pool.stats).toMatchObject({ created: 2, invalidated: 1, closed: 1, open: 1 })
    }))

  it.scoped("a file deleted while a connection is leased: the lease finishes, the connection is not handed out again", () =>
    Effect.gen(function*() {
      const { filename, pool } = yield* setup(2)
      const leaseScope = yield* Scope.make()
      const held = yield* Scope.extend(pool.acquire, leaseScope)
      yield* held.sql`CREATE TABLE t (x INTEGER)`
      removeDatabaseFiles(filename)
      yield* held.sql`INSERT INTO t VALUES (1)`
      yield* Scope.close(leaseScope, Exit.void)
      const ids = yield* Effect.forEach([1, 2], () => probe(pool))
      expect(ids).not.toContain(held.id)
      expect(fs.existsSync(filename)).toBe(true)
      expect((yield* pool.stats).invalidated).toBe(1)
    }))

  it.scoped("through SqlitePool: a kept connection whose handle was closed underneath is replaced, no statement fails", () =>
    Effect.gen(function*() {
      const { connector, pool, reader, sql } = yield* sqlitePool
      yield* sql`CREATE TABLE t (x INTEGER)`
      expect(yield* reader<{ x: number }>`SELECT count(*) AS x FROM t`).toEqual([{ x: 0 }])
      // Handle 1 is the writer's, handle 2 the one the Reader keeps for its statements.
      expect(connector.liveHandles()).toEqual([1, 2])
      yield* Effect.forEach([1, 2], connector.closeHandle)
      yield* sql`INSERT INTO t VALUES (1)`
      expect(yield* reader<{ x: number }>`SELECT x FROM t`).toEqual([{ x: 1 }])
      const stats = yield* pool.stats
      expect([stats.writer.invalidated, stats.readers.invalidated]).toEqual([1, 1])
      expect(violations(stats.writer, 1)).toEqual([])
      expect(violations(stats.readers, 2)).toEqual([])
    }))

  it.scoped("through SqlitePool: a deleted database file does not take the application's SqlClient down", () =>
    Effect.gen(function*() {
      const { filename, pool, reader, sql } = yield* sqlitePool
      yield* sql`CREATE TABLE t (x INTEGER)`
      yield* sql`INSERT INTO t VALUES (1)`
      // The Reader's statements keep a connection to the first file.
      expect(yield* reader<{ x: number }>`SELECT x FROM t`).toEqual([{ x: 1 }])
      removeDatabaseFiles(filename)
      yield* sql`CREATE TABLE t (x INTEGER)`
      yield* sql`INSERT INTO t VALUES (2)`
      expect(yield* sql<{ x: number }>`SELECT x FROM t`).toEqual([{ x: 2 }])
      expect(yield* reader<{ x: number }>`SELECT x FROM t`).toEqual([{ x: 2 }])
      const stats = yield* pool.stats
      expect(stats.writer.invalidated).toBe(1)
      expect(stats.readers.invalidated).toBe(1)
      expect(violations(stats.writer, 1)).toEqual([])
      expect(violations(stats.readers, 2)).toEqual([])
    }))
})
