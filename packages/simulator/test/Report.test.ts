import { assert, describe, it } from "@effect/vitest"
import { Report, Target } from "@sqlsim/simulator"
import { FaultInjector, FaultPlan } from "@sqlsim/simulator"
import { Recorder } from "../src/internal/recorder.js"

const counts = (created: number): Target.ConnectionCounts => ({
  created,
  closed: created,
  reused: 0,
  invalidated: 0,
  connectFailures: 0,
  connectRetries: 2,
  busyRetries: 1,
  timeouts: 0,
  capacity: 5
})

/** A run of `latencies` (ms), one operation starting every millisecond; every fifth one failed when asked. */
const run = (mode: Target.Mode, latencies: ReadonlyArray<number>, failEvery = 0): Report.RunReport => {
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
    faults: FaultInjector.noFaults,
    faultEvents: [],
    lockHolder: undefined,
    replication: undefined,
    servers: [],
    interrupted: false,
    nowMs: 0
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
  clock: "real"
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

  it("intervals are 1, 2 or 5 times a power of ten", () => {
    assert.strictEqual(Report.niceInterval(1000), 10)
    assert.strictEqual(Report.niceInterval(1500), 20)
    assert.strictEqual(Report.niceInterval(30_000), 500)
    assert.strictEqual(Report.niceInterval(0), 1)
  })

  it("the fault fingerprint depends on the sequence, not on the timing", () => {
    const a = [{ kind: "open-transient", index: 1, atMs: 5 }, { kind: "die-idle", index: 3, atMs: 9 }] as const
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

  it("an interrupted report says so, and makes no comparison from a run cut short", () => {
    const cut = { ...run("pooled", [1, 2, 3]), interrupted: true }
    const report = Report.make(settings, new Date(0), [run("connect-per-operation", [1]), cut])
    assert.isTrue(report.interrupted)
    assert.isUndefined(report.comparison)
    assert.include(Report.toText(report), "interrupted: the numbers cover the operations that finished before the stop")
  })
})
