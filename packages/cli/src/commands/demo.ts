/**
 * `sqlsim demo`: the seed workload (see `Demo`) on the command line.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Demo from "../Demo.js"
import * as Flags from "../internal/flags.js"
import * as Labels from "../Labels.js"

const input = Options.text("input").pipe(
  Options.withAlias("i"),
  Options.withPseudoName("FILE"),
  Options.withFallbackConfig(Config.string("SQLSIM_DEMO_INPUT")),
  Options.optional,
  Options.withDescription(
    "Labels file: UTF-8 text, one label per line, blank lines skipped, surrounding whitespace trimmed; " +
      `"-" reads standard input. Streamed, so the file size is not limited; one label may be at most ` +
      `${Labels.maxLabelBytes} bytes. Default: the bundled labels file (env SQLSIM_DEMO_INPUT).`
  )
)

const output = Options.text("output").pipe(
  Options.withAlias("o"),
  Options.withPseudoName("FILE"),
  Options.withFallbackConfig(Config.string("SQLSIM_DEMO_OUTPUT")),
  Options.withDefault(Demo.defaultOutput),
  Options.withDescription(
    "Where the JSON summary goes, written atomically (a temporary file renamed at the end); the directory must " +
      "exist (env SQLSIM_DEMO_OUTPUT)."
  )
)

const db = Flags.database.pipe(
  Options.withDescription(
    "SQLite database file; an existing `events` table is kept and this run's rows are added. Default: an " +
      `in-memory database, gone when the command ends (env SQLSIM_FILENAME).`
  )
)

/**
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make(
  "demo",
  { input, output, db, poolSize: Flags.poolSize, maxRetries: Flags.maxRetries },
  (flags) =>
    Effect.gen(function*() {
      const pool = yield* Flags.poolInput(flags)
      const result = yield* Demo.run({
        input: Option.getOrElse(flags.input, () => Demo.bundledLabels),
        output: flags.output,
        pool
      })
      yield* Console.log(
        Demo.render({
          rows_inserted: result.rowsInserted,
          rows: result.preview,
          health: result.health,
          pool_stats: result.poolStats
        }).trimEnd()
      )
      if (result.preview.length < result.rowsInserted) {
        yield* Console.log(`(showing the first ${result.preview.length} of ${result.rowsInserted} rows)`)
      }
      yield* Console.log(`Summary written to ${result.output}`)
    })
).pipe(
  Command.withDescription(
    "Reads labels from a file, inserts them into an `events` table in one transaction through a pooled " +
      "connection, reads them back, health-checks a second acquire of the same (reused) connection and writes a " +
      "JSON summary: rows_inserted, rows, health, pool_stats (created 1, reused 1). With no options: the bundled " +
      "labels, an in-memory database, ./summary.json."
  )
)
