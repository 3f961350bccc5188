/**
 * The measuring harness: warm-up, calibration, interleaved repetitions, medians and spreads, and a sink that keeps
 * every result alive so no contender's work can be optimised away.
 *
 * Contenders that are compared with each other are measured in one suite: their repetitions are interleaved (round
 * robin, with a rotating start), so a noisy moment on a shared machine hits all of them rather than one.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"

/**
 * How long to warm up and measure.
 *
 * @since 0.1.0
 * @category models
 */
export interface Settings {
  /** total warm-up time per case before measuring */
  readonly warmupMs: number
  /** the length one repetition aims for */
  readonly repetitionMs: number
  /** measured repetitions per case */
  readonly repetitions: number
  /** repetitions of the duration-based workloads (mixed, contention) */
  readonly runs: number
  /** length of one run of a duration-based workload */
  readonly runMs: number
  /** child processes per memory scenario (RSS varies by a few MiB from process to process) */
  readonly memoryRuns: number
}

/**
 * @since 0.1.0
 * @category constants
 */
export const fullSettings: Settings = {
  warmupMs: 300,
  repetitionMs: 120,
  repetitions: 7,
  // Many short runs rather than a few long ones: on a shared machine one run of a contender can be a third slower
  // than the next, and a median of five resists one or two such runs.
  runs: 5,
  runMs: 1000,
  memoryRuns: 5
}

/**
 * @since 0.1.0
 * @category constants
 */
export const quickSettings: Settings = {
  warmupMs: 60,
  repetitionMs: 30,
  repetitions: 3,
  runs: 1,
  runMs: 400,
  memoryRuns: 1
}

// ---------------------------------------------------------------------------------------------------------------
// The sink

let sinkCount = 0
let sinkHash = 0
let sinkLast: unknown = undefined

/**
 * Consumes a result: it is stored and folded into a checksum that run.ts prints, so the work that produced it is
 * observable and cannot be eliminated.
 *
 * @since 0.1.0
 * @category sink
 */
export const consume = (value: unknown): void => {
  sinkLast = value
  sinkCount++
  sinkHash = (sinkHash * 31 + (Array.isArray(value) ? value.length : value === undefined ? 7 : 1)) | 0
}

/**
 * @since 0.1.0
 * @category sink
 */
export const sinkSummary = () => ({ consumed: sinkCount, checksum: sinkHash, lastType: typeof sinkLast })

// ---------------------------------------------------------------------------------------------------------------
// Statistics

/**
 * @since 0.1.0
 * @category statistics
 */
export const median = (values: ReadonlyArray<number>): number => percentile(values, 0.5)

/**
 * Linear-interpolated percentile of unsorted values (`p` in 0..1).
 *
 * @since 0.1.0
 * @category statistics
 */
export const percentile = (values: ReadonlyArray<number>, p: number): number => {
  if (values.length === 0) return Number.NaN
  const sorted = Float64Array.from(values).sort()
  const rank = (sorted.length - 1) * p
  const low = Math.floor(rank)
  const high = Math.ceil(rank)
  return sorted[low]! + (sorted[high]! - sorted[low]!) * (rank - low)
}

/**
 * The largest value (a loop: spreading a large array into Math.max overflows the stack).
 *
 * @since 0.1.0
 * @category statistics
 */
export const maximum = (values: ReadonlyArray<number>): number => {
  let largest = Number.NEGATIVE_INFINITY
  for (const value of values) if (value > largest) largest = value
  return largest
}

/**
 * Spread of repeated measurements: the interquartile range over the median, as a fraction (robust to the odd
 * repetition that a neighbour's burst of work slowed down; min and max stay in the JSON).
 *
 * @since 0.1.0
 * @category statistics
 */
export const spread = (values: ReadonlyArray<number>): number => {
  const middle = median(values)
  return middle === 0 ? 0 : (percentile(values, 0.75) - percentile(values, 0.25)) / middle
}

// ---------------------------------------------------------------------------------------------------------------
// Throughput cases

/**
 * One contender's operation. `run(n)` performs the operation `n` times (split over `fibers` when concurrent) and
 * consumes every result.
 *
 * @since 0.1.0
 * @category models
 */
export interface Case {
  readonly id: string
  readonly name: string
  /** what is fixed for this case: pool size, concurrency, configuration */
  readonly setup: string
  readonly run: (operations: number) => Effect.Effect<void, unknown>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Result {
  readonly id: string
  readonly group: string
  readonly name: string
  readonly setup: string
  readonly medianNsPerOp: number
  readonly opsPerSecond: number
  /** interquartile range / median of the repetitions' ns/op */
  readonly spread: number
  readonly minNsPerOp: number
  readonly maxNsPerOp: number
  readonly repetitions: ReadonlyArray<number>
  readonly operationsPerRepetition: number
}

/**
 * One calibrated batch of each measured case (and of each workload contender), kept for profiling a missed target
 * while the suite's resources are still open.
 *
 * @since 0.1.0
 * @category measuring
 */
export const batches = new Map<string, Effect.Effect<void, unknown>>()

const now = () => process.hrtime.bigint()

const timed = (effect: Effect.Effect<void, unknown>): Effect.Effect<number, unknown> =>
  Effect.suspend(() => {
    const start = now()
    return Effect.map(effect, () => Number(now() - start))
  })

/** Finds an operation count whose run lasts about `targetMs`, starting small and doubling. */
const calibrate = (run: Case["run"], targetMs: number): Effect.Effect<number, unknown> =>
  Effect.gen(function*() {
    let operations = 1
    while (true) {
      const elapsedNs = yield* timed(run(operations))
      if (elapsedNs >= targetMs * 1e6 / 4 || operations >= 1 << 24) {
        return Math.max(1, Math.round(operations * targetMs * 1e6 / Math.max(elapsedNs, 1)))
      }
      operations *= 2
    }
  })

/**
 * Measures a suite of cases: each is warmed up and calibrated, then their repetitions are interleaved.
 *
 * @since 0.1.0
 * @category measuring
 */
export const measureSuite = (
  group: string,
  cases: ReadonlyArray<Case>,
  settings: Settings
): Effect.Effect<Array<Result>, unknown> =>
  Effect.gen(function*() {
    const operations: Array<number> = []
    for (const c of cases) {
      let count = yield* calibrate(c.run, settings.repetitionMs)
      const warmupEnd = Date.now() + settings.warmupMs
      while (Date.now() < warmupEnd) {
        const elapsedNs = yield* timed(c.run(count))
        // Recalibrate while warming up: JIT tiers change the speed.
        count = Math.max(1, Math.round(count * settings.repetitionMs * 1e6 / Math.max(elapsedNs, 1)))
      }
      operations.push(count)
      batches.set(c.id, c.run(count))
    }
    const samples: Array<Array<number>> = cases.map(() => [])
    for (let round = 0; round < settings.repetitions; round++) {
      for (let k = 0; k < cases.length; k++) {
        const index = (k + round) % cases.length
        const elapsedNs = yield* timed(cases[index]!.run(operations[index]!))
        samples[index]!.push(elapsedNs / operations[index]!)
      }
    }
    return cases.map((c, index) => {
      const perOp = samples[index]!
      const middle = median(perOp)
      return {
        id: c.id,
        group,
        name: c.name,
        setup: c.setup,
        medianNsPerOp: middle,
        opsPerSecond: 1e9 / middle,
        spread: spread(perOp),
        minNsPerOp: Math.min(...perOp),
        maxNsPerOp: maximum(perOp),
        repetitions: perOp,
        operationsPerRepetition: operations[index]!
      }
    })
  })

// ---------------------------------------------------------------------------------------------------------------
// Loops

/**
 * `operation` `n` times in a row on one fiber, each result consumed (Effect's own while-loop primitive: no
 * generator or schedule per iteration).
 *
 * @since 0.1.0
 * @category loops
 */
export const repeatEffect = <A, E>(operation: (i: number) => Effect.Effect<A, E>) => (n: number) =>
  Effect.suspend(() => {
    let i = 0
    return Effect.whileLoop({
      while: () => i < n,
      body: () => operation(i),
      step: (value) => {
        i++
        consume(value)
      }
    })
  })

/**
 * `n` operations split over `fibers` concurrent fibers.
 *
 * @since 0.1.0
 * @category loops
 */
export const repeatEffectConcurrently =
  <A, E>(fibers: number, operation: (i: number) => Effect.Effect<A, E>) => (n: number) =>
    Effect.forEach(
      Array.from({ length: fibers }, (_, fiber) => Math.floor(n / fibers) + (fiber < n % fibers ? 1 : 0)),
      (share) => repeatEffect(operation)(share),
      { concurrency: fibers, discard: true }
    )

/**
 * `operation` `n` times in a plain loop (synchronous contenders).
 *
 * @since 0.1.0
 * @category loops
 */
export const repeatSync = (operation: (i: number) => unknown) => (n: number) =>
  Effect.sync(() => {
    for (let i = 0; i < n; i++) consume(operation(i))
  })

/**
 * `operation` `n` times, awaiting each (Promise-based contenders), split over `workers` concurrent async loops.
 *
 * @since 0.1.0
 * @category loops
 */
export const repeatPromise = (operation: (i: number) => Promise<unknown>, workers = 1) => (n: number) =>
  Effect.promise(() =>
    Promise.all(
      Array.from({ length: workers }, async (_, worker) => {
        const share = Math.floor(n / workers) + (worker < n % workers ? 1 : 0)
        for (let i = 0; i < share; i++) consume(await operation(i))
      })
    )
  )

/**
 * Hands the event loop over for one turn (`setImmediate`), the same way for Effect and Promise contenders.
 *
 * @since 0.1.0
 * @category loops
 */
export const yieldEventLoop: Effect.Effect<void> = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

/**
 * @since 0.1.0
 * @category loops
 */
export const yieldEventLoopPromise = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))
