/**
 * Where a Reader statement runs with `readerThreads`: on the main thread's read-only connection (no message, no
 * thread hop: as fast as without threads), or on a worker connection (the event loop stays free). A statement runs
 * on the main thread unless its text is known to be long. A statement over the main thread's time budget
 * (`BUDGET_MILLIS`, wall time, enforced by SQLite itself through the interrupt extension) fails there with
 * SQLITE_INTERRUPT and runs again on a worker, which is safe for a read outside a transaction. A text becomes known
 * long at once when it used more than half the budget in CPU time before SQLite interrupted it, or after `STRIKES`
 * runs in a row that each took more than `LONG_AFTER_MILLIS` of CPU time or ran over the budget (a thread preempted
 * on a busy machine, or waiting for a disk, is over the budget in wall time with little CPU: once proves nothing).
 * Once known long, a text runs on the workers for the layer's life.
 * A fiber can force either route (`SqlitePool.onWorker`, `SqlitePool.onMainThread`).
 *
 * @internal
 */
import * as FiberRef from "effect/FiberRef"
import { globalValue } from "effect/GlobalValue"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"

/** A route a fiber forced, or undefined: the Reader chooses. */
export type Route = "mainThread" | "worker"

/** The route the current fiber forces on its Reader statements (undefined: the Reader chooses). */
export const forcedRoute: FiberRef.FiberRef<Route | undefined> = globalValue(
  Symbol.for("@sqlsim/sqlite-pool/readerRoute/forced"),
  () => FiberRef.unsafeMake<Route | undefined>(undefined)
)

/**
 * How long a statement may run on the main thread before SQLite interrupts it. The event loop is held at most this
 * plus the watchdog's tick (2 ms, `native/sqlsim_interrupt.c`) by a statement misjudged as short.
 */
export const BUDGET_MILLIS = 5

/** CPU time on the main thread over which a run counts as a strike: `STRIKES` in a row make a text long. */
export const LONG_AFTER_MILLIS = 1

const STRIKES = 3

/** Statement texts remembered; past this many the oldest is forgotten (it is learned again if still long). */
const REMEMBERED = 10_000

/** Adds `key` to an insertion-ordered collection, forgetting the oldest key past `REMEMBERED`. */
const remember = (keys: Set<string> | Map<string, number>, oldest: () => void) => {
  if (keys.size >= REMEMBERED) oldest()
}

/** Statements per route since the layer opened, as `SqlitePool.stats` reports them. */
export interface RouteCounts {
  /** statements that ran on the main thread's connection (those interrupted over the budget included) */
  readonly mainThread: number
  /** statements that ran on worker connections (transactions' and streams' included) */
  readonly worker: number
  /** statement texts learned long: they run on the workers from then on */
  readonly learnedLong: number
  /** statements interrupted on the main thread over the budget (run again on a worker unless forced) */
  readonly overBudget: number
}

const counter = (name: string, description: string) => Metric.counter(name, { description, incremental: true })

/** The counts as metrics, each with `db.namespace` (the database's filename); statements also with `sqlsim.route`. */
const routeMetrics = {
  statements: counter(
    "sqlsim_reader_statements_total",
    "Reader statements by the route they ran on (readerThreads; a transaction or a stream counts once)"
  ),
  learnedLong: counter("sqlsim_reader_learned_long_total", "Reader statement texts learned long (readerThreads)"),
  overBudget: counter(
    "sqlsim_reader_over_budget_total",
    "Reader statements SQLite interrupted over the main thread's time budget (readerThreads)"
  )
}

/** What the Reader learned of its statements, and its counts. Plain state of the layer (its metrics aside). */
export class RouteBook {
  /** statement texts known long, oldest first (a Set keeps insertion order) */
  private readonly long = new Set<string>()
  /** statement texts whose last runs took longer than `LONG_AFTER_MILLIS` (fewer than `STRIKES`): how many */
  private readonly strikes = new Map<string, number>()
  /**
   * main-thread connections whose time budget is set (only these run statements on the main thread): the CPU time
   * of each one's last statement, as the interrupt extension measured it
   */
  private readonly budgeted = new WeakMap<object, () => number>()
  /** the counts `SqlitePool.stats` reports */
  private readonly counts = { mainThread: 0, worker: 0, learnedLong: 0, overBudget: 0 }
  /** the metrics' attributes: the database, and with the route */
  private readonly labels: ReadonlyArray<MetricLabel.MetricLabel>
  private readonly routeLabels: Record<Route, ReadonlyArray<MetricLabel.MetricLabel>>

  constructor(filename: string) {
    this.labels = [MetricLabel.make("db.namespace", filename)]
    this.routeLabels = {
      mainThread: [...this.labels, MetricLabel.make("sqlsim.route", "mainThread")],
      worker: [...this.labels, MetricLabel.make("sqlsim.route", "worker")]
    }
  }

  isLong(sql: string): boolean {
    return this.long.has(sql)
  }

  private tookMillis(sql: string, millis: number): void {
    if (millis <= LONG_AFTER_MILLIS) {
      this.strikes.delete(sql)
      return
    }
    const strikes = (this.strikes.get(sql) ?? 0) + 1
    if (strikes >= STRIKES) return this.learnLong(sql)
    remember(this.strikes, () => this.strikes.delete(this.strikes.keys().next().value!))
    this.strikes.set(sql, strikes)
  }

  /** SQLite interrupted a statement over the budget on the main-thread `connection`: long, or a strike. */
  ranOverBudget(sql: string, connection: object): void {
    this.counts.overBudget++
    routeMetrics.overBudget.unsafeUpdate(1, this.labels)
    const cpuMillis = this.budgeted.get(connection)?.() ?? BUDGET_MILLIS
    if (cpuMillis > BUDGET_MILLIS / 2) this.learnLong(sql)
    else this.tookMillis(sql, BUDGET_MILLIS)
  }

  /** A statement is long: it took too long too often, or too much CPU before SQLite interrupted it. */
  learnLong(sql: string): void {
    this.strikes.delete(sql)
    if (this.long.has(sql)) return
    remember(this.long, () => this.long.delete(this.long.values().next().value!))
    this.long.add(sql)
    this.counts.learnedLong++
    routeMetrics.learnedLong.unsafeUpdate(1, this.labels)
  }

  markBudgeted(connection: object, lastMillis: () => number): void {
    this.budgeted.set(connection, lastMillis)
  }

  isBudgeted(connection: object): boolean {
    return this.budgeted.has(connection)
  }

  /**
   * A statement ended on the main-thread `connection` after `wallMillis` (which may include other fibers' work: the
   * runtime can yield in between); only a statement over `LONG_AFTER_MILLIS` of wall time is asked its CPU time.
   */
  ended(sql: string, connection: object, wallMillis: number): void {
    if (wallMillis > LONG_AFTER_MILLIS) this.tookMillis(sql, this.budgeted.get(connection)?.() ?? wallMillis)
    else if (this.strikes.size > 0) this.strikes.delete(sql)
  }

  ran(route: Route): void {
    this.counts[route]++
    routeMetrics.statements.unsafeUpdate(1, this.routeLabels[route])
  }

  snapshot(): RouteCounts {
    return { ...this.counts }
  }
}
