/**
 * `pnpm bench`: every benchmark suite in one process, side by side; prints the tables and the target verdicts
 * (PASS/MISS with the measured ratio), profiles the contender of every missed target, and writes
 * bench/results/latest.json.
 *
 * Run with: pnpm bench [-- --quick] [-- --only=queries,acquire,connect,blocks,mixed,contention,threads,libsql,memory,http]
 * [-- --no-profile] [-- --http-seconds=N]
 *
 * @since 0.1.0
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Acquire from "./cases/acquire.js"
import * as Blocks from "./cases/blocks.js"
import * as Connect from "./cases/connect.js"
import * as Contention from "./cases/contention.js"
import * as Http from "./cases/http.js"
import * as Libsql from "./cases/libsql.js"
import * as Memory from "./cases/memory.js"
import * as Mixed from "./cases/mixed.js"
import * as Queries from "./cases/queries.js"
import * as ReaderThreads from "./cases/readerThreads.js"
import { createDatabase, tempDirectory } from "./fixtures.js"
import { batches, fullSettings, quickSettings, sinkSummary } from "./harness.js"
import type { Result } from "./harness.js"
import { profile } from "./profile.js"
import type { ProfileSummary } from "./profile.js"
import * as Report from "./report.js"
import { verdicts } from "./targets.js"
import type { Verdict } from "./targets.js"

const SUITES = [
  "queries",
  "acquire",
  "connect",
  "blocks",
  "mixed",
  "contention",
  "threads",
  "libsql",
  "memory",
  "http"
] as const
type Suite = typeof SUITES[number]

interface Options {
  readonly quick: boolean
  readonly suites: ReadonlySet<Suite>
  readonly profileMisses: boolean
  /** contenders (batch ids) to profile as well, missed or not: a missed one beside what it is judged against */
  readonly profileIds: ReadonlyArray<string>
  /** the http suite's run length per contender and scenario, overriding the mode's */
  readonly httpSeconds: number | undefined
}

const usage = "usage: pnpm bench [-- --quick] [-- --only=" + SUITES.join(",") +
  "] [-- --no-profile] [-- --profile=ID,...] [-- --http-seconds=N]"

const parseOptions = (argv: ReadonlyArray<string>): Options | string => {
  let quick = false
  let profileMisses = true
  let profileIds: Array<string> = []
  let suites = new Set<Suite>(SUITES)
  let httpSeconds: number | undefined = undefined
  for (const arg of argv) {
    if (arg === "--") continue
    if (arg === "--quick") quick = true
    else if (arg === "--no-profile") profileMisses = false
    else if (arg.startsWith("--profile=")) {
      profileIds = arg.slice("--profile=".length).split(",").filter((id) => id !== "")
      if (profileIds.length === 0) return `${arg}: name the contenders to profile (e.g. mixed.pool,mixed.threads)`
    } else if (arg.startsWith("--http-seconds=")) {
      httpSeconds = Number(arg.slice("--http-seconds=".length))
      if (!(httpSeconds > 0 && httpSeconds <= 600)) return `${arg}: the seconds must be a number above 0, at most 600`
    } else if (arg.startsWith("--only=")) {
      const names = arg.slice("--only=".length).split(",").filter((name) => name !== "")
      const unknown = names.filter((name) => !(SUITES as ReadonlyArray<string>).includes(name))
      if (unknown.length > 0 || names.length === 0) {
        return `unknown suite "${unknown.join(",")}" in ${arg}: the suites are ${SUITES.join(", ")}`
      }
      suites = new Set(names as Array<Suite>)
    } else if (arg === "--help" || arg === "-h") return usage
    else return `unknown option "${arg}"\n${usage}`
  }
  return { quick, suites, profileMisses, profileIds, httpSeconds }
}

/** Each note once, with the missed targets it explains. */
const closingNotes = (misses: ReadonlyArray<Verdict>): string => {
  const notes = new Map<string, Array<string>>()
  for (const verdict of misses) {
    for (const note of verdict.closing) notes.set(note, [...(notes.get(note) ?? []), verdict.target])
  }
  return [...notes].map(([note, targets]) => `- target${targets.length > 1 ? "s" : ""} ${targets.join(", ")}: ${note}.`)
    .join("\n")
}

const resultsDirectory = fileURLToPath(new URL("results/", import.meta.url))

const program = (options: Options) =>
  Effect.gen(function*() {
    const settings = options.quick ? quickSettings : fullSettings
    const started = new Date()
    const machine = {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? "unknown",
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
      loadAverageAtStart: os.loadavg()
    }
    yield* Console.log(
      `sqlsim bench (${options.quick ? "quick" : "full"}): ${machine.cpus} CPUs (${machine.cpuModel}), ` +
        `Node ${machine.node}, load average ${machine.loadAverageAtStart.map((n) => n.toFixed(2)).join(" ")}\n` +
        `per case: ${settings.warmupMs} ms warm-up, ${settings.repetitions} repetitions of ~${settings.repetitionMs} ms ` +
        `(interleaved with the other cases of its suite); workloads: ${settings.runs} run(s) of ${settings.runMs} ms.\n` +
        "Figures are medians; spread = interquartile range / median of the repetitions. Compare ratios, not absolute times.\n"
    )
    const directory = yield* tempDirectory
    const filename = createDatabase(directory, "bench.db")
    const throughput: Array<Result> = []
    const show = (results: Array<Result>) =>
      Effect.zipRight(
        Effect.sync(() => throughput.push(...results)),
        Console.log(Report.throughputTable(results) + "\n")
      )

    if (options.suites.has("queries")) yield* show(yield* Queries.run(filename, settings))
    if (options.suites.has("acquire")) yield* show(yield* Acquire.run(filename, settings))
    if (options.suites.has("connect")) yield* show(yield* Connect.run(directory, settings))
    if (options.suites.has("blocks")) yield* show(yield* Blocks.run(settings))
    const mixed = options.suites.has("mixed") ? yield* Mixed.run(directory, settings) : []
    if (mixed.length > 0) {
      yield* Console.log(
        `mixed workload: 1 writer fiber (transaction: INSERT, sleep 1 ms, UPDATE, COMMIT; back to back, or 2 or ` +
          `10 ms idle between) + ${Mixed.READERS} reader fibers (point queries), ${settings.runMs} ms per run\n` +
          `${Report.mixedTable(mixed)}\n`
      )
    }
    const contention = options.suites.has("contention") ? yield* Contention.run(filename, settings) : []
    if (contention.length > 0) {
      yield* Console.log(
        `contention: ${Contention.WORKERS} workers on ${Contention.POOL_SIZE} connections, each holding its ` +
          `connection across one setImmediate; acquire wait = ask to hold\n${Report.contentionTable(contention)}\n`
      )
    }
    const threads = options.suites.has("threads")
      ? yield* ReaderThreads.run(directory, settings, options.quick)
      : undefined
    if (threads !== undefined) {
      yield* Console.log(
        `reader threads: SqlitePool's Reader on the main thread vs readerThreads: true, same database\n` +
          `${ReaderThreads.table(threads)}\n\n${Report.throughputTable(threads.pointQuery)}\n`
      )
    }
    const libsql = options.suites.has("libsql") ? yield* Libsql.run(options.quick, settings.runs) : undefined
    if (libsql !== undefined) {
      yield* Console.log(
        `libSQL: SqlitePool on a sqld primary and replica on loopback, ${libsql.statements} statements a case, ` +
          `medians of ${settings.runs} runs\n${Libsql.table(libsql)}\n`
      )
    }
    const memory = options.suites.has("memory") ? yield* Memory.run(directory, settings.memoryRuns) : []
    if (memory.length > 0) {
      yield* Console.log(
        `memory (RSS, measured in child processes, medians of ${settings.memoryRuns} per row; SQLite's default page cache is 2000 KiB per connection, ` +
          `better-sqlite3 builds with 16000 KiB; the scanned table is ${memory[0]!.databaseMiB.toFixed(1)} MiB)\n` +
          `${Report.memoryTable(memory)}\n`
      )
    }
    const httpSettings = options.quick ? Http.quickHttpSettings : Http.fullHttpSettings
    const http = options.suites.has("http")
      ? yield* Http.run(directory, {
        ...httpSettings,
        runMs: options.httpSeconds === undefined ? httpSettings.runMs : options.httpSeconds * 1000
      })
      : undefined
    if (http !== undefined) {
      yield* Console.log(
        `HTTP API (examples/http-api.ts), each contender's server in a process of its own, autocannon in this one: ` +
          `${Http.READ_CONNECTIONS} connections of GET /item/:id (requests/s and latency are theirs) + 1 connection ` +
          `of POST /item back to back (+ 1 of GET /report, ${Http.SEED_ROWS.toLocaleString("en-US")} items, ` +
          `${http.reportMs.toFixed(0)} ms a report here); medians of ${http.rounds} run(s) of ${http.runMs} ms\n` +
          `${Http.table(http)}\n`
      )
    }

    const judged = [
      ...verdicts({ throughput, mixed, contention, memory }),
      ...(threads === undefined ? [] : ReaderThreads.verdicts(threads)),
      ...(libsql === undefined ? [] : Libsql.verdicts(libsql)),
      ...(http === undefined ? [] : Http.verdicts(http))
    ]
    const profiles: Array<ProfileSummary> = []
    const misses = judged.filter((v) => !v.pass)
    const missed = options.profileMisses ? misses.flatMap((v) => v.profile === undefined ? [] : [v.profile]) : []
    for (const id of new Set([...missed, ...options.profileIds])) {
      const batch = batches.get(id)
      if (batch === undefined) {
        if (options.profileIds.includes(id)) {
          yield* Console.log(`--profile: no contender "${id}" ran (ids: ${[...batches.keys()].join(", ")})`)
        }
        continue
      }
      profiles.push(yield* profile(id, batch, { durationMs: options.quick ? 500 : 2000, directory: resultsDirectory }))
    }

    yield* Console.log(`targets (ratios from this run)\n${Report.verdictTable(judged)}\n`)
    if (profiles.length > 0) {
      yield* Console.log(
        "where the time goes: CPU profiles of the contenders that missed and of those named by --profile (V8 " +
          "sampling profiler, 100 us interval, in this process; open the .cpuprofile files in Chrome DevTools)\n" +
          `${Report.profileDigest(profiles)}\n\n${profiles.map(Report.profileText).join("\n\n")}\n`
      )
    }
    if (misses.length > 0) {
      yield* Console.log(
        `${misses.length} of ${judged.length} targets MISSED: ${misses.map((v) => v.target).join(", ")}\n`
      )
      yield* Console.log(`closing note: what the time goes to and what would close each gap\n${closingNotes(misses)}\n`)
    } else if (judged.length > 0) {
      yield* Console.log(`all ${judged.length} targets met\n`)
    }

    const report = {
      startedAt: started.toISOString(),
      finishedAt: new Date().toISOString(),
      mode: options.quick ? "quick" : "full",
      suites: [...options.suites],
      machine,
      settings,
      note: "shared machine: compare ratios measured in this run, not absolute times",
      throughput,
      mixed,
      contention,
      memory,
      readerThreads: threads,
      libsql,
      http,
      targets: judged,
      profiles,
      sink: sinkSummary()
    }
    fs.mkdirSync(resultsDirectory, { recursive: true })
    const output = path.join(resultsDirectory, "latest.json")
    fs.writeFileSync(output, JSON.stringify(report, null, 2) + "\n")
    yield* Console.log(
      `results written to ${path.relative(process.cwd(), output)} (sink: ${JSON.stringify(report.sink)})`
    )
  })

const parsed = parseOptions(process.argv.slice(2))
if (parsed === usage) {
  process.stdout.write(usage + "\n")
} else if (typeof parsed === "string") {
  process.stderr.write(parsed + "\n")
  process.exitCode = 2
} else {
  // runMain interrupts the program on Ctrl-C, so the pools close and the temporary databases are removed.
  NodeRuntime.runMain(Effect.scoped(program(parsed)))
}
