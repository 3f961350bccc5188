/**
 * `sqlsim simulate`: runs a concurrent workload against the pool, with injected or real faults, and reports
 * throughput, latency percentiles, errors, retries and pool utilisation (text table, and optionally JSON and a
 * self-contained HTML page with charts). `--compare` runs the same workload with a fresh connection per operation
 * as well, side by side. Ctrl-C stops the workers, closes the pool and prints (and writes) what completed.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import { FaultPlan, Report, ReportHtml, Simulation, SimulationError, Workload } from "@sqlsim/simulator"
import { LibsqlConnector } from "@sqlsim/sqlite-pool"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as HashMap from "effect/HashMap"
import * as HashSet from "effect/HashSet"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as AtomicFile from "../AtomicFile.js"
import * as Distinct from "../internal/distinct.js"
import * as Flags from "../internal/flags.js"
import * as TemporaryDirectory from "../internal/temporaryDirectory.js"

const invalid = (message: string) => ValidationError.invalidValue(HelpDoc.p(message))

/** The flag of each field of `Simulation.Input`: the simulator's errors name fields, the command names flags. */
const flagOf: Record<string, string> = {
  seed: "--seed",
  workers: "--workers",
  operations: "--ops",
  duration: "--duration",
  mix: "--mix",
  holdMs: "--hold",
  longReadMs: "--long-read",
  faults: "--faults",
  readers: "--readers",
  readerThreads: "--reader-threads",
  database: "--db",
  libsql: "--primary",
  servers: "--sqld",
  kills: "--kill",
  clock: "--virtual-time",
  statementMs: "--statement-ms",
  connectMs: "--connect-ms"
}
const inFlags = (error: SimulationError.SimulationConfigError) => error.describe((field) => flagOf[field] ?? field)

/** A flag parsed (and checked) at parse time, so that a bad value is a usage error naming the flag. */
const parsed = <A>(
  name: string,
  parse: (text: string) => Either.Either<A, SimulationError.SimulationConfigError | { readonly message: string }>
) =>
  Options.text(name).pipe(
    Options.mapEffect((text) =>
      Either.match(parse(text), {
        onLeft: (error) => Effect.fail(invalid("describe" in error ? inFlags(error) : error.message)),
        onRight: Effect.succeed
      })
    ),
    Options.optional
  )

const integer = (name: string, minimum: number, maximum: number, variable?: string) =>
  Flags.wholeNumber(
    name,
    minimum,
    maximum,
    `a whole number from ${minimum} to ${maximum.toLocaleString("en-US")}`,
    variable
  )

const durationUnits: Record<string, string> = { ms: "millis", s: "seconds", m: "minutes", h: "hours" }

/**
 * Reads a duration: Effect's form ("10 seconds", "500 millis") or a short one ("10s", "500ms", "2m").
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseDuration = (text: string): Either.Either<Duration.Duration, { readonly message: string }> => {
  const trimmed = text.trim()
  const short = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/.exec(trimmed)
  const decoded = Duration.decodeUnknown(short === null ? trimmed : `${short[1]} ${durationUnits[short[2]!]}`)
  const millis = Option.map(decoded, Duration.toMillis)
  return Option.isSome(millis) && millis.value > 0 && millis.value <= Simulation.limits.durationMs
    ? Either.right(Duration.millis(millis.value))
    : Either.left({
      message: `--duration must be more than 0 and at most 1 hour, such as 10s, 2m or "500 millis", got "${text}"`
    })
}

const seed = integer("seed", 0, 2 ** 31 - 1).pipe(
  Options.withDescription(
    "Seed of the run's random choices (operations and fault decisions); the same seed replays the same sequence. " +
      "Default: a random seed, printed so the run can be replayed."
  )
)
const workers = integer("workers", 1, Simulation.limits.workers).pipe(
  Options.withDescription(`Concurrent fibers running operations (1 .. ${Simulation.limits.workers}; default 8).`)
)
const duration = parsed("duration", parseDuration).pipe(
  Options.withDescription(
    "Run for this long (10s, 2m, \"500 millis\"; at most 1 hour). Default 5s when --ops is not given."
  )
)
const operations = integer("ops", 1, Simulation.limits.operations).pipe(
  Options.withDescription(
    `Run this many operations (1 .. ${Simulation.limits.operations.toLocaleString("en-US")}) instead of a duration.`
  )
)
const faults = parsed("faults", FaultPlan.parse).pipe(
  Options.withPseudoName("SPEC"),
  Options.withDescription(
    "Faults to inject, as key=value pairs separated by commas, e.g. open=0.1,die=0.05,busy=lock-holder. " +
      Object.entries(FaultPlan.keys).map(([key, meaning]) => `${key}: ${meaning}.`).join(" ") + " Default: none."
  )
)
const mix = parsed("mix", Workload.parseMix).pipe(
  Options.withPseudoName("SPEC"),
  Options.withDescription("Operation mix as weights, e.g. read=70,write=20,transaction=10 (the default).")
)
const hold = Options.float("hold").pipe(
  Options.withPseudoName("MS"),
  Options.mapEffect((value) =>
    value >= 0 && value <= Simulation.limits.holdMs
      ? Effect.succeed(value)
      : Effect.fail(invalid(`--hold must be from 0 to ${Simulation.limits.holdMs} milliseconds, got ${value}`))
  ),
  Options.optional,
  Options.withDescription("Milliseconds of work held inside each transaction, with the write lock taken (default 0).")
)
const longRead = integer("long-read", 1, Simulation.limits.longReadMs).pipe(
  Options.withPseudoName("MS"),
  Options.withDescription(
    "A long reader: from the start of each run, a read transaction reads a row and holds its snapshot this many " +
      "milliseconds, so the WAL cannot be checkpointed past it (the report shows the WAL's growth). Default: none."
  )
)
// A threshold longer than the longest run would never be passed.
const holdWarningMs = integer("hold-warning-ms", 1, Simulation.limits.durationMs).pipe(
  Options.withPseudoName("MS"),
  Options.withDescription(
    "The pool's holdWarningThreshold: a lease held longer than this many milliseconds is counted as a hold warning " +
      "(the report shows them by span, instead of logging each one). Default: off."
  )
)
const walCheckpointBytes = integer("wal-checkpoint-bytes", 1, Number.MAX_SAFE_INTEGER).pipe(
  Options.withDescription(
    "The pool's walCheckpointBytes: past this size the writer lane checkpoints the WAL and truncates it " +
      "(default 67108864, 64 MiB)."
  )
)
const readers = integer("readers", 0, Simulation.limits.readers, Flags.readerVariables.readConnections).pipe(
  Options.withDescription(
    `Read-only connections of the pool's Reader (0 .. ${Simulation.limits.readers}; default 4; env ` +
      `${Flags.readerVariables.readConnections}); writes use one writer.`
  )
)
const readerThreads = Options.boolean("reader-threads").pipe(
  Options.withFallbackConfig(Config.boolean(Flags.readerVariables.readerThreads)),
  Options.withDescription(
    "Run each Reader connection in a worker thread of its own (readerThreads): long reads leave the event loop free " +
      `(env ${Flags.readerVariables.readerThreads}).`
  )
)
const compare = Options.boolean("compare").pipe(
  Options.withDescription(
    "Also run the same workload (same seed) with a fresh connection per operation, and compare the two."
  )
)
const db = Options.text("db").pipe(
  Options.withPseudoName("FILE"),
  Options.optional,
  Options.withDescription(
    "Database file to run on (created if missing; tables sim_items and sim_counters are added). Default: a " +
      "temporary file, removed at the end."
  )
)
const report = Options.text("report").pipe(
  Options.withPseudoName("FILE.html"),
  Options.optional,
  Options.withDescription("Write the report as a self-contained HTML page with charts.")
)
const json = Options.text("json").pipe(
  Options.withPseudoName("FILE"),
  Options.optional,
  Options.withDescription("Write the report as JSON.")
)
const primary = Options.text("primary").pipe(
  Options.withPseudoName("URL"),
  Options.optional,
  Options.withDescription(
    "Run against a libSQL server (sqld) instead of a file: the writer lane on this primary (http://, ws://, " +
      "libsql://), the Reader on the --replica servers, or on the primary without one. A token for servers that " +
      `require one comes from ${"SQLSIM_LIBSQL_AUTH_TOKEN"}.`
  )
)
const replica = Options.text("replica").pipe(
  Options.withPseudoName("URL"),
  Options.repeated,
  Options.withDescription("A libSQL replica of --primary for the Reader (repeat for several).")
)
const sqld = Options.file("sqld", { exists: "yes" }).pipe(
  Options.withPseudoName("BINARY"),
  Options.optional,
  Options.withDescription(
    "Start the libSQL servers for the run from this sqld binary: a primary and --sqld-replicas replicas on " +
      "loopback ports, data in a temporary directory, stopped at the end (instead of --primary and --replica)."
  )
)
const sqldReplicas = Options.integer("sqld-replicas").pipe(
  Options.withPseudoName("N"),
  Options.optional,
  Options.withDescription("Replicas --sqld starts (0 .. 8; default 1).")
)
const kill = Options.text("kill").pipe(
  Options.withPseudoName("SERVER@AT[+DOWN]"),
  Options.repeated,
  Options.withDescription(
    "Crash a server --sqld started, mid-run, and start it again: primary@2s+1s kills the primary 2 s into each " +
      "run with SIGKILL and restarts it 1 s later (+1s is the default); replica-1@3s the first replica. Repeat for more."
  )
)
const virtualTime = Options.boolean("virtual-time").pipe(
  Options.withDescription(
    "Run on a virtual clock (needs --ops, not busy=lock-holder): the run then repeats exactly for a seed, and " +
      "latencies count only modelled delays (--statement-ms, --connect-ms, slow opens and statements, backoff, --hold)."
  )
)
/** A cost in milliseconds modelled on the virtual clock; its range and its need of --virtual-time are the library's. */
const cost = (name: string, fallback: number, what: string) =>
  Options.float(name).pipe(
    Options.withPseudoName("MS"),
    Options.optional,
    Options.withDescription(
      `With --virtual-time: the modelled cost of ${what} in milliseconds (0 .. ${Simulation.limits.costMs}; ` +
        `default ${fallback}).`
    )
  )
const statementMs = cost(
  "statement-ms",
  Simulation.defaultCosts.statementMs,
  "a statement (one connection runs one at a time)"
)
const connectMs = cost("connect-ms", Simulation.defaultCosts.connectMs, "opening a connection")

interface Output {
  readonly json: AtomicFile.AtomicFile | undefined
  readonly html: AtomicFile.AtomicFile | undefined
}

const emit = (result: Report.Report, output: Output) =>
  Effect.gen(function*() {
    yield* Console.log(Report.toText(result).trimEnd())
    if (output.json !== undefined) {
      yield* output.json.write(Report.toJson(result))
      yield* output.json.commit
      yield* Console.log(`JSON report written to ${output.json.path}`)
    }
    if (output.html !== undefined) {
      yield* output.html.write(ReportHtml.render(result))
      yield* output.html.commit
      yield* Console.log(`HTML report written to ${output.html.path}`)
    }
  })

const percent = (fraction: number) => `${Math.floor(fraction * 100)}%`.padStart(4)

const describe = (progress: Simulation.Progress) =>
  `${progress.mode}${progress.runs > 1 ? ` (${progress.run}/${progress.runs})` : ""}, ` +
  `${progress.completed.toLocaleString("en-US")} ok, ${progress.failed.toLocaleString("en-US")} failed, ` +
  `${(progress.elapsedMs / 1000).toFixed(1)} s`

/**
 * Shows progress on stderr: a bar redrawn in place on a terminal, a plain line every second otherwise.
 *
 * @since 0.1.0
 * @category progress
 */
export const showProgress = (session: Simulation.Session, isTTY: boolean) => {
  const write = (text: string) => Effect.sync(() => process.stderr.write(text))
  const width = 30
  const draw = Effect.flatMap(session.progress, (progress) => {
    if (progress === undefined) return Effect.void
    if (!isTTY) return write(`progress: ${percent(progress.fraction).trim()}, ${describe(progress)}\n`)
    const filled = Math.round(progress.fraction * width)
    return write(
      `\r[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${percent(progress.fraction)}  ${
        describe(progress)
      }\x1b[K`
    )
  })
  const loop = Effect.forever(Effect.zipRight(Effect.sleep(isTTY ? "100 millis" : "1 second"), draw))
  const clear = isTTY ? write("\r\x1b[K") : Effect.void
  return { loop, clear }
}

const simulateFlags = {
  seed,
  workers,
  duration,
  operations,
  faults,
  mix,
  hold,
  longRead,
  holdWarningMs,
  walCheckpointBytes,
  readers,
  readerThreads,
  compare,
  db,
  report,
  json,
  primary,
  replica,
  sqld,
  sqldReplicas,
  kill,
  virtualTime,
  statementMs,
  connectMs
}
type SimulateFlags = Command.Command.ParseConfig<typeof simulateFlags>

/** A combination of flags that does not go together: a usage error, printed as one line. */
const usageError = (message: string) => Effect.zipRight(Console.error(message), Effect.fail(invalid(message)))

/** The libSQL servers of --primary and --replica (with the token from the environment), checked by the library. */
const libsqlTarget = (flags: SimulateFlags) => {
  if (Option.isNone(flags.primary)) return Effect.succeed(undefined)
  const authToken = process.env.SQLSIM_LIBSQL_AUTH_TOKEN
  const input = {
    primaryUrl: flags.primary.value,
    replicaUrls: flags.replica,
    ...(authToken === undefined || authToken === "" ? {} : { authToken })
  }
  return LibsqlConnector.resolve(input).pipe(
    Effect.as(input),
    // The library names fields; the command names its flags.
    Effect.catchTag(
      "PoolConfigError",
      (error) =>
        usageError(error.message.replace(/^primaryUrl/, "--primary").replace(/^replicaUrls\[\d+\]/, "--replica"))
    )
  )
}

/** The simulation the flags describe, every rule checked before anything starts. */
const simulationOptions = (flags: SimulateFlags, chosenSeed: number) =>
  Effect.gen(function*() {
    if (Option.isNone(flags.primary) && flags.replica.length > 0) {
      return yield* usageError("--replica needs --primary: replicas follow a primary")
    }
    if (Option.isNone(flags.sqld) && (flags.kill.length > 0 || Option.isSome(flags.sqldReplicas))) {
      return yield* usageError(
        `${flags.kill.length > 0 ? "--kill" : "--sqld-replicas"} needs --sqld: only servers the ` +
          "simulator starts can be crashed and counted"
      )
    }
    const libsql = yield* libsqlTarget(flags)
    return yield* Simulation.resolve({
      seed: chosenSeed,
      workers: Option.getOrUndefined(flags.workers),
      operations: Option.getOrUndefined(flags.operations),
      duration: Option.getOrUndefined(flags.duration),
      mix: Option.getOrUndefined(flags.mix),
      holdMs: Option.getOrUndefined(flags.hold),
      longReadMs: Option.getOrUndefined(flags.longRead),
      pool: {
        ...Option.match(flags.holdWarningMs, {
          onNone: () => ({}),
          onSome: (millis) => ({ holdWarningThreshold: Duration.millis(millis) })
        }),
        ...Option.match(flags.walCheckpointBytes, {
          onNone: () => ({}),
          onSome: (bytes) => ({ walCheckpointBytes: bytes })
        })
      },
      faults: Option.getOrUndefined(flags.faults),
      compare: flags.compare,
      database: Option.getOrUndefined(flags.db),
      readers: Option.getOrUndefined(flags.readers),
      readerThreads: flags.readerThreads,
      libsql,
      servers: Option.isNone(flags.sqld) ? undefined : {
        sqld: flags.sqld.value,
        replicas: Option.getOrUndefined(flags.sqldReplicas),
        kills: flags.kill.join(",")
      },
      clock: flags.virtualTime ? "virtual" : "real",
      statementMs: Option.getOrUndefined(flags.statementMs),
      connectMs: Option.getOrUndefined(flags.connectMs)
    }).pipe(Effect.catchTag("SimulationConfigError", (error) => usageError(inFlags(error))))
  })

/** Runs the session with its progress line and emits the report; on Ctrl-C, emits what completed. */
const runSession = (session: Simulation.Session, output: Output) =>
  Effect.gen(function*() {
    const progress = showProgress(session, process.stderr.isTTY === true)
    const progressFiber = yield* Effect.fork(progress.loop)
    const stopProgress = Effect.zipRight(Fiber.interrupt(progressFiber), progress.clear)
    const result = yield* session.run.pipe(
      Effect.onInterrupt(() =>
        Effect.gen(function*() {
          yield* stopProgress
          yield* Console.error("interrupted: workers stopped, pool closed; summary of what completed:")
          yield* Effect.catchAll(
            Effect.flatMap(session.snapshot, (partial) => emit(partial, output)),
            (error) => Console.error(error.message)
          )
        })
      )
    )
    yield* stopProgress
    yield* emit(result, output)
  })

/**
 * The report counts the hold warnings by span; logged one by one, each with the simulator's own stack, they would bury
 * the progress line. Every installed logger keeps every other line.
 */
const withoutHoldWarnings = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.locallyWith(
    self,
    FiberRef.currentLoggers,
    HashSet.map((logger) =>
      Logger.make((options) => {
        const event = HashMap.get(options.annotations, "sqlsim.event")
        if (!(Option.isSome(event) && event.value === "hold-warning")) logger.log(options)
      })
    )
  )

/**
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make(
  "simulate",
  simulateFlags,
  (flags) =>
    Effect.gen(function*() {
      const chosenSeed = Option.getOrElse(flags.seed, () => Math.floor(Math.random() * 2 ** 31))
      const options = yield* simulationOptions(flags, chosenSeed)
      // An output renamed over the database (or its -wal) would destroy it; two outputs on one file lose one.
      yield* Distinct.checkDistinct([
        { option: "--db", file: Option.getOrUndefined(flags.db), database: true },
        { option: "--json", file: Option.getOrUndefined(flags.json) },
        { option: "--report", file: Option.getOrUndefined(flags.report) }
      ])
      // The fault injector keeps its bad paths there, and without --db the database is there too.
      yield* TemporaryDirectory.check("simulate's temporary files")
      // Outputs are opened first, so an unwritable path is reported before any work is done.
      const output: Output = {
        json: Option.isSome(flags.json) ? yield* AtomicFile.open(flags.json.value) : undefined,
        html: Option.isSome(flags.report) ? yield* AtomicFile.open(flags.report.value) : undefined
      }
      if (Option.isNone(flags.seed)) {
        yield* Console.error(`seed ${chosenSeed} (replay with --seed ${chosenSeed})`)
      }
      const session = yield* Simulation.make(options)
      yield* Option.isSome(flags.holdWarningMs)
        ? withoutHoldWarnings(runSession(session, output))
        : runSession(session, output)
    }).pipe(Effect.scoped)
).pipe(
  Command.withDescription(
    "Runs a concurrent workload (reads, writes, transactions) against the pool, with injected faults (failed, " +
      "slow, dying connections, failed health pings) or a real second process holding the write lock, and reports " +
      "throughput, latency p50/p95/p99/max, errors by tag, retries and pool utilisation over time. --compare runs " +
      "it with a connection per operation too. Ctrl-C stops it and prints what completed."
  )
)

/**
 * The command, under the name the root command imports.
 *
 * @since 0.1.0
 * @category commands
 */
export const simulateCommand = command
