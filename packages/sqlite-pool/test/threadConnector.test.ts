import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Client from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as Statement from "@effect/sql/Statement"
import { assert, describe, expect, it } from "@effect/vitest"
import { Connector, PoolError, SqliteCode } from "@sqlsim/sqlite-pool"
import Database from "better-sqlite3"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Interrupt from "../src/internal/interrupt.js"
import * as ThreadConnector from "../src/internal/threadConnector.js"
import { type RequestFailure, WorkerConnection } from "../src/internal/workerConnection.js"
import type { Answer, Request } from "../src/internal/workerProtocol.js"
import { descriptors, endless, endlessAggregate, threads } from "./threadFixtures.js"
import { randomBytes, tempDir } from "./utils.js"

const options = (
  filename: string,
  overrides: Partial<ThreadConnector.ThreadConnectOptions> = {}
): ThreadConnector.ThreadConnectOptions => ({
  filename,
  readOnly: true,
  busyTimeout: Duration.zero,
  pageCacheKiB: 2000,
  ...overrides
})

/** `sql\`...\`` over one bare connection, as the pool builds its clients. */
const clientOf = (connection: ThreadConnector.ThreadConnection) =>
  Client.make({
    acquirer: Effect.succeed(connection.connection),
    compiler: Statement.makeCompilerSqlite(),
    spanAttributes: []
  }).pipe(Effect.provide(Reactivity.layer))

/** A thread connection and its client, in the current Scope. */
const openThread = (filename: string, overrides: Partial<ThreadConnector.ThreadConnectOptions> = {}) =>
  Effect.gen(function*() {
    const thread = yield* ThreadConnector.connect(options(filename, overrides))
    return { thread, sql: yield* clientOf(thread) }
  })

/** A database file made on the main thread with better-sqlite3, in WAL mode as the pool leaves it. */
const makeDatabase = (directory: string, setup: string) => {
  const filename = path.join(directory, "app.db")
  const db = new Database(filename)
  db.pragma("journal_mode = WAL")
  db.exec(setup)
  db.close()
  return filename
}

/** Resolves when the worker has exited (at once if it has already). */
const exitOf = (thread: ThreadConnector.ThreadConnection) =>
  Effect.promise(() =>
    new Promise<void>((resolve) => {
      if (thread.worker.threadId === -1) resolve()
      else thread.worker.once("exit", () => resolve())
    })
  )

describe("threadConnector", () => {
  it.scopedLive("every SQLite type arrives as a main-thread SqliteClient returns it, with and without safe integers", () =>
    Effect.gen(function*() {
      const filename = makeDatabase(
        yield* tempDir,
        `CREATE TABLE value (id INTEGER PRIMARY KEY, v);
         INSERT INTO value (v) VALUES (42), (-7), (9007199254740993), (0.1), (-2.5e300), ('a' || char(0) || 'b'),
           ('🙂 ü 漢'), (X'00FF00'), (X''), (NULL), (''), (1e0)`
      )
      const { sql } = yield* openThread(filename)
      const main = yield* SqliteClient.make({ filename, readonly: true, disableWAL: true }).pipe(
        Effect.provide(Reactivity.layer)
      )
      const query = (client: Client.SqlClient) => client`SELECT id, v, typeof(v) AS type FROM value ORDER BY id`
      const expected = yield* query(main)
      const rows = yield* query(sql)
      expect(rows).toStrictEqual(expected)
      // Spot checks, so that a change on both sides cannot hide: the values themselves, and Buffers for blobs.
      expect(rows.map((row) => row.v)).toStrictEqual([
        42,
        -7,
        9007199254740992,
        0.1,
        -2.5e300,
        "a\u0000b",
        "🙂 ü 漢",
        Buffer.from([0, 255, 0]),
        Buffer.alloc(0),
        null,
        "",
        1
      ])
      expect(rows[7]!.v).toBeInstanceOf(Buffer)

      const safe = yield* Effect.provideService(query(sql), Client.SafeIntegers, true)
      const safeExpected = yield* Effect.provideService(query(main), Client.SafeIntegers, true)
      expect(safe).toStrictEqual(safeExpected)
      expect(safe[2]!.v).toBe(9007199254740993n)
      expect(safe[0]!.id).toBe(1n)
      // A statement is not left in safe-integer mode for the next fiber that does not ask for it.
      expect((yield* query(sql))[0]!.id).toBe(1)

      const values = yield* sql`SELECT id, v FROM value ORDER BY id`.values
      expect(values).toStrictEqual(yield* main`SELECT id, v FROM value ORDER BY id`.values)
      expect(values[7]![1]).toBeInstanceOf(Buffer)
    }))

  it.scopedLive("parameters cross intact: bigint, blob (Buffer and Uint8Array), text with NUL, null", () =>
    Effect.gen(function*() {
      const filename = makeDatabase(yield* tempDir, "CREATE TABLE unused (x)")
      const { sql } = yield* openThread(filename)
      const echo = (value: unknown) =>
        Effect.map(sql<{ v: unknown; type: string }>`SELECT ${value} AS v, typeof(${value}) AS type`, (rows) => rows[0])
      expect(yield* Effect.provideService(echo(2n ** 62n), Client.SafeIntegers, true)).toStrictEqual({
        v: 2n ** 62n,
        type: "integer"
      })
      expect(yield* echo(Buffer.from("hi\u0000"))).toStrictEqual({ v: Buffer.from("hi\u0000"), type: "blob" })
      expect(yield* echo(new Uint8Array([1, 2, 3]))).toStrictEqual({ v: Buffer.from([1, 2, 3]), type: "blob" })
      expect(yield* echo("x\u0000y 🙂")).toStrictEqual({ v: "x\u0000y 🙂", type: "text" })
      expect(yield* echo(null)).toStrictEqual({ v: null, type: "null" })
      expect(yield* echo(1.5)).toStrictEqual({ v: 1.5, type: "real" })
    }))

  it.scopedLive("a read transaction keeps its snapshot across awaits while another connection writes", () =>
    Effect.gen(function*() {
      const filename = makeDatabase(yield* tempDir, "CREATE TABLE note (n INTEGER); INSERT INTO note VALUES (1)")
      const { sql, thread } = yield* openThread(filename)
      const writer = new Database(filename)
      yield* Effect.addFinalizer(() => Effect.sync(() => writer.close()))
      const count = Effect.map(sql<{ n: number }>`SELECT count(*) AS n FROM note`, (rows) => rows[0]!.n)

      yield* thread.connection.executeUnprepared("BEGIN", [], undefined)
      expect(yield* count).toBe(1)
      writer.prepare("INSERT INTO note VALUES (2)").run()
      yield* Effect.sleep("20 millis")
      expect(yield* count).toBe(1)
      yield* thread.connection.executeUnprepared("COMMIT", [], undefined)
      expect(yield* count).toBe(2)

      // The same through withTransaction, as the Reader runs a read transaction.
      const inside = yield* sql.withTransaction(Effect.gen(function*() {
        const before = yield* count
        writer.prepare("INSERT INTO note VALUES (3)").run()
        yield* Effect.sleep("20 millis")
        return [before, yield* count]
      }))
      expect(inside).toEqual([2, 2])
      expect(yield* count).toBe(3)
    }))

  it.scopedLive("a write on a read-only connection fails with SQLITE_READONLY, and the connection goes on reading", () =>
    Effect.gen(function*() {
      const filename = makeDatabase(yield* tempDir, "CREATE TABLE note (text TEXT); INSERT INTO note VALUES ('kept')")
      const { sql, thread } = yield* openThread(filename)
      const refused = yield* Effect.flip(sql`INSERT INTO note VALUES ('refused')`)
      expect(refused).toBeInstanceOf(SqlError)
      expect(SqliteCode.codeOf(refused)).toBe("SQLITE_READONLY")
      expect(yield* sql`SELECT text FROM note`).toEqual([{ text: "kept" }])
      expect(thread.check()).toBeUndefined()
    }))

  it.scopedLive("a writable connection writes, and executeRaw answers with the run result", () =>
    Effect.gen(function*() {
      const filename = makeDatabase(yield* tempDir, "CREATE TABLE note (text TEXT)")
      const { thread } = yield* openThread(filename, { readOnly: false })
      const info = yield* thread.connection.executeRaw("INSERT INTO note VALUES (?)", ["written"])
      expect(info).toEqual({ changes: 1, lastInsertRowid: 1 })
      const db = new Database(filename, { readonly: true })
      expect(db.prepare("SELECT text FROM note").all()).toEqual([{ text: "written" }])
      db.close()
    }))

  it.scopedLive("SQL errors keep their code and the driver's message; the connection stays usable", () =>
    Effect.gen(function*() {
      const filename = makeDatabase(yield* tempDir, "CREATE TABLE note (text TEXT)")
      const { sql, thread } = yield* openThread(filename)
      const error = yield* Effect.flip(sql`SELECT nope FROM note`)
      expect(SqliteCode.codeOf(error)).toBe("SQLITE_ERROR")
      expect((error.cause as Error).message).toBe("no such column: nope")
      expect(yield* sql`SELECT 1 AS one`).toEqual([{ one: 1 }])
      yield* thread.validate
    }))

  it.scopedLive("concurrent statements each get their own answer", () =>
    Effect.gen(function*() {
      const filename = makeDatabase(yield* tempDir, "CREATE TABLE unused (x)")
      const { sql } = yield* openThread(filename)
      const answers = yield* Effect.forEach(
        Array.from({ length: 50 }, (_, index) => index),
        (index) => Effect.map(sql<{ v: number }>`SELECT ${index} AS v`, (rows) => rows[0]!.v),
        { concurrency: "unbounded" }
      )
      expect(answers).toEqual(Array.from({ length: 50 }, (_, index) => index))
    }))

  it.scopedLive("a stream pulls its rows in batches; ending it early leaves the connection usable", () =>
    Effect.gen(function*() {
      const filename = makeDatabase(
        yield* tempDir,
        `CREATE TABLE n (i INTEGER, b BLOB);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) INSERT INTO n SELECT x, X'01' FROM c`
      )
      const { sql } = yield* openThread(filename, { streamBatchSize: 64 })
      const all = yield* Stream.runCollect(sql<{ i: number; b: Buffer }>`SELECT i, b FROM n ORDER BY i`.stream)
      expect(Chunk.size(all)).toBe(1000)
      expect(Chunk.unsafeGet(all, 999)).toStrictEqual({ i: 1000, b: Buffer.from([1]) })
      const first = yield* Stream.runCollect(Stream.take(sql<{ i: number }>`SELECT i FROM n ORDER BY i`.stream, 3))
      expect(Chunk.toReadonlyArray(first).map((row) => row.i)).toEqual([1, 2, 3])
      // The cursor was closed: the statement (and the connection) run again.
      expect(yield* sql`SELECT count(*) AS n FROM n`).toEqual([{ n: 1000 }])
    }))

  it.scopedLive("a long query interrupted by a timeout ends at once, stops its thread and reports the connection dead", () =>
    Effect.gen(function*() {
      const filename = makeDatabase(yield* tempDir, "CREATE TABLE unused (x)")
      const { sql, thread } = yield* openThread(filename)
      const started = performance.now()
      const exit = yield* Effect.exit(Effect.timeout(sql.unsafe(endless), "100 millis"))
      const elapsed = performance.now() - started
      expect(Exit.isFailure(exit) && Cause.isFailType(exit.cause) && Cause.isTimeoutException(exit.cause.error))
        .toBe(true)
      expect(elapsed).toBeLessThan(2_000)
      expect(thread.check()).toMatch(/worker thread was stopped/)
      // The SQLite work itself stops: the thread exits (at the statement's next row).
      yield* Effect.timeoutFail(exitOf(thread), { duration: "5 seconds", onTimeout: () => "the thread runs on" })
      const after = yield* Effect.flip(sql`SELECT 1`)
      expect(after.message).toMatch(/cannot be used: the worker thread was stopped/)
      // It never reached a worker, so the pool may run it on another connection.
      expect(Connector.isClosedConnection(after)).toBe(true)
      expect(yield* Effect.flip(thread.validate)).toMatchObject({ reason: expect.stringMatching(/stopped/) })
    }))

  it.scopedLive("an aggregate that computes before its first row is stopped too: sqlite3_interrupt ends the SQLite work", () =>
    Effect.gen(function*() {
      const filename = makeDatabase(yield* tempDir, "CREATE TABLE unused (x)")
      const { sql, thread } = yield* openThread(filename)
      yield* sql`SELECT 1`
      const exit = yield* Effect.exit(Effect.timeout(sql.unsafe(endlessAggregate), "100 millis"))
      expect(Exit.isFailure(exit)).toBe(true)
      const stopped = performance.now()
      // Without the interrupt the thread would compute on for minutes; a generous bound, not a measurement.
      yield* Effect.timeoutFail(exitOf(thread), { duration: "5 seconds", onTimeout: () => "the aggregate runs on" })
      expect(performance.now() - stopped).toBeLessThan(5_000)
      expect(thread.check()).toMatch(/worker thread was stopped/)
    }))

  it.scopedLive("closing a connection while an aggregate runs on it ends its thread", () =>
    Effect.gen(function*() {
      const filename = makeDatabase(yield* tempDir, "CREATE TABLE unused (x)")
      const scope = yield* Scope.make()
      const { sql, thread } = yield* Scope.extend(openThread(filename), scope)
      const running = yield* Effect.fork(sql.unsafe(endlessAggregate))
      yield* Effect.sleep("100 millis")
      yield* Scope.close(scope, Exit.void)
      yield* Effect.timeoutFail(exitOf(thread), { duration: "5 seconds", onTimeout: () => "the aggregate runs on" })
      expect(Exit.isFailure(yield* Fiber.await(running))).toBe(true)
    }))

  it.scopedLive("statements queued behind an interrupted one fail as never run (ClosedConnection)", () =>
    Effect.gen(function*() {
      const filename = makeDatabase(yield* tempDir, "CREATE TABLE unused (x)")
      const { sql } = yield* openThread(filename)
      const running = yield* Effect.fork(sql.unsafe(endless))
      yield* Effect.sleep("20 millis")
      const queued = yield* Effect.fork(sql`SELECT 1`)
      yield* Effect.sleep("20 millis")
      yield* Fiber.interrupt(running)
      const error = yield* Effect.flip(Fiber.join(queued))
      expect(Connector.isClosedConnection(error)).toBe(true)
      expect(error.message).toMatch(/never ran/)
    }))

  it.scopedLive("interrupting a queued statement fails the running one typed, not as never run", () =>
    Effect.gen(function*() {
      const filename = makeDatabase(yield* tempDir, "CREATE TABLE unused (x)")
      const { sql } = yield* openThread(filename)
      const running = yield* Effect.fork(sql.unsafe(endless))
      yield* Effect.sleep("20 millis")
      yield* Effect.timeout(sql`SELECT 1`, "20 millis").pipe(Effect.ignore)
      const error = yield* Effect.flip(Fiber.join(running))
      expect(error).toBeInstanceOf(SqlError)
      expect(Connector.isClosedConnection(error)).toBe(false)
      expect(error.message).toMatch(/stopped/)
    }))

  it.scopedLive("a worker stopped from outside fails its running statement with a SqlError, and check() reports it", () =>
    Effect.gen(function*() {
      const filename = makeDatabase(yield* tempDir, "CREATE TABLE unused (x)")
      const { sql, thread } = yield* openThread(filename)
      const running = yield* Effect.fork(sql.unsafe(endless))
      yield* Effect.sleep("50 millis")
      yield* Effect.promise(() => thread.worker.terminate())
      const exit = yield* Fiber.await(running)
      expect(Exit.isFailure(exit) && Cause.isFailType(exit.cause)).toBe(true)
      const error = Cause.squash((exit as Exit.Failure<unknown, unknown>).cause)
      expect(error).toBeInstanceOf(SqlError)
      expect((error as SqlError).message).toMatch(/worker thread exited \(code 1\) while running the statement/)
      expect(thread.check()).toMatch(/worker thread exited/)
    }))

  it.scopedLive("a worker that exits in the middle of a statement fails it typed", () =>
    Effect.gen(function*() {
      const filename = makeDatabase(yield* tempDir, "CREATE TABLE unused (x)")
      const { sql, thread } = yield* openThread(filename, { testHooks: {} })
      const error = yield* Effect.flip(sql`SELECT sqlsim_test_exit(3)`)
      expect(error).toBeInstanceOf(SqlError)
      expect(error.message).toMatch(/exited \(code 3\) while running the statement/)
      expect(thread.check()).toBe("the worker thread exited (code 3)")
    }))

  it.scopedLive("closing the Scope ends every worker: no thread, no file descriptor left", () =>
    Effect.gen(function*() {
      const filename = makeDatabase(yield* tempDir, "CREATE TABLE note (n); INSERT INTO note VALUES (1)")
      // One round first: the process's own lazily started threads (libuv's pool, V8's) are not the workers'.
      yield* Effect.scoped(Effect.flatMap(openThread(filename), ({ sql }) => sql`SELECT n FROM note`))
      const before = { threads: threads(), descriptors: descriptors() }

      const scope = yield* Scope.make()
      const opened = yield* Effect.forEach([1, 2, 3], () => openThread(filename), { concurrency: 3 }).pipe(
        Scope.extend(scope)
      )
      for (const { sql } of opened) expect(yield* sql`SELECT n FROM note`).toEqual([{ n: 1 }])
      // One of them interrupted in the middle of a statement, one stopped from outside.
      yield* Effect.timeout(opened[0]!.sql.unsafe(endless), "50 millis").pipe(Effect.ignore)
      yield* Effect.promise(() => opened[1]!.thread.worker.terminate())
      expect(threads()).toBeGreaterThanOrEqual(before.threads + 1)
      yield* Scope.close(scope, Exit.void)

      expect({ threads: threads(), descriptors: descriptors() }).toEqual(before)
      expect(opened.map(({ thread }) => thread.check())).toEqual([
        expect.stringMatching(/stopped/),
        expect.stringMatching(/exited/),
        "the connection was closed"
      ])
    }))

  it.scopedLive.skipIf(process.platform !== "linux")(
    "the worker thread runs at nice 10, below the event loop",
    () =>
      Effect.gen(function*() {
        const filename = makeDatabase(yield* tempDir, "CREATE TABLE unused (x)")
        const niceness = () =>
          new Map(
            fs.readdirSync("/proc/self/task").map((tid) => {
              const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, "utf8")
              // Field 19 (nice), counted after the parenthesised command name.
              return [tid, Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16])] as const
            })
          )
        const before = niceness()
        const { thread } = yield* openThread(filename)
        const added = [...niceness()].filter(([tid]) => !before.has(tid))
        expect(added.map(([, nice]) => nice)).toContain(10)
        expect(niceness().get(String(process.pid))).toBe(0)
        yield* thread.validate
      })
  )

  describe("the worker's lifecycle: every request waiting fails once, whatever ends the worker", () => {
    /** A WorkerConnection on `filename`, closed with the Scope. */
    const startWorker = (filename: string, testHooks: { exitOnOpen?: number } = {}, interrupt = true) =>
      Effect.acquireRelease(
        Effect.promise(async () =>
          new WorkerConnection({
            filename,
            readOnly: true,
            busyTimeoutMs: 0,
            pageCacheKiB: 2000,
            prepareCacheSize: 10,
            prepareCacheTTLMillis: 60_000,
            niceness: 0,
            extensions: [],
            testHooks: true,
            stallOpen: false,
            exitOnOpen: testHooks.exitOnOpen
          }, interrupt ? await Interrupt.interrupter() : undefined)
        ),
        (worker) => Effect.promise(() => worker.close(2_000))
      )

    /** Sends a request and records every way it is settled: exactly one entry is expected. */
    const track = (worker: WorkerConnection, request: Request) => {
      const settled: Array<Answer | RequestFailure> = []
      worker.send(request, (answer) => settled.push(answer), (failure) => settled.push(failure))
      return settled
    }
    const select = (sql: string): Request => ({ op: "execute", sql, params: [], safeIntegers: false })
    const exited = (worker: WorkerConnection) =>
      Effect.promise(() =>
        new Promise<void>((resolve) => {
          if (worker.state._tag === "Exited") resolve()
          else worker.worker.once("exit", () => setImmediate(resolve))
        })
      )

    it.scopedLive("crash while opening: the opening ends as crashed, a transient ConnectError, no thread left", () =>
      Effect.gen(function*() {
        const filename = makeDatabase(yield* tempDir, "CREATE TABLE unused (x)")
        const worker = yield* startWorker(filename, { exitOnOpen: 7 })
        expect(yield* Effect.promise(() => worker.opened)).toMatchObject({
          _tag: "Crashed",
          reason: "the worker thread exited (code 7) before opening"
        })
        yield* exited(worker)
        expect(worker.state).toEqual({ _tag: "Exited", reason: "the worker thread exited (code 7)" })

        const before = threads()
        const error = yield* Effect.flip(
          Effect.scoped(ThreadConnector.connect(options(filename, { testHooks: { exitOnOpen: 7 } })))
        )
        expect(error).toMatchObject({ _tag: "ConnectError", code: "UNKNOWN", transient: true, attempts: 1 })
        expect(error.reason).toMatch(/exited \(code 7\) before opening/)
        expect(threads()).toBe(before)
      }))

    it.scopedLive("crash while busy: the running request fails as lost, the queued ones as never run, each once", () =>
      Effect.gen(function*() {
        const worker = yield* startWorker(makeDatabase(yield* tempDir, "CREATE TABLE unused (x)"))
        expect(yield* Effect.promise(() => worker.opened)).toEqual({ _tag: "Opened" })
        const running = track(worker, select(endless))
        const queued = [track(worker, select("SELECT 1")), track(worker, select("SELECT 2"))]
        yield* Effect.sleep("50 millis")
        yield* Effect.promise(() => worker.worker.terminate())
        yield* exited(worker)
        expect(running).toEqual([
          { _tag: "Lost", reason: "the worker thread exited (code 1) while running the statement", cause: undefined }
        ])
        for (const settled of queued) {
          expect(settled).toEqual([
            { _tag: "NeverRan", reason: "the worker thread exited (code 1) while running the statement" }
          ])
        }
        expect(worker.state).toEqual({ _tag: "Exited", reason: "the worker thread exited (code 1)" })
        expect(track(worker, select("SELECT 1"))).toEqual([
          { _tag: "NotSent", reason: "the worker thread exited (code 1)" }
        ])
      }))

    it.scopedLive("crash while stopping: the requests failed at the stop are not failed again; the stop's reason stays", () =>
      Effect.gen(function*() {
        // Without sqlite3_interrupt the stop is a terminate(), so the thread dies while stopping. (Terminating a
        // thread that sqlite3_interrupt is stopping would abort the process inside better-sqlite3: the code never
        // does both.)
        const worker = yield* startWorker(makeDatabase(yield* tempDir, "CREATE TABLE unused (x)"), {}, false)
        yield* Effect.promise(() => worker.opened)
        const running = track(worker, select(endless))
        const queued = track(worker, select("SELECT 1"))
        yield* Effect.sleep("50 millis")
        worker.stop("given up")
        expect(worker.state).toEqual({ _tag: "Stopping", reason: "given up" })
        yield* exited(worker)
        expect(running).toEqual([{ _tag: "Lost", reason: "given up", cause: undefined }])
        expect(queued).toEqual([{ _tag: "NeverRan", reason: "given up" }])
        expect(worker.state).toEqual({ _tag: "Exited", reason: "given up" })
        expect(worker.closedReason()).toBe("given up")
      }))

    it.scopedLive("a probe with no answer: validate fails, the worker is stopped and its statement fails typed", () =>
      Effect.gen(function*() {
        const filename = makeDatabase(yield* tempDir, "CREATE TABLE unused (x)")
        const { sql, thread } = yield* openThread(filename, { probeTimeout: "200 millis" })
        const running = yield* Effect.fork(sql.unsafe(endless))
        yield* Effect.sleep("50 millis")
        const invalid = yield* Effect.flip(thread.validate)
        expect(invalid.reason).toBe("the worker thread did not answer a probe within 200ms")
        expect(thread.check()).toBe(invalid.reason)
        const error = yield* Effect.flip(Fiber.join(running))
        expect(error).toBeInstanceOf(SqlError)
        // It was running: not "never ran", so not run again elsewhere.
        expect(Connector.isClosedConnection(error)).toBe(false)
        yield* Effect.timeoutFail(exitOf(thread), { duration: "5 seconds", onTimeout: () => "the thread runs on" })
      }))
  })

  describe("open failures are classified ConnectErrors", () => {
    const openFailure = (filename: string, overrides: Partial<ThreadConnector.ThreadConnectOptions> = {}) =>
      Effect.flip(Effect.scoped(ThreadConnector.connect(options(filename, overrides))))

    it.scopedLive("a directory is permanent SQLITE_CANTOPEN", () =>
      Effect.gen(function*() {
        const error = yield* openFailure(yield* tempDir)
        expect(error).toBeInstanceOf(PoolError.ConnectError)
        expect(error).toMatchObject({ code: "SQLITE_CANTOPEN", transient: false, attempts: 1 })
      }))

    it.scopedLive("a missing directory is transient", () =>
      Effect.gen(function*() {
        const error = yield* openFailure(path.join(yield* tempDir, "missing", "app.db"))
        expect(error).toMatchObject({ code: "SQLITE_CANTOPEN", transient: true, reason: "directory does not exist" })
      }))

    it.scopedLive("a file that is not a database is permanent SQLITE_NOTADB", () =>
      Effect.gen(function*() {
        const filename = path.join(yield* tempDir, "noise.db")
        fs.writeFileSync(filename, randomBytes(8192))
        expect(yield* openFailure(filename)).toMatchObject({ code: "SQLITE_NOTADB", transient: false })
      }))

    it.scopedLive("a database file deleted or replaced, its old -wal and -shm beside it: permanent; no worker starts", () =>
      Effect.gen(function*() {
        const directory = yield* tempDir
        const filename = makeDatabase(directory, "CREATE TABLE unused (x)")
        // The old file's connection stays open, as a pool's leased one would.
        const { thread } = yield* openThread(filename, { readOnly: false })
        const previousFile = thread.fileIdentity
        assert(
          previousFile?.wal !== undefined && previousFile.shm !== undefined,
          "the connection saw its -wal and -shm"
        )
        const before = threads()
        fs.rmSync(filename)
        const deleted = yield* openFailure(filename, { previousFile })
        expect(deleted).toMatchObject({ code: "SQLITE_CANTOPEN", transient: false })
        expect(deleted.reason).toMatch(/^the database file was deleted after the pool had opened it, and the old file/)
        expect(fs.existsSync(filename)).toBe(false)
        const replacement = makeDatabase(yield* tempDir, "CREATE TABLE other (x)")
        fs.renameSync(replacement, filename)
        const replaced = yield* openFailure(filename, { previousFile })
        expect(replaced.reason).toMatch(/^the database file was replaced by another after the pool had opened it/)
        expect(threads()).toBe(before)
        // Without the old file's -wal and -shm, the new file opens.
        for (const suffix of ["-wal", "-shm"]) fs.rmSync(`${filename}${suffix}`)
        const { sql } = yield* openThread(filename, { previousFile })
        expect(yield* sql`SELECT name FROM sqlite_master`).toEqual([{ name: "other" }])
      }))

    it.scopedLive("a worker that never answers is a transient ConnectError after the deadline, and is ended", () =>
      Effect.gen(function*() {
        const filename = makeDatabase(yield* tempDir, "CREATE TABLE unused (x)")
        const before = threads()
        const error = yield* openFailure(filename, { openTimeout: "200 millis", testHooks: { stallOpen: true } })
        expect(error).toMatchObject({ code: "UNKNOWN", transient: true })
        expect(error.reason).toMatch(/did not answer within 200ms/)
        expect(threads()).toBe(before)
      }))

    it.scopedLive("an extension that does not load is permanent, in a worker as on the main thread (by tag)", () =>
      Effect.gen(function*() {
        const directory = yield* tempDir
        const filename = makeDatabase(directory, "CREATE TABLE unused (x)")
        const extensions = [path.join(directory, "missing-extension.so")]
        const inWorker = yield* openFailure(filename, { extensions })
        const here = yield* Effect.flip(Effect.scoped(Connector.connect(options(filename, { extensions }))))
        expect(inWorker).toMatchObject({
          transient: false,
          reason: expect.stringMatching(/^cannot load the extension/)
        })
        expect(inWorker.reason).toBe(here.reason)
        expect(inWorker.transient).toBe(here.transient)
      }))
  })
})
