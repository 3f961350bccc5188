/**
 * `sqlsim health --db FILE`: prints the database's health report; exits non-zero when it is unhealthy.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Health from "../Health.js"
import * as Flags from "../internal/flags.js"

const db = Options.text("db").pipe(
  Options.withPseudoName("FILE"),
  Options.withFallbackConfig(Config.string(Flags.environmentVariables.filename)),
  Options.withDescription(
    `SQLite database file to check; it is opened read-only, never created or changed (env ${Flags.environmentVariables.filename}).`
  )
)

const pageCheck = Options.choice("check", Health.pageChecks).pipe(
  Options.withDefault("quick" as const),
  Options.withDescription(
    "How much of the file to check. quick (the default): PRAGMA quick_check, every page once, about the time it " +
      "takes to read the file; full: PRAGMA integrity_check, also every index against its table, several times " +
      "slower on indexed data; none: the header and the schema only, instant on any size, blind to other damage."
  )
)

/**
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make(
  "health",
  { db, maxRetries: Flags.maxRetries, pageCheck },
  (flags) =>
    Effect.gen(function*() {
      const pool = yield* Flags.poolInput({ db: Option.some(flags.db), maxRetries: flags.maxRetries })
      const report = yield* Health.check(pool, { pageCheck: flags.pageCheck })
      yield* Console.log(JSON.stringify(report, null, 2))
      if (!report.ok) return yield* Effect.fail(new Health.UnhealthyError({ report }))
    })
).pipe(
  Command.withDescription(
    "Opens the database with SQLite's read-only open (no byte of the file, its -wal or its -shm changes; nothing " +
      "is created), checks its pages (--check) and prints a JSON report: ok, latency_ms, sqlite_version, " +
      "journal_mode, page_check, pages, wal_bytes, wal_frames_not_checkpointed, or the error and the first problems found. Exits 1 when it is unhealthy."
  )
)
