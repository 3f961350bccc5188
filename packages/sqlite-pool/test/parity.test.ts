/**
 * Parity with `@effect/sql-sqlite-node`'s SqliteClient: what an app switching to SqlitePool.layer relies on, on real
 * files: the SqliteClient tag with export, backup and loadExtension, name transforms, onConnect, streams, the
 * Migrator with its schema dump.
 */
import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqliteMigrator from "@effect/sql-sqlite-node/SqliteMigrator"
import { assert, describe, it } from "@effect/vitest"
import { type PoolConfig, SqlitePool } from "@sqlsim/sqlite-pool"
import Database from "better-sqlite3"
import { Chunk, Deferred, Effect, Fiber, Layer, Stream, String as Str, Tracer } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { tempDir, waitUntil } from "./utils.js"

const extensionSource = fileURLToPath(new URL("./fixtures/answer-extension.c", import.meta.url))

/** The layer on a file of a fresh directory, built in the test's Scope. */
const layerOn = (input: PoolConfig.SqliteInput) =>
  Effect.gen(function*() {
    const directory = yield* tempDir
    const filename = path.join(directory, "app.db")
    const context = yield* Layer.build(SqlitePool.layer({ ...input, filename }))
    return { directory, filename, context }
  })

describe("SqlitePool as a drop-in for SqliteClient", () => {
  it.scoped("provides SqliteClient.SqliteClient: the writer lane, with export and backup", () =>
    Effect.gen(function*() {
      const { directory, filename, context } = yield* layerOn({})
      const sqlite = context.unsafeMap.get(SqliteClient.SqliteClient.key) as SqliteClient.SqliteClient
      const sql = context.unsafeMap.get(SqlClient.SqlClient.key) as SqlClient.SqlClient
      assert.strictEqual(sqlite, sql as unknown)
      assert.strictEqual(sqlite.config.filename, filename)
      yield* sqlite`CREATE TABLE note (text TEXT)`
      yield* sqlite`INSERT INTO note VALUES ('kept')`
      const image = yield* sqlite.export
      assert.isAbove(image.byteLength, 0)
      const imageFile = path.join(directory, "image.db")
      fs.writeFileSync(imageFile, image)
      const fromImage = new Database(imageFile, { readonly: true })
      assert.deepStrictEqual(fromImage.prepare("SELECT text FROM note").all(), [{ text: "kept" }])
      fromImage.close()
      const copy = path.join(directory, "copy.db")
      const metadata = yield* sqlite.backup(copy)
      assert.strictEqual(metadata.remainingPages, 0)
      const restored = new Database(copy, { readonly: true })
      assert.deepStrictEqual(restored.prepare("SELECT text FROM note").all(), [{ text: "kept" }])
      restored.close()
    }))

  it.scoped("transformQueryNames and transformResultNames work on both lanes, for insert, update and RETURNING", () =>
    Effect.gen(function*() {
      const { context } = yield* layerOn({
        transformQueryNames: Str.camelToSnake,
        transformResultNames: Str.snakeToCamel
      })
      const sql = context.unsafeMap.get(SqlClient.SqlClient.key) as SqlClient.SqlClient
      const reader = context.unsafeMap.get(SqlitePool.Reader.key) as SqlClient.SqlClient
      yield* sql`CREATE TABLE people (id INTEGER PRIMARY KEY, first_name TEXT, last_name TEXT)`
      const inserted = yield* sql`INSERT INTO people ${sql.insert({ firstName: "Ada", lastName: "Byron" })} RETURNING *`
      assert.deepStrictEqual(inserted, [{ id: 1, firstName: "Ada", lastName: "Byron" }])
      const updated = yield* sql`UPDATE people SET ${sql.update({ lastName: "Lovelace" })} WHERE ${
        sql("id")
      } = 1 RETURNING *`
      assert.deepStrictEqual(updated, [{ id: 1, firstName: "Ada", lastName: "Lovelace" }])
      assert.deepStrictEqual(yield* reader`SELECT first_name, last_name FROM people`, [{
        firstName: "Ada",
        lastName: "Lovelace"
      }])
      assert.deepStrictEqual(
        yield* reader.withTransaction(reader`SELECT ${reader("firstName")} FROM people`),
        [{ firstName: "Ada" }]
      )
    }))

  it.scoped("onConnect runs on every new connection before its first use, readers included", () =>
    Effect.gen(function*() {
      const roles: Array<string> = []
      const { context } = yield* layerOn({
        readConnections: 2,
        onConnect: ({ database, role }) =>
          Effect.sync(() => {
            roles.push(role)
            database?.function("twice", (x: number) => x * 2)
          })
      })
      const reader = context.unsafeMap.get(SqlitePool.Reader.key) as SqlClient.SqlClient
      const sql = context.unsafeMap.get(SqlClient.SqlClient.key) as SqlClient.SqlClient
      assert.deepStrictEqual(yield* sql`SELECT twice(2) AS n`, [{ n: 4 }])
      // A Reader statement while a read transaction holds the first reader connection opens a second one.
      const inside = yield* Deferred.make<void>()
      const finish = yield* Deferred.make<void>()
      const transaction = yield* Effect.fork(reader.withTransaction(
        Effect.zipRight(
          Deferred.succeed(inside, undefined),
          Effect.zipRight(Deferred.await(finish), reader`SELECT twice(21) AS n`)
        )
      ))
      yield* Deferred.await(inside)
      assert.deepStrictEqual(yield* reader`SELECT twice(5) AS n`, [{ n: 10 }])
      yield* Deferred.succeed(finish, undefined)
      assert.deepStrictEqual(yield* Fiber.join(transaction), [{ n: 42 }])
      assert.deepStrictEqual(roles.sort(), ["reader", "reader", "writer"])
    }))

  it.scoped("an onConnect that fails is a permanent ConnectError naming the hook", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "app.db")
      let calls = 0
      const error = yield* Effect.flip(Layer.build(SqlitePool.layer({
        filename,
        onConnect: () => Effect.suspend(() => (calls++, Effect.fail(new Error("no such pragma"))))
      })))
      assert.strictEqual(error._tag, "ConnectError")
      if (error._tag === "ConnectError") {
        assert.isFalse(error.transient)
        assert.match(error.reason, /onConnect hook failed: .*no such pragma/)
      }
      assert.strictEqual(calls, 1) // not retried
    }))

  it.scoped("loadExtension reaches every connection, present and future, readers included", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const extension = path.join(directory, "answer.so")
      execFileSync("gcc", ["-shared", "-fPIC", "-O1", "-I/usr/include", "-o", extension, extensionSource])
      const { context } = yield* layerOn({ readConnections: 2 })
      const sqlite = context.unsafeMap.get(SqliteClient.SqliteClient.key) as SqliteClient.SqliteClient
      const reader = context.unsafeMap.get(SqlitePool.Reader.key) as SqlClient.SqlClient
      yield* reader`SELECT 1` // a Reader connection open before the extension
      assert.strictEqual((yield* Effect.exit(reader`SELECT answer() AS n`))._tag, "Failure")
      yield* sqlite.loadExtension(extension)
      assert.deepStrictEqual(yield* sqlite`SELECT answer() AS n`, [{ n: 42 }])
      assert.deepStrictEqual(yield* reader`SELECT answer() AS n`, [{ n: 42 }])
      // A reader connection opened afterwards loads it as it opens: a second transaction while the first holds the
      // open connection gets a new one.
      const release = yield* Deferred.make<void>()
      const first = yield* Effect.fork(
        reader.withTransaction(Effect.zipLeft(reader<{ n: number }>`SELECT answer() AS n`, Deferred.await(release)))
      )
      const pool = context.unsafeMap.get(SqlitePool.SqlitePool.key) as SqlitePool.Service
      yield* waitUntil(
        Effect.map(pool.stats, (s) => s.readers.inUse === 1),
        "the first transaction holds its connection"
      )
      assert.deepStrictEqual(yield* reader.withTransaction(reader`SELECT answer() AS n`), [{ n: 42 }])
      yield* Deferred.succeed(release, undefined)
      assert.deepStrictEqual(yield* Fiber.join(first), [{ n: 42 }])
      assert.strictEqual((yield* pool.stats).readers.created, 2)
    }))

  it.scopedLive("loadExtension reaches Reader connections in worker threads too, open ones and later ones", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const extension = path.join(directory, "answer.so")
      execFileSync("gcc", ["-shared", "-fPIC", "-O1", "-I/usr/include", "-o", extension, extensionSource])
      const { context } = yield* layerOn({ readConnections: 2, readerThreads: true })
      const sqlite = context.unsafeMap.get(SqliteClient.SqliteClient.key) as SqliteClient.SqliteClient
      const reader = context.unsafeMap.get(SqlitePool.Reader.key) as SqlClient.SqlClient
      yield* SqlitePool.onWorker(reader`SELECT 1`) // a worker connection open before the extension
      assert.strictEqual((yield* Effect.exit(reader`SELECT answer() AS n`))._tag, "Failure")
      yield* sqlite.loadExtension(extension)
      // On the Reader's main-thread connection and on the open worker.
      assert.deepStrictEqual(yield* reader`SELECT answer() AS n`, [{ n: 42 }])
      assert.deepStrictEqual(yield* SqlitePool.onWorker(reader`SELECT answer() AS n`), [{ n: 42 }])
      // While a transaction holds that worker, a statement opens a second one: it loads the extension as it opens.
      const inside = yield* Deferred.make<void>()
      const finish = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(reader.withTransaction(
        Effect.zipRight(Deferred.succeed(inside, undefined), Deferred.await(finish))
      ))
      yield* Deferred.await(inside)
      assert.deepStrictEqual(yield* SqlitePool.onWorker(reader`SELECT answer() AS n`), [{ n: 42 }])
      yield* Deferred.succeed(finish, undefined)
      yield* Fiber.join(holder)
      const pool = context.unsafeMap.get(SqlitePool.SqlitePool.key) as SqlitePool.Service
      assert.strictEqual((yield* pool.stats).readers.created, 2)
    }))

  it.scoped("SqliteMigrator runs its migrations and writes the schema dump", () =>
    Effect.gen(function*() {
      const { context, directory } = yield* layerOn({})
      const schemaDirectory = path.join(directory, "schema")
      const ran = yield* SqliteMigrator.run({
        loader: SqliteMigrator.fromRecord({
          "0001_notes": Effect.flatMap(SqlClient.SqlClient, (sql) => sql`CREATE TABLE notes (id INTEGER PRIMARY KEY)`)
        }),
        schemaDirectory
      }).pipe(Effect.provide(context), Effect.provide(NodeContext.layer))
      assert.deepStrictEqual(ran, [[1, "notes"]])
      const dump = fs.readFileSync(path.join(schemaDirectory, "_schema.sql"), "utf8")
      assert.match(dump, /CREATE TABLE notes/)
      assert.match(dump, /INSERT INTO effect_sql_migrations/)
    }))
})

describe("transaction spans", () => {
  it.scoped("carry db.system.name and upstream's commit, savepoint and rollback events", () =>
    Effect.gen(function*() {
      const spans: Array<Tracer.Span> = []
      const native = yield* Effect.tracer
      const recording = Tracer.make({
        ...native,
        span: (...args) => {
          const span = native.span(...args)
          spans.push(span)
          return span
        }
      })
      const { context } = yield* layerOn({ spanAttributes: { "service.name": "parity" } })
      const sql = context.unsafeMap.get(SqlClient.SqlClient.key) as SqlClient.SqlClient
      yield* sql`CREATE TABLE t (x INTEGER)`
      yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`INSERT INTO t VALUES (1)`
        yield* sql.withTransaction(sql`INSERT INTO t VALUES (2)`)
        yield* Effect.ignore(sql.withTransaction(Effect.zipRight(sql`INSERT INTO t VALUES (3)`, Effect.fail("undo"))))
      })).pipe(Effect.withTracer(recording))
      const transactions = spans.filter((span) => span.name === "sql.transaction")
      assert.lengthOf(transactions, 3)
      for (const span of transactions) {
        assert.strictEqual(span.attributes.get("db.system.name"), "sqlite")
        assert.strictEqual(span.attributes.get("service.name"), "parity")
      }
      const events = transactions.map((span) =>
        (span as unknown as { events: Array<[string]> }).events.map(([name]) => name)
      )
      assert.deepStrictEqual(events.sort(), [["db.transaction.commit"], ["db.transaction.rollback"], [
        "db.transaction.savepoint"
      ]])
      // The statements inside are children of the transaction's span.
      const insert = spans.find((span) =>
        span.name === "sql.execute" && span.parent._tag === "Some" && span.parent.value === transactions[0]
      )
      assert.isDefined(insert)
    }))
})

describe("streams", () => {
  it.scoped("100,000 rows stream lazily, in constant memory, on both lanes", () =>
    Effect.gen(function*() {
      const { context } = yield* layerOn({})
      const sql = context.unsafeMap.get(SqlClient.SqlClient.key) as SqlClient.SqlClient
      const reader = context.unsafeMap.get(SqlitePool.Reader.key) as SqlClient.SqlClient
      const rows = sql<{ n: number; pad: string }>`
        WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 100000)
        SELECT n, printf('%.2000c', 'x') AS pad FROM c`
      for (const client of [sql, reader]) {
        const statement = client === sql ? rows : reader<{ n: number; pad: string }>`
          WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 100000)
          SELECT n, printf('%.2000c', 'x') AS pad FROM c`
        const collect = () => {
          if (global.gc === undefined) throw new Error("run with --expose-gc (vitest.config.ts passes it)")
          global.gc()
          return process.memoryUsage().heapUsed
        }
        const before = collect()
        let peak = 0
        let count = 0
        let last = 0
        yield* Stream.runForEach(statement.stream, (row) =>
          Effect.sync(() => {
            count++
            last = row.n
            if (count % 10_000 === 0) peak = Math.max(peak, collect() - before)
          }))
        assert.strictEqual(count, 100_000)
        assert.strictEqual(last, 100_000)
        // All rows at once would retain over 200 MB of strings; streamed, a few chunks at most are alive.
        assert.isBelow(peak, 16 * 1024 * 1024)
      }
    }))

  it.scoped("an interrupted stream gives its connection back", () =>
    Effect.gen(function*() {
      const { context } = yield* layerOn({ readConnections: 1 })
      const reader = context.unsafeMap.get(SqlitePool.Reader.key) as SqlClient.SqlClient
      const pool = context.unsafeMap.get(SqlitePool.SqlitePool.key) as SqlitePool.Service
      const endless = reader<{ n: number }>`
        WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT n FROM c`
      const taken = yield* Stream.runCollect(Stream.take(endless.stream, 5))
      assert.deepStrictEqual(Chunk.toReadonlyArray(taken).map((row) => row.n), [1, 2, 3, 4, 5])
      const running = yield* Effect.fork(Stream.runDrain(endless.stream))
      yield* waitUntil(Effect.map(pool.stats, (stats) => stats.readers.inUse === 1), "the stream holds the connection")
      yield* Fiber.interrupt(running)
      assert.strictEqual((yield* pool.stats).readers.inUse, 0)
      // The only reader connection serves again.
      assert.deepStrictEqual(yield* reader`SELECT 1 AS one`, [{ one: 1 }])
    }))
})
