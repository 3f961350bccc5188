/**
 * The health check of a database file: open it through a pool (with the pool's connect retries), run the pool's
 * health check on a read-only connection, report. A health check never creates a database and never changes one
 * (no switch to WAL, no writes).
 *
 * @since 0.1.0
 */
import { ConnectionPool, PoolConfig, type PoolError } from "@sqlsim/sqlite-pool"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as path from "node:path"

/**
 * @since 0.1.0
 * @category models
 */
export interface Healthy {
  readonly database: string
  readonly ok: true
  readonly latency_ms: number
  readonly sqlite_version: string
  readonly journal_mode: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Unhealthy {
  readonly database: string
  readonly ok: false
  /** what is wrong, in one line */
  readonly error: string
}

/**
 * @since 0.1.0
 * @category models
 */
export type Report = Healthy | Unhealthy

/**
 * The database failed its health check (what the `health` command exits non-zero with).
 *
 * @since 0.1.0
 * @category errors
 */
export class UnhealthyError extends Data.TaggedError("UnhealthyError")<{
  readonly report: Unhealthy
}> {
  override get message(): string {
    return `unhealthy: ${this.report.error}`
  }
}

/**
 * Checks the database named by `pool.filename`. Fails only for an invalid configuration; an unhealthy database is
 * a report with `ok: false`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const check = (pool: PoolConfig.Input): Effect.Effect<Report, PoolError.PoolConfigError> =>
  Effect.gen(function*() {
    const config = yield* PoolConfig.make({ ...pool, minConnections: 0 })
    const database = config.filename === ":memory:" ? config.filename : path.resolve(config.filename)
    const unhealthy = (error: string): Report => ({ database, ok: false, error })
    // Opening a missing file would create an empty database and call it healthy.
    if (config.filename !== ":memory:" && !fs.existsSync(config.filename)) {
      const directory = path.dirname(database)
      return unhealthy(
        fs.existsSync(directory)
          ? `${database} does not exist (a health check does not create it); check the path`
          : `${database} does not exist: its directory ${directory} does not exist either; check the path`
      )
    }
    return yield* Effect.scoped(
      Effect.gen(function*() {
        const connectionPool = yield* ConnectionPool.makeWithConfig(config, { readOnly: true })
        const report = yield* connectionPool.healthCheck
        return {
          database,
          ok: true,
          latency_ms: Math.round(report.latencyMs * 1000) / 1000,
          sqlite_version: report.sqliteVersion,
          journal_mode: report.journalMode
        } satisfies Report
      })
    ).pipe(Effect.catchAll((error) => Effect.succeed(unhealthy(error.message))))
  })
