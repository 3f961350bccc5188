/**
 * The rules of a simulation's options (`Simulation.resolve`): every field checked, the combinations that do not go
 * together refused with a message naming the fields (the command names its flags instead), the defaults filled in.
 */
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as FaultPlan from "../FaultPlan.js"
import * as ServerFaults from "../ServerFaults.js"
import type { Input, Options, Servers } from "../Simulation.js"
import { SimulationConfigError } from "../SimulationError.js"
import * as Workload from "../Workload.js"

/** Bounds of the options. */
export const limits = {
  workers: 512,
  operations: Workload.maxOperations,
  durationMs: 3_600_000,
  holdMs: 10_000,
  longReadMs: 3_600_000,
  readers: 64,
  replicas: 8,
  costMs: 1000
} as const

/**
 * The modelled costs on the virtual clock: about what a point read or an insert (WAL, synchronous=NORMAL) and an
 * open with the pool's pragmas take on a laptop's SSD.
 */
export const defaultCosts = { statementMs: 0.02, connectMs: 0.5 } as const

type Name = (field: string) => string

const configError = (field: keyof Input, describe: (name: Name) => string) =>
  Either.left(new SimulationConfigError({ field, describe }))

const integerIn = (field: keyof Input, value: number, min: number, max: number) =>
  Number.isInteger(value) && value >= min && value <= max
    ? Either.right(value)
    : configError(
      field,
      (name) => `${name(field)} must be a whole number from ${min} to ${max.toLocaleString("en-US")}, got ${value}`
    )

/** When the workload stops: after a number of operations, or after a duration (5 seconds if neither is given). */
const resolveStop = (input: Input): Either.Either<Workload.Stop, SimulationConfigError> =>
  Either.gen(function*() {
    if (input.operations !== undefined && input.duration !== undefined) {
      return yield* configError("operations", (name) => `give ${name("operations")} or ${name("duration")}, not both`)
    }
    if (input.operations !== undefined) {
      return { _tag: "Operations", count: yield* integerIn("operations", input.operations, 1, limits.operations) }
    }
    const decoded = Duration.decodeUnknown(input.duration ?? "5 seconds")
    const millis = decoded._tag === "Some" ? Duration.toMillis(decoded.value) : Number.NaN
    if (!(millis > 0 && millis <= limits.durationMs)) {
      return yield* configError(
        "duration",
        (name) =>
          `${name("duration")} must be more than 0 and at most 1 hour, such as "10 seconds" or "2 minutes", got ${
            String(input.duration)
          }`
      )
    }
    return { _tag: "Duration", millis }
  })

/** Virtual time repeats a run exactly only if nothing in it answers on real time, and it needs a count to stop at. */
const checkVirtualClock = (
  input: Input,
  faults: FaultPlan.FaultPlan,
  stop: Workload.Stop
): Either.Either<void, SimulationConfigError> => {
  if (faults.lockHolder !== undefined) {
    return configError(
      "clock",
      (name) =>
        `${name("clock")} cannot be combined with ${name("faults")} busy=lock-holder: the lock holder is a real ` +
        "process on real time"
    )
  }
  if (input.readerThreads === true) {
    return configError(
      "clock",
      (name) =>
        `${name("clock")} cannot be combined with ${name("readerThreads")}: a worker thread answers on real time`
    )
  }
  if (stop._tag === "Duration") {
    return configError(
      "clock",
      (name) =>
        `${name("clock")} needs ${name("operations")}: on virtual time an operation costs only its modelled delays`
    )
  }
  return Either.void
}

/** The servers to start, their kills checked against the replicas started and the run's end. */
const resolveServers = (
  servers: NonNullable<Input["servers"]>,
  stop: Workload.Stop
): Either.Either<Servers, SimulationConfigError> =>
  Either.gen(function*() {
    const sqld = servers.sqld
    if (typeof sqld !== "string" || sqld.trim() === "") {
      return yield* configError("servers", (name) => `${name("servers")} needs the path of a sqld binary`)
    }
    const replicas = yield* integerIn("servers", servers.replicas ?? 1, 0, limits.replicas)
    // Kills given as values are checked by the same rules as their text form.
    const given = servers.kills ?? ""
    const kills = yield* ServerFaults.parse(typeof given === "string" ? given : ServerFaults.format(given))
    const unknown = kills.find((kill) =>
      kill.server !== "primary" && Number(kill.server.slice("replica-".length)) > replicas
    )
    if (unknown !== undefined) {
      return yield* configError("servers", (name) =>
        `${name("kills")} names ${unknown.server}, but the run starts ${replicas} replica${
          replicas === 1 ? "" : "s"
        } (replica-1 .. replica-${replicas})`)
    }
    const runMs = stop._tag === "Duration" ? stop.millis : Number.POSITIVE_INFINITY
    const late = kills.find((kill) =>
      kill.atMs >= runMs
    )
    if (late !== undefined) {
      return yield* configError("servers", (name) =>
        `${name("kills")} ${late.server}@${late.atMs}ms comes after the run ends (${name("duration")} ${runMs}ms): ` +
        "kill it earlier, or run longer")
    }
    return { sqld, replicas, kills }
  })

/** A libSQL target (a server the user runs, or servers the simulator starts) excludes what only a file can do. */
const checkServerTarget = (
  input: Input,
  servers: Servers | undefined,
  clock: Options["clock"],
  faults: FaultPlan.FaultPlan
): Either.Either<void, SimulationConfigError> => {
  if (input.libsql === undefined && servers === undefined) return Either.void
  // The field the user gave, named in the messages: a server they run, or servers the simulator starts.
  const server = input.libsql !== undefined ? "libsql" : "servers"
  return input.libsql !== undefined && servers !== undefined
    ? configError("servers", (name) => `give ${name("libsql")} or ${name("servers")}, not both`)
    : input.database !== undefined
    ? configError(server, (name) => `give ${name("database")} or ${name(server)}, not both`)
    : clock === "virtual"
    ? configError(
      "clock",
      (name) => `${name("clock")} cannot be combined with ${name(server)}: a server answers on real time`
    )
    : input.readerThreads === true
    ? configError(
      "readerThreads",
      (name) => `${name("readerThreads")} are for a database file; with ${name(server)} the Reader is on the replicas`
    )
    : faults.openTransient > 0 || faults.openPermanent > 0 || faults.lockHolder !== undefined
    ? configError(
      "faults",
      (name) =>
        `${name("faults")} open, open-permanent and busy=lock-holder need a database file; with ${name(server)} ` +
        `use slow, die, ping, ioerr, stmt-busy and stmt-slow (and ${name("kills")} to crash a server)`
    )
    : Either.void
}

/** The modelled costs: on the virtual clock only (on a real one, statements and opens take their real time). */
const resolveCosts = (
  input: Input,
  clock: Options["clock"]
): Either.Either<{ readonly statementMs: number; readonly connectMs: number }, SimulationConfigError> =>
  Either.gen(function*() {
    for (const field of ["statementMs", "connectMs"] as const) {
      const value = input[field]
      if (value === undefined) continue
      if (clock !== "virtual") {
        return yield* configError(
          field,
          (name) =>
            `${name(field)} models a cost on the virtual clock: give it with ${name("clock")}, or leave it out (on a ` +
            "real clock statements and opens take their real time)"
        )
      }
      if (!(Number.isFinite(value) && value >= 0 && value <= limits.costMs)) {
        return yield* configError(
          field,
          (name) => `${name(field)} must be from 0 to ${limits.costMs} milliseconds, such as 0.02, got ${value}`
        )
      }
    }
    return clock === "virtual"
      ? {
        statementMs: input.statementMs ?? defaultCosts.statementMs,
        connectMs: input.connectMs ?? defaultCosts.connectMs
      }
      : { statementMs: 0, connectMs: 0 }
  })

/** Validates the input and fills in the defaults. */
export const resolve = (input: Input): Either.Either<Options, SimulationConfigError> =>
  Either.gen(function*() {
    const seed = yield* integerIn("seed", input.seed, 0, 2 ** 31 - 1)
    const workers = yield* integerIn("workers", input.workers ?? 8, 1, limits.workers)
    const stop = yield* resolveStop(input)
    const mix = typeof input.mix === "string" ? yield* Workload.parseMix(input.mix) : input.mix ?? Workload.defaultMix
    const faults = typeof input.faults === "string"
      ? yield* FaultPlan.parse(input.faults)
      : input.faults ?? FaultPlan.none
    const holdMs = input.holdMs ?? 0
    if (!(Number.isFinite(holdMs) && holdMs >= 0 && holdMs <= limits.holdMs)) {
      return yield* configError(
        "holdMs",
        (name) => `${name("holdMs")} must be from 0 to ${limits.holdMs} milliseconds, got ${holdMs}`
      )
    }
    const longReadMs = input.longReadMs === undefined
      ? null
      : yield* integerIn("longReadMs", input.longReadMs, 1, limits.longReadMs)
    const readers = yield* integerIn("readers", input.readers ?? 4, 0, limits.readers)
    const clock = input.clock ?? "real"
    if (clock === "virtual") yield* checkVirtualClock(input, faults, stop)
    if (input.database !== undefined && (input.database.trim() === "" || input.database === ":memory:")) {
      return yield* configError(
        "database",
        (name) =>
          `${name("database")} must be a database file (connect-per-operation and the lock holder need a file); ` +
          "leave it out for a temporary one"
      )
    }
    const costs = yield* resolveCosts(input, clock)
    const servers = input.servers === undefined ? undefined : yield* resolveServers(input.servers, stop)
    yield* checkServerTarget(input, servers, clock, faults)
    const sampleEveryMs = yield* integerIn("sampleEveryMs", input.sampleEveryMs ?? 50, 1, 60_000)
    const rows = yield* integerIn("rows", input.rows ?? 1000, 1, 1_000_000)
    return {
      seed,
      workers,
      stop,
      mix,
      holdMs,
      longReadMs,
      faults,
      compare: input.compare ?? false,
      database: input.database,
      libsql: input.libsql,
      servers,
      readers,
      readerThreads: input.readerThreads ?? false,
      clock,
      pool: input.pool ?? {},
      sampleEveryMs,
      rows,
      ...costs
    } satisfies Options
  })
