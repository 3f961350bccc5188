/**
 * SqlitePool against real sqld processes on loopback (a primary and a replica started here): pooled statements
 * against a connect per statement, Reader reads on the replica against the same reads on the primary, and what
 * read-your-writes costs (a read right after a write, with and without the wait). Ratios from one process.
 *
 * Run with: pnpm tsx bench/libsql.ts [-- --quick]
 *
 * @since 0.1.0
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Connector, LibsqlConnector, SqlitePool } from "@sqlsim/sqlite-pool"
import * as Sqld from "@sqlsim/test-kit/Sqld"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Libsql from "../packages/sqlite-pool/src/internal/libsqlConnector.js"

const quick = process.argv.includes("--quick")
const statements = quick ? 300 : 2_000

/** Operations per second of `n` sequential runs of `effect`. */
const rate = <E, R>(n: number, effect: Effect.Effect<unknown, E, R>) =>
  Effect.gen(function*() {
    const started = performance.now()
    for (let i = 0; i < n; i++) yield* effect
    return n / ((performance.now() - started) / 1000)
  })

const layerOn = (connector: LibsqlConnector.Service, readConnections: number) =>
  Layer.build(
    SqlitePool.layer({ filename: connector.options.primaryUrl, readConnections }).pipe(
      Layer.provide(Layer.succeed(Connector.Connector, connector))
    )
  )

const program = Effect.gen(function*() {
  const { primary, replicas } = yield* Sqld.startCluster(1)
  const replica = replicas[0]!
  const onReplica = yield* LibsqlConnector.make({ primaryUrl: primary.httpUrl, replicaUrls: [replica.httpUrl] })
  const onPrimary = yield* LibsqlConnector.make({ primaryUrl: primary.httpUrl })
  const withReplica = yield* layerOn(onReplica, 2)
  const primaryOnly = yield* layerOn(onPrimary, 2)
  const sql = Context.get(withReplica, SqlClient.SqlClient)
  const replicaReader = Context.get(withReplica, SqlitePool.Reader)
  const primaryReader = Context.get(primaryOnly, SqlitePool.Reader)

  yield* sql`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`
  for (let i = 0; i < 100; i++) yield* sql`INSERT INTO t (v) VALUES (${`row ${i}`})`
  const read = (client: SqlClient.SqlClient) =>
    client`SELECT v FROM t WHERE id = ${1 + Math.floor(Math.random() * 100)}`

  // Warm up both lanes, so the first connects are not in the figures.
  yield* rate(50, read(replicaReader).pipe(Effect.locally(Libsql.minimumReplicationIndex, undefined)))
  yield* rate(50, read(primaryReader))

  const pooled = yield* rate(statements, sql`SELECT 1`)
  const perStatement = yield* rate(
    Math.max(100, statements / 10),
    Effect.scoped(Effect.flatMap(
      Libsql.connect({ url: primary.httpUrl, readOnly: false }),
      (opened) => opened.connection.execute("SELECT 1", [], undefined)
    ))
  )
  // Reads by a fiber that has not written: no wait.
  const replicaReads = yield* rate(
    statements,
    read(replicaReader).pipe(Effect.locally(Libsql.minimumReplicationIndex, undefined))
  )
  const primaryReads = yield* rate(statements, read(primaryReader))
  // A write, then a read of it on the replica: with the wait (read-your-writes), and with the wait switched off.
  const writeThenRead = (wait: boolean) =>
    Effect.gen(function*() {
      yield* sql`UPDATE t SET v = 'changed' WHERE id = 1`
      yield* read(replicaReader).pipe(wait ? (e) => e : Effect.locally(Libsql.minimumReplicationIndex, undefined))
    })
  const withWait = yield* rate(statements / 4, writeThenRead(true))
  const withoutWait = yield* rate(statements / 4, writeThenRead(false))
  const status = yield* onReplica.status

  const line = (name: string, value: number) => console.log(`${name.padEnd(58)} ${value.toFixed(0).padStart(8)} /s`)
  console.log(`sqld on loopback, ${statements} statements a case${quick ? " (quick)" : ""}`)
  line("pooled SELECT 1 (writer lane, one kept connection)", pooled)
  line("connect per statement (WebSocket + hello + SELECT 1, close)", perStatement)
  line("Reader reads on the replica", replicaReads)
  line("the same reads on the primary", primaryReads)
  line("write then read on the replica, read-your-writes", withWait)
  line("write then read on the replica, no wait", withoutWait)
  console.log(`pooled / connect per statement: ${(pooled / perStatement).toFixed(1)}x (target >= 5x)`)
  console.log(`replica reads / primary reads: ${(replicaReads / primaryReads).toFixed(2)}x (target >= 1x)`)
  console.log(
    `read-your-writes: ${(withoutWait / withWait).toFixed(2)}x the time of a write and a read without the wait ` +
      `(${(1000 / withWait - 1000 / withoutWait).toFixed(2)} ms more a write-read pair)`
  )
  console.log(`replica lag when last seen: ${status.replicas[0]?.lagFrames ?? "unknown"} frames`)
})

Effect.runPromise(Effect.scoped(program)).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
