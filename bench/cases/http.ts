/**
 * HTTP: what the pool buys an app. The routes of examples/http-api.ts, served by each contender in a server process
 * of its own (bench/http-server.ts): SqliteClient (one connection), SqlitePool with its Reader on the main thread, and
 * SqlitePool with `readerThreads`. The load comes from autocannon in this process, as three clients at once:
 *
 * - reads: 16 connections asking `GET /item/:id` back to back (ids walk the whole table), the measured stream:
 *   requests/s and p50/p99/max latency are theirs;
 * - writes: 1 connection posting `POST /item` back to back (an insert and an update of the totals row in one
 *   transaction);
 * - reports (third scenario only): 1 connection asking `GET /report` back to back (an aggregate over every item,
 *   tens of milliseconds of SQLite work: its time on this machine is printed with the table).
 *
 * The three scenarios, each on a fresh copy of one database of SEED_ROWS items:
 *
 * - `short`: reads + writes, the write transactions are short;
 * - `waiting`: the same, but each write transaction waits 50 ms between its statements (a call to another service
 *   while the transaction is open);
 * - `report`: `waiting` + the reports.
 *
 * Each scenario starts the three servers, warms each up under the full load, then measures them in rounds,
 * rotating which one goes first (a noisy moment hits all of them, not one); the figures are medians of the rounds.
 *
 * @since 0.1.0
 */
import autocannon from "autocannon"
import Database from "better-sqlite3"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { REPORT, SCHEMA } from "../../examples/http-api.js"
import { median } from "../harness.js"
import type { Contender, Options as ServerOptions } from "../http-server.js"
import type { Verdict } from "../targets.js"

/**
 * Items in the database of every scenario: the report reads all of them.
 *
 * @since 0.1.0
 * @category constants
 */
export const SEED_ROWS = 100_000

/**
 * @since 0.1.0
 * @category constants
 */
export const READ_CONNECTIONS = 16

/**
 * @since 0.1.0
 * @category constants
 */
export const WRITE_WAIT_MS = 50

/**
 * @since 0.1.0
 * @category models
 */
export interface Scenario {
  readonly id: "short" | "waiting" | "report"
  readonly name: string
  readonly writeWaitMs: number
  readonly reports: boolean
}

/**
 * @since 0.1.0
 * @category constants
 */
export const SCENARIOS: ReadonlyArray<Scenario> = [
  { id: "short", name: "point reads + short write transactions", writeWaitMs: 0, reports: false },
  {
    id: "waiting",
    name: `+ each write transaction waits ${WRITE_WAIT_MS} ms`,
    writeWaitMs: WRITE_WAIT_MS,
    reports: false
  },
  { id: "report", name: "+ a report asked back to back", writeWaitMs: WRITE_WAIT_MS, reports: true }
]

/**
 * @since 0.1.0
 * @category constants
 */
export const CONTENDERS: ReadonlyArray<{ readonly id: Contender; readonly name: string }> = [
  { id: "single", name: "SqliteClient (one connection)" },
  { id: "pool", name: "SqlitePool, Reader on the main thread" },
  { id: "threads", name: "SqlitePool, readerThreads" }
]

/**
 * One measured run of one contender.
 *
 * @since 0.1.0
 * @category models
 */
export interface HttpRun {
  /** point reads answered (2xx) per second */
  readonly requestsPerSecond: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly maxMs: number
  readonly writesPerSecond: number
  readonly reportsPerSecond: number
  /** responses other than 2xx and connection errors, over the three clients */
  readonly failures: number
}

/**
 * One contender in one scenario: the figures of HttpRun are medians of its runs, except `failures`, their sum.
 *
 * @since 0.1.0
 * @category models
 */
export interface HttpResult extends HttpRun {
  readonly id: string
  readonly scenario: Scenario["id"]
  readonly contender: Contender
  readonly name: string
  readonly runs: ReadonlyArray<HttpRun>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface HttpSuiteResult {
  readonly results: ReadonlyArray<HttpResult>
  readonly runMs: number
  readonly rounds: number
  /** one report's time on a connection of this process, median of 5 */
  readonly reportMs: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface HttpSettings {
  /** length of one measured run of one contender */
  readonly runMs: number
  /** measured runs per contender and scenario */
  readonly rounds: number
  /** load before measuring, per server */
  readonly warmupMs: number
}

/**
 * @since 0.1.0
 * @category constants
 */
export const fullHttpSettings: HttpSettings = { runMs: 5_000, rounds: 2, warmupMs: 1_000 }

/**
 * @since 0.1.0
 * @category constants
 */
export const quickHttpSettings: HttpSettings = { runMs: 1_000, rounds: 1, warmupMs: 500 }

const serverScript = fileURLToPath(new URL("../http-server.ts", import.meta.url))
const repositoryRoot = fileURLToPath(new URL("../../", import.meta.url))

/** The scenarios' database: the example's schema, SEED_ROWS items, totals that match them; WAL, checkpointed. */
const seed = (directory: string): { filename: string; reportMs: number } => {
  const filename = path.join(directory, "http-seed.db")
  const db = new Database(filename)
  try {
    db.pragma("journal_mode = WAL")
    for (const statement of SCHEMA) db.exec(statement)
    const insert = db.prepare("INSERT INTO items (id, name, value) VALUES (?, ?, ?)")
    db.transaction(() => {
      for (let id = 1; id <= SEED_ROWS; id++) insert.run(id, `item-${id}`, (id * 7919) % 1000)
    })()
    db.exec("UPDATE totals SET items = (SELECT count(*) FROM items), value = (SELECT sum(value) FROM items)")
    const report = db.prepare(REPORT)
    const times = Array.from({ length: 5 }, () => {
      const started = performance.now()
      report.all()
      return performance.now() - started
    })
    db.pragma("wal_checkpoint(TRUNCATE)")
    return { filename, reportMs: median(times) }
  } finally {
    db.close()
  }
}

/** SIGTERM, then SIGKILL if the process has not ended within 10 s (a bound, not an expectation). */
const stop = (child: ChildProcess) =>
  Effect.promise(() =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve()
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000)
      child.on("exit", () => {
        clearTimeout(timer)
        resolve()
      })
      child.kill("SIGTERM")
    })
  )

/** A contender's server process, stopped when the Scope closes; its base URL once it listens. */
const startServer = (options: ServerOptions): Effect.Effect<string, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(process.execPath, ["--import", "tsx", serverScript, JSON.stringify(options)], {
          cwd: repositoryRoot,
          stdio: ["ignore", "pipe", "pipe"]
        })
      ),
      stop
    )
    return yield* Effect.async<string, Error>((resume) => {
      let output = ""
      let listening = false
      const onOutput = (text: string) => {
        output += text
        const port = /Listening on http:\/\/[^:]+:(\d+)/.exec(output)?.[1]
        if (port !== undefined && !listening) {
          listening = true
          resume(Effect.succeed(`http://127.0.0.1:${port}`))
        }
      }
      child.stdout!.setEncoding("utf8").on("data", onOutput)
      child.stderr!.setEncoding("utf8").on("data", onOutput)
      child.on("exit", (code) => {
        if (!listening) resume(Effect.fail(new Error(`the ${options.contender} server exited (${code}): ${output}`)))
      })
    })
  })

/** The three clients for `durationMs`; requests/s and latency are the point reads'. */
const load = (url: string, scenario: Scenario, durationMs: number): Effect.Effect<HttpRun> =>
  Effect.promise(async () => {
    const duration = durationMs / 1000
    let read = 0
    const reads = autocannon({
      url,
      connections: READ_CONNECTIONS,
      duration,
      requests: [{
        method: "GET",
        setupRequest: (request) => ({ ...request, path: `/item/${(read++ * 7919) % SEED_ROWS + 1}` })
      }]
    })
    const writes = autocannon({
      url: `${url}/item`,
      connections: 1,
      duration,
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "bench", value: 1 })
    })
    const reports = scenario.reports ? autocannon({ url: `${url}/report`, connections: 1, duration }) : undefined
    const [r, w, p] = await Promise.all([reads, writes, reports])
    // Only successful answers count: a server failing fast must not look fast.
    const perSecond = (result: autocannon.Result | undefined) =>
      result === undefined ? 0 : result["2xx"] / result.duration
    const failures = [r, w, p].reduce(
      (sum, result) => sum + (result === undefined ? 0 : result.non2xx + result.errors),
      0
    )
    return {
      requestsPerSecond: perSecond(r),
      p50Ms: r.latency.p50,
      p99Ms: r.latency.p99,
      maxMs: r.latency.max,
      writesPerSecond: perSecond(w),
      reportsPerSecond: perSecond(p),
      failures
    }
  })

/**
 * @since 0.1.0
 * @category suites
 */
export const run = (
  directory: string,
  settings: HttpSettings
): Effect.Effect<HttpSuiteResult, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const seeded = seed(directory)
    const results: Array<HttpResult> = []
    for (const scenario of SCENARIOS) {
      // The servers of one scenario live together (idle ones take no CPU) and stop at its end.
      const measured = yield* Effect.scoped(Effect.gen(function*() {
        const servers = yield* Effect.forEach(CONTENDERS, (contender) => {
          const filename = path.join(directory, `http-${scenario.id}-${contender.id}.db`)
          fs.copyFileSync(seeded.filename, filename)
          return startServer({ contender: contender.id, filename, writeWaitMs: scenario.writeWaitMs })
        }, { concurrency: "unbounded" })
        for (const url of servers) yield* load(url, scenario, settings.warmupMs)
        const runs: Array<Array<HttpRun>> = CONTENDERS.map(() => [])
        for (let round = 0; round < settings.rounds; round++) {
          for (let k = 0; k < CONTENDERS.length; k++) {
            const index = (round + k) % CONTENDERS.length
            runs[index]!.push(yield* load(servers[index]!, scenario, settings.runMs))
          }
        }
        return runs
      }))
      CONTENDERS.forEach((contender, index) => {
        const runs = measured[index]!
        const middle = (pick: (run: HttpRun) => number) => median(runs.map(pick))
        results.push({
          id: `http.${scenario.id}.${contender.id}`,
          scenario: scenario.id,
          contender: contender.id,
          name: contender.name,
          requestsPerSecond: middle((r) => r.requestsPerSecond),
          p50Ms: middle((r) => r.p50Ms),
          p99Ms: middle((r) => r.p99Ms),
          maxMs: middle((r) => r.maxMs),
          writesPerSecond: middle((r) => r.writesPerSecond),
          reportsPerSecond: middle((r) => r.reportsPerSecond),
          failures: runs.reduce((sum, r) => sum + r.failures, 0),
          runs
        })
      })
    }
    return { results, runMs: settings.runMs, rounds: settings.rounds, reportMs: seeded.reportMs }
  })

const find = (r: HttpSuiteResult, scenario: Scenario["id"], contender: Contender) =>
  r.results.find((result) => result.scenario === scenario && result.contender === contender)

const fixed = (value: number, digits = 1) => Number.isFinite(value) ? value.toFixed(digits) : "n/a"
const rate = (value: number) => Math.round(value).toLocaleString("en-US")

/**
 * The suite's table: one row per scenario and contender, the ratio to the single connection beside its requests/s.
 *
 * @since 0.1.0
 * @category formatting
 */
export const table = (r: HttpSuiteResult): string => {
  const rows: Array<Array<string>> = [
    ["scenario", "contender", "req/s", "x single", "p50", "p99", "max", "writes/s", "reports/s", "failures"]
  ]
  for (const result of r.results) {
    const single = find(r, result.scenario, "single")
    rows.push([
      SCENARIOS.find((scenario) => scenario.id === result.scenario)!.name,
      result.name,
      rate(result.requestsPerSecond),
      single === undefined ? "" : `${fixed(result.requestsPerSecond / single.requestsPerSecond, 2)}x`,
      `${fixed(result.p50Ms)} ms`,
      `${fixed(result.p99Ms)} ms`,
      `${fixed(result.maxMs)} ms`,
      fixed(result.writesPerSecond),
      fixed(result.reportsPerSecond),
      String(result.failures)
    ])
  }
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)))
  const line = (row: Array<string>) =>
    row.map((cell, column) => column < 2 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)).join("  ")
      .trimEnd()
  return [line(rows[0]!), widths.map((w) => "-".repeat(w)).join("  "), ...rows.slice(1).map(line)].join("\n")
}

/**
 * The targets: the pool (its defaults: the Reader on the main thread) at least the single connection's
 * requests/s in every scenario and at least 3x with waiting transactions; the settings the README recommends for an
 * app with a heavy read (`readerThreads`) at least 2x the single connection with the report.
 *
 * @since 0.1.0
 * @category verdicts
 */
export const verdicts = (r: HttpSuiteResult): Array<Verdict> => {
  const out: Array<Verdict> = []
  const compare = (
    target: string,
    description: string,
    scenario: Scenario["id"],
    contender: Contender,
    atLeast: number,
    closing: ReadonlyArray<string>
  ) => {
    const ours = find(r, scenario, contender)
    const single = find(r, scenario, "single")
    if (ours === undefined || single === undefined) return
    const ratio = ours.requestsPerSecond / single.requestsPerSecond
    out.push({
      target,
      description,
      measured: `${ours.name} ${rate(ours.requestsPerSecond)} req/s (p99 ${fixed(ours.p99Ms)} ms) vs SqliteClient ` +
        `${rate(single.requestsPerSecond)} req/s (p99 ${fixed(single.p99Ms)} ms)`,
      ratio,
      threshold: `>= ${atLeast}`,
      pass: Number.isFinite(ratio) && ratio >= atLeast,
      // The servers run in child processes: a CPU profile of this process would show autocannon.
      profile: undefined,
      closing
    })
  }
  const reports = (contender: Contender) => find(r, "report", contender)?.reportsPerSecond ?? Number.NaN
  const waiting = "the single connection serves nothing while a write transaction is open; the pool's point reads " +
    "wait only for the event loop, so what is left is the cost of a request in the server process"
  const closing: Record<Scenario["id"], string> = {
    short: "with the Reader on the main thread, both serve point reads on the server's one event loop at about the " +
      "same cost per statement (the Reader's and the writer lane's own costs are targets 2 and 3): the pool wins " +
      "what it does not wait for, an open write transaction, and short transactions leave little of that, so this " +
      "ratio sits near 1 and run-to-run noise decides its verdict",
    waiting,
    report: `each report holds the server's one event loop for its whole run (about ${fixed(r.reportMs)} ms here), ` +
      `and the pool answers more reports (${fixed(reports("pool"))}/s against ${fixed(reports("single"))}/s on the ` +
      "single connection, where they also wait behind the write transactions), so the point reads get less of the " +
      "loop; readerThreads moves the report off it (target H3)"
  }
  for (const scenario of SCENARIOS) {
    compare(
      `H1 (${scenario.id})`,
      `HTTP API, ${scenario.name}: SqlitePool (Reader on the main thread) requests/s >= the single connection's`,
      scenario.id,
      "pool",
      1,
      [closing[scenario.id]]
    )
  }
  compare(
    "H2",
    `HTTP API, write transactions waiting ${WRITE_WAIT_MS} ms: SqlitePool requests/s >= 3x the single connection's`,
    "waiting",
    "pool",
    3,
    [waiting]
  )
  compare(
    "H3",
    "HTTP API, with a report asked back to back: SqlitePool with readerThreads (the README's setting for heavy " +
      "reads) requests/s >= 2x the single connection's",
    "report",
    "threads",
    2,
    [
      "with readerThreads every point read is also a message round trip to a worker (see target T3), and the " +
      "report's worker takes one of the machine's cores from the server's event loop"
    ]
  )
  return out
}
