/**
 * The report as one self-contained HTML page: summary tables, and charts of latency, throughput and connections
 * (open, in use, idle, waiting) over time, drawn as inline SVG by an inline script from the report's JSON embedded in
 * the page. No network, no external file: open it in any browser.
 *
 * Each chart's `<svg>` gets `data-rendered="true"` and a `data-points` count once its lines are drawn, so a headless
 * browser can check that the charts drew.
 *
 * @since 0.1.0
 */
import {
  describeFault,
  describeHoldWarnings,
  describeWaits,
  describeWal,
  jsonValue,
  type Report,
  type RunReport,
  serverEvents
} from "./Report.js"

const escapeHtml = (text: string): string =>
  text.replace(/[&<>"']/g, (char) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" })[char]!)

/** JSON that is safe inside a `<script>` element: no "</script>", no line separators that end a JS string. */
const embedJson = (value: unknown): string =>
  JSON.stringify(value, jsonValue).replace(/</g, "\\u003c").replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029")

const ms = (value: number | null) => value === null ? "n/a" : `${value.toFixed(value >= 100 ? 0 : 2)} ms`
const count = (value: number) => value.toLocaleString("en-US")
const rate = (value: number | null) => value === null ? "n/a" : `${count(Math.round(value))} ops/s`

const summaryRows = (run: RunReport): ReadonlyArray<readonly [string, string]> => [
  ["duration", `${(run.durationMs / 1000).toFixed(2)} s${run.interrupted ? " (interrupted)" : ""}`],
  ["operations", `${count(run.operations.completed)} completed, ${count(run.operations.failed)} failed`],
  ["throughput", rate(run.throughput)],
  ["latency p50", ms(run.latencyMs.p50)],
  ["latency p95", ms(run.latencyMs.p95)],
  ["latency p99", ms(run.latencyMs.p99)],
  ["latency max", ms(run.latencyMs.max)],
  ["connect retries", count(run.retries.connect)],
  ["busy retries", count(run.retries.busy)],
  ["connections created / closed", `${count(run.connections.created)} / ${count(run.connections.closed)}`],
  ["connections reused / invalidated", `${count(run.connections.reused)} / ${count(run.connections.invalidated)}`],
  [
    "pool leases acquired / reused",
    run.pool === undefined
      ? "no pool"
      : `${count(run.pool.writer.acquired + run.pool.readers.acquired)} / ${
        count(run.pool.writer.reused + run.pool.readers.reused)
      }`
  ],
  ["mean in use / capacity", `${run.utilisation.meanInUse.toFixed(2)} / ${run.utilisation.capacity}`],
  ["peak open / peak waiting", `${run.utilisation.peakOpen} / ${run.utilisation.peakWaiting}`],
  ...operatingRows(run)
]

/** Each lane's waits, the hold warnings, the WAL's growth and the long reader, as the text report words them. */
const operatingRows = (run: RunReport): ReadonlyArray<readonly [string, string]> => {
  const noPool = "no pool"
  const rows: Array<readonly [string, string]> = [
    ["writer wait p50 / p95 / p99 / max", run.waits === null ? noPool : describeWaits(run.waits.writer)],
    ["Reader wait p50 / p95 / p99 / max", run.waits === null ? noPool : describeWaits(run.waits.readers)],
    ["hold warnings", run.holdWarnings === null ? noPool : describeHoldWarnings(run.holdWarnings)]
  ]
  if (run.wal !== null) rows.push(["WAL", describeWal(run.wal)])
  if (run.longRead !== null) rows.push(["long read", `${run.longRead.holdMs} ms: ${run.longRead.outcome}`])
  return rows
}

const keyValueTable = (rows: ReadonlyArray<readonly [string, string]>, className: string) =>
  `<table class="${className}"><tbody>${
    rows.map(([key, value]) => `<tr><th scope="row">${escapeHtml(key)}</th><td>${escapeHtml(value)}</td></tr>`).join("")
  }</tbody></table>`

const errorRows = (run: RunReport) => {
  const entries = Object.entries(run.errors)
  return entries.length === 0
    ? [["none", ""] as const]
    : entries.map(([tag, n]) => [tag, count(n)] as const)
}

const faultRows = (run: RunReport) => {
  const f = run.faults
  const rows: Array<readonly [string, string]> = [
    ["connect attempts seen", count(f.connectAttempts)],
    ["checks / probes / statements seen", `${count(f.checks)} / ${count(f.validations)} / ${count(f.statements)}`],
    ...f.kinds.map((line) => [line.key, describeFault(run, line)] as const),
    ["fault sequence fingerprint", f.fingerprint]
  ]
  if (run.lockHolder !== undefined) {
    rows.push([
      "lock-holder bursts",
      `${count(run.lockHolder.bursts)} (${run.lockHolder.holdMs} ms every ${run.lockHolder.everyMs} ms)`
    ])
  }
  if (run.servers.length > 0) rows.push(["servers crashed", serverEvents(run.servers)])
  for (const replica of run.replication?.replicas ?? []) {
    rows.push([
      `replica lag, ${replica.url}`,
      `${replica.lagFrames ?? "?"} frames when last seen, at most ${replica.maxLagFrames ?? "?"}`
    ])
  }
  return rows
}

const chart = (kind: string, run: number, title: string, height = 240) =>
  `<figure><figcaption>${escapeHtml(title)}</figcaption>` +
  `<svg class="chart" data-chart="${kind}" data-run="${run}" viewBox="0 0 720 ${height}" role="img" ` +
  `aria-label="${escapeHtml(title)}"></svg><div class="legend" data-legend="${kind}-${run}"></div></figure>`

const runSection = (run: RunReport, index: number) =>
  `<section class="run" data-mode="${run.mode}">
<h2>${escapeHtml(run.mode)}${run.interrupted ? " (interrupted)" : ""}</h2>
<div class="tables">
${keyValueTable(summaryRows(run), "summary")}
<div>
<h3>Errors by tag</h3>
${keyValueTable(errorRows(run), "errors")}
<h3>Injected faults</h3>
${keyValueTable(faultRows(run), "faults")}
</div>
</div>
<div class="charts">
${chart("latency", index, "Latency over time (ms): p50, p95 and max of the operations ending in each interval")}
${chart("throughput", index, "Throughput over time (operations per second)")}
${chart("connections", index, "Connections over time: open, in use, idle, and fibers waiting")}
</div>
</section>`

/**
 * Renders the report as a self-contained HTML page.
 *
 * @since 0.1.0
 * @category rendering
 */
export const render = (report: Report): string => {
  const s = report.settings
  const stop = s.operations !== null ? `${count(s.operations)} operations` : `${(s.durationMs ?? 0) / 1000} s`
  const settings = `seed ${s.seed}, ${s.workers} workers, ${stop}, mix read ${s.mix.read} / write ${s.mix.write} / ` +
    `transaction ${s.mix.transaction}, hold ${s.holdMs} ms, ${s.readers} readers${
      s.readerThreads ? " (worker threads)" : ""
    }, faults ${s.faults}${s.longReadMs === null ? "" : `, a long read of ${s.longReadMs} ms`}, ${s.clock} clock${
      s.costs === null ? "" : ` (a statement costs ${s.costs.statementMs} ms, an open ${s.costs.connectMs} ms)`
    }`
  const verdict = report.comparison === undefined
    ? ""
    : `<p class="verdict" id="comparison">${escapeHtml(report.comparison.summary)}</p>` +
      chart("comparison", -1, "Throughput, pooled vs connect-per-operation (operations per second)", 110)
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sqlsim simulate: seed ${s.seed}</title>
<style>${style}</style>
</head>
<body>
<header>
<h1>sqlsim simulate</h1>
<p class="settings">${escapeHtml(settings)}</p>
<p class="settings">database ${escapeHtml(s.database)}, started ${escapeHtml(report.startedAt)}</p>
${
    report.interrupted
      ? `<p class="warning">Interrupted: the numbers cover the operations that finished before the stop.</p>`
      : ""
  }
${verdict}
</header>
${report.runs.map(runSection).join("\n")}
<script type="application/json" id="sqlsim-report">${embedJson(report)}</script>
<script>${script}</script>
</body>
</html>
`
}

const style = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1500px; padding: 0 16px; color: #1d2330; }
h1 { margin: 0 0 4px; font-size: 22px; }
h2 { font-size: 18px; border-bottom: 2px solid #dde3ee; padding-bottom: 4px; }
h3 { font-size: 14px; margin: 8px 0 4px; }
.settings { margin: 2px 0; color: #4a5568; }
.verdict { font-size: 17px; font-weight: 600; background: #eef6ee; border-left: 4px solid #2f855a; padding: 8px 12px; }
.warning { background: #fff5e6; border-left: 4px solid #c05621; padding: 8px 12px; }
.tables { display: flex; gap: 32px; flex-wrap: wrap; align-items: flex-start; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 2px 12px 2px 0; vertical-align: top; }
th { font-weight: 500; color: #4a5568; }
td { font-variant-numeric: tabular-nums; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 16px; margin-top: 12px; }
figure { margin: 0; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg.chart { width: 100%; height: auto; background: #fbfcfe; border: 1px solid #e2e8f0; }
svg .axis { stroke: #a0aec0; stroke-width: 1; }
svg .grid { stroke: #edf2f7; stroke-width: 1; }
svg text { font: 11px system-ui, sans-serif; fill: #4a5568; }
svg path.series { fill: none; stroke-width: 1.8; }
.legend { display: flex; gap: 14px; flex-wrap: wrap; margin-top: 4px; }
.legend span::before { content: ""; display: inline-block; width: 12px; height: 3px; margin-right: 5px; vertical-align: middle; background: var(--color); }
`

// Plain JavaScript run by the browser: reads the embedded report and draws the charts as SVG.
const script = `
(function () {
  "use strict";
  var report = JSON.parse(document.getElementById("sqlsim-report").textContent);
  var NS = "http://www.w3.org/2000/svg";
  var W = 720, H = 240, left = 56, right = 16, top = 12, bottom = 32;
  function heightOf(svg) { return Number(svg.getAttribute("viewBox").split(" ")[3]); }
  var colors = ["#2b6cb0", "#dd6b20", "#c53030", "#2f855a", "#6b46c1"];

  function el(name, attributes, parent) {
    var node = document.createElementNS(NS, name);
    for (var key in attributes) node.setAttribute(key, attributes[key]);
    if (parent) parent.appendChild(node);
    return node;
  }
  function niceMax(value) {
    if (!(value > 0)) return 1;
    var power = Math.pow(10, Math.floor(Math.log10(value)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * power >= value) return steps[i] * power;
    return 10 * power;
  }
  function label(value) {
    if (value >= 1000) return Math.round(value).toLocaleString("en-US");
    if (value >= 10) return String(Math.round(value));
    return String(Math.round(value * 100) / 100);
  }
  // series: [{ name, points: [[x, y or null], ...] }]; xUnit: label under the x axis
  function lineChart(svg, series, xMax, xUnit) {
    var yMax = 0, points = 0;
    series.forEach(function (s) { s.points.forEach(function (p) { if (p[1] !== null && p[1] > yMax) yMax = p[1]; }); });
    yMax = niceMax(yMax);
    xMax = xMax > 0 ? xMax : 1;
    var x = function (v) { return left + (v / xMax) * (W - left - right); };
    var y = function (v) { return top + (1 - v / yMax) * (H - top - bottom); };
    for (var i = 0; i <= 5; i++) {
      var value = (yMax * i) / 5;
      el("line", { "class": "grid", x1: left, x2: W - right, y1: y(value), y2: y(value) }, svg);
      el("text", { x: left - 6, y: y(value) + 4, "text-anchor": "end" }, svg).textContent = label(value);
    }
    for (var j = 0; j <= 5; j++) {
      var t = (xMax * j) / 5;
      el("text", { x: x(t), y: H - bottom + 16, "text-anchor": "middle" }, svg).textContent = label(t);
    }
    el("text", { x: W - right, y: H - 2, "text-anchor": "end" }, svg).textContent = xUnit;
    el("line", { "class": "axis", x1: left, x2: left, y1: top, y2: H - bottom }, svg);
    el("line", { "class": "axis", x1: left, x2: W - right, y1: H - bottom, y2: H - bottom }, svg);
    var legend = svg.parentNode.querySelector(".legend");
    series.forEach(function (s, index) {
      var d = "", pen = "M";
      s.points.forEach(function (p) {
        if (p[1] === null) { pen = "M"; return; }
        d += pen + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1) + " ";
        pen = "L";
        points++;
      });
      var color = colors[index % colors.length];
      if (d !== "") el("path", { "class": "series", d: d.trim(), stroke: color, "data-series": s.name }, svg);
      if (legend) {
        var item = document.createElement("span");
        item.style.setProperty("--color", color);
        item.textContent = s.name;
        legend.appendChild(item);
      }
    });
    return points;
  }
  function barChart(svg, bars) {
    var H = heightOf(svg), top = 8, bottom = 8;
    var max = niceMax(Math.max.apply(null, bars.map(function (b) { return b.value || 0; })));
    var rowHeight = (H - top - bottom) / bars.length;
    bars.forEach(function (b, index) {
      var width = ((b.value || 0) / max) * (W - 200 - 110);
      var yTop = top + index * rowHeight + rowHeight * 0.2;
      el("text", { x: 190, y: yTop + rowHeight * 0.35, "text-anchor": "end" }, svg).textContent = b.name;
      el("path", {
        "class": "bar", d: "M200 " + yTop.toFixed(1) + " h" + width.toFixed(1) + " v" + (rowHeight * 0.6).toFixed(1) + " h" + (-width).toFixed(1) + " Z",
        fill: colors[index % colors.length]
      }, svg);
      el("text", { x: 206 + width, y: yTop + rowHeight * 0.35 }, svg).textContent = b.value === null ? "n/a" : label(b.value) + " ops/s";
    });
    return bars.length;
  }
  function seconds(ms) { return ms / 1000; }
  function draw(svg) {
    var kind = svg.getAttribute("data-chart");
    var run = report.runs[Number(svg.getAttribute("data-run"))];
    var points = 0;
    if (kind === "comparison") {
      points = barChart(svg, report.runs.map(function (r) { return { name: r.mode, value: r.throughput }; }));
    } else if (kind === "latency") {
      var buckets = run.timeline.buckets;
      var end = seconds(run.durationMs);
      var at = function (b) { return seconds(b.tMs + run.timeline.bucketMs / 2); };
      points = lineChart(svg, ["p50", "p95", "max"].map(function (name) {
        return { name: name + " (ms)", points: buckets.map(function (b) { return [at(b), b[name]]; }) };
      }), end, "seconds");
    } else if (kind === "throughput") {
      var perSecond = 1000 / run.timeline.bucketMs;
      points = lineChart(svg, [
        { name: "completed/s", points: run.timeline.buckets.map(function (b) { return [seconds(b.tMs + run.timeline.bucketMs / 2), b.completed * perSecond]; }) },
        { name: "failed/s", points: run.timeline.buckets.map(function (b) { return [seconds(b.tMs + run.timeline.bucketMs / 2), b.failed * perSecond]; }) }
      ], seconds(run.durationMs), "seconds");
    } else if (kind === "connections") {
      var end2 = run.samples.length > 0 ? seconds(run.samples[run.samples.length - 1].tMs) : 0;
      points = lineChart(svg, ["open", "inUse", "idle", "waiting"].map(function (name) {
        return { name: name === "inUse" ? "in use" : name, points: run.samples.map(function (s) { return [seconds(s.tMs), s[name]]; }) };
      }), end2, "seconds");
    }
    svg.setAttribute("data-points", String(points));
    svg.setAttribute("data-rendered", "true");
  }
  var charts = document.querySelectorAll("svg[data-chart]");
  for (var i = 0; i < charts.length; i++) {
    try { draw(charts[i]); } catch (error) { charts[i].setAttribute("data-rendered", "error: " + error.message); }
  }
  document.body.setAttribute("data-charts-rendered", String(charts.length));
})();
`
