/**
 * Handles: once a pool's scope has closed, this process holds no file descriptor to the database, its -wal or its
 * -shm (read from /proc/self/fd), whatever happened before: plain use, connect failures, dead and invalidated
 * connections, interrupted waiters and holders, a lease still out when the pool closed, a failed construction, the
 * SqlitePool layer, and ":memory:" (whose private temporary directory must be gone too).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { ConnectionPool, Connector, SqlitePool } from "@sqlsim/sqlite-pool"
import * as FaultConnector from "@sqlsim/test-kit/FaultConnector"
import { tempDir } from "@sqlsim/test-kit/TempDir"
import { settle, waitUntil } from "@sqlsim/test-kit/Wait"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as fs from "node:fs"
import * as path from "node:path"
import { databaseDescriptors, descriptorsUnder, openDescriptorTargets } from "./support/descriptors.js"

/** A pool in its own closeable scope, on a file in a fresh directory, behind a fault connector. */
const poolInScope = (
  input: { readonly maxConnections?: number; readonly shutdownTimeout?: number; readonly retries?: number } = {}
) =>
  Effect.gen(function*() {
    const directory = yield* tempDir
    const filename = path.join(directory, "app.db")
    const connector = yield* FaultConnector.make(directory)
    const scope = yield* Scope.make()
    const pool = yield* ConnectionPool.make({
      filename,
      maxConnections: input.maxConnections ?? 3,
      shutdownTimeout: input.shutdownTimeout ?? 1000,
      retries: input.retries ?? 3
    }).pipe(Scope.extend(scope), Effect.provideService(Connector.Connector, connector.service))
    return { directory, filename, connector, scope, pool }
  })

/** Holds `n` leases at once and writes through each, so the pool opens `n` handles and the WAL files exist. */
const useConcurrently = (pool: ConnectionPool.Service, n: number) =>
  Effect.scoped(
    Effect.forEach(Array.from({ length: n }), (_, index) =>
      Effect.flatMap(pool.acquire, (connection) =>
        index === 0
          ? connection.sql`CREATE TABLE IF NOT EXISTS t (x INTEGER)`
          : connection.sql`SELECT count(*) FROM sqlite_master`), { concurrency: "unbounded" })
  )

describe("file handles", () => {
  it.scoped("plain use: every descriptor to the database, -wal and -shm is closed with the pool", () =>
    Effect.gen(function*() {
      const { filename, pool, scope } = yield* poolInScope()
      yield* useConcurrently(pool, 3)
      yield* pool.use((connection) => connection.sql`INSERT INTO t VALUES (1)`)
      const whileOpen = databaseDescriptors(filename)
      // Sanity: the counting sees the handles (3 connections, each with the database and its -wal, -shm mapped).
      expect(whileOpen.filter((target) => target === filename).length).toBe(3)
      expect(whileOpen.some((target) => target.endsWith("-wal"))).toBe(true)
      yield* Scope.close(scope, Exit.void)
      expect(databaseDescriptors(filename)).toEqual([])
    }))

  it.scoped("after connect failures, dead handles, invalidations and failed statements", () =>
    Effect.gen(function*() {
      const { connector, directory, filename, pool, scope } = yield* poolInScope({ retries: 0 })
      yield* useConcurrently(pool, 3)
      // Permanent and transient connect failures (retries 0: no clock needed), on real bad paths in the directory.
      for (const fault of ["notADatabase", "directory", "missingDirectory"] as const) {
        // Throw every open connection away, so that the next acquires must connect.
        yield* Effect.scoped(
          Effect.forEach([1, 2, 3], () => Effect.flatMap(pool.acquire, pool.invalidate), { concurrency: "unbounded" })
        )
        connector.fault = fault
        const results = yield* Effect.forEach([1, 2, 3], () => Effect.either(Effect.scoped(pool.acquire)))
        expect(results.every((result) => result._tag === "Left" && result.left._tag === "ConnectError")).toBe(true)
        connector.fault = undefined
        yield* useConcurrently(pool, 3)
        yield* connector.closeHandle(connector.liveHandles()[0]!)
      }
      // Invalidated leases and a lease that ends with a SQL error.
      yield* pool.use((connection) => pool.invalidate(connection))
      yield* Effect.either(pool.use((connection) => connection.sql`SELEC nothing`))
      yield* useConcurrently(pool, 3)
      expect((yield* pool.stats).connectFailures).toBeGreaterThan(0)
      yield* Scope.close(scope, Exit.void)
      expect(connector.openHandles()).toBe(0)
      expect(databaseDescriptors(filename)).toEqual([])
      expect(descriptorsUnder(directory)).toEqual([])
    }))

  it.scoped("after interrupted waiters and holders, and a lease still out when the pool closed", () =>
    Effect.gen(function*() {
      const { directory, filename, pool, scope } = yield* poolInScope({ maxConnections: 2, shutdownTimeout: 1000 })
      yield* useConcurrently(pool, 2)
      // Two holders and three waiters; interrupt one holder and two waiters.
      const holders = yield* Effect.forEach([1, 2], () => Effect.fork(pool.use(() => Effect.never)))
      yield* waitUntil(Effect.map(pool.stats, (stats) => stats.inUse === 2), "two holders")
      const waiters = yield* Effect.forEach([1, 2, 3], () => Effect.fork(pool.use(() => Effect.never)))
      yield* waitUntil(Effect.map(pool.stats, (stats) => stats.waiting === 3), "three waiters")
      yield* Fiber.interrupt(holders[0]!)
      yield* Fiber.interrupt(waiters[1]!)
      yield* Fiber.interrupt(waiters[2]!)
      yield* waitUntil(Effect.map(pool.stats, (stats) => stats.waiting === 0 && stats.inUse === 2), "a waiter served")
      // Close the pool with two leases still out: shutdownTimeout passes (TestClock), then every handle is closed.
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* settle()
      yield* TestClock.adjust(1000)
      yield* Fiber.join(closing)
      yield* settle()
      expect(databaseDescriptors(filename)).toEqual([])
      expect(descriptorsUnder(directory)).toEqual([])
      yield* Fiber.interrupt(holders[1]!)
      yield* Fiber.interrupt(waiters[0]!)
      yield* settle()
      expect(descriptorsUnder(directory)).toEqual([])
    }))

  it.scoped("after a construction that failed half-way (minConnections with a failing third open)", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const filename = path.join(directory, "app.db")
      const connector = yield* FaultConnector.make(directory)
      connector.faultFor = (attempt) => attempt >= 3 ? "directory" : undefined
      const result = yield* Effect.scoped(
        ConnectionPool.make({ filename, minConnections: 3, maxConnections: 3 }).pipe(
          Effect.provideService(Connector.Connector, connector.service)
        )
      ).pipe(Effect.flip)
      expect(result._tag).toBe("ConnectError")
      expect(connector.openedCount()).toBe(2)
      expect(connector.openHandles()).toBe(0)
      expect(descriptorsUnder(directory)).toEqual([])
    }))

  it.scoped("the SqlitePool layer (writer and readers) closes every handle", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "app.db")
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(SqlitePool.layer({ filename, readConnections: 3 }), scope)
      const sql = yield* Effect.provide(SqlClient.SqlClient, context)
      const reader = yield* Effect.provide(SqlitePool.Reader, context)
      yield* sql`CREATE TABLE t (x INTEGER)`
      yield* sql.withTransaction(sql`INSERT INTO t VALUES (1)`)
      yield* Effect.forEach([1, 2, 3], () => reader`SELECT x FROM t`, { concurrency: "unbounded" })
      expect(databaseDescriptors(filename).length).toBeGreaterThan(0)
      yield* Scope.close(scope, Exit.void)
      expect(databaseDescriptors(filename)).toEqual([])
    }))

  it.scoped("\":memory:\": no descriptor and no temporary directory survive the pool", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const pool = yield* Scope.extend(ConnectionPool.make({ maxConnections: 2 }), scope)
      yield* useConcurrently(pool, 2)
      const memoryFiles = openDescriptorTargets().filter((target) => target.includes("sqlsim-memory-"))
      expect(memoryFiles.length).toBeGreaterThan(0)
      const directories = [...new Set(memoryFiles.map((target) => path.dirname(target.replace(/ \(deleted\)$/, ""))))]
      yield* Scope.close(scope, Exit.void)
      expect(openDescriptorTargets().filter((target) => target.includes("sqlsim-memory-"))).toEqual([])
      for (const directory of directories) expect(fs.existsSync(directory)).toBe(false)
    }))
})
