import { assert, describe, it } from "@effect/vitest"
import { type Report, ReportHtml, Simulation } from "@sqlsim/simulator"
import { Effect, Logger, LogLevel } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { tempDir } from "./utils.js"

const chromium = process.env.CHROMIUM ?? "/usr/bin/chromium"

/** Opens a file in headless Chromium (no sandbox, no network chatter) and returns the DOM after its scripts ran. */
const dumpDom = (file: string, profile: string) =>
  Effect.async<string, Error>((resume) => {
    if (!fs.existsSync(chromium)) {
      return resume(Effect.fail(new Error(`${chromium} is missing: install it (apt-get install -y chromium)`)))
    }
    const child = execFile(
      chromium,
      [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        `--user-data-dir=${profile}`,
        "--dump-dom",
        pathToFileURL(file).href
      ],
      { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout) => resume(error ? Effect.fail(error) : Effect.succeed(stdout))
    )
    return Effect.sync(() => child.kill("SIGKILL"))
  })

const attributesOf = (dom: string, element: string) =>
  [...dom.matchAll(new RegExp(`<${element}\\b([^>]*)>`, "g"))].map((match) => {
    const attributes: Record<string, string> = {}
    for (const [, name, value] of match[1]!.matchAll(/([\w-]+)="([^"]*)"/g)) attributes[name!] = value!
    return attributes
  })

describe("ReportHtml", () => {
  it.live(
    "renders in headless Chromium: every chart draws its lines, and nothing from the report runs as markup",
    () =>
      Effect.gen(function*() {
        const directory = yield* tempDir
        const report = yield* Simulation.run({
          seed: 4,
          workers: 4,
          operations: 200,
          holdMs: 3,
          compare: true,
          clock: "virtual",
          faults: "open=0.2,slow=0.3,die=0.1",
          // Every transaction holds the writer past the threshold: the page shows the warnings.
          pool: { holdWarningThreshold: "2 millis" },
          longReadMs: 50
        }).pipe(Logger.withMinimumLogLevel(LogLevel.Error))
        // A hostile value where the report shows text: it must stay text.
        const hostile: Report.Report = {
          ...report,
          settings: { ...report.settings, database: "</script><img id=\"injected\" src=\"x\">" }
        }
        // Self-contained: nothing to fetch (the SVG namespace is a name, not a request).
        const plain = ReportHtml.render(report)
        assert.notMatch(plain, /\s(src|href)=/)
        assert.notMatch(plain.replace(/http:\/\/www\.w3\.org\/2000\/svg/g, ""), /https?:\/\//)
        const html = ReportHtml.render(hostile)
        const file = path.join(directory, "report.html")
        fs.writeFileSync(file, html)

        const dom = yield* dumpDom(file, path.join(directory, "profile"))
        const charts = attributesOf(dom, "svg").filter((svg) => svg["data-chart"] !== undefined)
        // One comparison chart, and latency, throughput and connections for each of the two runs.
        assert.deepStrictEqual(
          charts.map((chart) => `${chart["data-chart"]}:${chart["data-run"]}`),
          ["comparison:-1", "latency:0", "throughput:0", "connections:0", "latency:1", "throughput:1", "connections:1"]
        )
        for (const chart of charts) {
          assert.strictEqual(chart["data-rendered"], "true", chart["data-chart"])
          assert.isAbove(Number(chart["data-points"]), 1, chart["data-chart"])
        }
        assert.match(dom, /<body[^>]*data-charts-rendered="7"/)
        const drawn = attributesOf(dom, "path").filter((p) => /^M\d/.test(p.d ?? ""))
        // Lines: p50/p95/max, completed/failed, open/in use/idle/waiting per run (some may have no data), and two bars.
        assert.isAtLeast(drawn.filter((p) => p.class === "series").length, 2 * 5)
        assert.strictEqual(drawn.filter((p) => p.class === "bar").length, 2)
        assert.deepStrictEqual(attributesOf(dom, "img"), [])
        assert.include(dom, "&lt;/script&gt;&lt;img id=\"injected\"")
        assert.include(dom, report.comparison!.summary.replace(/&/g, "&amp;"))
        // What operating the pool showed, in the pooled run's summary; the other run has no pool.
        const [pooled] = report.runs
        const holds = pooled!.holdWarnings!
        assert.isAbove(holds.count, 0)
        const row = (key: string) => new RegExp(`<th scope="row">${key}</th><td>([^<]*)</td>`, "g")
        assert.deepStrictEqual(
          [...dom.matchAll(row("hold warnings"))].map((match) => match[1]),
          [
            `${holds.count} past 2 ms: span "sim.long-read" 1, span "sim.transaction" ${
              holds.bySpan["sim.transaction"]
            }`,
            "no pool"
          ]
        )
        assert.match(
          dom,
          /<th scope="row">writer wait p50 \/ p95 \/ p99 \/ max<\/th><td>[\d.]+ \/ [\d.]+ \/ [\d.]+ \/ [\d.]+ ms of [\d,]+ waits/
        )
        assert.match(dom, /<th scope="row">WAL<\/th><td>largest [\d.]+ (KiB|MiB), at the end/)
        assert.match(dom, /<th scope="row">long read<\/th><td>50 ms: completed/)
      }).pipe(Effect.scoped),
    { timeout: 60_000 }
  )
})
