/**
 * The targets, judged on ratios measured in the same run: each verdict says PASS or MISS, the measured
 * ratio and the threshold, which contender to profile when it misses, and what would close the gap.
 *
 * @since 0.1.0
 */
import type { ContentionResult } from "./cases/contention.js"
import type { MemoryResult } from "./cases/memory.js"
import { DUTY_CYCLES, type MixedResult } from "./cases/mixed.js"
import type { Result } from "./harness.js"

/**
 * Everything a run measured (a suite left out with --only leaves its list empty).
 *
 * @since 0.1.0
 * @category models
 */
export interface Measurements {
  readonly throughput: ReadonlyArray<Result>
  readonly mixed: ReadonlyArray<MixedResult>
  readonly contention: ReadonlyArray<ContentionResult>
  readonly memory: ReadonlyArray<MemoryResult>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Verdict {
  readonly target: string
  readonly description: string
  /** the two figures the ratio is made of */
  readonly measured: string
  readonly ratio: number
  /** "<= 1" or ">= 0.9": how the ratio is judged */
  readonly threshold: string
  readonly pass: boolean
  /** the contender to profile when the target is missed (a key of `batches`), if a CPU profile can explain it */
  readonly profile: string | undefined
  /** what would close the gap, as separate notes (several targets share a note): printed with a MISS */
  readonly closing: ReadonlyArray<string>
}

const us = (ns: number) => `${(ns / 1000).toFixed(1)} us/op`
const ms = (value: number) => `${value < 1 ? (value * 1000).toFixed(0) + " us" : value.toFixed(2) + " ms"}`
const opsPerSecond = (value: number) => `${Math.round(value).toLocaleString("en-US")} ops/s`

interface Check {
  readonly ratio: number
  readonly atMost?: number
  readonly atLeast?: number
}

const judge = ({ atLeast, atMost, ratio }: Check) => ({
  ratio,
  threshold: atMost !== undefined ? `<= ${atMost}` : `>= ${atLeast}`,
  pass: Number.isFinite(ratio) && (atMost !== undefined ? ratio <= atMost : ratio >= atLeast!)
})

/** What would close each gap, with the figures of this run where they explain it. */
const closingNotes = (m: Measurements) => {
  const perOp = (id: string) => m.throughput.find((r) => r.id === id)?.medianNsPerOp
  const figure = (id: string) => {
    const ns = perOp(id)
    return ns === undefined ? "not measured" : `${(ns / 1000).toFixed(1)} us`
  }
  const raw = m.memory.find((r) => r.kind === "raw")
  const pooled = m.memory.find((r) => r.kind === "pool" && r.size === raw?.size && r.pageCacheKiB === 2000)
  const rawIdle = raw !== undefined && pooled !== undefined ?
    `; for comparison, ${raw.size} plain better-sqlite3 handles opened and verified the same way (journal mode read, ` +
    `SELECT 1) took ${raw.idleOverBaselineMiB.toFixed(1)} MiB in this run, so the pool's own share is about ` +
    `${(pooled.idleOverBaselineMiB - raw.idleOverBaselineMiB).toFixed(1)} MiB, ` +
    `${pooled.idleJsMiB.toFixed(1)} MiB of it live JavaScript (a SqliteClient with its statement cache, a Scope and ` +
    "the pool's entry per connection); RSS at this size also moves by a few MiB from process to process" :
    ""
  const contended = (id: string) => m.contention.find((r) => r.id === id)
  const rate = (id: string) => {
    const r = contended(id)
    return r === undefined ? "not measured" : `${Math.round(r.acquiresPerSecond).toLocaleString("en-US")} acquires/s`
  }
  const worst = (id: string) => {
    const r = contended(id)
    return r === undefined ? "not measured" : `${r.waitMaxMs.toFixed(0)} ms`
  }
  return {
    acquire: "a lease of an idle connection (ConnectionPool.use) is: the connector's O(1) check (closed?), a stat of " +
      "the database file (deleted or replaced?) at most once per validationInterval for each connection (on every " +
      "checkout with the default of 0, where it is the largest single item in the profile), the most " +
      "recently released entry taken from the idle list, the lease recorded and the counters and Effect metrics " +
      "updated, and the Effect steps around the caller's body (uninterruptibleMask, the lease, onExit, the release " +
      "back to the idle list or to the oldest waiter). An acquire that has to wait also pays its sqlsim.acquire span " +
      "and an Effect.async; none pays a timer (one timer fiber per pool ends the waits that pass acquireTimeout). " +
      "Priced alone in this run ('Effect building blocks'): Effect.scoped " +
      `${figure("block.scoped")}, Scope.fork + close ${figure("block.scopeFork")}, Effect Pool get/release ` +
      `${figure("effectPool.trivial")}, a span ${figure("block.spanNoStack")}. tarn's get/release is a few plain ` +
      "function calls; the remaining gap to it is the Effect runtime's per-step cost",
    probe: "the default validationInterval of 0 probes every idle connection it hands out: a SELECT 1 on the " +
      "connection's raw handle (its reserve permit and prepared-statement cache, as Effect steps) after the stat of " +
      "the database file that every checkout makes. A validationInterval window (HikariCP skips the probe for " +
      "connections used in the last 500 ms) takes it off the hot path",
    writer: "the writer lane keeps its one connection leased while it works, and a statement outside a transaction " +
      "runs without a Scope, a finalizer or a queue while no transaction holds or waits for the lane, so it pays no " +
      "pool lease; it adds to SqliteClient's own path a count of running statements, a stat of the database file " +
      "(the deleted-or-replaced check, about 1.5 us) and the busy-retry guard. Measured: " +
      `${figure("writer.select1")} per SELECT 1, against ${figure("single.select1")} for SqliteClient. Checking the ` +
      "file at most every few milliseconds instead of before every statement would take the stat off",
    mixed: "Reader statements share one kept connection of the reader pool, so Reader latency is a statement's " +
      "cost, as on the writer lane (target 2), plus the wait behind the other readers on the one thread",
    mixedThreads: "with readerThreads a point read runs on the main thread's Reader connection unless its text was " +
      "learned long, so it pays what the main-thread Reader pays plus the route's own steps (a FiberRef read, the " +
      "learned-long lookup, a lease of the main-thread pool, a counter) and SQLite's trace callbacks of the time " +
      "budget (two uncontended mutexes and four clock reads without a system call: about 0.2 us per statement; the thread's CPU " +
      "clock, a system call, is read only for a statement over 1 ms). Both contenders do the same CPU work per read " +
      "within a few per cent in the profiles (`--profile=mixed.pool,mixed.threads`, normalised by `stat`, one per " +
      "read), while the runs of one contender vary by up to a third on this machine: compare several runs. A miss: " +
      "check `SqlitePool.stats` readerRoutes in the profile run (a point read learned long by mistake runs on the " +
      "workers; overBudget also counts a thread preempted past the budget on a loaded machine, run again on a worker)",
    connect: "pooled queries pay the lease (and, with the defaults, the probe) of target 1; connect-per-query on a " +
      "WAL file is dominated by open and close, and its time varies a lot from run to run on a busy machine",
    contention: "every wait is the hold time of the leases queued ahead (16 workers on 4 connections: a waiter " +
      "queues behind 12 others, three turns of the event loop) plus each lease's CPU cost on the one thread, where " +
      "tarn spends a few microseconds. The workers are Effect fibers here (a loop, a lease, an Effect.async around " +
      "setImmediate) and async functions for tarn and generic-pool: in the profile most of the time is the Effect " +
      "runtime (the fibers' run loop, resuming each waiting fiber, FiberRef reads), the pool's own code a seventh, " +
      `and Effect's own Pool, on the same fibers, runs ${rate("contention.effectPool")} against ` +
      `${rate("contention.pool.noProbe")} (it is not first come first served: its waits are short but its worst ` +
      `one was ${worst("contention.effectPool")}). A waiting acquire also pays its sqlsim.acquire span (a run ` +
      "without the span measured 48,000 acquires/s against 30,000 with it); Effect's scheduler is not the cause " +
      "(one that never yields to a timer changed p99 by a tenth). The tail comes from process-wide pauses (garbage collection, a busy " +
      "shared machine) that hold all 16 waiters at once: the lower the acquisition rate, the larger the share of acquisitions they touch. " +
      "A cheaper lease (target 1) shortens every hold, raises the rate and allocates less",
    memoryIdle: "an idle pooled connection has been opened, configured and verified, so SQLite has read the " +
      `schema and allocated its first page-cache block${rawIdle}. Fewer open connections ` +
      "(minConnections 0, a lower idleTimeToLive) or a driver build with a smaller initial page-cache block would " +
      "lower it",
    memoryWarm: "lower pageCacheKiB further"
  }
}

/**
 * The verdicts for whatever was measured.
 *
 * @since 0.1.0
 * @category targets
 */
export const verdicts = (m: Measurements): Array<Verdict> => {
  const CLOSING = closingNotes(m)
  const out: Array<Verdict> = []
  const rate = (id: string) => m.throughput.find((r) => r.id === id)
  const mixed = (id: string) => m.mixed.find((r) => r.id === id)
  const contention = (id: string) => m.contention.find((r) => r.id === id)
  const memory = (id: string) => m.memory.find((r) => r.id === id)

  const overhead = (
    target: string,
    ours: string,
    theirs: string,
    label: string,
    closing: ReadonlyArray<string>
  ) => {
    const a = rate(ours)
    const b = rate(theirs)
    if (a === undefined || b === undefined) return
    out.push({
      target,
      description: `ConnectionPool.use acquire+release <= ${label} get/release (pool of 5, trivial body)`,
      measured: `${a.name} [${a.setup}] ${us(a.medianNsPerOp)} vs ${b.name} ${us(b.medianNsPerOp)}`,
      ...judge({ ratio: a.medianNsPerOp / b.medianNsPerOp, atMost: 1 }),
      profile: ours,
      closing
    })
  }
  overhead("1", "pool.use.trivial.noProbe", "effectPool.trivial", "bare Effect Pool", [CLOSING.acquire])
  overhead("1 (defaults)", "pool.use.trivial", "effectPool.trivial", "bare Effect Pool", [
    CLOSING.acquire,
    CLOSING.probe
  ])
  overhead("1 stretch", "pool.use.trivial.noProbe", "tarn.trivial", "tarn's", [CLOSING.acquire])
  const leaseOurs = rate("pool.use.trivial.noProbe")
  const leaseTarn = rate("tarn.trivial")
  if (leaseOurs !== undefined && leaseTarn !== undefined) {
    out.push({
      target: "7 (lease)",
      description: "a lease without probe (ConnectionPool.use, trivial body) costs <= 3x tarn's get/release",
      measured: `${leaseOurs.name} [${leaseOurs.setup}] ${us(leaseOurs.medianNsPerOp)} vs ${leaseTarn.name} ` +
        us(leaseTarn.medianNsPerOp),
      ...judge({ ratio: leaseOurs.medianNsPerOp / leaseTarn.medianNsPerOp, atMost: 3 }),
      profile: "pool.use.trivial.noProbe",
      closing: [CLOSING.acquire]
    })
  }

  for (const [suffix, label] of [["", "sequential"], [".c16", "16 fibers"]] as const) {
    const ours = rate(`writer.select1${suffix}`)
    const theirs = rate(`single.select1${suffix}`)
    if (ours === undefined || theirs === undefined) continue
    out.push({
      target: `2 (${label})`,
      description: `writer lane sql\`SELECT 1\` throughput >= 0.9x SqliteClient's, ${label}`,
      measured: `writer lane ${opsPerSecond(ours.opsPerSecond)} vs SqliteClient ${opsPerSecond(theirs.opsPerSecond)}`,
      ...judge({ ratio: ours.opsPerSecond / theirs.opsPerSecond, atLeast: 0.9 }),
      profile: `writer.select1${suffix}`,
      closing: [CLOSING.writer]
    })
  }

  const pooled = mixed("mixed.pool")
  const single = mixed("mixed.single")
  if (pooled !== undefined && single !== undefined) {
    out.push({
      target: "3 (throughput)",
      description: "mixed workload: Reader throughput >= 10x the single-connection client's",
      measured: `Reader ${opsPerSecond(pooled.readsPerSecond)} vs SqliteClient ${opsPerSecond(single.readsPerSecond)}`,
      ...judge({ ratio: pooled.readsPerSecond / single.readsPerSecond, atLeast: 10 }),
      profile: "mixed.pool",
      closing: [CLOSING.mixed]
    })
    out.push({
      target: "3 (p99)",
      description: "mixed workload: Reader p99 latency <= 1/10 of the single-connection client's",
      measured: `Reader p99 ${ms(pooled.readP99Ms)} vs SqliteClient p99 ${ms(single.readP99Ms)}`,
      ...judge({ ratio: pooled.readP99Ms / single.readP99Ms, atMost: 0.1 }),
      profile: "mixed.pool",
      closing: [CLOSING.mixed]
    })
  }

  const pooledQuery = rate("connect.pooled.file")
  const perQuery = rate("connect.client.file")
  if (pooledQuery !== undefined && perQuery !== undefined) {
    out.push({
      target: "4",
      description: "pooled query >= 5x faster than connect-per-query on a file database (same SqliteClient code)",
      measured: `pooled ${us(pooledQuery.medianNsPerOp)} vs connect-per-query ${us(perQuery.medianNsPerOp)}`,
      ...judge({ ratio: perQuery.medianNsPerOp / pooledQuery.medianNsPerOp, atLeast: 5 }),
      profile: "connect.pooled.file",
      closing: [CLOSING.connect]
    })
  }

  for (const { label, suffix } of DUTY_CYCLES) {
    const main = mixed(`mixed.pool${suffix}`)
    const threads = mixed(`mixed.threads${suffix}`)
    if (main === undefined || threads === undefined) continue
    out.push({
      target: "3t (throughput)",
      description:
        `mixed workload, writer ${label}: Reader with readerThreads >= 0.9x the main-thread Reader's reads/s`,
      measured: `readerThreads ${opsPerSecond(threads.readsPerSecond)} vs main thread ${
        opsPerSecond(main.readsPerSecond)
      }`,
      ...judge({ ratio: threads.readsPerSecond / main.readsPerSecond, atLeast: 0.9 }),
      profile: `mixed.threads${suffix}`,
      closing: [CLOSING.mixedThreads]
    })
    out.push({
      target: "3t (p99)",
      description: `mixed workload, writer ${label}: Reader p99 with readerThreads <= 2x the main-thread Reader's`,
      measured: `readerThreads p99 ${ms(threads.readP99Ms)} vs main thread p99 ${ms(main.readP99Ms)}`,
      ...judge({ ratio: threads.readP99Ms / main.readP99Ms, atMost: 2 }),
      profile: `mixed.threads${suffix}`,
      closing: [CLOSING.mixedThreads]
    })
  }

  const tarn = contention("contention.tarn")
  for (const [id, suffix] of [["contention.pool.noProbe", ""], ["contention.pool", ", defaults"]] as const) {
    const ours = contention(id)
    if (ours === undefined || tarn === undefined) continue
    out.push({
      target: `5 (p99${suffix})`,
      description: "16 fibers on 4 connections: acquire-wait p99 <= 2x tarn's",
      measured: `ConnectionPool [${ours.setup}] p99 ${ms(ours.waitP99Ms)} vs tarn ${ms(tarn.waitP99Ms)}`,
      ...judge({ ratio: ours.waitP99Ms / tarn.waitP99Ms, atMost: 2 }),
      profile: id,
      closing: suffix === "" ? [CLOSING.contention] : [CLOSING.contention, CLOSING.probe]
    })
    if (suffix === "") {
      out.push({
        target: "7 (contention p99)",
        description: "16 fibers on 4 connections: acquire-wait p99 <= 5x tarn's",
        measured: `ConnectionPool [${ours.setup}] p99 ${ms(ours.waitP99Ms)} vs tarn ${ms(tarn.waitP99Ms)}`,
        ...judge({ ratio: ours.waitP99Ms / tarn.waitP99Ms, atMost: 5 }),
        profile: id,
        closing: [CLOSING.contention]
      })
    }
    out.push({
      target: `5 (worst${suffix})`,
      description: "16 fibers on 4 connections: worst acquire wait <= 2x tarn's",
      measured: `ConnectionPool [${ours.setup}] worst ${ms(ours.waitMaxMs)} vs tarn ${ms(tarn.waitMaxMs)}`,
      ...judge({ ratio: ours.waitMaxMs / tarn.waitMaxMs, atMost: 2 }),
      profile: id,
      closing: suffix === "" ? [CLOSING.contention] : [CLOSING.contention, CLOSING.probe]
    })
  }

  const idle = memory("memory.pool.50.2000")
  if (idle !== undefined) {
    out.push({
      target: "6 (idle)",
      description: "50 idle connections <= 10 MiB over baseline",
      measured: `${idle.idleOverBaselineMiB.toFixed(1)} MiB over a ${idle.baselineMiB.toFixed(0)} MiB baseline ` +
        `(JavaScript heap ${idle.idleJsMiB.toFixed(1)} MiB of it)`,
      ...judge({ ratio: idle.idleOverBaselineMiB / 10, atMost: 1 }),
      profile: undefined,
      closing: [CLOSING.memoryIdle]
    })
  }
  const bounded = m.memory.find((r) => r.kind === "pool" && r.size === 50 && r.pageCacheKiB !== 2000)
  if (idle !== undefined && bounded !== undefined) {
    out.push({
      target: "6 (warm)",
      description: `50 warm connections with pageCacheKiB ${bounded.pageCacheKiB} far below (<= 1/4 of) SQLite's ` +
        "default page cache (2000 KiB per connection)",
      measured: `${bounded.warmOverBaselineMiB.toFixed(1)} MiB vs ${idle.warmOverBaselineMiB.toFixed(1)} MiB ` +
        "over baseline after a full scan on every connection",
      ...judge({ ratio: bounded.warmOverBaselineMiB / idle.warmOverBaselineMiB, atMost: 0.25 }),
      profile: undefined,
      closing: [CLOSING.memoryWarm]
    })
  }
  return out
}
