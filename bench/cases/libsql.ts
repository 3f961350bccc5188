/**
 * SqlitePool against real sqld processes on loopback (a primary and a replica started here): pooled statements
 * against a connect per statement, Reader reads on the replica against the same reads on the primary, and what
 * read-your-writes costs (a read right after a write, with and without the wait). Medians over the runs, ratios
 * from one process.
 *
 * @since 0.1.0
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Connector, LibsqlConnector, SqlitePool } from "@sqlsim/sqlite-pool"
import * as Sqld from "@sqlsim/test-kit/Sqld"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Libsql from "../../packages/sqlite-pool/src/internal/libsql/connection.js"
import { minimumReplicationIndex } from "../../packages/sqlite-pool/src/internal/libsql/readYourWrites.js"
import { median } from "../harness.js"
import type { Verdict } from "../targets.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface LibsqlResult {
  readonly statements: number
  /** statements per second, medians over the runs */
  readonly pooled: number
  readonly perStatement: number
  readonly replicaReads: number
  readonly primaryReads: number
  /** the same point reads on one bare Hrana connection to each server, without the pool: the servers' own cost */
  readonly rawReplicaReads: number
  readonly rawPrimaryReads: number
  readonly writeThenReadWithWait: number
  readonly writeThenReadWithoutWait: number
  readonly lagFrames: number | undefined
}

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

/**
 * @since 0.1.0
 * @category suites
 */
export const run = (quick: boolean, runs: number): Effect.Effect<LibsqlResult, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const statements = quick ? 300 : 1_000
    const { primary, replicas } = yield* Sqld.startCluster(1)
    const replica = replicas[0]!
    const onReplica = yield* LibsqlConnector.make({ primaryUrl: primary.httpUrl, replicaUrls: [replica.httpUrl] })
    const onPrimary = yield* LibsqlConnector.make({ primaryUrl: primary.httpUrl })
    const withReplica = yield* layerOn(onReplica, 2)
    const primaryOnly = yield* layerOn(onPrimary, 2)
    const sql = Context.get(withReplica, SqlClient.SqlClient)
    const replicaReader = Context.get(withReplica, SqlitePool.Reader)
    const primaryReader = Context.get(primaryOnly, SqlitePool.Reader)
    // Reads by a fiber that has not written: no read-your-writes wait.
    const noWait = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      Effect.locally(effect, minimumReplicationIndex, undefined)

    yield* sql`CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)`
    for (let i = 0; i < 100; i++) yield* sql`INSERT INTO t (v) VALUES (${`row ${i}`})`
    const read = (client: SqlClient.SqlClient) =>
      client`SELECT v FROM t WHERE id = ${1 + Math.floor(Math.random() * 100)}`
    const writeThenRead = (wait: boolean) =>
      Effect.gen(function*() {
        yield* sql`UPDATE t SET v = 'changed' WHERE id = 1`
        yield* (wait ? read(replicaReader) : noWait(read(replicaReader)))
      })

    const rawReplica = yield* Libsql.connect({ url: replica.httpUrl, readOnly: true })
    const rawPrimary = yield* Libsql.connect({ url: primary.httpUrl, readOnly: true })
    const rawRead = (connection: Libsql.LibsqlConnection) =>
      connection.connection.execute("SELECT v FROM t WHERE id = ?", [1 + Math.floor(Math.random() * 100)], undefined)

    // Warm up both lanes, so the first connects are not in the figures.
    yield* rate(50, noWait(read(replicaReader)))
    yield* rate(50, read(primaryReader))

    const samples = {
      pooled: [] as Array<number>,
      perStatement: [] as Array<number>,
      replicaReads: [] as Array<number>,
      primaryReads: [] as Array<number>,
      rawReplicaReads: [] as Array<number>,
      rawPrimaryReads: [] as Array<number>,
      withWait: [] as Array<number>,
      withoutWait: [] as Array<number>
    }
    // Interleaved: a burst of load from elsewhere hits every case of a round.
    for (let round = 0; round < runs; round++) {
      samples.pooled.push(yield* rate(statements, sql`SELECT 1`))
      samples.perStatement.push(
        yield* rate(
          Math.max(50, statements / 10),
          Effect.scoped(Effect.flatMap(
            Libsql.connect({ url: primary.httpUrl, readOnly: false }),
            (opened) => opened.connection.execute("SELECT 1", [], undefined)
          ))
        )
      )
      samples.replicaReads.push(yield* rate(statements, noWait(read(replicaReader))))
      samples.primaryReads.push(yield* rate(statements, read(primaryReader)))
      samples.rawReplicaReads.push(yield* rate(statements, rawRead(rawReplica)))
      samples.rawPrimaryReads.push(yield* rate(statements, rawRead(rawPrimary)))
      samples.withWait.push(yield* rate(statements / 4, writeThenRead(true)))
      samples.withoutWait.push(yield* rate(statements / 4, writeThenRead(false)))
    }
    const status = yield* onReplica.status
    return {
      statements,
      pooled: median(samples.pooled),
      perStatement: median(samples.perStatement),
      replicaReads: median(samples.replicaReads),
      primaryReads: median(samples.primaryReads),
      rawReplicaReads: median(samples.rawReplicaReads),
      rawPrimaryReads: median(samples.rawPrimaryReads),
      writeThenReadWithWait: median(samples.withWait),
      writeThenReadWithoutWait: median(samples.withoutWait),
      lagFrames: status.replicas[0]?.lagFrames
    }
  })

const perSecond = (value: number) => `${Math.round(value).toLocaleString("en-US")}/s`

/**
 * @since 0.1.0
 * @category report
 */
export const table = (r: LibsqlResult): string => {
  const rows: Array<[string, string]> = [
    ["pooled SELECT 1 (writer lane, one kept connection)", perSecond(r.pooled)],
    ["connect per statement (WebSocket + hello + SELECT 1, close)", perSecond(r.perStatement)],
    ["Reader point reads on the replica", perSecond(r.replicaReads)],
    ["the same reads on the primary", perSecond(r.primaryReads)],
    ["the same reads, one bare Hrana connection to the replica", perSecond(r.rawReplicaReads)],
    ["the same reads, one bare Hrana connection to the primary", perSecond(r.rawPrimaryReads)],
    ["write then read on the replica, read-your-writes", perSecond(r.writeThenReadWithWait)],
    ["write then read on the replica, no wait", perSecond(r.writeThenReadWithoutWait)],
    ["replica lag when last seen", r.lagFrames === undefined ? "unknown" : `${r.lagFrames} frames`]
  ]
  const width = Math.max(...rows.map(([name]) => name.length))
  return rows.map(([name, value]) => `${name.padEnd(width)}  ${value.padStart(10)}`).join("\n")
}

/**
 * The issue's libSQL targets.
 *
 * @since 0.1.0
 * @category verdicts
 */
export const verdicts = (r: LibsqlResult): Array<Verdict> => [
  {
    target: "L1",
    description: "libSQL: pooled statements >= 5x a connect per statement (sqld on loopback)",
    measured: `${perSecond(r.pooled)} vs ${perSecond(r.perStatement)}`,
    ratio: r.pooled / r.perStatement,
    threshold: ">= 5",
    pass: r.pooled / r.perStatement >= 5,
    profile: undefined,
    closing: ["a connect is a TCP connection, a WebSocket upgrade, the Hrana hello and a stream: the pool pays it once"]
  },
  {
    target: "L2",
    description: "libSQL: Reader point reads on a replica not below the same reads on the primary",
    measured: `${perSecond(r.replicaReads)} vs ${perSecond(r.primaryReads)}`,
    ratio: r.replicaReads / r.primaryReads,
    threshold: ">= 1",
    pass: r.replicaReads / r.primaryReads >= 1,
    profile: undefined,
    closing: [
      "on one machine the replica is a second sqld process on the same two cores as the primary, this process and " +
      "the replication stream between them: a replica earns its keep on another machine, where it adds cores " +
      "instead of sharing them. The gap is the servers', not the pool's: the same reads on one bare Hrana " +
      `connection to each, without the pool, ran ${perSecond(r.rawReplicaReads)} on the replica against ` +
      `${perSecond(r.rawPrimaryReads)} on the primary (${(r.rawReplicaReads / r.rawPrimaryReads).toFixed(2)}x), ` +
      `and through the Reader ${(r.replicaReads / r.primaryReads).toFixed(2)}x`
    ]
  },
  {
    target: "L3",
    description: "libSQL: the cost of read-your-writes (a write then a read on the replica, with / without the wait)",
    measured: `${perSecond(r.writeThenReadWithWait)} vs ${perSecond(r.writeThenReadWithoutWait)} ` +
      `(${(1000 / r.writeThenReadWithWait - 1000 / r.writeThenReadWithoutWait).toFixed(2)} ms more a pair)`,
    ratio: r.writeThenReadWithoutWait / r.writeThenReadWithWait,
    threshold: "stated",
    pass: true,
    profile: undefined,
    closing: []
  }
]
