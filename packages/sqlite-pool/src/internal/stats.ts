/**
 * The pool's bookkeeping: plain counters changed only in synchronous steps, so every snapshot is consistent
 * (`open` and `idle` are derived, never stored). Each change is mirrored to Effect `Metric`s with the pool's
 * attributes: OpenTelemetry's database-client connection metrics (`db.client.connection.*`) wherever the semantic
 * conventions define one, and this package's own `sqlsim_pool_*` counters for what they do not (connections created,
 * reused, handed out, given back, invalidated, closed; connect failures and retries).
 *
 * @internal
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
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

/** Counters only this package defines (the semantic conventions have none of these). */
type OwnCounter = Exclude<Counter, "timeouts">

const counter = (name: string, description: string) => Metric.counter(name, { description, incremental: true })

const ownCounters: Record<OwnCounter, Metric.Metric.Counter<number>> = {
  created: counter("sqlsim_pool_connections_created_total", "physical connections opened"),
  reused: counter("sqlsim_pool_reused_total", "connections handed out again"),
  acquired: counter("sqlsim_pool_acquired_total", "connections handed out"),
  released: counter("sqlsim_pool_released_total", "connections given back"),
  invalidated: counter("sqlsim_pool_invalidated_total", "connections invalidated"),
  closed: counter("sqlsim_pool_connections_closed_total", "physical connections closed"),
  connectFailures: counter("sqlsim_pool_connect_failures_total", "failed connect attempts"),
  retries: counter("sqlsim_pool_connect_retries_total", "connect retries made")
}

/** Leases held longer than `holdWarningThreshold` (each counted once, as its warning is logged). */
const holdWarnings = counter("sqlsim_pool_hold_warnings_total", "leases held longer than holdWarningThreshold")

/**
 * The histograms' buckets, in seconds: the semantic conventions' advice for database durations, with two below a
 * millisecond, where most of SQLite's waits and uses fall.
 */
const secondsBuckets = MetricBoundaries.fromIterable([
  0.0001,
  0.0005,
  0.001,
  0.005,
  0.01,
  0.05,
  0.1,
  0.5,
  1,
  5,
  10
])

/**
 * OpenTelemetry's database-client connection metrics (semantic conventions, `db.client.connection.*`). Each carries
 * `db.client.connection.pool.name`, `sqlsim.lane` where the pool is a lane of SqlitePool, and `unit` (which
 * `@effect/opentelemetry` reads as the instrument's unit).
 *
 * @internal
 */
export const connectionMetrics = {
  count: Metric.gauge("db.client.connection.count", {
    description: "The number of connections that are currently in state described by the state attribute"
  }),
  max: Metric.gauge("db.client.connection.max", { description: "The maximum number of open connections allowed" }),
  idleMax: Metric.gauge("db.client.connection.idle.max", {
    description: "The maximum number of idle open connections allowed"
  }),
  idleMin: Metric.gauge("db.client.connection.idle.min", {
    description: "The minimum number of idle open connections allowed"
  }),
  pendingRequests: Metric.gauge("db.client.connection.pending_requests", {
    description: "The number of current pending requests for an open connection"
  }),
  timeouts: counter(
    "db.client.connection.timeouts",
    "The number of connection timeouts that have occurred trying to obtain a connection from the pool"
  ),
  createTime: Metric.histogram(
    "db.client.connection.create_time",
    secondsBuckets,
    "The time it took to create a new connection (connect retries included)"
  ),
  waitTime: Metric.histogram(
    "db.client.connection.wait_time",
    secondsBuckets,
    "The time it took to obtain an open connection from the pool"
  ),
  useTime: Metric.histogram(
    "db.client.connection.use_time",
    secondsBuckets,
    "The time between borrowing a connection and returning it to the pool"
  )
}

/** Who a pool is in its metrics. */
export interface PoolIdentity {
  /** `db.client.connection.pool.name` */
  readonly name: string
  /** `sqlsim.lane`, for SqlitePool's two pools */
  readonly lane?: "writer" | "reader" | undefined
  readonly maxConnections: number
  readonly minConnections: number
}

/** The attributes every metric of a pool carries. */
export const poolAttributes = (identity: Pick<PoolIdentity, "name" | "lane">): Array<MetricLabel.MetricLabel> => {
  const labels = [MetricLabel.make("db.client.connection.pool.name", identity.name)]
  if (identity.lane !== undefined) labels.push(MetricLabel.make("sqlsim.lane", identity.lane))
  return labels
}

const withUnit = (labels: ReadonlyArray<MetricLabel.MetricLabel>, unit: string) => [
  ...labels,
  MetricLabel.make("unit", unit)
]

const nanosToSeconds = (nanos: bigint): number => Number(nanos) / 1e9

export class StatsRecorder {
  private readonly values = Object.fromEntries(
    [...Object.keys(ownCounters), "timeouts"].map((name) => [name, 0])
  ) as Record<Counter, number>
  private inUse = 0
  private waiting = 0
  /** leases held longer than holdWarningThreshold so far (not in `PoolStats`, whose fields are fixed) */
  holdWarnings = 0
  /** the same, by the holder's span name ("" for a holder outside any span) */
  readonly holdWarningsBySpan = new Map<string, number>()
  /** the pool's attributes (one array for the life of the pool: Effect caches a metric's hook by it) */
  private readonly labels: ReadonlyArray<MetricLabel.MetricLabel>
  private readonly connections: ReadonlyArray<MetricLabel.MetricLabel>
  private readonly idleLabels: ReadonlyArray<MetricLabel.MetricLabel>
  private readonly usedLabels: ReadonlyArray<MetricLabel.MetricLabel>
  private readonly requests: ReadonlyArray<MetricLabel.MetricLabel>
  private readonly timeouts: ReadonlyArray<MetricLabel.MetricLabel>
  private readonly seconds: ReadonlyArray<MetricLabel.MetricLabel>

  constructor(identity: PoolIdentity) {
    this.labels = poolAttributes(identity)
    this.connections = withUnit(this.labels, "{connection}")
    this.idleLabels = [...this.connections, MetricLabel.make("db.client.connection.state", "idle")]
    this.usedLabels = [...this.connections, MetricLabel.make("db.client.connection.state", "used")]
    this.requests = withUnit(this.labels, "{request}")
    this.timeouts = withUnit(this.labels, "{timeout}")
    this.seconds = withUnit(this.labels, "s")
    // Every series exists from the start (a counter at 0 until it counts), so that a scrape shows all of them.
    for (const metric of Object.values(ownCounters)) metric.unsafeUpdate(0, this.labels)
    connectionMetrics.timeouts.unsafeUpdate(0, this.timeouts)
    holdWarnings.unsafeUpdate(0, this.labels)
    // Every connection may be idle: the pool closes idle ones only above minConnections, after idleTimeToLive.
    connectionMetrics.max.unsafeUpdate(identity.maxConnections, this.connections)
    connectionMetrics.idleMax.unsafeUpdate(identity.maxConnections, this.connections)
    connectionMetrics.idleMin.unsafeUpdate(identity.minConnections, this.connections)
    this.publishGauges()
    this.setWaiting(0)
  }

  count(counter: Counter): void {
    this.values[counter]++
    if (counter === "timeouts") {
      connectionMetrics.timeouts.unsafeUpdate(1, this.timeouts)
    } else {
      ownCounters[counter].unsafeUpdate(1, this.labels)
    }
    if (counter === "created" || counter === "closed") this.publishGauges()
  }

  lease(reused: boolean): void {
    this.inUse++
    this.values.acquired++
    ownCounters.acquired.unsafeUpdate(1, this.labels)
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
    connectionMetrics.pendingRequests.unsafeUpdate(waiting, this.requests)
  }

  /** A lease held by `span` was held longer than `holdWarningThreshold` (its warning is being logged). */
  holdWarning(span: string | undefined): void {
    this.holdWarnings++
    this.holdWarningsBySpan.set(span ?? "", (this.holdWarningsBySpan.get(span ?? "") ?? 0) + 1)
    holdWarnings.unsafeUpdate(1, this.labels)
  }

  /** A connection opened, `nanos` after its connect began (retries included). */
  created(nanos: bigint): void {
    connectionMetrics.createTime.unsafeUpdate(nanosToSeconds(nanos), this.seconds)
  }

  /** A lease handed out, `nanos` after it was asked for (0 when it was served at once). */
  waited(nanos: bigint): void {
    connectionMetrics.waitTime.unsafeUpdate(nanosToSeconds(nanos), this.seconds)
  }

  /** A lease ended, `nanos` after it was handed out. */
  used(nanos: bigint): void {
    connectionMetrics.useTime.unsafeUpdate(nanosToSeconds(nanos), this.seconds)
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
    connectionMetrics.count.unsafeUpdate(open - this.inUse, this.idleLabels)
    connectionMetrics.count.unsafeUpdate(this.inUse, this.usedLabels)
  }
}
