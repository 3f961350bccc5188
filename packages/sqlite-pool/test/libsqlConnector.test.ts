/**
 * The libSQL connector against real sqld processes (a primary and replicas on loopback, started by each test):
 * statements and types, transactions on one server-side connection, read-only Reader connections, replication lag,
 * and the faults of a network: a server killed and restarted, a link cut mid-transaction, a rejected token.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqlClient from "@effect/sql/SqlClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import * as Statement from "@effect/sql/Statement"
import { describe, expect, it } from "@effect/vitest"
import * as Sqld from "@sqlsim/test-kit/Sqld"
import * as TcpRelay from "@sqlsim/test-kit/TcpRelay"
import { eventually, sleep } from "@sqlsim/test-kit/Wait"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as net from "node:net"
import { connect, type LibsqlConnectOptions } from "../src/internal/libsql/connection.js"
import { minimumReplicationIndex } from "../src/internal/libsql/readYourWrites.js"
import * as SqliteCode from "../src/SqliteCode.js"

/** An `sql` client over one bare connection, as the pool's lanes use it. */
const clientOf = (connection: SqlConnection.Connection) =>
  SqlClient.make({
    acquirer: Effect.succeed(connection),
    compiler: Statement.makeCompilerSqlite(),
    spanAttributes: []
  }).pipe(
    Effect.provide(Reactivity.layer)
  )

const open = (url: string, options: Partial<LibsqlConnectOptions> = {}) =>
  Effect.gen(function*() {
    const opened = yield* connect({ url, readOnly: false, ...options })
    return { ...opened, sql: yield* clientOf(opened.connection) }
  })

/** The ConnectError of a connect that must fail, without its cause (a socket: too deep to print in a diff). */
const connectFailure = (url: string, options: Partial<LibsqlConnectOptions> = {}) =>
  Effect.map(
    Effect.scoped(Effect.flip(connect({ url, readOnly: false, connectTimeout: "3 seconds", ...options }))),
    ({ _tag, attempts, code, message, reason, transient }) => ({ _tag, attempts, code, message, reason, transient })
  )

/** The SQLite code a failed statement carries, as the pool reads it. */
const codeOfFailure = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.flip(effect), (error) => SqliteCode.codeOf(error))

/** A loopback TCP server that accepts connections and never says a word. */
const silentServer = Effect.acquireRelease(
  Effect.async<{ server: net.Server; sockets: Set<net.Socket> }>((resume) => {
    const sockets = new Set<net.Socket>()
    const server = net.createServer((socket) => {
      sockets.add(socket)
      // Reads (and drops) what arrives, so that the client's close is seen.
      socket.resume()
      socket.on("error", () => undefined)
      socket.once("close", () => sockets.delete(socket))
    })
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, sockets })))
  }),
  ({ server, sockets }) =>
    Effect.async<void>((resume) => {
      for (const socket of sockets) socket.destroy()
      server.close(() => resume(Effect.void))
    })
).pipe(Effect.map(({ server, sockets }) => ({
  address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
  open: () => sockets.size
})))

const count = (sql: SqlClient.SqlClient, table = "t") =>
  Effect.map(sql<{ n: number }>`SELECT count(*) AS n FROM ${sql(table)}`, (rows) => rows[0]!.n)

describe("libSQL connector: connects that fail before a server answers", () => {
  it.effect("a bad URL fails the connect at once, permanently, without a network attempt", () =>
    Effect.gen(function*() {
      for (const url of ["not a url", "ftp://127.0.0.1:1", "http://user:pw@127.0.0.1:1"]) {
        const error = yield* connectFailure(url)
        expect(error).toMatchObject({ _tag: "ConnectError", code: "SQLITE_CANTOPEN", transient: false, attempts: 1 })
        expect(error.message).not.toContain("pw@")
      }
    }))

  it.effect("a port nobody listens on fails transient (connection refused)", () =>
    Effect.gen(function*() {
      const port = yield* Sqld.freePort
      const error = yield* connectFailure(`http://127.0.0.1:${port}`)
      expect(error).toMatchObject({ code: "SQLITE_CANTOPEN", transient: true })
      expect(error.reason).toMatch(/ECONNREFUSED/)
    }))
})

describe("libSQL connector on a primary", () => {
  it.scoped("statements and values round trip: integers, reals, text, blobs, nulls, bigints", () =>
    Effect.gen(function*() {
      const primary = yield* Sqld.startPrimary()
      const { connection, sql } = yield* open(primary.httpUrl)
      yield* sql`CREATE TABLE t (id INTEGER PRIMARY KEY, i INTEGER, r REAL, s TEXT, b BLOB, n)`
      const blob = new Uint8Array([0, 1, 2, 254, 255])
      yield* sql`INSERT INTO t ${sql.insert({ i: -42, r: 1.5, s: "héllo ✓", b: blob, n: null })}`
      const rows = yield* sql`SELECT i, r, s, b, n FROM t`
      expect(rows).toEqual([{ i: -42, r: 1.5, s: "héllo ✓", b: blob, n: null }])
      expect(rows[0]!.b).toBeInstanceOf(Uint8Array)

      // An integer beyond 2^53 fails as a SqlError unless the fiber asks for bigints, then it is exact.
      const big = 2n ** 62n + 1n
      yield* sql`INSERT INTO t (i) VALUES (${big})`
      const lost = yield* Effect.flip(sql`SELECT i FROM t WHERE i > 1000`)
      expect(lost._tag).toBe("SqlError")
      const exact = yield* sql`SELECT i FROM t WHERE i > 1000`.pipe(Effect.provideService(SqlClient.SafeIntegers, true))
      expect(exact).toEqual([{ i: big }])

      expect(yield* sql`SELECT i, s FROM t WHERE id = 1`.values).toEqual([[-42, "héllo ✓"]])
      expect(yield* sql`UPDATE t SET s = 'x'`.raw).toMatchObject({ changes: 2 })
      expect(yield* sql`INSERT INTO t (s) VALUES ('y')`.raw).toEqual({ changes: 1, lastInsertRowid: 3 })
      const streamed = yield* Stream.runCollect(sql`SELECT id FROM t ORDER BY id`.stream)
      expect(Chunk.toArray(streamed)).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }])
      expect(yield* connection.executeUnprepared("SELECT 7 AS seven", [], undefined)).toEqual([{ seven: 7 }])
    }))

  it.scoped("statement errors carry the SQLite code; the connection stays usable", () =>
    Effect.gen(function*() {
      const primary = yield* Sqld.startPrimary()
      const { check, sql, validate } = yield* open(primary.wsUrl)
      yield* sql`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE NOT NULL)`
      yield* sql`INSERT INTO t (v) VALUES ('a')`
      expect(yield* codeOfFailure(sql`INSERT INTO t (v) VALUES ('a')`)).toBe("SQLITE_CONSTRAINT_UNIQUE")
      expect(yield* codeOfFailure(sql`INSERT INTO t (v) VALUES (NULL)`)).toBe("SQLITE_CONSTRAINT_NOTNULL")
      expect(yield* codeOfFailure(sql`SELEC 1`)).toBe("SQLITE_ERROR")
      expect(yield* codeOfFailure(sql`SELECT * FROM missing`)).toBe("SQLITE_ERROR")
      expect(SqliteCode.classify("SQLITE_CONSTRAINT_UNIQUE")).toBe("caller")
      expect(check()).toBeUndefined()
      yield* validate
      expect(yield* count(sql)).toBe(1)
    }))

  it.scoped("a transaction runs on one server-side connection: committed is kept, rolled back is gone", () =>
    Effect.gen(function*() {
      const primary = yield* Sqld.startPrimary()
      const writer = yield* open(primary.wsUrl)
      const other = yield* open(primary.wsUrl)
      yield* writer.sql`CREATE TABLE t (v TEXT)`

      yield* writer.sql`BEGIN IMMEDIATE`
      yield* writer.sql`INSERT INTO t VALUES ('committed')`
      // Inside the transaction the writer sees its row and another connection does not: both statements ran on
      // the same server connection, inside one open transaction.
      expect(yield* count(writer.sql)).toBe(1)
      expect(yield* count(other.sql)).toBe(0)
      yield* writer.sql`COMMIT`
      expect(yield* count(other.sql)).toBe(1)

      yield* writer.sql`BEGIN IMMEDIATE`
      yield* writer.sql`INSERT INTO t VALUES ('rolled back')`
      yield* writer.sql`SAVEPOINT inner_block`
      yield* writer.sql`INSERT INTO t VALUES ('inner')`
      yield* writer.sql`ROLLBACK TO SAVEPOINT inner_block`
      expect(yield* count(writer.sql)).toBe(2)
      yield* writer.sql`ROLLBACK`
      expect(yield* writer.sql`SELECT v FROM t`).toEqual([{ v: "committed" }])
      expect(yield* other.sql`SELECT v FROM t`).toEqual([{ v: "committed" }])
    }))

  it.scoped("a connection cut mid-transaction: check() reports it, the server rolls back and frees the lock", () =>
    Effect.gen(function*() {
      const primary = yield* Sqld.startPrimary()
      const relay = yield* TcpRelay.start(Number(new URL(primary.httpUrl).port))
      const direct = yield* open(primary.wsUrl)
      yield* direct.sql`CREATE TABLE t (v TEXT)`
      const through = yield* open(`ws://${relay.address}`)
      yield* through.sql`BEGIN IMMEDIATE`
      yield* through.sql`INSERT INTO t VALUES ('never committed')`
      expect(through.check()).toBeUndefined()

      relay.cut()
      const noticed = yield* eventually(Effect.sync(() => through.check() !== undefined), "check() after cut", 2_000)
      expect(through.check()).toMatch(/lost/)
      const failed = yield* Effect.flip(through.sql`COMMIT`)
      expect(failed._tag).toBe("SqlError")
      expect(Exit.isFailure(yield* Effect.exit(through.validate))).toBe(true)

      // The write lock the cut transaction held is free again: another connection writes within a bound well
      // below sqld's lock-steal timeout (about 5 s), and the cut transaction's row is not there.
      const started = performance.now()
      yield* direct.sql`BEGIN IMMEDIATE`
      yield* direct.sql`INSERT INTO t VALUES ('after the cut')`
      yield* direct.sql`COMMIT`
      const lockWaitMs = performance.now() - started
      expect(yield* direct.sql`SELECT v FROM t`).toEqual([{ v: "after the cut" }])
      expect(lockWaitMs).toBeLessThan(4_000)
      console.log(`cut noticed after ${noticed.toFixed(1)} ms; next writer waited ${lockWaitMs.toFixed(1)} ms`)
    }))

  it.scoped("closing a connection's Scope mid-transaction rolls the transaction back", () =>
    Effect.gen(function*() {
      const primary = yield* Sqld.startPrimary()
      const direct = yield* open(primary.wsUrl)
      yield* direct.sql`CREATE TABLE t (v TEXT)`
      const scope = yield* Scope.make()
      const leased = yield* Scope.extend(open(primary.wsUrl), scope)
      yield* leased.sql`BEGIN IMMEDIATE`
      yield* leased.sql`INSERT INTO t VALUES ('abandoned')`
      yield* Scope.close(scope, Exit.void)
      expect(leased.check()).toBeDefined()
      yield* direct.sql`INSERT INTO t VALUES ('next')`
      expect(yield* direct.sql`SELECT v FROM t`).toEqual([{ v: "next" }])
    }))

  it.scoped("an interrupted connect returns at once and leaves no connection open on the server", () =>
    Effect.gen(function*() {
      const primary = yield* Sqld.startPrimary()
      // A server that accepts TCP connections and never answers the WebSocket upgrade: the handshake hangs.
      const silent = yield* silentServer
      const started = performance.now()
      const fiber = yield* Effect.fork(Effect.scoped(connect({ url: `ws://${silent.address}`, readOnly: false })))
      yield* eventually(Effect.sync(() => silent.open() === 1), "the connection reached the server", 2_000)
      yield* Fiber.interrupt(fiber)
      expect(performance.now() - started).toBeLessThan(1_000)
      yield* eventually(Effect.sync(() => silent.open() === 0), "the abandoned socket closed", 2_000)
      // and the server is unaffected
      const { sql } = yield* open(primary.wsUrl)
      expect(yield* sql`SELECT 1 AS one`).toEqual([{ one: 1 }])
    }))

  it.scoped("an interrupted statement makes check() report the connection, so the pool replaces it", () =>
    Effect.gen(function*() {
      const primary = yield* Sqld.startPrimary()
      const { check, sql } = yield* open(primary.wsUrl)
      // About a second of work on the server; interrupted after the request is on the wire.
      const slow = yield* Effect.fork(
        sql`WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000) SELECT count(*) FROM c`
      )
      yield* sleep(30)
      yield* Fiber.interrupt(slow)
      expect(check()).toMatch(/interrupted/)
    }))

  it.scoped("an auth token: none or a wrong one is a permanent SQLITE_AUTH; the right one connects", () =>
    Effect.gen(function*() {
      const key = Sqld.makeJwtKey()
      const primary = yield* Sqld.startPrimary({ jwtPublicKeyPem: key.publicKeyPem })
      const missing = yield* connectFailure(primary.httpUrl)
      expect(missing).toMatchObject({ code: "SQLITE_AUTH", transient: false })
      const wrong = yield* connectFailure(primary.httpUrl, { authToken: Sqld.makeJwtKey().token() })
      expect(wrong).toMatchObject({ code: "SQLITE_AUTH", transient: false })
      expect(wrong.message).toMatch(/not retried/)
      const { sql } = yield* open(primary.httpUrl, { authToken: key.token() })
      expect(yield* sql`SELECT 1 AS one`).toEqual([{ one: 1 }])
    }))

  it.scoped("a primary killed: connects fail transient, then succeed after the restart with every commit kept", () =>
    Effect.gen(function*() {
      const primary = yield* Sqld.startPrimary()
      const before = yield* open(primary.wsUrl)
      yield* before.sql`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`
      for (let i = 1; i <= 50; i++) yield* before.sql`INSERT INTO t (v) VALUES (${`row ${i}`})`
      yield* before.sql`BEGIN IMMEDIATE`
      yield* before.sql`INSERT INTO t (v) VALUES ('uncommitted at the crash')`

      yield* primary.kill("SIGKILL")
      yield* eventually(Effect.sync(() => before.check() !== undefined), "check() after the kill", 2_000)
      const down = yield* connectFailure(primary.wsUrl)
      expect(down).toMatchObject({ code: "SQLITE_CANTOPEN", transient: true })

      yield* primary.restart
      const after = yield* open(primary.wsUrl)
      expect(yield* count(after.sql)).toBe(50)
      expect(yield* after.sql`SELECT v FROM t WHERE id = 50`).toEqual([{ v: "row 50" }])
      yield* after.sql`INSERT INTO t (v) VALUES ('after the restart')`
      expect(yield* count(after.sql)).toBe(51)
    }))
})

/**
 * A primary and a replica of it, a connection on the primary and a Reader connection on the replica, table t. The
 * tests on replicas run on the real clock: a read that meets a replica a moment behind runs again after a delay of
 * the Effect clock, which a TestClock would never advance.
 */
const writerAndReplicaReader = Effect.gen(function*() {
  const { primary, replicas } = yield* Sqld.startCluster(1)
  const writer = yield* open(primary.wsUrl)
  const reader = yield* open(replicas[0]!.wsUrl, { readOnly: true })
  yield* writer.sql`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`
  return { reader, writer }
})

describe("libSQL connector on replicas", () => {
  it.scopedLive("a write through the primary is read on a replica; the lag is measured", () =>
    Effect.gen(function*() {
      const { reader, writer } = yield* writerAndReplicaReader
      yield* eventually(Effect.as(reader.sql`SELECT 1 FROM t LIMIT 1`, true), "table on the replica", 10_000)
      const lags: Array<number> = []
      for (let i = 1; i <= 20; i++) {
        yield* writer.sql`INSERT INTO t (v) VALUES (${`v${i}`})`
        lags.push(
          yield* eventually(
            Effect.map(reader.sql<{ n: number }>`SELECT count(*) AS n FROM t WHERE id = ${i}`, (r) => r[0]!.n === 1),
            `row ${i} on the replica`,
            10_000
          )
        )
      }
      lags.sort((a, b) => a - b)
      // Replication is asynchronous: the replica may lag, but it gets every row, in a bound far above loopback lag.
      expect(yield* count(reader.sql)).toBe(20)
      console.log(
        `replica lag over 20 writes: median ${lags[10]!.toFixed(1)} ms, max ${lags[19]!.toFixed(1)} ms`
      )
    }))

  it.scopedLive("read-your-writes: with the primary's replication index, a replica answers only once it has the write", () =>
    Effect.gen(function*() {
      const { reader, writer } = yield* writerAndReplicaReader
      let missedWithoutIndex = 0
      for (let i = 1; i <= 20; i++) {
        yield* writer.sql`INSERT INTO t (v) VALUES (${`v${i}`})`
        const index = writer.replicationIndex()
        expect(index).toBeGreaterThan(0n)
        // Without the index the replica answers with what it has, which may not include the write yet.
        const unsynchronised = yield* Effect.either(reader.sql<{ n: number }>`SELECT count(*) AS n FROM t`)
        if (unsynchronised._tag === "Left" || unsynchronised.right[0]!.n < i) missedWithoutIndex++
        // With it, the replica waits until it has applied the write: the row is there on the first read.
        const rows = yield* reader.sql<{ v: string }>`SELECT v FROM t WHERE id = ${i}`.pipe(
          Effect.locally(minimumReplicationIndex, { generation: 0, index: index! })
        )
        expect(rows).toEqual([{ v: `v${i}` }])
        expect(reader.replicationIndex()).toBeGreaterThanOrEqual(index!)
      }
      console.log(
        `read-your-writes: ${missedWithoutIndex} of 20 immediate replica reads without the index missed the write`
      )
    }))

  it.scopedLive("a replica that does not reach the index in time fails the statement typed (REPLICA_BEHIND)", () =>
    Effect.gen(function*() {
      const primary = yield* Sqld.startPrimary()
      const reader = yield* open(primary.wsUrl, { readOnly: true, replicationWaitTimeout: "100 millis" })
      const started = performance.now()
      const error = yield* Effect.flip(
        reader.sql`SELECT 1`.pipe(Effect.locally(minimumReplicationIndex, { generation: 0, index: 1_000_000n }))
      )
      expect(error._tag).toBe("SqlError")
      expect(error.cause).toMatchObject({ libsqlCode: "REPLICA_BEHIND" })
      expect(performance.now() - started).toBeLessThan(2_000)
      expect(reader.check()).toBeUndefined()
    }))

  it.scopedLive("a Reader connection refuses writes with SQLITE_READONLY, on a replica and on the primary", () =>
    Effect.gen(function*() {
      const { primary, replicas } = yield* Sqld.startCluster(1)
      const writer = yield* open(primary.wsUrl)
      yield* writer.sql`CREATE TABLE t (v TEXT)`
      yield* writer.sql`INSERT INTO t VALUES ('seed')`
      for (const url of [replicas[0]!.wsUrl, primary.wsUrl]) {
        const reader = yield* open(url, { readOnly: true })
        yield* eventually(Effect.map(count(reader.sql), (n) => n === 1), "seed row", 10_000)
        expect(yield* codeOfFailure(reader.sql`INSERT INTO t VALUES ('through a reader')`)).toBe("SQLITE_READONLY")
        expect(yield* codeOfFailure(reader.sql`WITH x AS (SELECT 1) INSERT INTO t SELECT 'cte' FROM x`))
          .toBe("SQLITE_READONLY")
        expect(yield* codeOfFailure(reader.sql`BEGIN IMMEDIATE`)).toBe("SQLITE_READONLY")
        // Read transactions work.
        yield* reader.sql`BEGIN`
        expect(yield* count(reader.sql)).toBe(1)
        yield* reader.sql`COMMIT`
      }
      // A replica forwards writes to its primary: the refusal must be the connector's, so nothing arrived there.
      expect(yield* writer.sql`SELECT v FROM t`).toEqual([{ v: "seed" }])
    }))

  it.scopedLive("a replica killed: its connection reports the loss, connects fail transient, and work after restart", () =>
    Effect.gen(function*() {
      const { primary, replicas } = yield* Sqld.startCluster(1)
      const replica = replicas[0]!
      const writer = yield* open(primary.wsUrl)
      yield* writer.sql`CREATE TABLE t (v TEXT)`
      yield* writer.sql`INSERT INTO t VALUES ('one')`
      const reader = yield* open(replica.wsUrl, { readOnly: true })
      yield* eventually(Effect.map(count(reader.sql), (n) => n === 1), "row on the replica", 10_000)

      yield* replica.kill("SIGKILL")
      yield* eventually(Effect.sync(() => reader.check() !== undefined), "check() after the kill", 2_000)
      expect((yield* Effect.flip(reader.sql`SELECT 1`))._tag).toBe("SqlError")
      const down = yield* connectFailure(replica.wsUrl, { readOnly: true })
      expect(down).toMatchObject({ code: "SQLITE_CANTOPEN", transient: true })

      // Writes on the primary go on while the replica is down; the restarted replica catches up with them.
      yield* writer.sql`INSERT INTO t VALUES ('two')`
      yield* replica.restart
      const again = yield* open(replica.wsUrl, { readOnly: true })
      yield* eventually(Effect.map(count(again.sql), (n) => n === 2), "replica caught up after restart", 10_000)
    }))
})
