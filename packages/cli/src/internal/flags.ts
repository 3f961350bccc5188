/**
 * Options shared by the subcommands, and how the pool's configuration is assembled from flags and the environment.
 *
 * @internal
 */
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import { PoolConfig, PoolError } from "@sqlsim/sqlite-pool"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

/**
 * The environment variables the commands read, by field of the pool's input (`PoolConfig.Input`: `demo` runs a
 * `ConnectionPool`, `health` reads `filename` and `retries`). A flag wins over its variable.
 */
export const environmentVariables = {
  filename: "SQLSIM_FILENAME",
  maxConnections: "SQLSIM_MAX_CONNECTIONS",
  minConnections: "SQLSIM_MIN_CONNECTIONS",
  retries: "SQLSIM_RETRIES",
  retryBaseDelay: "SQLSIM_RETRY_BASE_DELAY",
  retryMaxDelay: "SQLSIM_RETRY_MAX_DELAY",
  retryJitter: "SQLSIM_RETRY_JITTER",
  acquireTimeout: "SQLSIM_ACQUIRE_TIMEOUT",
  poolName: "SQLSIM_POOL_NAME",
  busyTimeout: "SQLSIM_BUSY_TIMEOUT",
  idleTimeToLive: "SQLSIM_IDLE_TIME_TO_LIVE",
  maxLifetime: "SQLSIM_MAX_LIFETIME",
  shutdownTimeout: "SQLSIM_SHUTDOWN_TIMEOUT",
  holdWarningThreshold: "SQLSIM_HOLD_WARNING_THRESHOLD",
  validationInterval: "SQLSIM_VALIDATION_INTERVAL",
  pageCacheKiB: "SQLSIM_PAGE_CACHE_KIB",
  prepareCacheSize: "SQLSIM_PREPARE_CACHE_SIZE",
  prepareCacheTTL: "SQLSIM_PREPARE_CACHE_TTL"
} as const satisfies Record<Exclude<keyof PoolConfig.Input, FunctionOrObjectField>, string>

/** Fields no text can give: they have no environment variable. */
type FunctionOrObjectField = "transformQueryNames" | "transformResultNames" | "onConnect" | "spanAttributes"

/** `simulate`'s Reader flags fall back to these (SqlitePool's `readConnections` and `readerThreads`). */
export const readerVariables = {
  readConnections: "SQLSIM_READ_CONNECTIONS",
  readerThreads: "SQLSIM_READER_THREADS"
} as const

const integerFields = new Set<string>([
  "maxConnections",
  "minConnections",
  "retries",
  "pageCacheKiB",
  "prepareCacheSize"
])

/**
 * A variable's text as the value of its field, for the pool's Schema to judge: whole numbers for the integer fields,
 * `true`/`false` for the flag, "null" or "none" (or nothing) for no `maxLifetime`, a bare number as milliseconds.
 * Anything else is passed on as it is, so that the Schema's message names what was wrong.
 */
const fromText = (field: string, text: string): unknown => {
  const trimmed = text.trim()
  if (field === "filename" || field === "poolName") return text
  if (integerFields.has(field)) return /^-?\d+$/.test(trimmed) ? Number(trimmed) : trimmed
  if (field === "retryJitter") return trimmed === "true" ? true : trimmed === "false" ? false : trimmed
  if (field === "maxLifetime" && (trimmed === "" || trimmed === "null" || trimmed === "none")) return null
  return /^-?\d+(?:\.\d+)?$/.test(trimmed) ? Number(trimmed) : trimmed
}

/** The pool's input as the environment gives it: a variable that is not set leaves its field out. */
export const environment: Config.Config<Record<string, unknown>> = Config.all(
  Object.fromEntries(
    Object.entries(environmentVariables).map(([field, name]) => [field, Config.option(Config.string(name))])
  )
).pipe(Config.map((entries) => {
  const input: Record<string, unknown> = {}
  for (const [field, value] of Object.entries(entries)) {
    if (Option.isSome(value)) input[field] = fromText(field, value.value)
  }
  return input
}))

/**
 * A whole-number flag checked against its rule at parse time, so that `--pool-size 0`, `--seed -1` and `--seed abc`
 * are usage errors that say what the value must be. `rule` is how the message states the range.
 */
export const wholeNumber = (
  name: string,
  minimum: number,
  maximum: number,
  rule: string,
  variable?: string
): Options.Options<Option.Option<number>> => {
  const text = Options.text(name).pipe(Options.withPseudoName("N"))
  const source = variable === undefined ? `--${name}` : `--${name} (or ${variable})`
  return (variable === undefined ? text : Options.withFallbackConfig(text, Config.string(variable))).pipe(
    Options.mapEffect((text) => {
      const value = /^\s*[+-]?\d+\s*$/.test(text) ? Number(text) : Number.NaN
      return Number.isSafeInteger(value) && value >= minimum && value <= maximum
        ? Effect.succeed(value)
        : Effect.fail(ValidationError.invalidValue(HelpDoc.p(`${source} must be ${rule}, got ${text}`)))
    }),
    Options.optional
  )
}

/** An integer flag with a lower bound only: `--pool-size must be an integer >= 1 (the most connections ...)`. */
export const integer = (name: string, minimum: number, meaning: string): Options.Options<Option.Option<number>> =>
  wholeNumber(name, minimum, Number.MAX_SAFE_INTEGER, `an integer >= ${minimum} (${meaning})`)

/** `--db FILE`: the database file; without it the field's environment variable, then ":memory:". */
export const database = Options.text("db").pipe(
  Options.withPseudoName("FILE"),
  Options.optional
)

/** `--pool-size N`: most connections the pool opens. */
export const poolSize = integer("pool-size", 1, "the most connections open at once").pipe(
  Options.withDescription(
    `Most connections the pool opens at once (>= 1; default 5; env ${environmentVariables.maxConnections}).`
  )
)

/** `--max-retries N`: retries of a failed connect. */
export const maxRetries = integer("max-retries", 0, "retries of a failed connect").pipe(
  Options.withDescription(
    "Retries of a failed connect after the first attempt, transient errors only, with exponential backoff " +
      `(>= 0; default 3; env ${environmentVariables.retries}).`
  )
)

/** The flags that configure a pool; `None` means "not given". */
export interface PoolFlags {
  readonly db: Option.Option<string>
  readonly poolSize?: Option.Option<number>
  readonly maxRetries?: Option.Option<number>
}

/**
 * The pool's input: the environment variables of `environmentVariables` overlaid by the flags, validated.
 * A bad value from the environment is reported with the variable's name.
 */
export const poolInput = (flags: PoolFlags): Effect.Effect<PoolConfig.Input, PoolError.PoolConfigError> =>
  Effect.gen(function*() {
    const fromEnvironment = yield* Effect.mapError(
      environment,
      (error) =>
        new PoolError.PoolConfigError({ field: "(environment)", message: `cannot read the environment: ${error}` })
    )
    const fromFlags: Record<string, unknown> = {}
    if (Option.isSome(flags.db)) fromFlags.filename = flags.db.value
    if (flags.poolSize !== undefined && Option.isSome(flags.poolSize)) fromFlags.maxConnections = flags.poolSize.value
    if (flags.maxRetries !== undefined && Option.isSome(flags.maxRetries)) fromFlags.retries = flags.maxRetries.value
    const input = { ...fromEnvironment, ...fromFlags } as PoolConfig.Input
    yield* PoolConfig.make(input).pipe(Effect.mapError((error) => {
      const variable = (environmentVariables as Record<string, string>)[error.field]
      return variable !== undefined && error.field in fromEnvironment && !(error.field in fromFlags)
        ? new PoolError.PoolConfigError({ field: error.field, message: `${variable}: ${error.message}` })
        : error
    }))
    return input
  })
