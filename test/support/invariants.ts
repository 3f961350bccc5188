/**
 * The statistics invariants the README ("Statistics, metrics, spans") states for every instant, as readable
 * violations rather than one boolean, so a failing step says which rule broke and with which numbers.
 */
import type { PoolStats } from "@sqlsim/sqlite-pool"

export const violations = (
  stats: PoolStats.PoolStats,
  maxConnections: number
): ReadonlyArray<string> => {
  const problems: Array<string> = []
  const check = (holds: boolean, rule: string) => {
    if (!holds) problems.push(rule)
  }
  check(stats.open <= maxConnections, `open (${stats.open}) <= maxConnections (${maxConnections})`)
  check(
    stats.inUse + stats.idle === stats.open,
    `inUse (${stats.inUse}) + idle (${stats.idle}) == open (${stats.open})`
  )
  check(
    stats.created - stats.closed === stats.open,
    `created (${stats.created}) - closed (${stats.closed}) == open (${stats.open})`
  )
  check(
    stats.acquired === stats.released + stats.inUse,
    `acquired (${stats.acquired}) == released (${stats.released}) + inUse (${stats.inUse})`
  )
  for (const gauge of ["open", "idle", "inUse", "waiting"] as const) {
    check(stats[gauge] >= 0, `${gauge} (${stats[gauge]}) >= 0`)
  }
  check(stats.invalidated <= stats.closed, `invalidated (${stats.invalidated}) <= closed (${stats.closed})`)
  check(stats.reused <= stats.acquired, `reused (${stats.reused}) <= acquired (${stats.acquired})`)
  return problems
}

/** A one-line summary of the numbers a report prints. */
export const summary = (stats: PoolStats.PoolStats): string =>
  Object.entries(stats).map(([key, value]) => `${key}=${value}`).join(" ")
