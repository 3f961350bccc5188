/**
 * Reader threads: SqlitePool's Reader on the main thread against `readerThreads: true`, same database, same process.
 *
 * - event-loop delay (p99 and max of a 10 ms interval timer's lateness) while 4 fibers
 *   run 200 ms aggregate reads back to back;
 * - throughput of 8 fibers each running 5-20 ms aggregates, with 2 Reader connections (2 threads on this machine);
 * - the cost of a point query with readerThreads (its main-thread route) against without, measured like the queries
 *   suite;
 * - interruption of a 10 s query (2 s with --quick): how long after the interrupt the process's CPU time stops
 *   growing, for a query that yields rows as it goes and for one that computes a single row at its end.
 *
 * The aggregates are recursive CTEs (CPU only, no I/O), sized by calibrating SQLite's step rate on this machine
 * first, so "200 ms" means 200 ms on the main thread here.
 *
 * @since 0.1.0
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as Scope from "effect/Scope"
import * as Contenders from "../contenders.js"
import * as Fixtures from "../fixtures.js"
import { consume, maximum, measureSuite, median, percentile, repeatEffect, yieldEventLoop } from "../harness.js"
import type { Result, Settings } from "../harness.js"
import type { Verdict } from "../targets.js"

const COUNT_TO = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
/** One row at the end: SQLite computes the whole time before anything comes back. */
const AGGREGATE = COUNT_TO + "SELECT sum(x) AS s FROM c"
/** A row every 10 000 steps: the same work, handed back as it goes. */
const ROWS = COUNT_TO + "SELECT x FROM c WHERE x % 10000 = 0"

/**
 * @since 0.1.0
 * @category models
 */
export interface Side {
  readonly eventLoopP99Ms: number
  readonly eventLoopMaxMs: number
  readonly aggregatesPerSecond: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ReaderThreadsResult {
  /** SQLite steps per millisecond of the calibration on the main thread */
  readonly stepsPerMs: number
  readonly main: Side
  readonly threads: Side
  /** 200 ms aggregates completed per second while the event-loop delay was measured (4 fibers) */
  readonly heavyPerSecond: { readonly main: number; readonly threads: number }
  readonly pointQuery: ReadonlyArray<Result>
  /** ms from the interrupt until the process's CPU time stopped growing (capped at the wait) */
  readonly interruptRowsFreeMs: number
  readonly interruptAggregateFreeMs: number
  readonly interruptQueryMs: number
}

/** SQLite's step rate here: a 10^6-step count, timed on the main thread (best of 3). */
const calibrate = (filename: string): number => {
  const raw = Fixtures.openRaw(filename)
  const statement = raw.db.prepare(AGGREGATE)
  statement.get(100_000)
  let best = Infinity
  for (let k = 0; k < 3; k++) {
    const started = performance.now()
    consume(statement.get(1_000_000))
    best = Math.min(best, performance.now() - started)
  }
  raw.db.close()
  return 1_000_000 / best
}

const steps = (stepsPerMs: number, ms: number) => Math.max(1, Math.round(stepsPerMs * ms))

/** `fibers` fibers running `query` back to back for `durationMs`, with the event loop's lateness recorded. */
const load = (
  reader: SqlClient.SqlClient,
  fibers: number,
  durationMs: number,
  size: (fiber: number, i: number) => number
) =>
  Effect.gen(function*() {
    let running = true
    let completed = 0
    // A 10 ms interval timer's lateness. (monitorEventLoopDelay recorded no sample at all here while the main
    // thread ran the reads: its timer never got a turn, which is the point being measured.)
    const lateness: Array<number> = []
    let last = performance.now()
    const timer = setInterval(() => {
      const now = performance.now()
      lateness.push(Math.max(0, now - last - 10))
      last = now
    }, 10)
    const started = performance.now()
    const workers = yield* Effect.forEach(Array.from({ length: fibers }, (_, k) => k), (k) => {
      let i = 0
      return Effect.fork(Effect.whileLoop({
        while: () => running,
        // A turn of the event loop after each read, as a server has between requests (and as the mixed suite
        // does): back-to-back reads on the main thread would otherwise keep timers, the end of the run among
        // them, from ever firing.
        body: () => Effect.zipLeft(reader.unsafe(AGGREGATE, [size(k, i++)]), yieldEventLoop),
        step: (rows) => {
          completed++
          consume(rows)
        }
      }))
    })
    yield* Effect.sleep(durationMs)
    running = false
    yield* Fiber.join(Fiber.all(workers))
    const elapsedSeconds = (performance.now() - started) / 1000
    clearInterval(timer)
    // The wait still running when the run ended counts too: a blocked loop may not have fired once.
    lateness.push(Math.max(0, performance.now() - last - 10))
    return {
      perSecond: completed / elapsedSeconds,
      p99Ms: percentile(lateness, 0.99),
      maxMs: maximum(lateness)
    }
  })

const cpuMs = () => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1000
}

/**
 * Runs `sql` (sized for `queryMs`) on the Reader, interrupts it after 100 ms, and returns how long after the
 * interrupt the process's CPU time stopped growing: sampled every 20 ms, the start of the run of samples (lasting
 * 100 ms at least) that each used under 2 ms of CPU, a tenth of a core. Waits at most `queryMs + 2 s` (the query's
 * own end, after which the worker exits by itself).
 */
const interruptAndWatch = (reader: SqlClient.SqlClient, sql: string, stepCount: number, queryMs: number) =>
  Effect.gen(function*() {
    yield* Effect.timeout(reader.unsafe(sql, [stepCount]), "100 millis").pipe(Effect.ignore)
    const interrupted = performance.now()
    const samples: Array<{ readonly at: number; readonly cpu: number }> = [{ at: interrupted, cpu: cpuMs() }]
    const deadline = interrupted + queryMs + 2_000
    while (performance.now() < deadline) {
      yield* Effect.sleep("20 millis")
      samples.push({ at: performance.now(), cpu: cpuMs() })
      let start = samples.length - 1
      while (start > 0 && samples[start]!.cpu - samples[start - 1]!.cpu < 2) start--
      if (samples[samples.length - 1]!.at - samples[start]!.at >= 100) return samples[start]!.at - interrupted
    }
    return deadline - interrupted
  })

/**
 * @since 0.1.0
 * @category suites
 */
export const run = (
  directory: string,
  settings: Settings,
  quick: boolean
): Effect.Effect<ReaderThreadsResult, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const filename = Fixtures.createDatabase(directory, "threads.db")
    const stepsPerMs = calibrate(filename)
    const main = yield* Contenders.sqlitePool({ filename, readConnections: 4 })
    const threads4 = yield* Contenders.sqlitePool({ filename, readConnections: 4, readerThreads: true })
    const threads2 = yield* Contenders.sqlitePool({ filename, readConnections: 2, readerThreads: true })
    const runMs = Math.max(settings.runMs, quick ? 1_000 : 2_000)

    // Event-loop delay: 4 fibers of 200 ms aggregates. Runs alternate, medians over settings.runs.
    const heavy = () => steps(stepsPerMs, 200)
    type Loaded = Effect.Effect.Success<ReturnType<typeof load>>
    const delay = { main: [] as Array<Loaded>, threads: [] as Array<Loaded> }
    // Mixed sizes 5, 10, 15, 20 ms: each fiber starts at another place in the cycle.
    const mixedSize = (fiber: number, i: number) => steps(stepsPerMs, 5 * (1 + ((fiber + i) % 4)))
    const throughput = { main: [] as Array<number>, threads: [] as Array<number> }
    yield* load(threads4.reader, 4, 200, heavy)
    yield* load(threads2.reader, 8, 200, mixedSize)
    for (let round = 0; round < settings.runs; round++) {
      const order = round % 2 === 0 ? ["main", "threads"] as const : ["threads", "main"] as const
      for (const side of order) {
        delay[side].push(yield* load(side === "main" ? main.reader : threads4.reader, 4, runMs, heavy))
        throughput[side].push(
          (yield* load(side === "main" ? main.reader : threads2.reader, 8, runMs, mixedSize)).perSecond
        )
      }
    }
    const side = (name: "main" | "threads"): Side => ({
      eventLoopP99Ms: median(delay[name].map((r) => r.p99Ms)),
      eventLoopMaxMs: median(delay[name].map((r) => r.maxMs)),
      aggregatesPerSecond: median(throughput[name])
    })

    const point = (reader: SqlClient.SqlClient) =>
      repeatEffect((i) => reader`SELECT id, name, value FROM items WHERE id = ${Fixtures.pointId(i)}`)
    const pointQuery = yield* measureSuite("reader threads: point query, 1 fiber", [
      {
        id: "threads.point.main",
        name: "Reader on the main thread",
        setup: "readConnections 4",
        run: point(main.reader)
      },
      {
        id: "threads.point.worker",
        name: "Reader with readerThreads (point reads on its main-thread route)",
        setup: "readConnections 4, readerThreads",
        run: point(threads4.reader)
      }
    ], settings)

    const queryMs = quick ? 2_000 : 10_000
    const interruptRowsFreeMs = yield* interruptAndWatch(threads2.reader, ROWS, steps(stepsPerMs, queryMs), queryMs)
    const interruptAggregateFreeMs = yield* interruptAndWatch(
      threads2.reader,
      AGGREGATE,
      steps(stepsPerMs, queryMs),
      queryMs
    )
    return {
      stepsPerMs,
      main: side("main"),
      threads: side("threads"),
      heavyPerSecond: {
        main: median(delay.main.map((r) => r.perSecond)),
        threads: median(delay.threads.map((r) => r.perSecond))
      },
      pointQuery,
      interruptRowsFreeMs,
      interruptAggregateFreeMs,
      interruptQueryMs: queryMs
    }
  })

const fixed = (value: number, digits = 1) => Number.isFinite(value) ? value.toFixed(digits) : "n/a"

/**
 * The suite's table.
 *
 * @since 0.1.0
 * @category formatting
 */
export const table = (r: ReaderThreadsResult): string => {
  const rows: Array<[string, string, string]> = [
    ["measure", "main thread", "worker threads"],
    [
      "event-loop delay p99 / max, 4 fibers of 200 ms aggregates",
      `${fixed(r.main.eventLoopP99Ms)} / ${fixed(r.main.eventLoopMaxMs)} ms`,
      `${fixed(r.threads.eventLoopP99Ms)} / ${fixed(r.threads.eventLoopMaxMs)} ms`
    ],
    [
      "200 ms aggregates per second (4 fibers, 4 readers)",
      fixed(r.heavyPerSecond.main, 2),
      fixed(r.heavyPerSecond.threads, 2)
    ],
    [
      "5-20 ms aggregates per second (8 fibers, 2 readers)",
      fixed(r.main.aggregatesPerSecond),
      fixed(r.threads.aggregatesPerSecond)
    ],
    ...r.pointQuery.map((p) =>
      [`point query, ${p.name}`, `${fixed(p.medianNsPerOp / 1000)} us/op`, ""] as [string, string, string]
    ),
    [
      `CPU free after interrupting a ${r.interruptQueryMs / 1000} s query at 100 ms: rows as it goes`,
      "(cannot interrupt)",
      `${fixed(r.interruptRowsFreeMs, 0)} ms`
    ],
    [
      `... a ${r.interruptQueryMs / 1000} s aggregate (one row at its end)`,
      "(cannot interrupt)",
      `${fixed(r.interruptAggregateFreeMs, 0)} ms`
    ]
  ]
  const widths = [0, 1, 2].map((column) => Math.max(...rows.map((row) => row[column]!.length)))
  const line = (row: [string, string, string]) =>
    `${row[0].padEnd(widths[0]!)}  ${row[1].padStart(widths[1]!)}  ${row[2].padStart(widths[2]!)}`.trimEnd()
  return [
    line(rows[0]!),
    widths.map((w) => "-".repeat(w)).join("  "),
    ...rows.slice(1).map(line)
  ].join("\n") + `\n(SQLite here: ${Math.round(r.stepsPerMs).toLocaleString("en-US")} CTE steps per ms)`
}

/**
 * The four targets for this suite.
 *
 * @since 0.1.0
 * @category verdicts
 */
export const verdicts = (r: ReaderThreadsResult): Array<Verdict> => {
  const judged = (
    target: string,
    description: string,
    measured: string,
    ratio: number,
    threshold: { atMost: number } | { atLeast: number },
    closing: ReadonlyArray<string>,
    profile?: string
  ): Verdict => ({
    target,
    description,
    measured,
    ratio,
    threshold: "atMost" in threshold ? `<= ${threshold.atMost}` : `>= ${threshold.atLeast}`,
    pass: Number.isFinite(ratio) &&
      ("atMost" in threshold ? ratio <= threshold.atMost : ratio >= threshold.atLeast),
    profile,
    closing
  })
  const [pointMain, pointWorker] = r.pointQuery
  return [
    judged(
      "T1",
      "reader threads: event-loop delay p99 while 4 fibers run 200 ms reads, workers / main thread",
      `${fixed(r.threads.eventLoopP99Ms)} ms vs ${fixed(r.main.eventLoopP99Ms)} ms`,
      r.threads.eventLoopP99Ms / r.main.eventLoopP99Ms,
      { atMost: 0.05 },
      [
        "with workers the main thread only receives answers; what is left is the machine's own load (other " +
        "processes on these cores) and the structured-clone decoding of each answer"
      ]
    ),
    judged(
      "T2",
      "reader threads: throughput of 8 fibers running 5-20 ms reads on 2 reader threads / main thread",
      `${fixed(r.threads.aggregatesPerSecond)} vs ${fixed(r.main.aggregatesPerSecond)} reads/s`,
      r.threads.aggregatesPerSecond / r.main.aggregatesPerSecond,
      { atLeast: 1.6 },
      [
        "two threads can at most double one core's work; other load on the two cores of this machine takes its " +
        "share first (compare the load average printed at the start)"
      ]
    ),
    judged(
      "T3",
      "reader threads: point query with readerThreads (the main-thread route) / without",
      `${fixed((pointWorker?.medianNsPerOp ?? NaN) / 1000)} vs ${fixed((pointMain?.medianNsPerOp ?? NaN) / 1000)} us`,
      (pointWorker?.medianNsPerOp ?? NaN) / (pointMain?.medianNsPerOp ?? NaN),
      { atMost: 2 },
      [
        "with readerThreads a point query runs on the main thread's Reader connection (a text learned long would go " +
        "through a worker: two postMessage hops and a structured clone each way, plus an event-loop turn); what it " +
        "adds is the route (a FiberRef read, the learned-long lookup, a lease of the main-thread pool) and SQLite's " +
        "time-budget trace callbacks"
      ],
      "threads.point.worker"
    ),
    judged(
      "T4",
      `reader threads: CPU free after interrupting a ${r.interruptQueryMs / 1000} s query (ms; a query that ` +
        "yields rows / an aggregate whose only row comes at its end)",
      `${fixed(r.interruptRowsFreeMs, 0)} ms / ${fixed(r.interruptAggregateFreeMs, 0)} ms`,
      Math.max(r.interruptRowsFreeMs, r.interruptAggregateFreeMs),
      { atMost: 200 },
      [
        "an interrupted statement is stopped with sqlite3_interrupt() (the extension in native/, compiled at the " +
        "first worker open) and its worker ends by itself; what remains is the sampling interval of this probe " +
        "(20 ms) and the scheduling of the worker's exit. Without a C compiler the worker is only terminated, " +
        "which stops a query at its next row but lets an aggregate compute to its first row"
      ]
    )
  ]
}
