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

/** An integer flag checked against its rule at parse time, so `--pool-size 0` is a usage error that names the rule. */
export const integer = (name: string, minimum: number, meaning: string): Options.Options<Option.Option<number>> =>
  Options.integer(name).pipe(
    Options.withPseudoName("N"),
    Options.mapEffect((value) =>
      value >= minimum
        ? Effect.succeed(value)
        : Effect.fail(
          ValidationError.invalidValue(
            HelpDoc.p(`--${name} must be an integer >= ${minimum} (${meaning}), got ${value}`)
          )
        )
    ),
    Options.optional
  )

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
