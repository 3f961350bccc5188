/**
 * Text tables for the terminal.
 *
 * @since 0.1.0
 */
import * as path from "node:path"
import type { ContentionResult } from "./cases/contention.js"
import type { MemoryResult } from "./cases/memory.js"
import type { MixedResult } from "./cases/mixed.js"
import type { Result } from "./harness.js"
import type { ProfileSummary } from "./profile.js"
import type { Verdict } from "./targets.js"

const table = (
  header: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string>>,
  right: ReadonlySet<number>
) => {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((cell, column) => right.has(column) ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!))
      .join("  ").trimEnd()
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n")
}

const number = (value: number, digits = 0) =>
  Number.isFinite(value) ?
    value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits }) :
    "n/a"

const latency = (milliseconds: number) =>
  milliseconds < 1 ? `${number(milliseconds * 1000, 0)} us` : `${number(milliseconds, 2)} ms`

/**
 * Throughput results grouped by suite; `vs first` is the ratio of ops/s to the suite's first case.
 *
 * @since 0.1.0
 * @category formatting
 */
export const throughputTable = (results: ReadonlyArray<Result>): string => {
  const groups = [...new Set(results.map((r) => r.group))]
  return groups.map((group) => {
    const own = results.filter((r) => r.group === group)
    const first = own[0]!
    return `${group}\n` + table(
      ["case", "setup", "ns/op (median)", "ops/s", "spread", "vs first", "reps x ops"],
      own.map((r) => [
        r.name,
        r.setup,
        number(r.medianNsPerOp),
        number(r.opsPerSecond),
        `${number(r.spread * 100)} %`,
        `${number(r.opsPerSecond / first.opsPerSecond, 3)}x`,
        `${r.repetitions.length} x ${r.operationsPerRepetition}`
      ]),
      new Set([2, 3, 4, 5, 6])
    )
  }).join("\n\n")
}

/**
 * @since 0.1.0
 * @category formatting
 */
export const mixedTable = (results: ReadonlyArray<MixedResult>): string =>
  table(
    ["contender", "setup", "reads/s", "read p50", "read p99", "read max", "write tx/s"],
    results.map((r) => [
      r.name,
      r.setup,
      number(r.readsPerSecond),
      latency(r.readP50Ms),
      latency(r.readP99Ms),
      latency(r.readMaxMs),
      number(r.writeTransactionsPerSecond)
    ]),
    new Set([2, 3, 4, 5, 6])
  )

/**
 * @since 0.1.0
 * @category formatting
 */
export const contentionTable = (results: ReadonlyArray<ContentionResult>): string =>
  table(
    ["pool", "setup", "acquires/s", "wait p50", "wait p99", "wait worst"],
    results.map((r) => [
      r.name,
      r.setup,
      number(r.acquiresPerSecond),
      latency(r.waitP50Ms),
      latency(r.waitP99Ms),
      latency(r.waitMaxMs)
    ]),
    new Set([2, 3, 4, 5])
  )

/**
 * @since 0.1.0
 * @category formatting
 */
export const memoryTable = (results: ReadonlyArray<MemoryResult>): string =>
  table(
    ["connections", "page cache", "open", "baseline RSS", "idle (over baseline)", "of it JS", "warm (over baseline)"],
    results.map((r) => [
      `${r.kind === "pool" ? "ConnectionPool" : "plain better-sqlite3, verified"} x ${r.size}`,
      `${number(r.pageCacheKiB)} KiB${
        r.kind === "raw" ? " (driver default)" : r.pageCacheKiB === 2000 ? " (default)" : ""
      }`,
      String(r.open),
      `${number(r.baselineMiB, 1)} MiB`,
      `${number(r.idleOverBaselineMiB, 1)} MiB`,
      `${number(r.idleJsMiB, 1)} MiB`,
      `${number(r.warmOverBaselineMiB, 1)} MiB`
    ]),
    new Set([2, 3, 4, 5, 6])
  )

/**
 * @since 0.1.0
 * @category formatting
 */
export const verdictTable = (verdicts: ReadonlyArray<Verdict>): string =>
  table(
    ["target", "verdict", "ratio", "threshold", "measured"],
    verdicts.map((v) => [v.target, v.pass ? "PASS" : "MISS", number(v.ratio, 3), v.threshold, v.measured]),
    new Set([2])
  )

/**
 * @since 0.1.0
 * @category formatting
 */
export const profileText = (summary: ProfileSummary): string =>
  [
    `${summary.id}: ${number(summary.sampledMs)} ms sampled, saved to ${path.relative(process.cwd(), summary.file)}`,
    "  self time by component:",
    ...summary.components.filter((c) => c.share >= 0.01).map((c) =>
      `    ${number(c.share * 100, 1).padStart(5)} %  ${c.component}`
    ),
    "  busiest functions (self time):",
    ...summary.functions.slice(0, 6).map((f) => `    ${number(f.share * 100, 1).padStart(5)} %  ${f.name}`)
  ].join("\n")

/**
 * One line over all profiles: the share of Effect's runtime plus the garbage collector, and of the pool's own code.
 *
 * @since 0.1.0
 * @category formatting
 */
export const profileDigest = (summaries: ReadonlyArray<ProfileSummary>): string => {
  const share = (summary: ProfileSummary, test: (component: string) => boolean) =>
    summary.components.filter((c) => test(c.component)).reduce((sum, c) => sum + c.share, 0) * 100
  const range = (values: ReadonlyArray<number>) => {
    const low = number(Math.min(...values), 0)
    const high = number(Math.max(...values), 0)
    return low === high ? `${low} %` : `${low}-${high} %`
  }
  const runtime = summaries.map((s) =>
    share(s, (c) => c.startsWith("Effect runtime") || c.startsWith("V8 garbage") || c.startsWith("Effect Scope"))
  )
  const tracing = summaries.map((s) => share(s, (c) => c.startsWith("Effect tracing")))
  const own = summaries.map((s) => share(s, (c) => c.startsWith("sqlsim")))
  const sqlite = summaries.map((s) => share(s, (c) => c.startsWith("SQLite")))
  const measured = `In these profiles Effect's fiber runtime and the garbage collector take ${range(runtime)} of the ` +
    `time, spans ${range(tracing)}, the pool's own code ${range(own)} and SQLite itself ${range(sqlite)}`
  const runtimeBound = Math.min(...runtime) >= 50 && Math.max(...own) < 15
  return runtimeBound ?
    `${measured}: the cost is the number of Effect operations (and their allocations) per lease, not computation ` +
    "in the pool's code or in the database; 'Effect building blocks' above prices the operations a lease is made of." :
    `${measured}.`
}
