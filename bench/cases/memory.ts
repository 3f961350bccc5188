/**
 * Memory: RSS of a ConnectionPool of 5 and of 50 connections, idle and after each connection has read a table
 * larger than its page cache, with SQLite's default page cache (2000 KiB per connection) and with a bound. Each
 * measurement runs in its own child process (bench/memory.ts) for a clean baseline.
 *
 * @since 0.1.0
 */
import Database from "better-sqlite3"
import * as Effect from "effect/Effect"
import { execFile } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { median } from "../harness.js"

/**
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_PAGE_CACHE_KIB = 2000

/**
 * @since 0.1.0
 * @category constants
 */
export const BOUNDED_PAGE_CACHE_KIB = 128

/**
 * Rows of about 1 KiB each in the `big` table: about 9 MiB, several times the default page cache.
 *
 * @since 0.1.0
 * @category constants
 */
export const BIG_ROWS = 8192

/**
 * @since 0.1.0
 * @category models
 */
export interface MemoryResult {
  readonly id: string
  readonly kind: "pool" | "raw"
  readonly size: number
  readonly pageCacheKiB: number
  /** child processes measured (the figures are their medians) */
  readonly processes: number
  readonly open: number
  readonly baselineMiB: number
  readonly idleOverBaselineMiB: number
  readonly warmOverBaselineMiB: number
  /** of the idle growth: JavaScript heap + external memory (the rest is native: SQLite, the driver) */
  readonly idleJsMiB: number
  readonly warmJsMiB: number
  readonly databaseMiB: number
}

const MiB = 1024 * 1024

const createBigDatabase = (directory: string): { filename: string; bytes: number } => {
  const filename = path.join(directory, "memory-big.db")
  const db = new Database(filename)
  try {
    db.pragma("journal_mode = WAL")
    db.exec("CREATE TABLE big (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
    db.exec(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${BIG_ROWS}) ` +
        "INSERT INTO big (id, payload) SELECT i, hex(randomblob(512)) FROM n"
    )
    db.pragma("wal_checkpoint(TRUNCATE)")
    const pages = db.pragma("page_count", { simple: true }) as number
    const pageSize = db.pragma("page_size", { simple: true }) as number
    return { filename, bytes: pages * pageSize }
  } finally {
    db.close()
  }
}

const child = fileURLToPath(new URL("../memory.ts", import.meta.url))

interface Sample {
  readonly rss: number
  readonly js: number
}

interface ChildResult {
  readonly open: number
  readonly baseline: Sample
  readonly idle: Sample
  readonly warm: Sample
}

const measureInChild = (
  options: { kind: "pool" | "raw"; filename: string; size: number; pageCacheKiB: number }
) =>
  Effect.async<ChildResult, Error>((resume) => {
    const process_ = execFile(
      process.execPath,
      ["--expose-gc", "--import", "tsx", child, JSON.stringify(options)],
      { maxBuffer: 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error !== null) {
          resume(Effect.fail(new Error(`memory child failed: ${stderr.trim() || error.message}`)))
        } else {
          resume(Effect.try(() => JSON.parse(stdout.trim().split("\n").pop() ?? "") as ChildResult))
        }
      }
    )
    return Effect.sync(() => process_.kill())
  })

/**
 * better-sqlite3 is built with SQLITE_DEFAULT_CACHE_SIZE=-16000: a plain handle caches up to 16000 KiB.
 *
 * @since 0.1.0
 * @category constants
 */
export const DRIVER_PAGE_CACHE_KIB = 16000

/**
 * The scenarios: ConnectionPools of each size with the default and the bounded page cache, then plain driver
 * handles (its own 16000 KiB default) at the largest size for reference.
 *
 * @since 0.1.0
 * @category suites
 */
export const run = (directory: string, runs: number, sizes: ReadonlyArray<number> = [5, 50]) =>
  Effect.gen(function*() {
    const database = createBigDatabase(directory)
    const scenarios: Array<{ kind: "pool" | "raw"; size: number; pageCacheKiB: number }> = [
      ...[DEFAULT_PAGE_CACHE_KIB, BOUNDED_PAGE_CACHE_KIB].flatMap((pageCacheKiB) =>
        sizes.map((size) => ({ kind: "pool" as const, size, pageCacheKiB }))
      ),
      { kind: "raw", size: Math.max(...sizes), pageCacheKiB: DRIVER_PAGE_CACHE_KIB }
    ]
    const results: Array<MemoryResult> = []
    for (const scenario of scenarios) {
      // RSS moves by a few MiB from process to process: each row is the median of `runs` processes.
      const measured: Array<ChildResult> = []
      for (let run = 0; run < runs; run++) {
        measured.push(yield* measureInChild({ ...scenario, filename: database.filename }))
      }
      const over = (pick: (result: ChildResult) => number) => median(measured.map(pick)) / MiB
      results.push({
        id: `memory.${scenario.kind}.${scenario.size}.${scenario.pageCacheKiB}`,
        ...scenario,
        processes: measured.length,
        open: Math.min(...measured.map((result) => result.open)),
        baselineMiB: over((result) => result.baseline.rss),
        idleOverBaselineMiB: over((result) => result.idle.rss - result.baseline.rss),
        warmOverBaselineMiB: over((result) => result.warm.rss - result.baseline.rss),
        idleJsMiB: over((result) => result.idle.js - result.baseline.js),
        warmJsMiB: over((result) => result.warm.js - result.baseline.js),
        databaseMiB: database.bytes / MiB
      })
    }
    return results
  })
