/**
 * One memory measurement in a fresh process (spawned by cases/memory.ts, so every RSS baseline starts clean):
 * RSS after start-up, with `size` idle connections, and after every connection has scanned a table larger than its
 * page cache. The connections are a ConnectionPool's (`kind: "pool"`), or plain better-sqlite3 handles with the
 * driver's own defaults (`kind: "raw"`, for reference), opened and verified as the pool's connector does (read the
 * journal mode, SELECT 1), so that both have read the database. Prints one JSON line.
 *
 * Run with: node --expose-gc --import tsx bench/memory.ts '{"kind":"pool","filename":"big.db","size":5,"pageCacheKiB":2000}'
 *
 * @since 0.1.0
 */
import { ConnectionPool } from "@sqlsim/sqlite-pool"
import Database from "better-sqlite3"
import * as Effect from "effect/Effect"

interface Options {
  readonly kind: "pool" | "raw"
  readonly filename: string
  readonly size: number
  readonly pageCacheKiB: number
}

const collectGarbage = (globalThis as { gc?: () => void }).gc

interface Sample {
  readonly rss: number
  /** JavaScript heap in use plus memory of JavaScript objects held outside the heap */
  readonly js: number
  /** the V8 heap's committed size: what the JavaScript side holds in RSS, live objects and room to allocate */
  readonly heapCommitted: number
}

const settled = async (): Promise<Sample> => {
  for (let i = 0; i < 3; i++) {
    collectGarbage?.()
    await new Promise((resolve) => setImmediate(resolve))
  }
  const usage = process.memoryUsage()
  return { rss: usage.rss, js: usage.heapUsed + usage.external, heapCommitted: usage.heapTotal + usage.external }
}

const SCAN = "SELECT max(substr(payload, 1000, 8)) AS tail FROM big"

const measureRaw = (options: Options) =>
  Effect.gen(function*() {
    new Database(":memory:").close()
    const baseline = yield* Effect.promise(settled)
    const connections = Array.from({ length: options.size }, () => {
      const db = new Database(options.filename)
      db.pragma("journal_mode")
      db.prepare("SELECT 1").get()
      return db
    })
    const idle = yield* Effect.promise(settled)
    const scans = connections.map((db) => db.prepare(SCAN).get())
    const warm = yield* Effect.promise(settled)
    for (const db of connections) db.close()
    return { ...options, open: connections.length, scans: scans.length, baseline, idle, warm }
  })

const measure = (options: Options) =>
  Effect.gen(function*() {
    // The native driver loads on first use: load it before the baseline.
    new Database(":memory:").close()
    yield* Effect.void
    const baseline = yield* Effect.promise(settled)
    const pool = yield* ConnectionPool.make({
      filename: options.filename,
      maxConnections: options.size,
      minConnections: options.size,
      pageCacheKiB: options.pageCacheKiB
    })
    const idle = yield* Effect.promise(settled)
    const stats = yield* pool.stats
    // Every connection leased at once (so each one is distinct), each scanning the whole table.
    const scanned = yield* Effect.scoped(
      Effect.forEach(
        Array.from({ length: options.size }),
        () =>
          Effect.flatMap(
            pool.acquire,
            (connection) => connection.sql.unsafe<{ tail: string | null }>(SCAN)
          ),
        { concurrency: options.size }
      )
    )
    const warm = yield* Effect.promise(settled)
    return { ...options, open: stats.open, scans: scanned.length, baseline, idle, warm }
  })

const options = JSON.parse(process.argv[2] ?? "{}") as Options
Effect.runPromise(Effect.scoped(options.kind === "raw" ? measureRaw(options) : measure(options))).then(
  (result) => process.stdout.write(JSON.stringify({ ...result, gcExposed: collectGarbage !== undefined }) + "\n"),
  (error) => {
    process.stderr.write(`memory measurement failed: ${String(error)}\n`)
    process.exitCode = 1
  }
)
