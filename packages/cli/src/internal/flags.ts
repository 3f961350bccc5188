/**
 * Options shared by the subcommands, and how the pool's configuration is assembled from flags and the environment.
 *
 * @internal
 */
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import { PoolConfig, PoolError } from "@sqlsim/sqlite-pool"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

/**
 * A whole-number flag checked against its rule at parse time, so that `--pool-size 0`, `--seed -1` and `--seed abc`
 * are usage errors that say what the value must be. `rule` is how the message states the range.
 */
export const wholeNumber = (
  name: string,
  minimum: number,
  maximum: number,
  rule: string
): Options.Options<Option.Option<number>> =>
  Options.text(name).pipe(
    Options.withPseudoName("N"),
    Options.mapEffect((text) => {
      const value = /^\s*[+-]?\d+\s*$/.test(text) ? Number(text) : Number.NaN
      return Number.isSafeInteger(value) && value >= minimum && value <= maximum
        ? Effect.succeed(value)
        : Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--${name} must be ${rule}, got ${text}`)))
    }),
    Options.optional
  )

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
    `Most connections the pool opens at once (>= 1; default 5; env ${PoolConfig.environmentVariables.maxConnections}).`
  )
)

/** `--max-retries N`: retries of a failed connect. */
export const maxRetries = integer("max-retries", 0, "retries of a failed connect").pipe(
  Options.withDescription(
    "Retries of a failed connect after the first attempt, transient errors only, with exponential backoff " +
      `(>= 0; default 3; env ${PoolConfig.environmentVariables.retries}).`
  )
)

/** The flags that configure a pool; `None` means "not given". */
export interface PoolFlags {
  readonly db: Option.Option<string>
  readonly poolSize?: Option.Option<number>
  readonly maxRetries?: Option.Option<number>
}

/**
 * The pool's input: the environment variables of `PoolConfig.environmentVariables` overlaid by the flags, validated.
 * A bad value from the environment is reported with the variable's name.
 */
export const poolInput = (flags: PoolFlags): Effect.Effect<PoolConfig.Input, PoolError.PoolConfigError> =>
  Effect.gen(function*() {
    const fromEnvironment = yield* Effect.mapError(
      PoolConfig.config,
      (error) =>
        new PoolError.PoolConfigError({ field: "(environment)", message: `cannot read the environment: ${error}` })
    )
    const fromFlags: Record<string, unknown> = {}
    if (Option.isSome(flags.db)) fromFlags.filename = flags.db.value
    if (flags.poolSize !== undefined && Option.isSome(flags.poolSize)) fromFlags.maxConnections = flags.poolSize.value
    if (flags.maxRetries !== undefined && Option.isSome(flags.maxRetries)) fromFlags.retries = flags.maxRetries.value
    const input = { ...fromEnvironment, ...fromFlags } as PoolConfig.Input
    yield* PoolConfig.make(input).pipe(Effect.mapError((error) => {
      const variable = (PoolConfig.environmentVariables as Record<string, string>)[error.field]
      return variable !== undefined && error.field in fromEnvironment && !(error.field in fromFlags)
        ? new PoolError.PoolConfigError({ field: error.field, message: `${variable}: ${error.message}` })
        : error
    }))
    return input
  })
