import { SqlClient, SqlSchema } from "@effect/sql"
import * as Migrator from "@effect/sql/Migrator"
import { assert, describe, it } from "@effect/vitest"
import { Connector, PoolConfig, SqlitePool } from "@sqlsim/sqlite-pool"
import Database from "better-sqlite3"
import { Chunk, Deferred, Effect, Exit, Fiber, Layer, Ref, Schedule, Schema, type Scope, Stream } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"

import { tempDatabase } from "@sqlsim/test-kit/TempDir"
import { eventually } from "./utils.js"

const lockHolder = fileURLToPath(new URL("./fixtures/lock-holder.mjs", import.meta.url))

/** Runs `body` against a SqlitePool layer on a fresh file database. */
const withPool = <A, E>(
  input: PoolConfig.SqliteInput,
  body: (
    filename: string
  ) => Effect.Effect<A, E, SqlClient.SqlClient | SqlitePool.SqlitePool | SqlitePool.Reader | Scope.Scope>
) =>
  Effect.scoped(
    Effect.flatMap(tempDatabase, (filename) =>
      body(filename).pipe(Effect.provide(SqlitePool.layer({ ...input, filename }))))
  )

/** Spawns the lock-holder process and waits until it holds the write lock. */
const holdWriteLock = (filename: string, holdMs: number) =>
  Effect.acquireRelease(
    Effect.async<{ readonly exited: Promise<number | null> }, Error>((resume) => {
      const child = spawn(process.execPath, [lockHolder, filename, String(holdMs)], {
        stdio: ["ignore", "pipe", "inherit"]
      })
      const exited = new Promise<number | null>((done) => child.on("exit", (code) => done(code)))
      child.stdout.on("data", (chunk: Buffer) => {
        if (chunk.toString().includes("locked")) resume(Effect.succeed({ exited }))
      })
      child.on("error", (error) => resume(Effect.fail(error)))
      return Effect.sync(() => child.kill("SIGKILL"))
    }),
    ({ exited }) => Effect.promise(() => exited)
  )

/** The values of table `t`, in insertion order. */
const values = (sql: SqlClient.SqlClient) =>
  Effect.map(sql<{ x: number }>`SELECT x FROM t ORDER BY rowid`, (rows) => rows.map((row) => row.x))

/**
 * Forks a writer transaction that inserts `first` into `t`, then stays open until `finish` runs, then inserts `last`
 * (if given). Returns once the transaction is open.
 */
const holdTransaction = (sql: SqlClient.SqlClient, first: number, last?: number) =>
  Effect.gen(function*() {
    const inside = yield* Deferred.make<void>()
    const finish = yield* Deferred.make<void>()
    const fiber = yield* Effect.fork(sql.withTransaction(Effect.gen(function*() {
      yield* sql`INSERT INTO t VALUES (${first})`
      yield* Deferred.succeed(inside, undefined)
      yield* Deferred.await(finish)
      if (last !== undefined) yield* sql`INSERT INTO t VALUES (${last})`
    })))
    yield* Deferred.await(inside)
    return { fiber, finish: Deferred.succeed(finish, undefined) }
  })

/** Polls `condition` every few milliseconds (real time) until it holds; fails after 10 s. */
const waitFor = (condition: Effect.Effect<boolean>) =>
  condition.pipe(
    Effect.repeat({ until: (done) => done, schedule: Schedule.spaced("5 millis") }),
    Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("condition never held") })
  )

// The Reader's contract holds whether its connections live on this thread or in worker threads.
describe.each([false, true])("the Reader contract (readerThreads: %s)", (readerThreads) => {
  it.live(
    "a Reader is not blocked by a write transaction held open across Effect.sleep",
    () =>
      withPool({ readConnections: 2, readerThreads }, () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const reader = yield* SqlitePool.Reader
          yield* sql`CREATE TABLE t (x INTEGER)`
          yield* sql`INSERT INTO t VALUES (1)`
          yield* reader`SELECT 1` // the Reader's connection is open (and its worker started) before the window
          const inside = yield* Deferred.make<void>()
          const readDone = yield* Deferred.make<void>()
          // The transaction stays open across a sleep and until the read has completed: a Reader blocked by it
          // would never complete (the test would time out).
          const writer = yield* Effect.fork(
            sql.withTransaction(Effect.gen(function*() {
              yield* sql`INSERT INTO t VALUES (2)`
              yield* Deferred.succeed(inside, undefined)
              yield* Effect.sleep("50 millis")
              yield* Deferred.await(readDone)
            }))
          )
          yield* Deferred.await(inside)
          // The read completes while the write transaction is still open, and sees the last committed state.
          const rows = yield* reader<{ n: number }>`SELECT count(*) AS n FROM t`
          assert.strictEqual(rows[0]?.n, 1)
          yield* Deferred.succeed(readDone, undefined)
          yield* Fiber.join(writer)
          const after = yield* reader<{ n: number }>`SELECT count(*) AS n FROM t`
          assert.strictEqual(after[0]?.n, 2)
        })),
    20_000
  )

  it.live("a write through the Reader fails with a SqlError that says where writes go", () =>
    withPool({ readerThreads }, () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const reader = yield* SqlitePool.Reader
        yield* sql`CREATE TABLE t (x INTEGER)`
        const error = yield* Effect.flip(reader`INSERT INTO t VALUES (1)`)
        assert.strictEqual(error._tag, "SqlError")
        assert.include(error.message, "read-only")
        assert.deepStrictEqual(yield* sql`SELECT * FROM t`, [])
      })))

  it.live("a Reader transaction has a connection of its own; single statements go on beside it", () =>
    withPool({ readConnections: 2, readerThreads }, () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const reader = yield* SqlitePool.Reader
        yield* sql`CREATE TABLE t (x INTEGER)`
        yield* sql`INSERT INTO t VALUES (1)`
        const inside = yield* Deferred.make<void>()
        const finish = yield* Deferred.make<void>()
        const snapshot = yield* Effect.fork(reader.withTransaction(Effect.gen(function*() {
          const [before] = yield* reader<{ n: number }>`SELECT count(*) AS n FROM t`
          yield* Deferred.succeed(inside, undefined)
          yield* Deferred.await(finish)
          const [after] = yield* reader<{ n: number }>`SELECT count(*) AS n FROM t`
          return [before?.n, after?.n]
        })))
        yield* Deferred.await(inside)
        yield* sql`INSERT INTO t VALUES (2)`
        // Outside the transaction a statement sees the new row at once, while the transaction still holds its snapshot.
        assert.strictEqual((yield* reader<{ n: number }>`SELECT count(*) AS n FROM t`)[0]?.n, 2)
        yield* Deferred.succeed(finish, undefined)
        assert.deepStrictEqual(yield* Fiber.join(snapshot), [1, 1])
      })))
})

/** The live connector without its connections' read-only views: the Reader then decides from a statement's text. */
const withoutReadOnlyViews = Layer.effect(
  Connector.Connector,
  Effect.map(Connector.makeLive, (live) =>
    Connector.Connector.of({
      ...live,
      connect: (options) => Effect.map(live.connect(options), ({ readOnly: _readOnly, ...connection }) => connection)
    }))
)

// With no connections of its own the Reader runs on the writer's connection, and still refuses every write.
describe.each(
  [
    ["its read-only view", Layer.empty],
    ["the statement's text", withoutReadOnlyViews]
  ] as const
)("the Reader with readConnections: 0, deciding by %s", (_, connector) => {
  const withReaderOnWriter = <A, E>(
    body: (sql: SqlClient.SqlClient, reader: SqlClient.SqlClient) => Effect.Effect<A, E>
  ) =>
    Effect.scoped(Effect.flatMap(tempDatabase, (filename) =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`CREATE TABLE t (x INTEGER)`
        yield* sql`INSERT INTO t VALUES (1)`
        return yield* body(sql, yield* SqlitePool.Reader)
      }).pipe(
        Effect.provide(SqlitePool.layer({ filename, readConnections: 0 }).pipe(Layer.provide(connector)))
      )))

  it.live("refuses writes, telling where they go, and stores nothing", () =>
    withReaderOnWriter((sql, reader) =>
      Effect.gen(function*() {
        const writes = [
          reader`INSERT INTO t VALUES (2)`,
          reader`UPDATE t SET x = 3`,
          reader`DELETE FROM t`,
          reader`CREATE TABLE u (y)`,
          reader`PRAGMA user_version = 7`,
          reader.unsafe("INSERT INTO t VALUES (4)").raw,
          reader.unsafe("INSERT INTO t VALUES (5)").values,
          reader.unsafe("INSERT INTO t VALUES (6)").unprepared,
          reader.withTransaction(reader`INSERT INTO t VALUES (7)`)
        ]
        for (const write of writes) {
          const error = yield* Effect.flip(write)
          assert.strictEqual(error._tag, "SqlError")
          assert.include(error.message, "SqlitePool.Reader is read-only")
        }
        const streamed = yield* Effect.flip(Stream.runCollect(reader`INSERT INTO t VALUES (8)`.stream))
        assert.include(streamed.message, "read-only")
        assert.deepStrictEqual(yield* sql`SELECT x FROM t`, [{ x: 1 }])
        assert.deepStrictEqual(yield* sql`PRAGMA user_version`, [{ user_version: 0 }])
      })
    ))

  it.live("reads, in and out of a transaction, and the writer goes on writing", () =>
    withReaderOnWriter((sql, reader) =>
      Effect.gen(function*() {
        assert.deepStrictEqual(yield* reader`SELECT x FROM t`, [{ x: 1 }])
        assert.deepStrictEqual(yield* reader.withTransaction(reader`SELECT count(*) AS n FROM t`), [{ n: 1 }])
        assert.deepStrictEqual(Chunk.toReadonlyArray(yield* Stream.runCollect(reader`SELECT x FROM t`.stream)), [{
          x: 1
        }])
        yield* sql`INSERT INTO t VALUES (2)`
        assert.deepStrictEqual(yield* reader`SELECT count(*) AS n FROM t`, [{ n: 2 }])
      })
    ))
})

describe("SqlitePool", () => {
  it.scoped("commits and rolls back transactions on the writer lane", () =>
    withPool({}, () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`CREATE TABLE t (x INTEGER)`
        yield* sql.withTransaction(sql`INSERT INTO t VALUES (1)`)
        const failed = yield* Effect.exit(
          sql.withTransaction(Effect.zipRight(sql`INSERT INTO t VALUES (2)`, Effect.fail("boom")))
        )
        assert.isTrue(Exit.isFailure(failed))
        assert.deepStrictEqual(yield* values(sql), [1])
      })))

  it.scoped("a write transaction takes the write lock at BEGIN, so a read-then-write never meets BUSY_SNAPSHOT", () =>
    withPool({}, (filename) =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`CREATE TABLE t (x INTEGER)`
        yield* sql`INSERT INTO t VALUES (1)`
        const other = yield* Effect.acquireRelease(
          Effect.sync(() => new Database(filename, { timeout: 0 })),
          (db) => Effect.sync(() => db.close())
        )
        const inside = yield* Deferred.make<void>()
        const finish = yield* Deferred.make<void>()
        const transaction = yield* Effect.fork(sql.withTransaction(Effect.gen(function*() {
          const [row] = yield* sql<{ n: number }>`SELECT count(*) AS n FROM t`
          yield* Deferred.succeed(inside, undefined)
          yield* Deferred.await(finish)
          yield* sql`INSERT INTO t VALUES (${(row?.n ?? 0) + 1})`
        })))
        yield* Deferred.await(inside)
        // The transaction has only read so far, yet another connection cannot write: with a deferred BEGIN it could,
        // and the transaction's own write would then fail with SQLITE_BUSY_SNAPSHOT.
        const blocked = yield* Effect.try(() => other.prepare("INSERT INTO t VALUES (99)").run()).pipe(Effect.flip)
        assert.strictEqual((blocked.error as { code?: string }).code, "SQLITE_BUSY")
        yield* Deferred.succeed(finish, undefined)
        yield* Fiber.join(transaction)
        assert.deepStrictEqual(yield* values(sql), [1, 2])
      })))

  it.scoped("a failed nested block rolls back only itself (savepoints)", () =>
    withPool({}, () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`CREATE TABLE t (x INTEGER)`
        yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO t VALUES (1)`
          const inner = yield* Effect.exit(
            sql.withTransaction(Effect.zipRight(sql`INSERT INTO t VALUES (2)`, Effect.fail("inner")))
          )
          assert.isTrue(Exit.isFailure(inner))
          yield* sql.withTransaction(sql`INSERT INTO t VALUES (3)`)
        }))
        assert.deepStrictEqual(yield* values(sql), [1, 3])
      })))

  it.scoped("a transaction holds the writer until it ends: other writes queue behind it, in order", () =>
    withPool({}, () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const pool = yield* SqlitePool.SqlitePool
        yield* sql`CREATE TABLE t (x INTEGER)`
        const transaction = yield* holdTransaction(sql, 1, 2)
        const queued = yield* Effect.fork(sql`INSERT INTO t VALUES (3)`)
        yield* Effect.yieldNow()
        assert.strictEqual((yield* pool.stats).writerWaiting, 1, "the write queues behind the open transaction")
        assert.isNull(queued.unsafePoll(), "the queued write has not run")
        yield* transaction.finish
        yield* Fiber.join(transaction.fiber)
        yield* Fiber.join(queued)
        assert.deepStrictEqual(yield* values(sql), [1, 2, 3])
        const stats = yield* pool.stats
        assert.strictEqual(stats.writerWaiting, 0)
        assert.isUndefined(stats.replication, "a file has no replicas")
        assert.strictEqual(stats.writer.created, 1)
      })))

  it.scoped("a statement interrupted while it waits for the writer never runs, and the lane goes on serving", () =>
    withPool({}, () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const pool = yield* SqlitePool.SqlitePool
        yield* sql`CREATE TABLE t (x INTEGER)`
        const transaction = yield* holdTransaction(sql, 1)
        const first = yield* Effect.fork(sql`INSERT INTO t VALUES (2)`)
        const second = yield* Effect.fork(sql`INSERT INTO t VALUES (3)`)
        yield* Effect.yieldNow()
        assert.strictEqual((yield* pool.stats).writerWaiting, 2)
        yield* Fiber.interrupt(first)
        assert.strictEqual((yield* pool.stats).writerWaiting, 1, "the interrupted statement left the queue")
        yield* transaction.finish
        yield* Fiber.join(transaction.fiber)
        yield* Fiber.join(second)
        yield* sql`INSERT INTO t VALUES (4)`
        assert.deepStrictEqual(yield* values(sql), [1, 3, 4])
        assert.strictEqual((yield* pool.stats).writerWaiting, 0)
      })))

  it.scoped("a failed statement gives the lane back: the next statement and transaction run", () =>
    withPool({}, () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`CREATE TABLE t (x INTEGER PRIMARY KEY)`
        yield* sql`INSERT INTO t VALUES (1)`
        const duplicate = yield* Effect.exit(sql`INSERT INTO t VALUES (1)`)
        assert.isTrue(Exit.isFailure(duplicate))
        yield* sql.withTransaction(sql`INSERT INTO t VALUES (2)`)
        yield* sql`INSERT INTO t VALUES (3)`
        assert.deepStrictEqual(yield* values(sql), [1, 2, 3])
      })))

  it.scoped("Reader statements run on one connection, also from 16 fibers, and keep none between them", () =>
    withPool({ readConnections: 3 }, () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const reader = yield* SqlitePool.Reader
        const pool = yield* SqlitePool.SqlitePool
        yield* sql`CREATE TABLE t (x INTEGER)`
        yield* sql`INSERT INTO t VALUES (1)`
        for (let i = 0; i < 20; i++) yield* reader`SELECT x FROM t`
        yield* Effect.forEach(
          Array.from({ length: 16 }),
          () => Effect.repeatN(reader`SELECT x FROM t`, 9),
          { concurrency: "unbounded" }
        )
        // Statements share a connection (shared leases) and find the last one used: 180 statements, one connection,
        // and it is back in the pool as soon as the last statement ended (nothing is kept, no timer gives it back).
        const readers = (yield* pool.stats).readers
        assert.deepInclude(readers, { created: 1, inUse: 0, idle: 1 })
        assert.strictEqual(readers.acquired, readers.released)
      })))

  it.live("with readConnections 1, Reader statements do not keep the connection from a Reader transaction", () =>
    withPool({ readConnections: 1 }, () =>
      Effect.gen(function*() {
        const reader = yield* SqlitePool.Reader
        const pool = yield* SqlitePool.SqlitePool
        const reads = yield* Effect.fork(Effect.forever(Effect.zipRight(reader`SELECT 1`, Effect.yieldNow())))
        yield* Effect.sleep("20 millis")
        const [row] = yield* reader.withTransaction(reader<{ one: number }>`SELECT 1 AS one`).pipe(
          Effect.timeoutFail({
            duration: "2 seconds",
            onTimeout: () => new Error("the transaction never got the connection")
          })
        )
        assert.strictEqual(row?.one, 1)
        yield* Fiber.interrupt(reads)
        assert.isAbove((yield* pool.stats).readers.acquired, 2)
      })))

  it.scoped("readConnections 0 runs Reader queries on the writer lane", () =>
    withPool({ readConnections: 0 }, () =>
      Effect.gen(function*() {
        const reader = yield* SqlitePool.Reader
        const sql = yield* SqlClient.SqlClient
        yield* sql`CREATE TABLE t (x INTEGER)`
        yield* sql`INSERT INTO t VALUES (1)`
        assert.deepStrictEqual(yield* reader`SELECT x FROM t`, [{ x: 1 }])
        const stats = yield* (yield* SqlitePool.SqlitePool).stats
        assert.strictEqual(stats.readers.created, 0)
        assert.strictEqual(stats.writer.created, 1)
      })))

  it.scoped("the writer lane is one connection, and maxConnections is refused with what to use instead", () =>
    withPool({}, () =>
      Effect.gen(function*() {
        const refused = yield* Effect.flip(PoolConfig.makeSqlite({ maxConnections: 8 } as PoolConfig.SqliteInput))
        assert.strictEqual(refused.field, "maxConnections")
        assert.match(refused.message, /one connection.*readConnections/)
        const sql = yield* SqlClient.SqlClient
        yield* sql`CREATE TABLE t (x INTEGER)`
        yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) => sql`INSERT INTO t VALUES (${i})`, {
          concurrency: 20
        })
        const stats = (yield* (yield* SqlitePool.SqlitePool).stats).writer
        assert.strictEqual(stats.created, 1)
        assert.strictEqual((yield* sql<{ n: number }>`SELECT count(*) AS n FROM t`)[0]?.n, 20)
      })))

  it.live(
    "writes wait for another process's write lock without blocking the event loop, then succeed",
    () =>
      withPool({ retryMaxDelay: "20 millis", acquireTimeout: "10 seconds" }, (filename) =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const pool = yield* SqlitePool.SqlitePool
          yield* sql`CREATE TABLE t (x INTEGER)`
          const ticks = yield* Ref.make(0)
          const ticker = yield* Effect.fork(
            Effect.forever(Effect.zipRight(Effect.sleep("5 millis"), Ref.update(ticks, (n) => n + 1)))
          )
          const { exited } = yield* holdWriteLock(filename, 300)
          yield* Ref.set(ticks, 0)
          yield* sql`INSERT INTO t VALUES (1)`
          yield* sql.withTransaction(sql`INSERT INTO t VALUES (2)`)
          const ticked = yield* Ref.get(ticks)
          yield* Fiber.interrupt(ticker)
          const stats = yield* pool.stats
          assert.isAbove(stats.busyRetries, 0, "the write met SQLITE_BUSY and was retried")
          // A busy wait inside SQLite would have frozen the timer fiber for the whole hold.
          assert.isAbove(ticked, 5, "the event loop kept running while the write waited")
          assert.strictEqual((yield* sql<{ n: number }>`SELECT count(*) AS n FROM t`)[0]?.n, 2)
          assert.strictEqual(yield* Effect.promise(() => exited), 0)
        })),
    30_000
  )

  it.live(
    "statements waiting out another process's lock wait side by side; a transaction waits for them, not they for it",
    () =>
      withPool({ retryMaxDelay: "20 millis" }, (filename) =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const pool = yield* SqlitePool.SqlitePool
          yield* sql`CREATE TABLE t (x INTEGER)`
          const { exited } = yield* holdWriteLock(filename, 400)
          const first = yield* Effect.fork(sql`INSERT INTO t VALUES (1)`)
          const second = yield* Effect.fork(sql`INSERT INTO t VALUES (2)`)
          yield* waitFor(Effect.map(pool.stats, (s) => s.busyRetries >= 2))
          // Both statements are retrying at once: neither queues behind the other.
          assert.strictEqual((yield* pool.stats).writerWaiting, 0)
          const transaction = yield* Effect.fork(sql.withTransaction(Effect.gen(function*() {
            const [seen] = yield* sql<{ n: number }>`SELECT count(*) AS n FROM t`
            yield* sql`INSERT INTO t VALUES (3)`
            return seen?.n
          })))
          yield* waitFor(Effect.map(pool.stats, (s) => s.writerWaiting === 1))
          const later = yield* Effect.fork(sql`INSERT INTO t VALUES (4)`)
          yield* waitFor(Effect.map(pool.stats, (s) => s.writerWaiting === 2))
          yield* Fiber.join(Fiber.zip(first, second))
          // The transaction began after both statements had committed, and the later statement ran after it.
          assert.strictEqual(yield* Fiber.join(transaction), 2)
          yield* Fiber.join(later)
          const rows = yield* values(sql)
          assert.deepStrictEqual(rows.slice(2), [3, 4])
          assert.sameMembers(rows.slice(0, 2), [1, 2])
          assert.strictEqual(yield* Effect.promise(() => exited), 0)
        })),
    30_000
  )

  it.live(
    "after the lane gave its connection back, statements waiting out a lock still share it instead of queueing",
    () =>
      withPool({ retryMaxDelay: "20 millis" }, (filename) =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const pool = yield* SqlitePool.SqlitePool
          yield* sql`CREATE TABLE t (x INTEGER)`
          // A second without statements: the lane gives its kept connection back to the pool.
          yield* eventually(Effect.map(pool.stats, (s) => s.writer.inUse === 0), "the lane gives its connection back")
          const { exited } = yield* holdWriteLock(filename, 400)
          const first = yield* Effect.fork(sql`INSERT INTO t VALUES (1)`)
          const second = yield* Effect.fork(sql`INSERT INTO t VALUES (2)`)
          yield* waitFor(Effect.map(pool.stats, (s) => s.busyRetries >= 2))
          assert.strictEqual((yield* pool.stats).writerWaiting, 0)
          yield* Fiber.join(Fiber.zip(first, second))
          assert.sameMembers(yield* values(sql), [1, 2])
          assert.strictEqual(yield* Effect.promise(() => exited), 0)
        })),
    30_000
  )

  it.live(
    "a write still locked after acquireTimeout fails with a typed SqlError, not a defect",
    () =>
      withPool({ retryMaxDelay: "20 millis", acquireTimeout: "100 millis" }, (filename) =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          yield* sql`CREATE TABLE t (x INTEGER)`
          yield* holdWriteLock(filename, 1_000)
          const error = yield* Effect.flip(sql`INSERT INTO t VALUES (1)`)
          assert.strictEqual(error._tag, "SqlError")
          assert.include(error.message, "locked")
        })),
    30_000
  )

  it.scoped("@effect/sql's Migrator and a SqlSchema query run on the layer", () =>
    withPool({}, () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const ran = yield* Migrator.make({})({
          loader: Migrator.fromRecord({
            "1_create_people": sql`CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL)`,
            "2_seed": sql`INSERT INTO people (name) VALUES ('Ada'), ('Grace')`
          })
        })
        assert.deepStrictEqual(ran.map(([id]) => id), [1, 2])
        const Person = Schema.Struct({ id: Schema.Number, name: Schema.String })
        const findByName = SqlSchema.findOne({
          Request: Schema.String,
          Result: Person,
          execute: (name) => sql`SELECT id, name FROM people WHERE name = ${name}`
        })
        const grace = yield* findByName("Grace")
        assert.strictEqual(grace._tag, "Some")
        assert.deepStrictEqual(grace._tag === "Some" ? grace.value.name : undefined, "Grace")
      })))

  it.scoped("a dead writer connection is replaced for the next statement; the failed one reports its error", () =>
    withPool({ pageCacheKiB: 0 }, (filename) =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const pool = yield* SqlitePool.SqlitePool
        // Keep the rows in the WAL (no automatic checkpoint), then cut the WAL short under the open connection:
        // SQLite's own SQLITE_IOERR, fatal to that connection.
        yield* sql`PRAGMA wal_autocheckpoint = 0`
        yield* sql`CREATE TABLE t (x INTEGER, payload BLOB)`
        yield* sql`INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000)
          SELECT x, randomblob(200) FROM c`
        fs.truncateSync(`${filename}-wal`, 100)
        const failed = yield* Effect.flip(sql`SELECT max(x) AS x FROM t`)
        assert.strictEqual(failed._tag, "SqlError")
        assert.match(String((failed.cause as { code?: string }).code), /^SQLITE_IOERR/)
        assert.deepStrictEqual(yield* sql`SELECT 1 AS one`, [{ one: 1 }])
        const stats = (yield* pool.stats).writer
        assert.strictEqual(stats.created, 2, "a new writer connection was opened")
        assert.strictEqual(stats.invalidated, 1)
        assert.strictEqual(stats.closed, 1)
      })))

  for (const readerThreads of [false, true]) {
    it.scoped(`a database file deleted under the layer (readerThreads: ${readerThreads}): writes and reads fail typed, naming it; nothing is created`, () =>
      withPool({ readConnections: 1, readerThreads }, (filename) =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const reader = yield* SqlitePool.Reader
          yield* sql`CREATE TABLE t (x INTEGER)`
          yield* sql`INSERT INTO t VALUES (1)`
          assert.deepStrictEqual(yield* reader`SELECT x FROM t`, [{ x: 1 }])
          fs.rmSync(filename)
          for (const statement of [sql`INSERT INTO t VALUES (2)`, reader`SELECT x FROM t`]) {
            const error = yield* Effect.flip(statement)
            assert.match(error.message, /database file was deleted after the pool had opened it, and the old file/)
          }
          assert.isFalse(fs.existsSync(filename), "no empty database was created in its place")
        })))
  }

  it.scoped("stats and health cover both lanes", () =>
    withPool({ readConnections: 2 }, () =>
      Effect.gen(function*() {
        const pool = yield* SqlitePool.SqlitePool
        const reader = yield* SqlitePool.Reader
        yield* reader`SELECT 1`
        const health = yield* pool.healthCheck
        assert.isTrue(health.ok)
        assert.strictEqual(health.writer.journalMode, "wal")
        assert.strictEqual(health.readers?.journalMode, "wal")
        const stats = yield* pool.stats
        assert.strictEqual(stats.writer.created, 1)
        // The health check ran as statements of the lanes: on the connection the statements before it used.
        assert.strictEqual(stats.readers.created, 1)
        assert.strictEqual(stats.readers.inUse, 0)
      })))

  it.effect("bad config fails the layer with a PoolConfigError naming the field", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(SqlitePool.layer({ readConnections: -1 })).pipe(Effect.scoped))
      assert.strictEqual(error._tag, "PoolConfigError")
      assert.strictEqual(error._tag === "PoolConfigError" ? error.field : "", "readConnections")
    }))
})
