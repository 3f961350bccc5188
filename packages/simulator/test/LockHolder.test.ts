import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { LockHolder, Simulation } from "@sqlsim/simulator"
import { SqlitePool } from "@sqlsim/sqlite-pool"
import Database from "better-sqlite3"
import { Effect, Exit, Layer, Scope } from "effect"
import { isAlive, tempDatabase } from "./utils.js"

describe("LockHolder", () => {
  it.live("a second OS process takes the write lock for real: SQLite itself answers SQLITE_BUSY, the pool waits", () =>
    Effect.gen(function*() {
      const filename = yield* tempDatabase
      const context = yield* Layer.build(SqlitePool.layer({ filename, readConnections: 1 }))
      const sql = yield* Effect.provide(SqlClient.SqlClient, context)
      const pool = yield* Effect.provide(SqlitePool.SqlitePool, context)
      yield* sql`CREATE TABLE t (x INTEGER)`

      const holderScope = yield* Scope.make()
      const holder = yield* LockHolder.start(filename, { holdMs: 1000, everyMs: 100_000 }).pipe(
        Scope.extend(holderScope)
      )
      yield* holder.whenHolding
      // Another connection, outside the pool, meets the lock as SQLite reports it.
      const probe = new Database(filename, { timeout: 0 })
      const busy = (() => {
        try {
          probe.exec("BEGIN IMMEDIATE")
          return undefined
        } catch (error) {
          return (error as { code?: string }).code
        } finally {
          probe.close()
        }
      })()
      assert.strictEqual(busy, "SQLITE_BUSY")
      // The pool's writer retries asynchronously until the burst ends, then writes.
      yield* sql`INSERT INTO t VALUES (1)`
      assert.isAbove((yield* pool.stats).busyRetries, 0)
      assert.strictEqual(yield* holder.bursts, 1)

      yield* Scope.close(holderScope, Exit.void)
      assert.isFalse(isAlive(holder.pid))
    }).pipe(Effect.scoped))

  it.live("a lock-holder run completes every operation or fails it typed, and stops the process", () =>
    Effect.gen(function*() {
      const report = yield* Simulation.run({
        seed: 3,
        workers: 4,
        operations: 80,
        mix: "write=50,transaction=50",
        faults: "busy=lock-holder,lock-ms=30,lock-every=60"
      })
      const [run] = report.runs
      assert.strictEqual(run!.operations.completed + run!.operations.failed, 80)
      // Failures, if any, are typed: the lock still held after the busy retries, or the writer lane's queue timing out.
      for (const tag of Object.keys(run!.errors)) {
        assert.match(tag, /^SqlError\((SQLITE_BUSY|AcquireTimeoutError)\)$/)
      }
      assert.isAtLeast(run!.lockHolder!.bursts, 1)
      assert.strictEqual(run!.connections.closed, run!.connections.created)
    }))

  it.live("a lock holder that cannot open the database is a typed LockHolderError", () =>
    Effect.gen(function*() {
      const filename = yield* tempDatabase
      const result = yield* Effect.either(
        LockHolder.start(`${filename}/not-a-directory/x.db`, { holdMs: 10, everyMs: 20 })
      )
      assert.isTrue(result._tag === "Left")
      if (result._tag === "Left") {
        assert.strictEqual(result.left._tag, "LockHolderError")
        assert.match(result.left.message, /the lock-holder process failed: it exited .* before opening/)
      }
    }).pipe(Effect.scoped))
})
