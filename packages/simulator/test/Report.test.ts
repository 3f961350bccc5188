import { assert, describe, it } from "@effect/vitest"
import { Report, Target } from "@sqlsim/simulator"
import { FaultInjector, FaultPlan } from "@sqlsim/simulator"
import { Either } from "effect"
import { Recorder } from "../src/internal/recorder.js"

const counts = (created: number): Omit<Target.ConnectionCounts, "reused"> => ({
  created,
  closed: created,
  invalidated: 0,
  connectFailures: 0,
  connectRetries: 2,
  busyRetries: 1,
  timeouts: 0,
  capacity: 5
})

const noOutcomes = Object.fromEntries(
  FaultInjector.faultKinds.map((kind) => [kind, FaultInjector.noOutcome])
) as Record<FaultInjector.FaultKind, FaultInjector.FaultOutcome>

/** What a run's injector saw: by default, no fault asked for and none injected. */
interface Faults {
  readonly plan: FaultPlan.FaultPlan
  readonly faults: FaultInjector.FaultCounts
  readonly faultOutcomes: Record<FaultInjector.FaultKind, FaultInjector.FaultOutcome>
}
const noFaults: Faults = { plan: FaultPlan.none, faults: FaultInjector.noFaults, faultOutcomes: noOutcomes }

/** A run of `latencies` (ms), one operation starting every millisecond; every fifth one failed when asked. */
const run = (
  mode: Target.Mode,
  latencies: ReadonlyArray<number>,
  failEvery = 0,
  faults: Faults = noFaults
): Report.RunReport => {
  const recorder = new Recorder()
  recorder.startMs = 1000
  latencies.forEach((latency, i) => {
    recorder.started++
    const failed = failEvery > 0 && i % failEvery === 0
    recorder.record(
      i % 2 === 0 ? "read" : "write",
      1000 + i,
      1000 + i + latency,
      failed ? "SqlError(SQLITE_BUSY)" : undefined
    )
  })
  recorder.endMs = 1000 + latencies.length + 10
  recorder.samples.push({ tMs: 0, open: 1, inUse: 1, idle: 0, waiting: 2 }, {
    tMs: 10,
    open: 3,
    inUse: 0,
    idle: 3,
    waiting: 0
  })
  return Report.runReport({
    mode,
    recorder,
    counts: counts(mode === "pooled" ? 3 : latencies.length),
    pool: undefined,
    ...faults,
    faultEvents: [],
    served: { onNewConnection: 3, onReusedConnection: latencies.length - 3 },
    lockHolder: undefined,
    replication: undefined,
    servers: [],
    interrupted: false,
    nowMs: 0,
    waits: undefined,
    holdWarningMs: undefined,
    longRead: undefined
  })
}

const settings: Report.Settings = {
  seed: 9,
  workers: 4,
  operations: 100,
  durationMs: null,
  mix: { read: 70, write: 20, transaction: 10 },
  holdMs: 0,
  servers: null,
  faults: FaultPlan.format(FaultPlan.none),
  readers: 4,
  readerThreads: false,
  database: "/tmp/x.db",
  clock: "real",
  costs: null,
  longReadMs: null
}

describe("Report", () => {
  it("percentiles are nearest-rank; an empty set has none", () => {
    const sorted = Float64Array.from({ length: 100 }, (_, i) => i + 1)
    assert.strictEqual(Report.percentile(sorted, 0.5), 50)
    assert.strictEqual(Report.percentile(sorted, 0.95), 95)
    assert.strictEqual(Report.percentile(sorted, 0.99), 99)
    assert.strictEqual(Report.percentile(sorted, 1), 100)
    assert.strictEqual(Report.percentile([7], 0.5), 7)
    assert.isNull(Report.percentile([], 0.5))
    assert.deepStrictEqual(Report.latency([3, 1, 2, 10]), { p50: 2, p95: 10, p99: 10, max: 10, mean: 4 })
    assert.deepStrictEqual(Report.latency([]), { p50: null, p95: null, p99: null, max: null, mean: null })
  })

  it("wait percentiles come from the histogram's buckets, within its exact minimum and maximum", () => {
    // 100 waits (seconds): 90 served at once, 10 between 5 and 10 ms, the longest 8 ms.
    const histogram: Report.Histogram = {
      buckets: [[0.0001, 90], [0.0005, 90], [0.001, 90], [0.005, 90], [0.01, 100], [Infinity, 100]],
      count: 100,
      min: 0,
      max: 0.008
    }
    const wait = Report.waitTime(histogram)
    assert.strictEqual(wait.count, 100)
    // p50 falls in the first bucket (linear within it), p95 halfway through (5, 10] ms, p99 past the maximum.
    assert.closeTo(wait.p50!, 0.1 * 50 / 90, 1e-9)
    assert.closeTo(wait.p95!, 7.5, 1e-9)
    assert.closeTo(wait.p99!, 8, 1e-9)
    assert.closeTo(wait.max!, 8, 1e-9)
    // Waits all served at once read 0, not half the first bucket; no waits, no percentiles.
    const atOnce = Report.waitTime({ buckets: [[0.0001, 5], [Infinity, 5]], count: 5, min: 0, max: 0 })
    assert.deepStrictEqual(atOnce, { count: 5, p50: 0, p95: 0, p99: 0, max: 0 })
    assert.deepStrictEqual(Report.waitTime(undefined), { count: 0, p50: null, p95: null, p99: null, max: null })
    assert.strictEqual(Report.describeWaits(wait), "0.06 / 7.50 / 8.00 / 8.00 ms of 100 waits")
    assert.strictEqual(Report.describeWaits(Report.waitTime(undefined)), "none")
  })

  it("hold warnings and the WAL's growth in a line each", () => {
    assert.strictEqual(
      Report.describeHoldWarnings({ thresholdMs: 20, count: 3, bySpan: { "": 1, "sim.transaction": 2 } }),
      "3 past 20 ms: outside any span 1, span \"sim.transaction\" 2"
    )
    assert.strictEqual(Report.describeHoldWarnings({ thresholdMs: 20, count: 0, bySpan: {} }), "none past 20 ms")
    assert.strictEqual(
      Report.describeHoldWarnings({ thresholdMs: null, count: 0, bySpan: {} }),
      "off (no holdWarningThreshold)"
    )
    assert.strictEqual(
      Report.describeWal({ maxBytes: 21_300_000, endBytes: 0, checkpointsBlocked: 1, truncations: 2 }),
      "largest 20.3 MiB, at the end 0 KiB; 1 checkpoint blocked by a reader, 2 truncations"
    )
  })

  it("intervals are 1, 2 or 5 times a power of ten", () => {
    assert.strictEqual(Report.niceInterval(1000), 10)
    assert.strictEqual(Report.niceInterval(1500), 20)
    assert.strictEqual(Report.niceInterval(30_000), 500)
    assert.strictEqual(Report.niceInterval(0), 1)
  })

  it("the fault fingerprint depends on the sequence, not on the timing", () => {
    const a = [{ kind: "open-transient", site: "connect", index: 1, atMs: 5 }, {
      kind: "die",
      site: "statement",
      index: 3,
      connection: 2,
      atMs: 9
    }] as const
    const sameSequenceOtherTimes = a.map((event) => ({ ...event, atMs: event.atMs * 2 }))
    assert.strictEqual(Report.fingerprint(a), Report.fingerprint(sameSequenceOtherTimes))
    assert.notStrictEqual(Report.fingerprint(a), Report.fingerprint([...a].reverse()))
    assert.match(Report.fingerprint([]), /^[0-9a-f]{8}$/)
  })

  it("a run report counts operations, errors, latencies by kind, and time series", () => {
    const report = run("pooled", Array.from({ length: 100 }, (_, i) => i + 1), 5)
    assert.deepStrictEqual(report.operations, { started: 100, completed: 80, failed: 20, unfinished: 0 })
    assert.deepStrictEqual(report.errors, { "SqlError(SQLITE_BUSY)": 20 })
    assert.strictEqual(report.latencyMs.p50, 50)
    assert.strictEqual(report.latencyMs.max, 100)
    assert.strictEqual(report.durationMs, 110)
    assert.closeTo(report.throughput!, 80 / 0.11, 1e-6)
    assert.strictEqual(report.byKind.read.completed + report.byKind.read.failed, 50)
    assert.strictEqual(report.byKind.transaction.latencyMs.p50, null)
    const buckets = report.timeline.buckets
    assert.strictEqual(buckets.reduce((sum, bucket) => sum + bucket.completed + bucket.failed, 0), 100)
    assert.strictEqual(report.utilisation.meanInUse, 0.5)
    assert.strictEqual(report.utilisation.peakOpen, 3)
    assert.strictEqual(report.utilisation.peakWaiting, 2)
    assert.deepStrictEqual(report.retries, { connect: 2, busy: 1 })
  })

  it("the comparison says in one line how much faster the pool is, or that it is not", () => {
    const fast = run("pooled", Array.from({ length: 100 }, () => 1))
    const slow = run("connect-per-operation", Array.from({ length: 25 }, () => 4))
    const comparison = Report.compare(fast, slow)
    assert.closeTo(comparison.ratio!, fast.throughput! / slow.throughput!, 1e-9)
    assert.match(
      comparison.summary,
      /^pooled [\d,]+ ops\/s \(p50 1\.00 ms\) vs connect-per-operation [\d,]+ ops\/s \(p50 4\.00 ms\): the pool is \d+\.\dx faster$/
    )
    assert.match(Report.compare(slow, fast).summary, /the pool is slower \(0\.\d\dx the throughput\)$/)
  })

  it("the text table has a column per run, the settings, and the comparison line", () => {
    const report = Report.make(settings, new Date(0), [
      run("pooled", Array.from({ length: 100 }, () => 1), 5),
      run("connect-per-operation", Array.from({ length: 25 }, () => 4))
    ])
    const text = Report.toText(report)
    const lines = text.split("\n")
    assert.match(lines[0]!, /^sqlsim simulate: seed 9, 4 workers, 100 operations, faults none, real clock$/)
    assert.match(text, /\n\s+pooled\s+connect-per-operation\n/)
    for (
      const label of [
        "duration",
        "operations",
        "throughput",
        "latency p50/p95/p99/max",
        "errors",
        "retries",
        "connections",
        "faults injected"
      ]
    ) {
      assert.match(text, new RegExp(`\\n${label.replace(/[/]/g, "\\/")}\\s`), label)
    }
    assert.include(text, "SqlError(SQLITE_BUSY) 20")
    assert.include(text, report.comparison!.summary)
    assert.deepStrictEqual(JSON.parse(Report.toJson(report)), JSON.parse(JSON.stringify(report)))
  })

  it("every fault kind asked for has a line: what fired and what followed, or why it had no chance; never none", () => {
    const plan = Either.getOrThrow(FaultPlan.parse("open=0.1,die=0.02,ping=0.01,stmt-busy=0.05"))
    const faults: Faults = {
      plan,
      faults: { ...FaultInjector.noFaults, checks: 300, statements: 400, die: 6, ping: 0 },
      faultOutcomes: {
        ...noOutcomes,
        die: { connectionsClosed: 6, operationsCompleted: 4, operationsFailed: { "SqlError(ClosedConnection)": 1 } }
      }
    }
    const report = Report.make(settings, new Date(0), [run("pooled", [1, 2, 3, 4], 0, faults)])
    const [pooled] = report.runs
    assert.deepStrictEqual(pooled!.faults.kinds.map((line) => line.key), ["open", "die", "ping", "stmt-busy"])
    const text = Report.toText(report)
    assert.match(text, /\n {2}open\s+no chance: no connect attempt after the workload started/)
    assert.match(
      text,
      /\n {2}die\s+6 in 700 checks, probes and statements; then 6 connections closed by the pool, 4 operations completed all the same, 1 failed SqlError\(ClosedConnection\)/
    )
    assert.match(text, /\n {2}ping\s+0 in 300 checks and probes \(chance 0\.01 each\)/)
    assert.match(text, /\nfaults injected\s+die 6 \[[0-9a-f]{8}\]/)
    assert.notMatch(text, /faults injected\s+none/)
    // Reuse is per operation: every operation but the three that opened a connection.
    assert.match(text, /\nconnections\s+created 3, reused 1, closed 3/)
  })

  it("an interrupted report says so, and makes no comparison from a run cut short", () => {
    const cut = { ...run("pooled", [1, 2, 3]), interrupted: true }
    const report = Report.make(settings, new Date(0), [run("connect-per-operation", [1]), cut])
    assert.isTrue(report.interrupted)
    assert.isUndefined(report.comparison)
    assert.include(Report.toText(report), "interrupted: the numbers cover the operations that finished before the stop")
  })
})
