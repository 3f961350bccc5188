/**
 * Connect-per-query (open, SELECT 1, close) against a pooled connection: on ":memory:" and on a WAL file database
 * with the raw driver, and through the same `@effect/sql-sqlite-node` client code the pool's connections use.
 *
 * The connect-per-query file has no other connection open, as in an application that connects per query: each
 * close checkpoints the WAL and removes the -wal and -shm files, each open creates them again.
 *
 * @since 0.1.0
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import Database from "better-sqlite3"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Contenders from "../contenders.js"
import * as Fixtures from "../fixtures.js"
import type { Case, Result, Settings } from "../harness.js"
import { measureSuite, repeatEffect, repeatSync } from "../harness.js"

/**
 * @since 0.1.0
 * @category constants
 */
export const POOL_SIZE = 5

const connectRaw = (filename: string) => {
  const db = new Database(filename)
  try {
    return db.prepare("SELECT 1").get()
  } finally {
    db.close()
  }
}

/**
 * @since 0.1.0
 * @category suites
 */
export const run = (directory: string, settings: Settings): Effect.Effect<Array<Result>, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const perQueryFile = Fixtures.createDatabase(directory, "connect-per-query.db")
    const pooledFile = Fixtures.createDatabase(directory, "connect-pooled.db")
    const pool = yield* Contenders.connectionPool({ filename: pooledFile, maxConnections: POOL_SIZE })
    const reactivity = yield* Reactivity.make
    const clientPerQuery = Effect.scoped(
      Effect.flatMap(SqliteClient.make({ filename: perQueryFile }), (sql) => sql`SELECT 1`)
    ).pipe(Effect.provideService(Reactivity.Reactivity, reactivity))

    const cases: Array<Case> = [
      {
        id: "connect.raw.memory",
        name: "better-sqlite3 open + SELECT 1 + close",
        setup: ":memory:",
        run: repeatSync(() => connectRaw(":memory:"))
      },
      {
        id: "connect.raw.file",
        name: "better-sqlite3 open + SELECT 1 + close",
        setup: "WAL file",
        run: repeatSync(() => connectRaw(perQueryFile))
      },
      {
        id: "connect.client.file",
        name: "SqliteClient.make + sql`SELECT 1` + close",
        setup: "WAL file",
        run: repeatEffect(() => clientPerQuery)
      },
      {
        id: "connect.pooled.file",
        name: "ConnectionPool.use(c => c.sql`SELECT 1`), defaults",
        setup: `WAL file, pool of ${POOL_SIZE}`,
        run: repeatEffect(() => pool.use((c) => c.sql`SELECT 1`))
      }
    ]
    return yield* measureSuite("connect per query vs pooled", cases, settings)
  })
