import * as Reactivity from "@effect/experimental/Reactivity"
import type * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { assert, describe, expect, it } from "@effect/vitest"
import { ConnectionPool, Connector, PoolError, SqliteCode } from "@sqlsim/sqlite-pool"
import * as FaultConnector from "@sqlsim/test-kit/FaultConnector"
import { removeDatabaseFiles } from "@sqlsim/test-kit/TempDir"
import Database from "better-sqlite3"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as fs from "node:fs"
import * as path from "node:path"
import { invariantsHold, makeTestPool, randomBytes, tempDir, waitUntil, yieldEventLoop } from "./utils.js"

const idOf = (connection: ConnectionPool.PooledConnection) => connection.id

/** About 400 KiB of rows: more than a connection with a zero page cache keeps in memory. */
const fillTable = (sql: SqliteClient.SqliteClient) =>
  Effect.gen(function*() {
    yield* sql`CREATE TABLE t (x TEXT)`
    yield* sql`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
      INSERT INTO t SELECT hex(randomblob(100)) FROM n`
  })

const overwrite = (filename: string, from: number) => {
  const size = fs.statSync(filename).size
  const descriptor = fs.openSync(filename, "r+")
  fs.writeSync(descriptor, randomBytes(size - from), 0, size - from, from)
  fs.closeSync(descriptor)
}

/** Writes a database with one table at `filename`, where none is (nor its -wal). */
const restoreDatabase = (filename: string, table: string) => {
  const db = new Database(filename)
  db.exec(`CREATE TABLE ${table} (x)`)
  db.close()
}

/** Moves another database with one table into `filename`'s place (a restore from a backup: a new file, renamed in). */
const replaceDatabase = (filename: string, table: string) => {
  restoreDatabase(`${filename}.new`, table)
  fs.renameSync(`${filename}.new`, filename)
}

const codeOfFailure = (error: unknown) => SqliteCode.codeOf(error)

describe("ConnectionPool: leases and reuse", () => {
  it.scoped("idle connections are reused most recently released first", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool({ maxConnections: 3 })
      const scopes = [yield* Scope.make(), yield* Scope.make(), yield* Scope.make()] as const
      const ids = yield* Effect.forEach(scopes, (scope) => Effect.map(Scope.extend(pool.acquire, scope), (c) => c.id))
      expect(ids).toEqual([1, 2, 3])
      // Released in the order 1, 3, 2: the next leases get 2, then 3, then 1.
      for (const index of [0, 2, 1] as const) yield* Scope.close(scopes[index], Exit.void)
      const again = yield* Effect.forEach([1, 2, 3], () => Effect.map(pool.acquire, (c) => c.id))
      expect(again).toEqual([2, 3, 1])
      expect(yield* pool.stats).toMatchObject({ created: 3, reused: 3 })
    }))

  it.scoped("a fresh pool with defaults serving two sequential uses reports created: 1, reused: 1", () =>
    Effect.gen(function*() {
      const pool = yield* ConnectionPool.make({})
      const first = yield* pool.use((c) => Effect.as(c.sql`SELECT 1 AS one`, c.id))
      const second = yield* pool.use((c) => Effect.as(c.sql`SELECT 1 AS one`, c.id))
      expect([first, second]).toEqual([1, 1])
      expect(yield* pool.stats).toEqual({
        created: 1,
        reused: 1,
        acquired: 2,
        released: 2,
        invalidated: 0,
        closed: 0,
        connectFailures: 0,
        retries: 0,
        timeouts: 0,
        open: 1,
        idle: 1,
        inUse: 0,
        waiting: 0
      })
    }))

  it.scoped("connection ids are 1, 2, 3 in creation order; a reused connection keeps its id", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool({ maxConnections: 3 })
      const ids = yield* Effect.scoped(
        Effect.gen(function*() {
          const a = yield* pool.acquire
          const b = yield* pool.acquire
          const c = yield* pool.acquire
          const stats = yield* pool.stats
          expect(stats).toMatchObject({ created: 3, open: 3, inUse: 3, idle: 0, acquired: 3 })
          return [a.id, b.id, c.id]
        })
      )
      expect(ids).toEqual([1, 2, 3])
      expect(yield* pool.stats).toMatchObject({ open: 3, idle: 3, inUse: 0, released: 3 })
      const again = yield* pool.use((c) => Effect.succeed(c.id))
      expect([1, 2, 3]).toContain(again)
      expect(yield* pool.stats).toMatchObject({ created: 3, reused: 1 })
    }))

  it.scoped("a lease is returned when its Scope closes, not before", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool()
      const scope = yield* Scope.make()
      const connection = yield* Scope.extend(pool.acquire, scope)
      yield* connection.sql`CREATE TABLE note (text TEXT)`
      expect(yield* pool.stats).toMatchObject({ inUse: 1, idle: 0, acquired: 1, released: 0 })
      yield* Scope.close(scope, Exit.void)
      expect(yield* pool.stats).toMatchObject({ inUse: 0, idle: 1, acquired: 1, released: 1 })
    }))

  it.scoped("use returns f's value and f's typed error, and ends the lease either way", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool()
      expect(yield* pool.use(() => Effect.succeed(42))).toBe(42)
      const error = yield* Effect.flip(pool.use(() => Effect.fail("refused" as const)))
      expect(error).toBe("refused")
      const defect = yield* Effect.exit(pool.use(() => Effect.die("broken")))
      expect(Exit.isFailure(defect)).toBe(true)
      // None of these failures is the connection's fault: it stays and is reused.
      expect(yield* pool.stats).toMatchObject({ created: 1, reused: 2, acquired: 3, released: 3, invalidated: 0 })
    }))

  it.scoped("interrupting a fiber that holds a lease returns the connection", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool()
      const holder = yield* Effect.fork(pool.use(() => Effect.never))
      yield* waitUntil(Effect.map(pool.stats, (s) => s.inUse === 1), "the lease is taken")
      yield* Fiber.interrupt(holder)
      expect(yield* pool.stats).toMatchObject({ inUse: 0, idle: 1, released: 1, invalidated: 0 })
      expect(yield* pool.use((c) => Effect.succeed(c.id))).toBe(1)
    }))

  it.scoped("every connection gets the configured busyTimeout, page cache and WAL mode", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool({ busyTimeout: "250 millis", pageCacheKiB: 512, maxConnections: 2 })
      const settings = yield* Effect.scoped(Effect.forEach([pool.acquire, pool.acquire], (acquire) =>
        Effect.flatMap(acquire, (c) =>
          Effect.all({
            busy: c.sql<{ timeout: number }>`PRAGMA busy_timeout`,
            cache: c.sql<{ cache_size: number }>`PRAGMA cache_size`,
            journal: c.sql<{ journal_mode: string }>`PRAGMA journal_mode`
          }))))
      expect(settings).toEqual([1, 2].map(() => ({
        busy: [{ timeout: 250 }],
        cache: [{ cache_size: -512 }],
        journal: [{ journal_mode: "wal" }]
      })))
    }))

  it.scoped("never opens more than maxConnections, however many fibers ask", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool({ maxConnections: 3 })
      let inside = 0
      let mostInside = 0
      const results = yield* Effect.forEach(
        Array.from({ length: 12 }, (_, index) => index),
        (index) =>
          pool.use((c) =>
            Effect.gen(function*() {
              mostInside = Math.max(mostInside, ++inside)
              yield* Effect.yieldNow()
              const [row] = yield* c.sql<{ value: number }>`SELECT ${index} AS value`
              inside--
              return row!.value
            })
          ),
        { concurrency: "unbounded" }
      )
      expect(results).toEqual(Array.from({ length: 12 }, (_, index) => index))
      expect(mostInside).toBe(3)
      const stats = yield* pool.stats
      expect(stats.created).toBe(3)
      expect(stats).toMatchObject({ acquired: 12, released: 12, reused: 9, waiting: 0 })
    }))
})

describe("ConnectionPool: healthCheck", () => {
  it.scoped("reports the SQLite version and journal mode, and counts as a reuse when an idle connection serves it", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool()
      yield* pool.use((c) => c.sql`SELECT 1`)
      const report = yield* pool.healthCheck
      expect(report.ok).toBe(true)
      expect(report.sqliteVersion).toMatch(/^3\.\d+\.\d+$/)
      expect(report.journalMode).toBe("wal")
      expect(report.latencyMs).toBeGreaterThanOrEqual(0)
      expect(yield* pool.stats).toMatchObject({ created: 1, reused: 1, acquired: 2, released: 2 })
    }))

  it.scoped("on a fresh pool it creates the first connection (no reuse yet)", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool()
      yield* pool.healthCheck
      expect(yield* pool.stats).toMatchObject({ created: 1, reused: 0, acquired: 1 })
    }))

  it.scoped("fails with HealthCheckError when the database does not answer, and the broken connection is replaced", () =>
    Effect.gen(function*() {
      // validationInterval lets the acquire skip its probe, so the health check itself meets the damaged file; with no
      // page cache, it reads the file again.
      const { filename, pool } = yield* makeTestPool({ validationInterval: "1 hour", pageCacheKiB: 0 })
      yield* pool.use((c) => c.sql`SELECT 1`)
      // The same file (same inode), its pages overwritten: the connection's cheap check cannot see it.
      const size = fs.statSync(filename).size
      fs.writeFileSync(filename, randomBytes(Math.max(size, 4096)), { flag: "r+" })
      const error = yield* Effect.flip(pool.healthCheck)
      expect(error).toBeInstanceOf(PoolError.HealthCheckError)
      expect(error).toMatchObject({ _tag: "HealthCheckError", filename })
      expect(error.message).toContain(filename)
      expect(yield* pool.stats).toMatchObject({ invalidated: 1, closed: 1, open: 0 })
      // Its replacement cannot open the file either: a permanent ConnectError, not a report of health.
      expect(yield* Effect.flip(pool.healthCheck)).toMatchObject({ _tag: "ConnectError", code: "SQLITE_NOTADB" })
    }))

  it.scoped("a connection whose handle was closed is replaced before the health check runs on it", () =>
    Effect.gen(function*() {
      const { connector, pool } = yield* makeTestPool({ validationInterval: "1 hour" })
      yield* pool.use((c) => c.sql`SELECT 1`)
      yield* connector.closeHandle(1)
      expect((yield* pool.healthCheck).ok).toBe(true)
      expect(yield* pool.stats).toMatchObject({ created: 2, invalidated: 1, open: 1 })
    }))
})

describe("ConnectionPool: invalidate", () => {
  it.scoped("invalidating a leased connection takes effect when the lease ends", () =>
    Effect.gen(function*() {
      const { connector, pool } = yield* makeTestPool()
      yield* Effect.scoped(
        Effect.gen(function*() {
          const connection = yield* pool.acquire
          yield* pool.invalidate(connection)
          // Still the caller's until the lease ends.
          expect(yield* connection.sql`SELECT 1 AS one`).toEqual([{ one: 1 }])
          expect(yield* pool.stats).toMatchObject({ open: 1, inUse: 1, invalidated: 0, closed: 0 })
        })
      )
      expect(yield* pool.stats).toMatchObject({ open: 0, invalidated: 1, closed: 1, released: 1 })
      expect(connector.openHandles()).toBe(0)
      expect(yield* pool.use((c) => Effect.succeed(c.id))).toBe(2)
    }))

  it.scoped("a leased connection marked invalid still counts towards maxConnections until its lease ends", () =>
    Effect.gen(function*() {
      const { connector, pool } = yield* makeTestPool({ maxConnections: 3 })
      yield* Effect.scoped(Effect.gen(function*() {
        const first = yield* pool.acquire
        yield* pool.acquire
        yield* pool.invalidate(first)
        yield* pool.acquire
        // Give the Pool's background fibers every chance to open an extra connection.
        yield* Effect.replicateEffect(yieldEventLoop, 20, { discard: true })
        expect(connector.openHandles()).toBe(3)
        expect(yield* pool.stats).toMatchObject({ open: 3, inUse: 3, created: 3 })
      }))
      expect(yield* pool.stats).toMatchObject({ open: 2, idle: 2, invalidated: 1 })
    }))

  it.scoped("invalidating an idle connection closes it at once", () =>
    Effect.gen(function*() {
      const { connector, pool } = yield* makeTestPool()
      const connection = yield* Effect.scoped(pool.acquire)
      expect(yield* pool.stats).toMatchObject({ open: 1, idle: 1 })
      yield* pool.invalidate(connection)
      expect(yield* pool.stats).toMatchObject({ open: 0, idle: 0, invalidated: 1, closed: 1 })
      expect(connector.openHandles()).toBe(0)
    }))

  it.scoped("invalidating twice, or a connection already closed, counts once", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool()
      const connection = yield* Effect.scoped(pool.acquire)
      yield* pool.invalidate(connection)
      yield* pool.invalidate(connection)
      expect(yield* pool.stats).toMatchObject({ invalidated: 1, closed: 1, created: 1, open: 0 })
    }))

  it.scoped("a connection of another pool is left alone", () =>
    Effect.gen(function*() {
      const first = yield* makeTestPool()
      const second = yield* makeTestPool()
      const foreign = yield* Effect.scoped(first.pool.acquire)
      yield* second.pool.use((c) => c.sql`SELECT 1`)
      yield* second.pool.invalidate(foreign)
      expect(yield* first.pool.stats).toMatchObject({ open: 1, invalidated: 0 })
      expect(yield* second.pool.stats).toMatchObject({ open: 1, invalidated: 0 })
    }))

  it.scoped("with minConnections, an invalidated connection is replaced in the background", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool({ minConnections: 1 })
      const connection = yield* Effect.scoped(pool.acquire)
      yield* pool.invalidate(connection)
      yield* waitUntil(Effect.map(pool.stats, (s) => s.created === 2 && s.open === 1), "a replacement is opened")
      expect(yield* pool.stats).toMatchObject({ invalidated: 1, closed: 1, idle: 1 })
    }))
})

describe("ConnectionPool: a lease that ends with a fatal SQLite error invalidates its connection", () => {
  it.scoped("SQLITE_NOTADB: the file was overwritten with random bytes", () =>
    Effect.gen(function*() {
      const { connector, filename, pool } = yield* makeTestPool({ pageCacheKiB: 0 })
      yield* pool.use((c) => Effect.zipRight(fillTable(c.sql), c.sql`PRAGMA wal_checkpoint(TRUNCATE)`))
      const error = yield* Effect.flip(pool.use((c) =>
        Effect.suspend(() => {
          overwrite(filename, 0)
          return c.sql`SELECT count(*) AS n FROM t`
        })
      ))
      expect(codeOfFailure(error)).toBe("SQLITE_NOTADB")
      expect(yield* pool.stats).toMatchObject({ invalidated: 1, closed: 1, open: 0, released: 2 })
      expect(connector.openHandles()).toBe(0)
      // Reopening a file that is not a database is a permanent failure: one attempt, no retry storm.
      const reopen = yield* Effect.flip(pool.use((c) => c.sql`SELECT 1`))
      expect(reopen).toMatchObject({ _tag: "ConnectError", code: "SQLITE_NOTADB", transient: false, attempts: 1 })
      expect(yield* pool.stats).toMatchObject({ connectFailures: 1, retries: 0 })
    }))

  it.scoped("SQLITE_CORRUPT: the pages behind a valid header were overwritten", () =>
    Effect.gen(function*() {
      const { filename, pool } = yield* makeTestPool({ pageCacheKiB: 0 })
      yield* pool.use((c) => Effect.zipRight(fillTable(c.sql), c.sql`PRAGMA wal_checkpoint(TRUNCATE)`))
      const error = yield* Effect.flip(pool.use((c) =>
        Effect.suspend(() => {
          overwrite(filename, 4096)
          return c.sql`SELECT count(*) AS n FROM t`
        })
      ))
      expect(SqliteCode.primary(codeOfFailure(error)!)).toBe("SQLITE_CORRUPT")
      expect(yield* pool.stats).toMatchObject({ invalidated: 1, closed: 1, open: 0 })
    }))

  it.scoped("SQLITE_IOERR: the WAL was truncated under the connection", () =>
    Effect.gen(function*() {
      const { filename, pool } = yield* makeTestPool({ pageCacheKiB: 0 })
      // Keep the rows in the WAL (no automatic checkpoint), then cut the WAL short.
      yield* pool.use((c) => Effect.zipRight(c.sql`PRAGMA wal_autocheckpoint = 0`, fillTable(c.sql)))
      const error = yield* Effect.flip(pool.use((c) =>
        Effect.suspend(() => {
          fs.truncateSync(`${filename}-wal`, 100)
          return c.sql`SELECT max(x) AS x FROM t`
        })
      ))
      expect(SqliteCode.primary(codeOfFailure(error)!)).toBe("SQLITE_IOERR")
      expect(yield* pool.stats).toMatchObject({ invalidated: 1, closed: 1, open: 0 })
    }))

  it.scoped("a fatal code carried as a defect counts too", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool()
      const driverError = Object.assign(new Error("disk I/O error"), { code: "SQLITE_IOERR_FSYNC" })
      yield* Effect.exit(pool.use(() => Effect.die(driverError)))
      expect(yield* pool.stats).toMatchObject({ invalidated: 1, closed: 1 })
    }))

  it.scoped("the caller's errors (syntax, constraint) leave the connection in the pool", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool()
      yield* pool.use((c) => c.sql`CREATE TABLE item (name TEXT UNIQUE)`)
      yield* pool.use((c) => c.sql`INSERT INTO item VALUES ('a')`)
      const duplicate = yield* Effect.flip(pool.use((c) => c.sql`INSERT INTO item VALUES ('a')`))
      expect(codeOfFailure(duplicate)).toBe("SQLITE_CONSTRAINT_UNIQUE")
      const syntax = yield* Effect.flip(pool.use((c) => c.sql.unsafe("SELEC 1")))
      expect(codeOfFailure(syntax)).toBe("SQLITE_ERROR")
      expect(yield* pool.stats).toMatchObject({ invalidated: 0, closed: 0, created: 1, open: 1 })
      expect(yield* pool.use((c) => Effect.succeed(c.id))).toBe(1)
    }))
})

describe("ConnectionPool: validation on acquire", () => {
  it.scoped("an idle connection whose handle was closed is never handed out: it is invalidated and replaced", () =>
    Effect.gen(function*() {
      const { connector, pool } = yield* makeTestPool()
      yield* pool.use((c) => c.sql`SELECT 1`)
      yield* connector.closeHandle(1)
      const id = yield* pool.use((c) => Effect.as(c.sql`SELECT 1`, c.id))
      expect(id).toBe(2)
      expect(yield* pool.stats).toMatchObject({ created: 2, invalidated: 1, closed: 1, open: 1, acquired: 2 })
    }))

  it.scoped("a connection opened for minConnections and never leased is checked too", () =>
    Effect.gen(function*() {
      const { connector, pool } = yield* makeTestPool({ minConnections: 1 })
      yield* connector.closeHandle(1)
      const id = yield* pool.use((c) => Effect.as(c.sql`SELECT 1`, c.id))
      // A new connection: the acquire's own or the minConnections top-up, whichever opened first.
      expect(id).toBeGreaterThan(1)
      expect(yield* pool.stats).toMatchObject({ invalidated: 1, closed: 1 })
    }))

  it.scoped("a database file deleted under the pool, its -wal and -shm left: refused, permanent, nothing created; then created once they go", () =>
    Effect.gen(function*() {
      const { filename, pool } = yield* makeTestPool()
      yield* pool.use((c) => c.sql`CREATE TABLE old_table (x)`)
      fs.rmSync(filename)
      const error = yield* Effect.flip(pool.use((c) => c.sql`SELECT name FROM sqlite_master`))
      assert(error._tag === "ConnectError", `expected a ConnectError, got ${error._tag}`)
      expect(error).toMatchObject({ code: "SQLITE_CANTOPEN", transient: false, attempts: 1 })
      expect(error.reason).toBe(
        `the database file was deleted after the pool had opened it, and the old file's ${filename}-wal and `
          + `${filename}-shm are still beside it: SQLite would read them into the new, empty database. Remove them `
          + "(connections to the old file keep theirs open), and the next connect opens the file at the path"
      )
      expect(fs.existsSync(filename)).toBe(false)
      expect(yield* pool.stats).toMatchObject({ invalidated: 1, created: 1, connectFailures: 1 })
      // With the old file's WAL gone, the next acquire makes a new database, empty, as SQLite does for a new name.
      removeDatabaseFiles(filename)
      const tables = yield* pool.use((c) =>
        Effect.map(c.sql<{ name: string }>`SELECT name FROM sqlite_master`, (rows) => ({ id: c.id, rows }))
      )
      expect(tables).toEqual({ id: 2, rows: [] })
    }))

  it.scoped("a database file replaced by a rename, the old -wal and -shm left: refused until they go, then the new file opens", () =>
    Effect.gen(function*() {
      const { filename, pool } = yield* makeTestPool()
      yield* pool.use((c) => c.sql`CREATE TABLE old_table (x)`)
      replaceDatabase(filename, "new_table")
      const error = yield* Effect.flip(pool.use((c) => c.sql`SELECT name FROM sqlite_master`))
      expect(error).toMatchObject({ _tag: "ConnectError", code: "SQLITE_CANTOPEN", transient: false })
      expect(error.message).toMatch(/replaced by another after the pool had opened it, and the old file's .*-wal and/)
      expect(yield* pool.stats).toMatchObject({ invalidated: 1, created: 1, open: 0 })
      for (const suffix of ["-wal", "-shm"]) fs.rmSync(`${filename}${suffix}`)
      const tables = yield* pool.use((c) =>
        Effect.map(c.sql<{ name: string }>`SELECT name FROM sqlite_master`, (rows) => ({ id: c.id, rows }))
      )
      expect(tables).toEqual({ id: 2, rows: [{ name: "new_table" }] })
    }))

  it.scoped("validationInterval skips the probe for a connection used that recently, and only then", () =>
    Effect.gen(function*() {
      const { connector, pool } = yield* makeTestPool({ validationInterval: "10 seconds" })
      yield* pool.use((c) => c.sql`SELECT 1`)
      expect(connector.probes()).toBe(0) // fresh: opened and verified for this very acquire
      yield* pool.use((c) => c.sql`SELECT 1`)
      expect(connector.probes()).toBe(0) // released moments ago
      yield* TestClock.adjust("10 seconds")
      yield* pool.use((c) => c.sql`SELECT 1`)
      expect(connector.probes()).toBe(1)
      // A closed handle is caught by the cheap check on every checkout, probe or not.
      yield* connector.closeHandle(1)
      expect(yield* pool.use((c) => Effect.as(c.sql`SELECT 1`, c.id))).toBe(2)
    }))
})

describe("ConnectionPool: the file check with a validationInterval", () => {
  it.scoped("runs at most once per interval for each connection, counted from the last check, not the last use", () =>
    Effect.gen(function*() {
      const { filename, pool } = yield* makeTestPool({ validationInterval: "10 seconds" })
      expect(yield* pool.use((c) => Effect.as(c.sql`CREATE TABLE old_table (x)`, c.id))).toBe(1) // file checked
      removeDatabaseFiles(filename)
      replaceDatabase(filename, "new_table")
      yield* TestClock.adjust("9 seconds")
      expect(yield* pool.use((c) => Effect.succeed(c.id))).toBe(1) // within the window: not looked at yet
      yield* TestClock.adjust("1 second")
      // Used a second ago, so no probe, but the file was last checked 10 s ago: the replacement is noticed now.
      const tables = yield* pool.use((c) =>
        Effect.map(c.sql<{ name: string }>`SELECT name FROM sqlite_master`, (rows) => ({ id: c.id, rows }))
      )
      expect(tables).toEqual({ id: 2, rows: [{ name: "new_table" }] })
      expect(yield* pool.stats).toMatchObject({ invalidated: 1 })
    }))
})

describe("ConnectionPool: lifetimes", () => {
  it.scoped("maxLifetime retires a connection that outlived it, at its next acquire", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool({ maxLifetime: "1 minute" })
      expect(yield* pool.use((c) => Effect.succeed(c.id))).toBe(1)
      yield* TestClock.adjust("59 seconds")
      expect(yield* pool.use((c) => Effect.succeed(c.id))).toBe(1)
      yield* TestClock.adjust("1 second")
      expect(yield* pool.use((c) => Effect.succeed(c.id))).toBe(2)
      expect(yield* pool.stats).toMatchObject({ created: 2, closed: 1, open: 1 })
    }))

  it.scoped("maxLifetime never takes a connection away from a lease in progress", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool({ maxLifetime: "1 minute" })
      yield* Effect.scoped(
        Effect.gen(function*() {
          const connection = yield* pool.acquire
          yield* TestClock.adjust("2 minutes")
          expect(yield* connection.sql`SELECT 1 AS one`).toEqual([{ one: 1 }])
          expect(yield* pool.stats).toMatchObject({ open: 1, inUse: 1, closed: 0 })
        })
      )
      expect(yield* pool.use((c) => Effect.succeed(c.id))).toBe(2)
    }))

  it.scoped("maxLifetime closes an idle connection when it is reached, without waiting for an acquire", () =>
    Effect.gen(function*() {
      const { connector, pool } = yield* makeTestPool({ maxLifetime: "1 minute", idleTimeToLive: "10 minutes" })
      yield* pool.use((c) => c.sql`SELECT 1`)
      yield* TestClock.adjust("59 seconds")
      expect(yield* pool.stats).toMatchObject({ open: 1, closed: 0 })
      yield* TestClock.adjust("1 second")
      yield* waitUntil(Effect.map(pool.stats, (s) => s.open === 0), "the connection is closed")
      expect(yield* pool.stats).toMatchObject({ created: 1, closed: 1, invalidated: 0 })
      expect(connector.openHandles()).toBe(0)
    }))

  it.scoped("maxLifetime with minConnections: an idle connection that reaches it is replaced", () =>
    Effect.gen(function*() {
      const { connector, pool } = yield* makeTestPool({ minConnections: 1, maxLifetime: "1 minute" })
      yield* TestClock.adjust("1 minute")
      yield* waitUntil(Effect.map(pool.stats, (s) => s.created === 2 && s.open === 1), "the connection is replaced")
      expect(yield* pool.stats).toMatchObject({ closed: 1, invalidated: 0, idle: 1 })
      expect(connector.openHandles()).toBe(1)
      expect(yield* pool.use((c) => Effect.succeed(c.id))).toBe(2)
    }))

  it.scoped("idleTimeToLive closes the idle connections above minConnections", () =>
    Effect.gen(function*() {
      const { connector, pool } = yield* makeTestPool({
        minConnections: 1,
        maxConnections: 3,
        idleTimeToLive: "1 minute"
      })
      yield* Effect.scoped(Effect.all([pool.acquire, pool.acquire, pool.acquire]))
      expect(yield* pool.stats).toMatchObject({ open: 3, idle: 3 })
      yield* TestClock.adjust("59 seconds")
      expect((yield* pool.stats).open).toBe(3)
      yield* TestClock.adjust("1 second")
      yield* waitUntil(Effect.map(pool.stats, (s) => s.open === 1), "the two extra connections are closed")
      expect(yield* pool.stats).toMatchObject({ open: 1, idle: 1, closed: 2, invalidated: 0 })
      expect(connector.openHandles()).toBe(1)
      yield* pool.use((c) => c.sql`SELECT 1`)
    }))

  it.scoped("idleTimeToLive with minConnections 0 closes every idle connection", () =>
    Effect.gen(function*() {
      const { connector, pool } = yield* makeTestPool({ maxConnections: 2, idleTimeToLive: "30 seconds" })
      yield* Effect.scoped(Effect.all([pool.acquire, pool.acquire]))
      yield* TestClock.adjust("30 seconds")
      yield* waitUntil(Effect.map(pool.stats, (s) => s.open === 0), "every idle connection is closed")
      expect(connector.openHandles()).toBe(0)
      expect(yield* pool.use((c) => Effect.succeed(c.id))).toBe(3)
    }))
})

describe("ConnectionPool: minConnections", () => {
  it.scoped("opens (and verifies) minConnections while the pool is built", () =>
    Effect.gen(function*() {
      const { connector, pool } = yield* makeTestPool({ minConnections: 2, maxConnections: 4 })
      expect(connector.openedCount()).toBe(2)
      expect(yield* pool.stats).toMatchObject({ created: 2, open: 2, idle: 2, inUse: 0, acquired: 0 })
      const ids = yield* Effect.scoped(Effect.all([pool.acquire, pool.acquire]).pipe(Effect.map((cs) => cs.map(idOf))))
      expect(ids.sort()).toEqual([1, 2])
      expect(yield* pool.stats).toMatchObject({ created: 2, reused: 0 })
    }))

  it.scoped("a connection that cannot be opened fails the construction with ConnectError and leaks nothing", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      // The second open goes to a directory: a permanent SQLITE_CANTOPEN, produced by SQLite itself.
      const connector = yield* FaultConnector.make(directory, (n) => n === 2 ? "directory" : undefined)
      const error = yield* ConnectionPool.make({ filename: path.join(directory, "min.db"), minConnections: 2 }).pipe(
        Effect.provideService(Connector.Connector, connector.service),
        Effect.scoped,
        Effect.flip
      )
      expect(error).toBeInstanceOf(PoolError.ConnectError)
      expect(error).toMatchObject({ _tag: "ConnectError", code: "SQLITE_CANTOPEN", transient: false, attempts: 1 })
      expect(connector.openedCount()).toBe(1)
      expect(connector.openHandles()).toBe(0)
    }))

  it.scoped("the layer fails with a typed ConnectError", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const error = yield* Effect.flip(Layer.build(ConnectionPool.layer({ filename: directory, minConnections: 1 })))
      expect(error).toMatchObject({ _tag: "ConnectError", code: "SQLITE_CANTOPEN", transient: false })
    }))
})

describe("ConnectionPool: \":memory:\"", () => {
  it.scoped("every connection of the pool sees the same database and no file appears in the working directory", () =>
    Effect.gen(function*() {
      const workingDirectory = yield* tempDir
      const previous = process.cwd()
      yield* Effect.acquireRelease(
        Effect.sync(() => process.chdir(workingDirectory)),
        () => Effect.sync(() => process.chdir(previous))
      )
      const scope = yield* Scope.make()
      const pool = yield* Scope.extend(ConnectionPool.make({ filename: ":memory:", maxConnections: 3 }), scope)
      const { databaseFile, ids, rows } = yield* Effect.scoped(Effect.gen(function*() {
        const [a, b, c] = yield* Effect.all([pool.acquire, pool.acquire, pool.acquire])
        yield* a.sql`CREATE TABLE shared (value TEXT)`
        yield* b.sql`INSERT INTO shared VALUES ('written by b')`
        const rows = yield* c.sql<{ value: string }>`SELECT value FROM shared`
        const [main] = yield* c.sql<{ file: string }>`SELECT file FROM pragma_database_list WHERE name = 'main'`
        return { databaseFile: main!.file, ids: [a.id, b.id, c.id], rows }
      }))
      expect(ids).toEqual([1, 2, 3])
      expect(rows).toEqual([{ value: "written by b" }])
      expect(yield* pool.stats).toMatchObject({ created: 3, open: 3 })
      const report = yield* pool.healthCheck
      expect(["memory", "wal"]).toContain(report.journalMode)
      expect(fs.readdirSync(workingDirectory)).toEqual([])
      // The private database is gone with the pool.
      expect(fs.existsSync(databaseFile)).toBe(true)
      yield* Scope.close(scope, Exit.void)
      expect(fs.existsSync(databaseFile)).toBe(false)
      expect(fs.existsSync(path.dirname(databaseFile))).toBe(false)
      expect(fs.readdirSync(workingDirectory)).toEqual([])
    }))

  it.scoped("two pools on \":memory:\" do not share a database", () =>
    Effect.gen(function*() {
      const first = yield* ConnectionPool.make({})
      const second = yield* ConnectionPool.make({})
      yield* first.use((c) => c.sql`CREATE TABLE mine (x)`)
      const tables = yield* second.use((c) => c.sql`SELECT name FROM sqlite_master`)
      expect(tables).toEqual([])
    }))
})

describe("ConnectionPool: layers", () => {
  it.scoped("layer provides the pool under its tag", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "layer.db")
      const context = yield* Layer.build(ConnectionPool.layer({ filename, maxConnections: 2 }))
      const pool = yield* Effect.provide(ConnectionPool.ConnectionPool, context)
      expect(pool.config.maxConnections).toBe(2)
      expect(yield* pool.use((c) => Effect.succeed(c.id))).toBe(1)
    }))

  it.scoped("a bad configuration fails the layer with a PoolConfigError naming the field", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(ConnectionPool.layer({ maxConnections: 0 })))
      expect(error).toMatchObject({ _tag: "PoolConfigError", field: "maxConnections" })
      const unknown = yield* Effect.flip(Layer.build(ConnectionPool.layer({ size: 3 } as never)))
      expect(unknown).toMatchObject({ _tag: "PoolConfigError", field: "size" })
    }))

  it.scoped("layerConfig builds the pool from Configs, as the app's own ConfigProvider gives them", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "env.db")
      const environment = ConfigProvider.fromMap(new Map([["DATABASE_FILE", filename], ["POOL_SIZE", "7"]]))
      const layer = ConnectionPool.layerConfig({
        filename: Config.string("DATABASE_FILE"),
        maxConnections: Config.integer("POOL_SIZE"),
        retries: Config.succeed(2)
      })
      const context = yield* Layer.build(layer).pipe(Effect.withConfigProvider(environment))
      const pool = yield* Effect.provide(ConnectionPool.ConnectionPool, context)
      expect(pool.config).toMatchObject({ filename, maxConnections: 7, retries: 2 })
      yield* pool.use((c) => c.sql`SELECT 1`)
      expect(fs.existsSync(filename)).toBe(true)
    }))

  it.scoped("stats stay consistent through all of the above", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool({ maxConnections: 2 })
      yield* Effect.scoped(Effect.all([pool.acquire, pool.acquire]))
      expect(invariantsHold(yield* pool.stats)).toBe(true)
    }))
})

describe("ConnectionPool: the sealed surface", () => {
  it.scopedLive("a connection's client shares the Reactivity of the context: an invalidation there re-runs its queries", () =>
    Effect.gen(function*() {
      const reactivity = yield* Reactivity.Reactivity
      const directory = yield* tempDir
      const pool = yield* ConnectionPool.make({ filename: path.join(directory, "reactive.db") })
      const connection = yield* pool.acquire
      yield* connection.sql`CREATE TABLE items (x INTEGER)`
      const ranOnce = yield* Deferred.make<void>()
      const query = connection.sql<{ n: number }>`SELECT count(*) AS n FROM items`
      const counts = yield* connection.sql.reactive(["items"], query).pipe(
        Stream.map(([row]) => row!.n),
        Stream.tap(() => Deferred.succeed(ranOnce, undefined)),
        Stream.take(2),
        Stream.runCollect,
        Effect.fork
      )
      yield* Deferred.await(ranOnce)
      yield* connection.sql`INSERT INTO items VALUES (1)`
      yield* reactivity.invalidate(["items"])
      const seen = yield* Effect.timeout(Fiber.join(counts), "10 seconds")
      expect([...seen]).toEqual([0, 1])
    }).pipe(Effect.provide(Reactivity.layer)))

  it.scoped("a connection of another pool is unknown: invalidate does nothing to it, check says so", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const one = yield* ConnectionPool.make({ filename: path.join(directory, "one.db") })
      const other = yield* ConnectionPool.make({ filename: path.join(directory, "other.db") })
      const foreign = yield* other.acquire
      expect(one.check(foreign)).toBe("it is not a connection of this pool")
      yield* one.invalidate(foreign)
      // A look-alike object is unknown too (no cast reaches the pool's entries).
      yield* one.invalidate({ id: foreign.id, sql: foreign.sql })
      expect(yield* other.stats).toMatchObject({ invalidated: 0, inUse: 1 })
      expect(yield* one.stats).toMatchObject({ invalidated: 0, created: 0 })
      expect(Object.keys(one).sort()).toEqual([
        "acquire",
        "check",
        "config",
        "healthCheck",
        "invalidate",
        "stats",
        "use"
      ])
    }))
})
