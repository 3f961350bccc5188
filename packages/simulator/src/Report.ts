/**
 * The report of a simulation: throughput, latency percentiles, errors by tag, retries, connection counts, injected
 * faults, pool utilisation and time series, for each run (pooled, and connect-per-operation with `--compare`); for a
 * pooled run also what operating it shows: each lane's wait for a connection (from the pool's wait-time histograms),
 * the hold warnings, and the WAL's growth.
 * As plain JSON-ready data (`make`), as a text table for the terminal (`toText`); `ReportHtml` draws it as a page.
 *
 * @since 0.1.0
 */
import type { SqlitePool } from "@sqlsim/sqlite-pool"
import type { FaultCounts, FaultEvent, FaultKind, FaultOutcome, Served } from "./FaultInjector.js"
import type { FaultPlan } from "./FaultPlan.js"
import { kinds, type OperationKind, type Recorder, type Sample } from "./internal/recorder.js"
import type * as ServerFaults from "./ServerFaults.js"
import type { ConnectionCounts, Mode } from "./Target.js"

/**
 * Latency percentiles in milliseconds (null when nothing finished).
 *
 * @since 0.1.0
 * @category models
 */
export interface Latency {
  readonly p50: number | null
  readonly p95: number | null
  readonly p99: number | null
  readonly max: number | null
  readonly mean: number | null
}

/**
 * One interval of a run: operations that ended in it and their latencies.
 *
 * @since 0.1.0
 * @category models
 */
export interface Bucket {
  /** start of the interval, ms since the run started */
  readonly tMs: number
  readonly completed: number
  readonly failed: number
  readonly p50: number | null
  readonly p95: number | null
  readonly max: number | null
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RunReport {
  readonly mode: Mode
  /** true when the run was stopped (Ctrl-C) before its end: the numbers cover what completed */
  readonly interrupted: boolean
  readonly durationMs: number
  readonly operations: {
    readonly started: number
    readonly completed: number
    readonly failed: number
    /** started but neither completed nor failed (only after an interruption) */
    readonly unfinished: number
  }
  /** completed operations per second (null when the run took no measurable time, as on a virtual clock) */
  readonly throughput: number | null
  readonly latencyMs: Latency
  readonly byKind: Readonly<
    Record<OperationKind, { readonly completed: number; readonly failed: number; readonly latencyMs: Latency }>
  >
  /** failed operations by error tag */
  readonly errors: Readonly<Record<string, number>>
  readonly retries: { readonly connect: number; readonly busy: number }
  readonly connections: ConnectionCounts
  /** the pool's own statistics at the end (pooled runs) */
  readonly pool: SqlitePool.Stats | undefined
  readonly faults: FaultCounts & {
    /** a hash of the whole fault sequence (kind and event number of every fault): equal sequences, equal hashes */
    readonly fingerprint: string
    /** the first faults, in order */
    readonly first: ReadonlyArray<FaultEvent>
    /** each fault kind the run was asked to inject: its chances, how many fired, and what followed */
    readonly kinds: ReadonlyArray<FaultLine>
  }
  readonly lockHolder: { readonly bursts: number; readonly holdMs: number; readonly everyMs: number } | undefined
  /** on a libSQL target: each replica's lag behind the primary (frames) when last seen and at most over the run */
  readonly replication: Replication | undefined
  /** servers the simulator started and crashed mid-run, and when each answered again */
  readonly servers: ReadonlyArray<ServerFaults.Event>
  readonly utilisation: {
    /** mean connections in use over the samples */
    readonly meanInUse: number
    readonly peakOpen: number
    readonly peakWaiting: number
    readonly capacity: number
  }
  readonly timeline: { readonly bucketMs: number; readonly buckets: ReadonlyArray<Bucket> }
  /** connections open, in use, idle and fibers waiting (and the WAL's size on a pooled run), sampled over the run */
  readonly samples: ReadonlyArray<Sample>
  /** each lane's waits for a connection, from the pool's `db.client.connection.wait_time` histograms; null: no pool */
  readonly waits: { readonly writer: WaitTime; readonly readers: WaitTime } | null
  /** leases the pool warned about, held longer than `holdWarningThreshold`; null: no pool */
  readonly holdWarnings: HoldWarnings | null
  /** the WAL as the pool's writer lane watched it; null: no pool, or a server's WAL */
  readonly wal: WalGrowth | null
  /** the long reader (`longReadMs`), and how it ended; null when none was asked for */
  readonly longRead: LongRead | null
}

/**
 * A lane's waits for a connection in milliseconds, from the pool's wait-time histogram: `count` waits (one per
 * lease, 0 ms when served at once); the percentiles estimated from its buckets as Prometheus's `histogram_quantile`
 * does (linear within a bucket), kept within the exact minimum and maximum; null when nothing waited.
 *
 * @since 0.2.0
 * @category models
 */
export interface WaitTime {
  readonly count: number
  readonly p50: number | null
  readonly p95: number | null
  readonly p99: number | null
  readonly max: number | null
}

/**
 * The pool's hold warnings in a run.
 *
 * @since 0.2.0
 * @category models
 */
export interface HoldWarnings {
  /** the pool's `holdWarningThreshold` in ms; null: off (then there are no warnings) */
  readonly thresholdMs: number | null
  readonly count: number
  /** by the holder's span name ("" for a holder outside any span) */
  readonly bySpan: Readonly<Record<string, number>>
}

/**
 * How the WAL grew in a run, as the pool's writer lane saw it (it looks at most once a second, after a write).
 *
 * @since 0.2.0
 * @category models
 */
export interface WalGrowth {
  /** the largest size seen, in bytes (over the samples and at the end) */
  readonly maxBytes: number
  /** the size at the end */
  readonly endBytes: number
  /** checkpoints past `walCheckpointBytes` that a reader's snapshot kept from finishing */
  readonly checkpointsBlocked: number
  /** checkpoints that emptied the WAL */
  readonly truncations: number
}

/**
 * The long reader of a run: how long it was to hold its snapshot, and how it ended ("completed", "cut short" by the
 * end of the run, or the key of its failure, as errors are counted).
 *
 * @since 0.2.0
 * @category models
 */
export interface LongRead {
  readonly holdMs: number
  readonly outcome: string
}

/**
 * A histogram as the pool's metric holds it, in seconds: cumulative counts at each upper bound (the last one
 * `Infinity`), and the count, minimum and maximum.
 *
 * @since 0.2.0
 * @category models
 */
export interface Histogram {
  readonly buckets: ReadonlyArray<readonly [number, number]>
  readonly count: number
  readonly min: number
  readonly max: number
}

/**
 * One fault kind a run was asked to inject, and what became of it.
 *
 * @since 0.1.0
 * @category models
 */
export interface FaultLine {
  readonly kind: FaultKind
  /** its `--faults` key */
  readonly key: string
  /** the chance asked for, per event */
  readonly chance: number
  /** the events that could meet it */
  readonly chances: number
  /** what those events are ("connect attempts", "statements", ...) */
  readonly chancesOf: string
  readonly injected: number
  readonly outcome: FaultOutcome
  /** why it could not fire in this run (no event it acts on happened), or null */
  readonly noChance: string | null
}

/**
 * The settings a report was made with.
 *
 * @since 0.1.0
 * @category models
 */
export interface Settings {
  readonly seed: number
  readonly workers: number
  readonly operations: number | null
  readonly durationMs: number | null
  readonly mix: Readonly<Record<OperationKind, number>>
  readonly holdMs: number
  readonly faults: string
  /** libSQL servers the simulator started: how many replicas, and the kills (ServerFaults' text form) */
  readonly servers: { readonly replicas: number; readonly kills: string } | null
  readonly readers: number
  /** the Reader's connections ran in worker threads */
  readonly readerThreads: boolean
  readonly database: string
  readonly clock: "real" | "virtual"
  /** on the virtual clock: the modelled costs of a statement and of an open, in ms */
  readonly costs: { readonly statementMs: number; readonly connectMs: number } | null
  /** a long reader held its snapshot this long from the start of each run (ms); null: none */
  readonly longReadMs: number | null
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Report {
  readonly tool: "sqlsim simulate"
  readonly version: 1
  readonly startedAt: string
  readonly settings: Settings
  readonly interrupted: boolean
  readonly runs: ReadonlyArray<RunReport>
  /** with --compare: the pooled run against the connect-per-operation run */
  readonly comparison: Comparison | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Comparison {
  /** pooled throughput divided by connect-per-operation throughput (null when either is unknown) */
  readonly ratio: number | null
  readonly pooledThroughput: number | null
  readonly perOperationThroughput: number | null
  /** the one line that says it */
  readonly summary: string
}

/**
 * How far the replicas of a libSQL target were behind the primary.
 *
 * @since 0.1.0
 * @category models
 */
export interface Replication {
  readonly replicas: ReadonlyArray<{
    readonly url: string
    /** connections opened to it */
    readonly connects: number
    /** replication frames behind the primary when it last answered (null: never answered) */
    readonly lagFrames: number | null
    /** the most it was seen behind, sampled with the gauges */
    readonly maxLagFrames: number | null
  }>
  /** Reader connections that went to the primary because no replica could be reached */
  readonly fallbacks: number
}

/**
 * What a run leaves behind, from which its report is made.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunData {
  readonly mode: Mode
  readonly recorder: Recorder
  readonly counts: Omit<ConnectionCounts, "reused">
  readonly pool: SqlitePool.Stats | undefined
  readonly plan: FaultPlan
  readonly faults: FaultCounts
  readonly faultEvents: ReadonlyArray<FaultEvent>
  readonly faultOutcomes: Readonly<Record<FaultKind, FaultOutcome>>
  /** operations by the connection their first statement ran on */
  readonly served: Served
  readonly lockHolder: RunReport["lockHolder"]
  readonly replication: Replication | undefined
  readonly servers: ReadonlyArray<ServerFaults.Event>
  readonly interrupted: boolean
  /** the clock now, for a run still going (its duration so far) */
  readonly nowMs: number
  /** the pool's wait-time histograms by lane (pooled runs) */
  readonly waits: { readonly writer: Histogram | undefined; readonly readers: Histogram | undefined } | undefined
  /** the pool's `holdWarningThreshold` in ms (undefined: off) */
  readonly holdWarningMs: number | undefined
  readonly longRead: LongRead | undefined
}

/**
 * "primary killed at 2.00 s, back at 3.05 s": what happened to the servers in a run, one clause each.
 *
 * @since 0.1.0
 * @category formatting
 */
export const serverEvents = (events: ReadonlyArray<ServerFaults.Event>): string =>
  events.length === 0 ?
    "none" :
    events.map((event) =>
      `${event.server} killed at ${(event.killedAtMs / 1000).toFixed(2)} s, ` + (
        event.backAtMs !== null
          ? `back at ${(event.backAtMs / 1000).toFixed(2)} s`
          : event.error !== null
          ? `not back: ${event.error.split("\n")[0]}`
          : "not back before the run ended"
      )
    ).join("; ")

/**
 * The value at percentile `p` (0..1) of ascending `sorted` values, by nearest rank; null when empty.
 *
 * @since 0.1.0
 * @category utils
 */
export const percentile = (sorted: ArrayLike<number>, p: number): number | null => {
  if (sorted.length === 0) return null
  const rank = Math.max(1, Math.ceil(p * sorted.length))
  return sorted[Math.min(rank, sorted.length) - 1]!
}

/**
 * Percentiles, maximum and mean of unsorted values.
 *
 * @since 0.1.0
 * @category utils
 */
export const latency = (values: ArrayLike<number>): Latency => {
  const sorted = Float64Array.from(values).sort()
  let sum = 0
  for (const value of sorted) sum += value
  return {
    p50: percentile(sorted, 0.5),
    p95: percentile(sorted, 0.95),
    p99: percentile(sorted, 0.99),
    max: sorted.length === 0 ? null : sorted[sorted.length - 1]!,
    mean: sorted.length === 0 ? null : sum / sorted.length
  }
}

/**
 * A "nice" interval (1, 2 or 5 times a power of ten, in ms) giving about `target` intervals over `durationMs`.
 *
 * @since 0.1.0
 * @category utils
 */
export const niceInterval = (durationMs: number, target = 100): number => {
  const raw = Math.max(durationMs / target, 1)
  const power = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 5, 10].find((multiple) => multiple * power >= raw) ?? 10
  return step * power
}

/**
 * A 32-bit FNV-1a hash of the fault sequence, as 8 hex digits.
 *
 * @since 0.1.0
 * @category utils
 */
export const fingerprint = (events: ReadonlyArray<FaultEvent>): string => {
  let hash = 0x811c9dc5
  for (const event of events) {
    for (const char of `${event.kind}:${event.connection ?? ""}:${event.index};`) {
      hash ^= char.charCodeAt(0)
      hash = Math.imul(hash, 0x01000193) >>> 0
    }
  }
  return hash.toString(16).padStart(8, "0")
}

/** What each fault kind acts on: its key, the plan's chance, the events that meet it, and why none might happen. */
const faultKinds: ReadonlyArray<{
  readonly kind: FaultKind
  readonly key: string
  readonly chance: (plan: FaultPlan) => number
  readonly injected: (counts: FaultCounts) => number
  readonly chances: (counts: FaultCounts) => number
  readonly chancesOf: string
  readonly noChance: string
}> = [
  ...([
    ["open-transient", "open", (plan: FaultPlan) => plan.openTransient, (c: FaultCounts) => c.openTransient],
    ["open-permanent", "open-permanent", (plan: FaultPlan) => plan.openPermanent, (c: FaultCounts) => c.openPermanent],
    ["slow-open", "slow", (plan: FaultPlan) => plan.slowOpen, (c: FaultCounts) => c.slowOpen]
  ] as const).map(([kind, key, chance, injected]) => ({
    kind,
    key,
    chance,
    injected,
    chances: (c: FaultCounts) => c.connectAttempts,
    chancesOf: "connect attempts",
    noChance: "no connect attempt after the workload started (the pool had opened its connections before)"
  })),
  {
    kind: "die",
    key: "die",
    chance: (plan) => plan.die,
    injected: (c) => c.die,
    chances: (c) => c.checks + c.validations + c.statements,
    chancesOf: "checks, probes and statements",
    noChance: "no connection was checked, probed or used after the workload started"
  },
  {
    kind: "ping",
    key: "ping",
    chance: (plan) => plan.ping,
    injected: (c) => c.ping,
    chances: (c) => c.checks + c.validations,
    chancesOf: "checks and probes",
    noChance: "no connection was checked or probed after the workload started"
  },
  ...([
    ["ioerr", "ioerr", (plan: FaultPlan) => plan.ioerr, (c: FaultCounts) => c.ioerr],
    ["busy", "stmt-busy", (plan: FaultPlan) => plan.busyStatement, (c: FaultCounts) => c.busy],
    ["slow-statement", "stmt-slow", (plan: FaultPlan) => plan.slowStatement, (c: FaultCounts) => c.slowStatement]
  ] as const).map(([kind, key, chance, injected]) => ({
    kind,
    key,
    chance,
    injected,
    chances: (c: FaultCounts) => c.statements,
    chancesOf: "statements",
    noChance: "no statement ran after the workload started"
  }))
]

/**
 * The fault kinds a plan asks for, each with its chances, how many fired and what followed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const faultLines = (
  mode: Mode,
  plan: FaultPlan,
  counts: FaultCounts,
  outcomes: Readonly<Record<FaultKind, FaultOutcome>>
): ReadonlyArray<FaultLine> =>
  faultKinds.filter((kind) => kind.chance(plan) > 0).map((kind) => {
    const chances = kind.chances(counts)
    return {
      kind: kind.kind,
      key: kind.key,
      chance: kind.chance(plan),
      chances,
      chancesOf: kind.chancesOf,
      injected: kind.injected(counts),
      outcome: outcomes[kind.kind],
      noChance: chances > 0
        ? null
        : mode === "connect-per-operation" && kind.kind === "ping"
        ? "a connection per operation is never checked or probed: there is no pool to do it"
        : kind.noChance
    }
  })

/**
 * A wait-time histogram (seconds) as percentiles in milliseconds: each estimated as Prometheus's
 * `histogram_quantile` does (the bucket where the rank falls, linear within it), then kept within the exact minimum
 * and maximum, so that waits all of 0 ms read 0, not half the first bucket.
 *
 * @since 0.2.0
 * @category utils
 */
export const waitTime = (histogram: Histogram | undefined): WaitTime => {
  if (histogram === undefined || histogram.count === 0) return { count: 0, p50: null, p95: null, p99: null, max: null }
  const at = (q: number): number => {
    const rank = q * histogram.count
    let lower = 0
    let below = 0
    for (const [upper, cumulative] of histogram.buckets) {
      if (cumulative >= rank) {
        const estimate = Number.isFinite(upper)
          ? lower + (upper - lower) * (cumulative === below ? 0 : (rank - below) / (cumulative - below))
          : histogram.max
        return 1000 * Math.min(histogram.max, Math.max(histogram.min, estimate))
      }
      lower = upper
      below = cumulative
    }
    return 1000 * histogram.max
  }
  return { count: histogram.count, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: 1000 * histogram.max }
}

/** What operating the pool showed in a run: waits by lane, hold warnings, the WAL's growth; null each without a pool. */
const operating = (data: RunData, samples: ReadonlyArray<Sample>) => {
  const { pool } = data
  if (pool === undefined) return { waits: null, holdWarnings: null, wal: null }
  const wal = pool.wal
  return {
    waits: { writer: waitTime(data.waits?.writer), readers: waitTime(data.waits?.readers) },
    holdWarnings: {
      thresholdMs: data.holdWarningMs ?? null,
      count: pool.holdWarnings,
      bySpan: pool.holdWarningsBySpan
    },
    wal: wal === undefined ? null : {
      maxBytes: samples.reduce((most, sample) => Math.max(most, sample.walBytes ?? 0), wal.bytes),
      endBytes: wal.bytes,
      checkpointsBlocked: wal.checkpointsBlocked,
      truncations: wal.truncations
    }
  }
}

const maxSamples = 500
const firstFaults = 50

const downsample = (samples: ReadonlyArray<Sample>): ReadonlyArray<Sample> => {
  if (samples.length <= maxSamples) return samples
  const every = Math.ceil(samples.length / maxSamples)
  const kept = samples.filter((_, i) => i % every === 0)
  if (kept[kept.length - 1] !== samples[samples.length - 1]) kept.push(samples[samples.length - 1]!)
  return kept
}

/**
 * The report of one run.
 *
 * @since 0.1.0
 * @category constructors
 */
export const runReport = (data: RunData): RunReport => {
  const { recorder } = data
  const operations = recorder.operations()
  const durationMs = Math.max(0, (recorder.endMs ?? data.nowMs) - recorder.startMs)
  const kindReport = (kind: OperationKind) => {
    const code = kinds.indexOf(kind)
    const values: Array<number> = []
    let completed = 0
    for (let i = 0; i < operations.count; i++) {
      if (operations.kinds[i] !== code) continue
      values.push(operations.latencies[i]!)
      if (operations.outcomes[i] === 1) completed++
    }
    return { completed, failed: values.length - completed, latencyMs: latency(values) }
  }

  const bucketMs = niceInterval(durationMs)
  const bucketCount = Math.max(1, Math.ceil(durationMs / bucketMs))
  const perBucket = Array.from({ length: bucketCount }, () => ({ latencies: [] as Array<number>, completed: 0 }))
  for (let i = 0; i < operations.count; i++) {
    const endOffset = operations.startOffsets[i]! + operations.latencies[i]!
    const bucket = perBucket[Math.min(bucketCount - 1, Math.floor(endOffset / bucketMs))]!
    bucket.latencies.push(operations.latencies[i]!)
    if (operations.outcomes[i] === 1) bucket.completed++
  }
  const buckets = perBucket.map((bucket, i) => {
    const summary = latency(bucket.latencies)
    return {
      tMs: i * bucketMs,
      completed: bucket.completed,
      failed: bucket.latencies.length - bucket.completed,
      p50: summary.p50,
      p95: summary.p95,
      max: summary.max
    }
  })

  const samples = recorder.samples
  const meanInUse = samples.length === 0 ? 0 : samples.reduce((sum, sample) => sum + sample.inUse, 0) / samples.length
  return {
    mode: data.mode,
    interrupted: data.interrupted,
    durationMs,
    operations: {
      started: recorder.started,
      completed: recorder.completed,
      failed: recorder.failed,
      unfinished: recorder.started - recorder.finished
    },
    throughput: durationMs > 0 ? recorder.completed / (durationMs / 1000) : null,
    latencyMs: latency(operations.latencies),
    byKind: { read: kindReport("read"), write: kindReport("write"), transaction: kindReport("transaction") },
    errors: Object.fromEntries([...recorder.errors.entries()].sort(([a], [b]) => a.localeCompare(b))),
    retries: { connect: data.counts.connectRetries, busy: data.counts.busyRetries },
    connections: { ...data.counts, reused: data.served.onReusedConnection },
    pool: data.pool,
    faults: {
      ...data.faults,
      fingerprint: fingerprint(data.faultEvents),
      first: data.faultEvents.slice(0, firstFaults),
      kinds: faultLines(data.mode, data.plan, data.faults, data.faultOutcomes)
    },
    lockHolder: data.lockHolder,
    replication: data.replication,
    servers: data.servers,
    utilisation: {
      meanInUse,
      peakOpen: samples.reduce((peak, sample) => Math.max(peak, sample.open), 0),
      peakWaiting: samples.reduce((peak, sample) => Math.max(peak, sample.waiting), 0),
      capacity: data.counts.capacity
    },
    timeline: { bucketMs, buckets },
    samples: downsample(samples),
    ...operating(data, samples),
    longRead: data.longRead ?? null
  }
}

const formatRate = (value: number | null) =>
  value === null ? "n/a" : `${Math.round(value).toLocaleString("en-US")} ops/s`

const formatMs = (value: number | null) =>
  value === null ? "n/a" : value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2)

/**
 * The comparison of a pooled run with a connect-per-operation run, and its one-line summary.
 *
 * @since 0.1.0
 * @category constructors
 */
export const compare = (pooled: RunReport, perOperation: RunReport): Comparison => {
  const ratio = pooled.throughput !== null && perOperation.throughput !== null && perOperation.throughput > 0
    ? pooled.throughput / perOperation.throughput
    : null
  const verdict = ratio === null
    ? "no throughput ratio (a run took no measurable time)"
    : ratio >= 1
    ? `the pool is ${ratio.toFixed(1)}x faster`
    : `the pool is slower (${ratio.toFixed(2)}x the throughput)`
  const summary = `pooled ${formatRate(pooled.throughput)} (p50 ${formatMs(pooled.latencyMs.p50)} ms) vs ` +
    `connect-per-operation ${formatRate(perOperation.throughput)} (p50 ${formatMs(perOperation.latencyMs.p50)} ms): ` +
    verdict
  return {
    ratio,
    pooledThroughput: pooled.throughput,
    perOperationThroughput: perOperation.throughput,
    summary
  }
}

/**
 * The whole report.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (settings: Settings, startedAt: Date, runs: ReadonlyArray<RunReport>): Report => {
  const pooled = runs.find((run) => run.mode === "pooled")
  const perOperation = runs.find((run) => run.mode === "connect-per-operation")
  return {
    tool: "sqlsim simulate",
    version: 1,
    startedAt: startedAt.toISOString(),
    settings,
    interrupted: runs.some((run) => run.interrupted),
    runs,
    // A run cut short is no basis for a comparison.
    comparison: pooled !== undefined && perOperation !== undefined && !pooled.interrupted && !perOperation.interrupted
      ? compare(pooled, perOperation)
      : undefined
  }
}

/**
 * The report as JSON text (2-space indented).
 *
 * @since 0.1.0
 * @category rendering
 */
export const toJson = (report: Report): string => JSON.stringify(report, jsonValue, 2) + "\n"

/**
 * The `JSON.stringify` replacer of a report: replication indexes (in the pool's statistics on libSQL) are bigints,
 * which JSON has no number for: they are written as decimal strings.
 *
 * @since 0.1.0
 * @category rendering
 */
export const jsonValue = (_key: string, value: unknown): unknown => typeof value === "bigint" ? value.toString() : value

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const all = [header, ...rows]
  const widths = header.map((_, column) => Math.max(...all.map((row) => (row[column] ?? "").length)))
  const line = (row: ReadonlyArray<string>) =>
    row.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd()
  return [line(header), widths.map((width) => "-".repeat(width)).join("  "), ...rows.map(line)].join("\n")
}

const count = (n: number) => n.toLocaleString("en-US")

const plural = (n: number, one: string, many: string) => `${count(n)} ${n === 1 ? one : many}`

/**
 * What became of one fault kind in a run, in a line: "12 in 3,400 checks, probes and statements; then 12 connections
 * closed by the pool, 9 operations completed all the same, 3 failed SqlError(ClosedConnection)".
 *
 * @since 0.1.0
 * @category formatting
 */
export const describeFault = (run: RunReport, line: FaultLine): string => {
  if (line.noChance !== null) return `no chance: ${line.noChance}`
  const extraMs = line.kind === "slow-open"
    ? run.faults.slowOpenMs
    : line.kind === "slow-statement"
    ? run.faults.slowStatementMs
    : undefined
  const head = `${count(line.injected)} in ${count(line.chances)} ${line.chancesOf}` +
    (extraMs === undefined || line.injected === 0 ? "" : ` (+${Math.round(extraMs)} ms)`)
  if (line.injected === 0) return `${head} (chance ${line.chance} each)`
  const then: Array<string> = []
  if (line.kind === "open-transient" || line.kind === "open-permanent") {
    then.push(
      `of all connects: ${count(run.retries.connect)} retried, ${count(run.connections.connectFailures)} failed`
    )
  }
  const { connectionsClosed, operationsCompleted, operationsFailed } = line.outcome
  if (connectionsClosed > 0) then.push(`${plural(connectionsClosed, "connection", "connections")} closed by the pool`)
  if (operationsCompleted > 0) {
    then.push(`${plural(operationsCompleted, "operation", "operations")} completed all the same`)
  }
  for (const [key, n] of Object.entries(operationsFailed)) then.push(`${count(n)} failed ${key}`)
  return then.length === 0 ? head : `${head}; then ${then.join(", ")}`
}

/** The faults of a run in a line: how many of each kind fired, and the sequence's fingerprint. */
const faultsInjected = (run: RunReport) => {
  const f = run.faults
  if (f.kinds.length === 0 && run.lockHolder === undefined) return "none asked for"
  const parts = f.kinds.filter((line) => line.injected > 0).map((line) => `${line.key} ${count(line.injected)}`)
  if (run.lockHolder !== undefined) parts.push(`lock bursts ${run.lockHolder.bursts}`)
  return `${parts.length === 0 ? "0 of the kinds asked for fired" : parts.join(", ")} [${f.fingerprint}]`
}

/** The pool's own lease counters (a lease per statement; statements sharing a connection count once). */
const poolLeases = (run: RunReport) => {
  if (run.pool === undefined) return "no pool"
  const { readers, writer } = run.pool
  return `acquired ${count(writer.acquired + readers.acquired)}, reused ${count(writer.reused + readers.reused)}`
}

/**
 * A lane's waits in a line: "0.00 / 0.05 / 12.4 / 30.0 ms of 1,234 waits" (p50 / p95 / p99 / max), or "none".
 *
 * @since 0.2.0
 * @category formatting
 */
export const describeWaits = (wait: WaitTime): string =>
  wait.count === 0
    ? "none"
    : `${[wait.p50, wait.p95, wait.p99, wait.max].map(formatMs).join(" / ")} ms of ${
      plural(wait.count, "wait", "waits")
    }`

/**
 * The hold warnings in a line: "3 past 20 ms: span \"sim.transaction\" 2, span \"sim.long-read\" 1", "none past 20
 * ms", or "off (no holdWarningThreshold)".
 *
 * @since 0.2.0
 * @category formatting
 */
export const describeHoldWarnings = (holds: HoldWarnings): string => {
  if (holds.thresholdMs === null) return "off (no holdWarningThreshold)"
  if (holds.count === 0) return `none past ${holds.thresholdMs} ms`
  const spans = Object.entries(holds.bySpan).map(([span, n]) =>
    `${span === "" ? "outside any span" : `span "${span}"`} ${count(n)}`
  )
  return `${count(holds.count)} past ${holds.thresholdMs} ms: ${spans.join(", ")}`
}

/**
 * A size in bytes as people read it: "812 KiB", "20.3 MiB".
 *
 * @since 0.2.0
 * @category formatting
 */
export const formatBytes = (bytes: number): string =>
  bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : `${Math.round(bytes / 1024)} KiB`

/**
 * The WAL's growth in a line: "largest 20.3 MiB, at the end 0 KiB; 3 checkpoints blocked by a reader, 1 truncation".
 *
 * @since 0.2.0
 * @category formatting
 */
export const describeWal = (wal: WalGrowth): string =>
  `largest ${formatBytes(wal.maxBytes)}, at the end ${formatBytes(wal.endBytes)}; ` +
  `${plural(wal.checkpointsBlocked, "checkpoint", "checkpoints")} blocked by a reader, ` +
  `${plural(wal.truncations, "truncation", "truncations")}`

/** The rows about operating the pool: each lane's waits, the hold warnings, the WAL, the long reader. */
const operatingRows = (report: Report): Array<[string, (run: RunReport) => string]> => {
  const noPool = "no pool"
  const rows: Array<[string, (run: RunReport) => string]> = [
    ["writer wait p50/p95/p99/max", (run) => run.waits === null ? noPool : describeWaits(run.waits.writer)],
    ["Reader wait p50/p95/p99/max", (run) => run.waits === null ? noPool : describeWaits(run.waits.readers)],
    ["hold warnings", (run) => run.holdWarnings === null ? noPool : describeHoldWarnings(run.holdWarnings)]
  ]
  if (report.runs.some((run) => run.wal !== null)) {
    rows.push(["WAL", (run) => run.wal === null ? noPool : describeWal(run.wal)])
  }
  if (report.runs.some((run) => run.longRead !== null)) {
    rows.push([
      "long read",
      (run) => run.longRead === null ? "none" : `${run.longRead.holdMs} ms: ${run.longRead.outcome}`
    ])
  }
  return rows
}

const describeStop = (settings: Settings) =>
  settings.operations !== null ? `${settings.operations} operations` : `${(settings.durationMs ?? 0) / 1000} s`

/**
 * The report as a text table for a terminal.
 *
 * @since 0.1.0
 * @category rendering
 */
export const toText = (report: Report): string => {
  const { settings } = report
  const errors = (run: RunReport) => {
    const entries = Object.entries(run.errors)
    return entries.length === 0 ? "none" : entries.map(([tag, n]) => `${tag} ${count(n)}`).join(", ")
  }
  const rows: Array<[string, (run: RunReport) => string]> = [
    ["duration", (run) => `${(run.durationMs / 1000).toFixed(2)} s${run.interrupted ? " (interrupted)" : ""}`],
    ["operations", (run) =>
      `${count(run.operations.completed)} ok, ${count(run.operations.failed)} failed` +
      (run.operations.unfinished > 0 ? `, ${run.operations.unfinished} cut short` : "")],
    ["throughput", (run) => formatRate(run.throughput)],
    [
      "latency p50/p95/p99/max",
      (run) =>
        [run.latencyMs.p50, run.latencyMs.p95, run.latencyMs.p99, run.latencyMs.max].map(formatMs).join(" / ") + " ms"
    ],
    ["errors", errors],
    ["retries", (run) => `connect ${count(run.retries.connect)}, busy ${count(run.retries.busy)}`],
    ["connections", (run) =>
      `created ${count(run.connections.created)}, reused ${count(run.connections.reused)}, ` +
      `closed ${count(run.connections.closed)}, invalidated ${count(run.connections.invalidated)}`],
    ["pool leases", poolLeases],
    [
      "in use (mean/capacity)",
      (run) =>
        `${
          run.utilisation.meanInUse.toFixed(1)
        } / ${run.utilisation.capacity}, peak waiting ${run.utilisation.peakWaiting}`
    ],
    ...operatingRows(report),
    ["faults injected", faultsInjected],
    ...(report.runs[0]?.faults.kinds ?? []).map((line, index): [string, (run: RunReport) => string] => [
      `  ${line.key}`,
      (run) => describeFault(run, run.faults.kinds[index]!)
    ])
  ]
  if (report.runs.some((run) => run.replication !== undefined)) {
    rows.push(["replica lag (frames)", (run) =>
      run.replication === undefined || run.replication.replicas.length === 0
        ? "no replica"
        : run.replication.replicas.map((replica) =>
          `last ${replica.lagFrames ?? "?"}, max ${replica.maxLagFrames ?? "?"}`
        ).join("; ") + (run.replication.fallbacks > 0 ? `, ${run.replication.fallbacks} reads fell back` : "")])
  }
  if (report.runs.some((run) => run.servers.length > 0)) {
    rows.push(["servers crashed", (run) => serverEvents(run.servers)])
  }
  const header = [
    `sqlsim simulate: seed ${settings.seed}, ${settings.workers} workers, ${describeStop(settings)}, ` +
    `faults ${settings.faults}, ${settings.clock} clock` +
    (settings.costs === null
      ? ""
      : ` (a statement costs ${settings.costs.statementMs} ms, an open ${settings.costs.connectMs} ms)`) +
    (settings.readerThreads ? ", Reader in worker threads" : "") +
    (settings.longReadMs === null ? "" : `, a long read of ${settings.longReadMs} ms`),
    `database ${settings.database}` +
    (settings.servers === null ?
      "" :
      ` (started by the simulator, ${settings.servers.replicas} replica${settings.servers.replicas === 1 ? "" : "s"}${
        settings.servers.kills === "" ? "" : `, kills ${settings.servers.kills}`
      })`)
  ]
  const body = table(
    ["", ...report.runs.map((run) => run.mode)],
    rows.map(([label, cell]) => [label, ...report.runs.map(cell)])
  )
  const footer = report.comparison !== undefined ? [report.comparison.summary] : []
  if (report.interrupted) footer.push("interrupted: the numbers cover the operations that finished before the stop")
  return [...header, "", body, ...(footer.length > 0 ? ["", ...footer] : [])].join("\n") + "\n"
}
