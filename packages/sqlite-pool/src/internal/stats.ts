/**
 * The pool's bookkeeping: plain counters changed only in synchronous steps, so every snapshot is consistent
 * (`open` and `idle` are derived, never stored). Each change is mirrored to Effect `Metric`s labelled with the pool.
 *
 * @internal
 */
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import type { PoolStats } from "../PoolStats.js"

type Counter =
  | "created"
  | "reused"
  | "acquired"
  | "released"
  | "invalidated"
  | "closed"
  | "connectFailures"
  | "retries"
  | "timeouts"
type Gauge = "open" | "idle" | "inUse" | "waiting"

const counters: Record<Counter, Metric.Metric.Counter<number>> = {
  created: Metric.counter("sqlsim_pool_connections_created_total", { description: "physical connections opened" }),
  reused: Metric.counter("sqlsim_pool_reused_total", { description: "connections handed out again" }),
  acquired: Metric.counter("sqlsim_pool_acquired_total", { description: "connections handed out" }),
  released: Metric.counter("sqlsim_pool_released_total", { description: "connections given back" }),
  invalidated: Metric.counter("sqlsim_pool_invalidated_total", { description: "connections invalidated" }),
  closed: Metric.counter("sqlsim_pool_connections_closed_total", { description: "physical connections closed" }),
  connectFailures: Metric.counter("sqlsim_pool_connect_failures_total", { description: "failed connect attempts" }),
  retries: Metric.counter("sqlsim_pool_connect_retries_total", { description: "connect retries made" }),
  timeouts: Metric.counter("sqlsim_pool_acquire_timeouts_total", { description: "acquires that timed out" })
}

const gauges: Record<Gauge, Metric.Metric.Gauge<number>> = {
  open: Metric.gauge("sqlsim_pool_connections_open", { description: "connections open" }),
  idle: Metric.gauge("sqlsim_pool_connections_idle", { description: "open connections not leased" }),
  inUse: Metric.gauge("sqlsim_pool_connections_in_use", { description: "open connections leased" }),
  waiting: Metric.gauge("sqlsim_pool_waiting", { description: "fibers waiting for a connection" })
}

export class StatsRecorder {
  private readonly values = Object.fromEntries(Object.keys(counters).map((name) => [name, 0])) as Record<
    Counter,
    number
  >
  private inUse = 0
  private waiting = 0
  private readonly labels: ReadonlyArray<MetricLabel.MetricLabel>

  constructor(poolLabel: string) {
    this.labels = [MetricLabel.make("pool", poolLabel)]
  }

  count(counter: Counter): void {
    this.values[counter]++
    counters[counter].unsafeUpdate(1, this.labels)
    if (counter === "created" || counter === "closed") this.publishGauges()
  }

  lease(reused: boolean): void {
    this.inUse++
    this.values.acquired++
    counters.acquired.unsafeUpdate(1, this.labels)
    if (reused) this.count("reused")
    this.publishGauges()
  }

  endLease(): void {
    this.inUse--
    this.count("released")
    this.publishGauges()
  }

  setWaiting(waiting: number): void {
    this.waiting = waiting
    gauges.waiting.unsafeUpdate(waiting, this.labels)
  }

  get idle(): number {
    return this.values.created - this.values.closed - this.inUse
  }

  snapshot(): PoolStats {
    const open = this.values.created - this.values.closed
    return { ...this.values, open, idle: open - this.inUse, inUse: this.inUse, waiting: this.waiting }
  }

  private publishGauges(): void {
    const open = this.values.created - this.values.closed
    gauges.open.unsafeUpdate(open, this.labels)
    gauges.idle.unsafeUpdate(open - this.inUse, this.labels)
    gauges.inUse.unsafeUpdate(this.inUse, this.labels)
  }
}
