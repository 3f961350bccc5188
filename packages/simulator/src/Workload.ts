/**
 * The workload generator: N concurrent fibers that take operations one at a time (reads, writes and transactions in
 * a given mix) until a number of operations or a duration is reached, and record each one's latency and outcome.
 *
 * Operation i is drawn from a generator seeded with the run's seed and i, so the sequence of operations is the same
 * in every run with that seed, whichever fiber happens to take each one.
 *
 * @since 0.1.0
 */
import type * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Random from "effect/Random"
import { failureKey, type Gauges, kinds, type OperationKind, type Recorder } from "./internal/recorder.js"
import {
  type DatabaseLostError,
  type DiskFullError,
  OperationTimeoutError,
  SimulationConfigError
} from "./SimulationError.js"

export {
  /**
   * Connections open, in use and idle, and fibers waiting for one, at one instant.
   *
   * @since 0.1.0
   * @category models
   */
  type Gauges,
  /**
   * The kinds of operation a workload runs: read, write, transaction.
   *
   * @since 0.1.0
   * @category constants
   */
  kinds,
  /**
   * @since 0.1.0
   * @category models
   */
  type OperationKind,
  /**
   * Gauges sampled during a run.
   *
   * @since 0.1.0
   * @category models
   */
  type Sample
} from "./internal/recorder.js"

/**
 * Relative weights of the operation kinds (they need not add up to 100).
 *
 * @since 0.1.0
 * @category models
 */
export type Mix = Readonly<Record<OperationKind, number>>

/**
 * When the workers stop: after a number of operations, or after a duration (and in any case after `maxOperations`).
 *
 * @since 0.1.0
 * @category models
 */
export type Stop =
  | { readonly _tag: "Operations"; readonly count: number }
  | { readonly _tag: "Duration"; readonly millis: number }

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly seed: number
  readonly workers: number
  readonly stop: Stop
  readonly mix: Mix
  /** work held inside each transaction, between its statements and COMMIT (the write lock is held meanwhile) */
  readonly holdMs: number
  /** rows in the table that reads look up */
  readonly rows: number
  /** the bound on one operation (a longer one fails with OperationTimeoutError) */
  readonly operationTimeoutMs: number
  /** how often gauges are sampled */
  readonly sampleEveryMs: number
  /** when each worker gives the event loop a turn (default `defaultTurn`) */
  readonly turn?: Turn | undefined
  /**
   * Run after each failed operation, with its failure: a failure of its own stops every worker and ends the run with
   * it (what every operation would fail on: the database file deleted, its disk full). Failed operations are
   * otherwise counted, and the run goes on.
   */
  readonly afterFailure?:
    | ((failure: Cause.Cause<unknown>) => Effect.Effect<void, DatabaseLostError | DiskFullError>)
    | undefined
}

/**
 * When a worker gives the event loop a turn. SQLite statements are synchronous and fibers resume on microtasks, so
 * workers that never wait for anything keep Node's timers, I/O and signal handlers from ever running (a Ctrl-C would
 * wait for the end of the run). A worker takes a turn after `everyOperations` operations, or once `everyMillis` of
 * real time passed since its last turn, whichever comes first.
 *
 * @since 0.1.0
 * @category models
 */
export interface Turn {
  readonly everyOperations: number
  /** Infinity: count operations only (a virtual-time run must not depend on the machine's speed) */
  readonly everyMillis: number
  /** the wait that lets the event loop run */
  readonly wait: Effect.Effect<void>
}

/**
 * A macrotask: by the time `setImmediate` calls back, the event loop has polled for I/O and signals and run due
 * timers.
 *
 * @since 0.1.0
 * @category constants
 */
export const eventLoopTurn: Effect.Effect<void> = Effect.async<void>((resume) => {
  const immediate = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(immediate))
})

/**
 * A turn every 5 ms of real time (or every 256 operations): the event loop then waits at most a few hundred ms even
 * on a loaded machine, and no throughput cost could be told from run-to-run noise (a turn after every operation
 * did cost some; see the README's simulate section).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultTurn: Turn = { everyOperations: 256, everyMillis: 5, wait: eventLoopTurn }

/**
 * One planned operation.
 *
 * @since 0.1.0
 * @category models
 */
export interface Operation {
  /** 0, 1, 2 ... in the order operations are taken */
  readonly index: number
  readonly kind: OperationKind
  /** the row a read looks up, or the counter a transaction updates (1 .. rows) */
  readonly key: number
}

/**
 * What a workload runs against: the pool, or a fresh connection per operation.
 *
 * @since 0.1.0
 * @category models
 */
export interface Target {
  readonly run: (operation: Operation) => Effect.Effect<void, unknown>
  /** connections open, in use, idle, and fibers waiting for one, now */
  readonly gauges: Effect.Effect<Gauges>
}

/**
 * The most operations one run records (a duration run stops there too): about 20 MB of measurements.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxOperations = 1_000_000

/**
 * The default mix: 70 % reads, 20 % single writes, 10 % transactions.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultMix: Mix = { read: 70, write: 20, transaction: 10 }

/**
 * The operation plan of a seed: an Effect that gives operation 0, then 1, 2 ... each time it runs.
 *
 * @since 0.1.0
 * @category constructors
 */
export const planner = (seed: number, mix: Mix, rows: number): Effect.Effect<Operation> => {
  const total = mix.read + mix.write + mix.transaction
  let next = 0
  return Effect.suspend(() => {
    // The index is taken in one synchronous step; operation i's generator is seeded with the seed and i alone.
    const index = next++
    const random = Random.make(`${seed}/operation/${index}`)
    return Effect.map(Effect.zip(random.next, random.next), ([kindDraw, keyDraw]): Operation => {
      const weight = kindDraw * total
      const kind: OperationKind = weight < mix.read ? "read" : weight < mix.read + mix.write ? "write" : "transaction"
      return { index, kind, key: 1 + Math.floor(keyDraw * rows) }
    })
  })
}

const nowMs = Effect.map(Clock.currentTimeNanos, (nanos) => Number(nanos) / 1_000_000)

/**
 * Runs the workers against a target until the stop condition, recording into `recorder` (which a caller may read
 * while this runs, and after it was interrupted). A gauge sample is taken every `sampleEveryMs` and at the end.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (
  target: Target,
  options: Options,
  recorder: Recorder
): Effect.Effect<void, DatabaseLostError | DiskFullError> =>
  Effect.gen(function*() {
    const next = planner(options.seed, options.mix, options.rows)
    const limit = options.stop._tag === "Operations" ? Math.min(options.stop.count, maxOperations) : maxOperations
    recorder.startMs = yield* nowMs
    const deadline = options.stop._tag === "Duration" ? recorder.startMs + options.stop.millis : Infinity
    const timeout = Duration.millis(options.operationTimeoutMs)

    let lastSampleMs = -Infinity
    const sample = Effect.flatMap(
      Effect.zip(target.gauges, nowMs),
      ([gauges, now]) =>
        Effect.sync(() => {
          lastSampleMs = now
          recorder.samples.push({ tMs: now - recorder.startMs, ...gauges })
        })
    )

    const turn = options.turn ?? defaultTurn
    const worker = Effect.gen(function*() {
      let operationsSinceTurn = 0
      let lastTurnAt = performance.now()
      while (recorder.started < limit && (yield* nowMs) < deadline) {
        recorder.started++
        const operation = yield* next
        const startedAt = yield* nowMs
        const exit = yield* Effect.exit(
          target.run(operation).pipe(
            Effect.timeoutFail({
              duration: timeout,
              onTimeout: () =>
                new OperationTimeoutError({ operation: operation.index, timeoutMs: options.operationTimeoutMs })
            })
          )
        )
        const endedAt = yield* nowMs
        recorder.record(
          operation.kind,
          startedAt,
          endedAt,
          exit._tag === "Success" ? undefined : failureKey(exit.cause)
        )
        if (exit._tag === "Failure" && options.afterFailure !== undefined) yield* options.afterFailure(exit.cause)
        // Busy workers also take the samples: a loop of synchronous statements can keep the timer of the sampler
        // below from firing for the whole run.
        if (endedAt - lastSampleMs >= options.sampleEveryMs) yield* sample
        // After the operation, so that the loop's condition is checked again once the turn is over.
        if (
          ++operationsSinceTurn >= turn.everyOperations ||
          (turn.everyMillis !== Infinity && performance.now() - lastTurnAt >= turn.everyMillis)
        ) {
          yield* turn.wait
          operationsSinceTurn = 0
          lastTurnAt = performance.now()
        }
      }
    })

    yield* sample
    const sampler = yield* Effect.forkScoped(
      Effect.forever(Effect.zipRight(Effect.sleep(Duration.millis(options.sampleEveryMs)), sample))
    )
    yield* Effect.all(Array.from({ length: options.workers }, () => worker), {
      concurrency: "unbounded",
      discard: true
    }).pipe(Effect.ensuring(Effect.flatMap(nowMs, (now) => Effect.sync(() => recorder.endMs = now))))
    yield* sampler.interruptAsFork(sampler.id())
    yield* sample
  }).pipe(Effect.scoped)

/**
 * The schema the workload uses, created if missing: `sim_items` (read and written) and `sim_counters` (updated by
 * transactions).
 *
 * @since 0.1.0
 * @category constants
 */
export const schema = [
  "CREATE TABLE IF NOT EXISTS sim_items (id INTEGER PRIMARY KEY, value TEXT NOT NULL, operation INTEGER NOT NULL)",
  "CREATE TABLE IF NOT EXISTS sim_counters (id INTEGER PRIMARY KEY, hits INTEGER NOT NULL)"
] as const

/**
 * Parses a mix such as "read=70,write=20,transaction=10" (kinds left out weigh 0; at least one weight above 0).
 *
 * @since 0.1.0
 * @category constructors
 */
export const parseMix = (spec: string): Either.Either<Mix, SimulationConfigError> => {
  const error = (rest: string) =>
    Either.left(new SimulationConfigError({ field: "mix", describe: (name) => `${name("mix")}${rest}` }))
  const mix: Record<OperationKind, number> = { read: 0, write: 0, transaction: 0 }
  const seen = new Set<string>()
  for (const part of spec.split(",")) {
    const match = /^\s*([a-z]+)\s*=\s*(\d+(?:\.\d+)?)\s*$/.exec(part)
    if (match === null) {
      return error(`: "${part.trim()}" is not kind=weight; write for example read=70,write=20,transaction=10`)
    }
    const kind = match[1]!
    if (!(kinds as ReadonlyArray<string>).includes(kind)) {
      return error(`: unknown operation "${kind}": the kinds are ${kinds.join(", ")}`)
    }
    if (seen.has(kind)) return error(`: "${kind}" is given twice`)
    seen.add(kind)
    mix[kind as OperationKind] = Number(match[2])
  }
  if (mix.read + mix.write + mix.transaction <= 0) return error(": at least one weight must be above 0")
  return Either.right(mix)
}
