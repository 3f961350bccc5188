/**
 * What the cases share: a temporary directory, benchmark databases, and the peer pools (Effect's `Pool`, tarn,
 * generic-pool) holding the same kind of better-sqlite3 connection.
 *
 * @since 0.1.0
 */
import Database from "better-sqlite3"
import * as Effect from "effect/Effect"
import * as Pool from "effect/Pool"
import type * as Scope from "effect/Scope"
import * as GenericPool from "generic-pool"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Tarn from "tarn"

/**
 * Rows in the `items` table of every benchmark database (the point queries pick ids in 1..ITEM_ROWS).
 *
 * @since 0.1.0
 * @category constants
 */
export const ITEM_ROWS = 10_000

/**
 * @since 0.1.0
 * @category constants
 */
export const POINT_QUERY = "SELECT id, name, value FROM items WHERE id = ?"

/**
 * The id the i-th point query reads: walks the whole table, so no one row stays hot.
 *
 * @since 0.1.0
 * @category constants
 */
export const pointId = (i: number): number => (i * 7919) % ITEM_ROWS + 1

/**
 * A fresh temporary directory, removed when the Scope closes.
 *
 * @since 0.1.0
 * @category fixtures
 */
export const tempDirectory: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "sqlsim-bench-"))),
  (directory) => Effect.sync(() => fs.rmSync(directory, { recursive: true, force: true }))
)

/**
 * Creates a WAL database file with an `items` table of ITEM_ROWS rows, and returns its path.
 *
 * @since 0.1.0
 * @category fixtures
 */
export const createDatabase = (directory: string, name: string): string => {
  const filename = path.join(directory, name)
  const db = new Database(filename)
  try {
    db.pragma("journal_mode = WAL")
    db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, value INTEGER NOT NULL)")
    const insert = db.prepare("INSERT INTO items (id, name, value) VALUES (?, ?, ?)")
    db.transaction(() => {
      for (let id = 1; id <= ITEM_ROWS; id++) insert.run(id, `item-${id}`, id * 3)
    })()
  } finally {
    db.close()
  }
  return filename
}

/**
 * One better-sqlite3 connection with its prepared statements: what the peer pools hold.
 *
 * @since 0.1.0
 * @category models
 */
export interface RawConnection {
  readonly db: Database.Database
  readonly selectOne: Database.Statement
  readonly point: Database.Statement
}

/**
 * Opens a raw connection the way the pool's connector configures one (WAL file, busy_timeout 0, foreign keys).
 *
 * @since 0.1.0
 * @category fixtures
 */
export const openRaw = (filename: string): RawConnection => {
  const db = new Database(filename)
  db.pragma("busy_timeout = 0")
  db.pragma("foreign_keys = ON")
  return { db, selectOne: db.prepare("SELECT 1"), point: db.prepare(POINT_QUERY) }
}

/**
 * Effect's own `Pool` of raw connections, built like ConnectionPool builds on it (makeWithTTL, usage TTL).
 *
 * @since 0.1.0
 * @category fixtures
 */
export const effectPool = (filename: string, size: number) =>
  Pool.makeWithTTL({
    acquire: Effect.acquireRelease(Effect.sync(() => openRaw(filename)), (c) => Effect.sync(() => c.db.close())),
    min: 0,
    max: size,
    timeToLive: "5 minutes",
    timeToLiveStrategy: "usage"
  })

/**
 * A tarn pool of raw connections, destroyed when the Scope closes.
 *
 * @since 0.1.0
 * @category fixtures
 */
export const tarnPool = (filename: string, size: number): Effect.Effect<Tarn.Pool<RawConnection>, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() =>
      new Tarn.Pool<RawConnection>({
        create: () => Promise.resolve(openRaw(filename)),
        destroy: (c) => c.db.close(),
        min: 0,
        max: size,
        idleTimeoutMillis: 300_000
      })
    ),
    (pool) => Effect.promise(() => pool.destroy())
  )

/**
 * A generic-pool pool of raw connections, drained and cleared when the Scope closes.
 *
 * @since 0.1.0
 * @category fixtures
 */
export const genericPool = (
  filename: string,
  size: number
): Effect.Effect<GenericPool.Pool<RawConnection>, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() =>
      GenericPool.createPool<RawConnection>({
        create: () => Promise.resolve(openRaw(filename)),
        destroy: (c) => Promise.resolve(c.db.close()).then(() => undefined)
      }, { min: 0, max: size, idleTimeoutMillis: 300_000 })
    ),
    (pool) => Effect.promise(() => pool.drain().then(() => pool.clear()))
  )

/**
 * Leases from a tarn pool, runs `f`, releases.
 *
 * @since 0.1.0
 * @category fixtures
 */
export const withTarn = async <A>(pool: Tarn.Pool<RawConnection>, f: (c: RawConnection) => A): Promise<A> => {
  const connection = await pool.acquire().promise
  try {
    return f(connection)
  } finally {
    pool.release(connection)
  }
}

/**
 * Leases from a generic-pool pool, runs `f`, releases.
 *
 * @since 0.1.0
 * @category fixtures
 */
export const withGeneric = async <A>(
  pool: GenericPool.Pool<RawConnection>,
  f: (c: RawConnection) => A
): Promise<A> => {
  const connection = await pool.acquire()
  try {
    return f(connection)
  } finally {
    await pool.release(connection)
  }
}
