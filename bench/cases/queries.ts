/**
 * Queries on open connections: the raw driver (the single-thread limit), `@effect/sql-sqlite-node`'s client, this
 * project's ConnectionPool and SqlitePool lanes; one fiber, then 16 concurrent fibers.
 *
 * @since 0.1.0
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Contenders from "../contenders.js"
import { openRaw, pointId } from "../fixtures.js"
import type { Case, Result, Settings } from "../harness.js"
import { measureSuite, repeatEffect, repeatEffectConcurrently, repeatSync } from "../harness.js"
import { noProbe } from "./acquire.js"

/**
 * The pool sizes these cases use.
 *
 * @since 0.1.0
 * @category constants
 */
export const sizes = { connectionPool: 5, readConnections: 4, fibers: 16 } as const

const selectOne = (sql: SqlClient.SqlClient) => sql`SELECT 1`
const point = (sql: SqlClient.SqlClient, i: number) => sql`SELECT id, name, value FROM items WHERE id = ${pointId(i)}`

/**
 * @since 0.1.0
 * @category suites
 */
export const run = (
  filename: string,
  settings: Settings
): Effect.Effect<Array<Result>, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const raw = yield* Effect.acquireRelease(
      Effect.sync(() => openRaw(filename)),
      (c) => Effect.sync(() => c.db.close())
    )
    const single = yield* Contenders.singleClient(filename)
    const pool = yield* Contenders.connectionPool({ filename, maxConnections: sizes.connectionPool })
    const lanes = yield* Contenders.sqlitePool({ filename, readConnections: sizes.readConnections })
    const lanesNoProbe = yield* Contenders.sqlitePool({
      filename,
      readConnections: sizes.readConnections,
      ...noProbe
    })
    const poolSetup = `ConnectionPool max ${sizes.connectionPool}, defaults`
    const laneSetup = `SqlitePool writer 1 + readers ${sizes.readConnections}`

    const sequential: Array<Case> = [
      {
        id: "raw.select1",
        name: "better-sqlite3 SELECT 1 (prepared)",
        setup: "1 connection",
        run: repeatSync(() => raw.selectOne.get())
      },
      {
        id: "raw.point",
        name: "better-sqlite3 point query (prepared)",
        setup: "1 connection",
        run: repeatSync((i) => raw.point.get(pointId(i)))
      },
      {
        id: "single.select1",
        name: "SqliteClient sql`SELECT 1`",
        setup: "1 connection + semaphore",
        run: repeatEffect(() => selectOne(single))
      },
      {
        id: "single.point",
        name: "SqliteClient point query",
        setup: "1 connection + semaphore",
        run: repeatEffect((i) => point(single, i))
      },
      {
        id: "writer.select1",
        name: "SqlitePool writer lane sql`SELECT 1`",
        setup: laneSetup,
        run: repeatEffect(() => selectOne(lanes.writer))
      },
      {
        id: "writer.point",
        name: "SqlitePool writer lane point query",
        setup: laneSetup,
        run: repeatEffect((i) => point(lanes.writer, i))
      },
      {
        id: "writer.select1.noProbe",
        name: "SqlitePool writer lane sql`SELECT 1`",
        setup: `${laneSetup}, validationInterval 1 min`,
        run: repeatEffect(() => selectOne(lanesNoProbe.writer))
      },
      {
        id: "reader.select1",
        name: "SqlitePool Reader sql`SELECT 1`",
        setup: laneSetup,
        run: repeatEffect(() => selectOne(lanes.reader))
      },
      {
        id: "reader.point",
        name: "SqlitePool Reader point query",
        setup: laneSetup,
        run: repeatEffect((i) => point(lanes.reader, i))
      },
      {
        id: "pool.select1",
        name: "ConnectionPool.use(c => c.sql`SELECT 1`)",
        setup: poolSetup,
        run: repeatEffect(() => pool.use((c) => selectOne(c.sql)))
      }
    ]
    const { fibers } = sizes
    const concurrent: Array<Case> = [
      {
        id: "single.select1.c16",
        name: "SqliteClient sql`SELECT 1`",
        setup: `${fibers} fibers, 1 connection`,
        run: repeatEffectConcurrently(fibers, () => selectOne(single))
      },
      {
        id: "writer.select1.c16",
        name: "SqlitePool writer lane sql`SELECT 1`",
        setup: `${fibers} fibers, ${laneSetup}`,
        run: repeatEffectConcurrently(fibers, () => selectOne(lanes.writer))
      },
      {
        id: "reader.select1.c16",
        name: "SqlitePool Reader sql`SELECT 1`",
        setup: `${fibers} fibers, ${laneSetup}`,
        run: repeatEffectConcurrently(fibers, () => selectOne(lanes.reader))
      },
      {
        id: "pool.select1.c16",
        name: "ConnectionPool.use(c => c.sql`SELECT 1`)",
        setup: `${fibers} fibers, ${poolSetup}`,
        run: repeatEffectConcurrently(fibers, () => pool.use((c) => selectOne(c.sql)))
      }
    ]
    return [
      ...(yield* measureSuite("queries, 1 fiber", sequential, settings)),
      ...(yield* measureSuite(`queries, ${fibers} fibers`, concurrent, settings))
    ]
  })
