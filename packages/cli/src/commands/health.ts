/**
 * `sqlsim health --db FILE`: prints the database's health report; exits non-zero when it is unhealthy.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { PoolConfig } from "@sqlsim/sqlite-pool"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Health from "../Health.js"
import * as Flags from "../internal/flags.js"

const db = Options.text("db").pipe(
  Options.withPseudoName("FILE"),
  Options.withFallbackConfig(Config.string(PoolConfig.environmentVariables.filename)),
  Options.withDescription(
    `SQLite database file to check; it is opened read-only and never created (env ${PoolConfig.environmentVariables.filename}).`
  )
)

/**
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make(
  "health",
  { db, maxRetries: Flags.maxRetries },
  (flags) =>
    Effect.gen(function*() {
      const pool = yield* Flags.poolInput({ db: Option.some(flags.db), maxRetries: flags.maxRetries })
      const report = yield* Health.check(pool)
      yield* Console.log(JSON.stringify(report, null, 2))
      if (!report.ok) return yield* Effect.fail(new Health.UnhealthyError({ report }))
    })
).pipe(
  Command.withDescription(
    "Opens the database through a pool (with connect retries), checks that it answers and prints a JSON report: " +
      "ok, latency_ms, sqlite_version, journal_mode. Exits 1 when the database is unhealthy."
  )
)
