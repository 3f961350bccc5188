/**
 * The `sqlsim` command. Each subcommand is one module under `commands/` exporting `command`; adding one means
 * adding it to the list below. A subcommand's handler fails with an error whose `message` is one line that tells the
 * user what to do: `main` prints that line to stderr and turns the failure into an exit code.
 *
 * Exit codes: 0 success, 1 the work failed (bad input file, unwritable output, database error, unhealthy
 * database), 2 invalid usage (unknown or invalid option, invalid configuration), 130 interrupted.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as ValidationError from "@effect/cli/ValidationError"
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Path from "@effect/platform/Path"
import type { Teardown } from "@effect/platform/Runtime"
import type * as Terminal from "@effect/platform/Terminal"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import packageJson from "../package.json" with { type: "json" }
import * as Demo from "./commands/demo.js"
import * as Health from "./commands/health.js"
import * as Simulate from "./commands/simulate.js"

/**
 * @since 0.1.0
 * @category constants
 */
export const ExitCode = {
  success: 0,
  failure: 1,
  usage: 2,
  interrupted: 130
} as const

/**
 * The root command.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("sqlsim").pipe(
  Command.withDescription(
    "A pooled, retrying, observable SQLite layer for Effect apps, and its workloads. Start with `sqlsim demo`."
  ),
  Command.withSubcommands([Demo.command, Health.command, Simulate.command])
)

/**
 * What the command needs from the platform (`NodeContext.layer` provides it).
 *
 * @since 0.1.0
 * @category models
 */
export type Environment = CommandExecutor.CommandExecutor | FileSystem.FileSystem | Path.Path | Terminal.Terminal

/**
 * Parses `argv` (as `process.argv`: runtime, script, arguments) and runs the command.
 *
 * @since 0.1.0
 * @category constructors
 */
export const run: (argv: ReadonlyArray<string>) => Effect.Effect<void, unknown, Environment> = Command.run(command, {
  name: "sqlsim",
  version: packageJson.version
})

const usageTags = new Set(["PoolConfigError", "ConflictError"])

/**
 * Runs the command and returns its exit code: a failure becomes one line on stderr (usage errors are already
 * printed by the parser), never a stack trace. Only a defect, a bug, prints its full cause.
 *
 * @since 0.1.0
 * @category constructors
 */
export const main = (argv: ReadonlyArray<string>): Effect.Effect<number, never, Environment> =>
  run(argv).pipe(
    Effect.as(ExitCode.success as number),
    Effect.catchAll((error) =>
      ValidationError.isValidationError(error)
        ? Effect.succeed(ExitCode.usage)
        : Effect.as(Console.error(oneLine(error)), isUsageError(error) ? ExitCode.usage : ExitCode.failure)
    ),
    Effect.catchAllDefect((defect) =>
      Effect.as(Console.error(`unexpected error (a bug): ${Cause.pretty(Cause.die(defect))}`), ExitCode.failure)
    ),
    withTrimmedErrors
  )

const isUsageError = (error: unknown) =>
  typeof error === "object" && error !== null && usageTags.has((error as { _tag?: unknown })._tag as string)

/**
 * One line for an error: its message, with the cause's message for errors (such as `SqlError`) whose own message
 * is generic.
 *
 * @since 0.1.0
 * @category utils
 */
export const oneLine = (error: unknown): string => {
  const message = messageOf(error)
  const tag = (error as { _tag?: unknown } | undefined)?._tag
  const cause = tag === "SqlError" ? messageOf((error as { cause?: unknown }).cause) : undefined
  const text = cause === undefined || cause === "" ? message : `${message}: ${cause}`
  return text.replace(/\s*\n\s*/g, " ")
}

const messageOf = (error: unknown): string =>
  error instanceof Error || (typeof error === "object" && error !== null && "message" in error)
    ? String((error as { message: unknown }).message)
    : String(error)

/** The parser prints its errors with a trailing blank line: keep stderr to one line per error. */
const withTrimmedErrors = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Console.consoleWith((current) =>
    Effect.withConsole(effect, {
      ...current,
      error: (...args) => current.error(...args.map((arg) => typeof arg === "string" ? arg.trimEnd() : arg))
    })
  )

/**
 * The runtime's teardown: exits with `main`'s code, 130 when interrupted (Ctrl-C).
 *
 * @since 0.1.0
 * @category runtime
 */
export const teardown: Teardown = (exit, onExit) => {
  if (Exit.isSuccess(exit)) return onExit(typeof exit.value === "number" ? exit.value : ExitCode.success)
  onExit(Cause.isInterruptedOnly(exit.cause) ? ExitCode.interrupted : ExitCode.failure)
}
