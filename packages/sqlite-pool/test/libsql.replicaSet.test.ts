/**
 * The replica set alone, on real sqld processes: where Reader connections open (the replicas in turn, passing over
 * one that cannot serve, without a connect until its retry time), a replica refusing the token passed over too, the
 * fallback to the primary and its retirement after `fallbackLifetime` (on the TestClock), a replica out tried again
 * after `fallbackLifetime` doubling, and read-your-writes across the writer and a Reader.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqlClient from "@effect/sql/SqlClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import * as Statement from "@effect/sql/Statement"
import { describe, expect, it } from "@effect/vitest"
import * as Sqld from "@sqlsim/test-kit/Sqld"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/TestClock"
import { ReplicaSet, type ReplicaSetOptions } from "../src/internal/libsql/replicaSet.js"

const clientOf = (connection: SqlConnection.Connection) =>
  SqlClient.make({ acquirer: Effect.succeed(connection), compiler: Statement.makeCompilerSqlite(), spanAttributes: [] })
    .pipe(Effect.provide(Reactivity.layer))

const replicaSet = (options: Partial<ReplicaSetOptions> & Pick<ReplicaSetOptions, "primaryUrl">) =>
  new ReplicaSet({
    replicaUrls: [],
    authToken: undefined,
    connectTimeout: Duration.seconds(3),
    statementTimeout: Duration.seconds(30),
    replicationWaitTimeout: Duration.seconds(2),
    fallbackLifetime: Duration.seconds(5),
    ...options
  })

/** A URL on a loopback port nobody listens on: a connect to it is refused (transient). */
const nobodyThere = Effect.map(Sqld.freePort, (port) => `http://127.0.0.1:${port}`)

describe("libSQL replica set", () => {
  it.scopedLive("Reader connects go round the replicas, passing over one that cannot be reached (out: not tried again at once)", () =>
    Effect.gen(function*() {
      const { primary, replicas } = yield* Sqld.startCluster(1)
      const dead = yield* nobodyThere
      const set = replicaSet({ primaryUrl: primary.httpUrl, replicaUrls: [dead, replicas[0]!.httpUrl] })
      const writer = yield* set.connectWriter
      const sql = yield* clientOf(writer.connection)
      yield* sql`CREATE TABLE t (v TEXT)`
      yield* sql`INSERT INTO t VALUES ('mine')`

      // The fiber that wrote reads on the replica, which waits until it has the write.
      const first = yield* set.connectReader
      expect(first.url).toBe(new URL(replicas[0]!.wsUrl).toString())
      expect(yield* (yield* clientOf(first.connection))`SELECT v FROM t`).toEqual([{ v: "mine" }])
      const second = yield* set.connectReader
      expect(second.url).toBe(first.url)

      const status = yield* set.status
      // The dead one was tried once: out, it is passed over without a connect until fallbackLifetime has passed.
      expect(status.replicas.map(({ connects, failures }) => ({ connects, failures }))).toEqual([
        { connects: 0, failures: 1 },
        { connects: 2, failures: 0 }
      ])
      expect(status.replicas[0]!.out).toMatchObject({ cause: "unreachable", strikes: 1 })
      expect(status.replicas[0]!.out!.reason).toMatch(/ECONNREFUSED/)
      expect(status.replicas[1]!.out).toBeUndefined()
      expect(status.fallbacks).toBe(0)
      expect(status.primaryIndex).toBeGreaterThan(0n)
      expect(status.replicas[1]!.lagFrames).toBeGreaterThanOrEqual(0)
    }))

  it.scoped("no replica reachable: the Reader connection opens on the primary and retires after fallbackLifetime", () =>
    Effect.gen(function*() {
      const primary = yield* Sqld.startPrimary()
      const set = replicaSet({
        primaryUrl: primary.httpUrl,
        replicaUrls: [yield* nobodyThere],
        fallbackLifetime: Duration.seconds(30)
      })
      const reader = yield* set.connectReader
      expect(reader.url).toBe(new URL(primary.wsUrl).toString())
      expect(yield* (yield* clientOf(reader.connection))`SELECT 1 AS one`).toEqual([{ one: 1 }])
      expect((yield* set.status).fallbacks).toBe(1)
      yield* TestClock.adjust("29 seconds")
      expect(reader.check()).toBeUndefined()
      yield* TestClock.adjust("1 second")
      expect(reader.check()).toMatch(/a replica is preferred/)
    }))

  it.scoped("a replica that refuses the token is out (rejected): the Reader reads on the primary", () =>
    Effect.gen(function*() {
      const primary = yield* Sqld.startPrimary()
      const guarded = yield* Sqld.startPrimary({ jwtPublicKeyPem: Sqld.makeJwtKey().publicKeyPem })
      const set = replicaSet({ primaryUrl: primary.httpUrl, replicaUrls: [guarded.httpUrl] })
      const reader = yield* set.connectReader
      expect(reader.url).toBe(new URL(primary.wsUrl).toString())
      const status = yield* set.status
      expect(status).toMatchObject({ fallbacks: 1, replicas: [{ connects: 0, failures: 1 }] })
      expect(status.replicas[0]!.out).toMatchObject({ cause: "rejected", strikes: 1 })
    }))

  it.scoped("a replica out is tried again after fallbackLifetime, then twice that; back once a connect succeeds", () =>
    Effect.gen(function*() {
      const { primary, replicas: [replica] } = yield* Sqld.startCluster(1)
      yield* replica!.kill()
      const set = replicaSet({
        primaryUrl: primary.httpUrl,
        replicaUrls: [replica!.httpUrl],
        fallbackLifetime: Duration.seconds(10)
      })
      const failures = Effect.map(set.status, (status) => status.replicas[0]!.failures)
      yield* Effect.scoped(set.connectReader)
      expect(yield* failures).toBe(1)
      yield* TestClock.adjust("9 seconds")
      yield* Effect.scoped(set.connectReader)
      expect(yield* failures).toBe(1)
      yield* TestClock.adjust("1 second")
      yield* Effect.scoped(set.connectReader)
      expect(yield* failures).toBe(2)
      expect((yield* set.status).replicas[0]!.out).toMatchObject({ strikes: 2 })
      yield* TestClock.adjust("19 seconds")
      yield* Effect.scoped(set.connectReader)
      expect(yield* failures).toBe(2)

      // The replica is back: the next try after the 20 seconds connects to it.
      yield* replica!.restart
      yield* TestClock.adjust("1 second")
      const reader = yield* set.connectReader
      expect(reader.url).toBe(new URL(replica!.wsUrl).toString())
      expect((yield* set.status).replicas[0]).toMatchObject({ connects: 1, failures: 2, out: undefined })
    }))
})
