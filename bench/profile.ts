/**
 * CPU profiles of a contender, taken in-process with V8's sampling profiler (the same profile `node --cpu-prof`
 * writes), saved as a .cpuprofile (open it in Chrome DevTools or speedscope) and summarised: self time by component
 * and the busiest functions.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as inspector from "node:inspector/promises"
import * as path from "node:path"

interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
}

interface ProfileNode {
  readonly id: number
  readonly callFrame: CallFrame
  readonly children?: ReadonlyArray<number>
}

interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ProfileSummary {
  readonly id: string
  readonly file: string
  readonly sampledMs: number
  /** share of sampled time by component, largest first */
  readonly components: ReadonlyArray<{ readonly component: string; readonly share: number }>
  /** functions with the most self time */
  readonly functions: ReadonlyArray<{ readonly name: string; readonly share: number }>
}

const NATIVE_DRIVER = new Set(["get", "all", "run", "iterate", "prepare", "pragma", "exec", "Database", "close"])

/**
 * The component a sampled frame belongs to.
 *
 * @since 0.1.0
 * @category summarising
 */
export const componentOf = (frame: CallFrame): string => {
  const { functionName: name, url } = frame
  if (name === "(garbage collector)") return "V8 garbage collector"
  if (name === "(idle)") return "idle (waiting for timers or I/O)"
  if (name === "(program)") return "V8 and native, unattributed"
  if (url === "" && NATIVE_DRIVER.has(name)) return "SQLite (better-sqlite3 native calls)"
  if (url.includes("better-sqlite3")) return "better-sqlite3 JavaScript"
  if (url.includes("packages/sqlite-pool/")) return "sqlsim (ConnectionPool, lanes, stats)"
  if (url.includes("@effect/sql-sqlite-node")) return "@effect/sql-sqlite-node SqliteClient"
  if (url.includes("@effect/sql/")) return "@effect/sql (client, statement compiler)"
  if (url.includes("@effect/experimental")) return "@effect/experimental"
  if (url.includes("/effect/")) {
    if (/Span|span|[Tt]racer|StackTrace/.test(name) || /tracer\.js$/.test(url)) return "Effect tracing (spans)"
    if (/\/metric/.test(url)) return "Effect metrics"
    if (/\/pool\.js$/.test(url)) return "Effect Pool"
    if (/\/schedule/.test(url)) return "Effect Schedule (retry)"
    if (/\/cache\.js$/.test(url)) return "Effect Cache (prepared statements)"
    if (/[Ss]cope|[Ff]inalizer/.test(name)) return "Effect Scope"
    return "Effect runtime (fibers, combinators, fiber refs)"
  }
  if (url.includes("/tarn/")) return "tarn"
  if (url.includes("/generic-pool/")) return "generic-pool"
  if (url.includes("/bench/")) return "bench harness"
  if (url.startsWith("node:") || url === "") return "Node.js internals (timers, promises)"
  return "other"
}

const frameName = (frame: CallFrame) => {
  const file = frame.url === ""
    ? "native"
    : frame.url.replace(/^.*node_modules\//, "").replace(/^.*\/work\/[^/]+\//, "")
  return `${frame.functionName || "(anonymous)"} (${file.replace(/^file:\/\//, "")}:${frame.lineNumber + 1})`
}

const isNativeHelper = (frame: CallFrame) =>
  (frame.url === "" || frame.url.startsWith("node:")) && !frame.functionName.startsWith("(")

/**
 * Summarises a CPU profile by self time. Time in a native or Node.js helper (`stat`, `setTimeout`) counts for the
 * nearest caller in application or library code, so a `fs.statSync` made by the pool shows as the pool's.
 *
 * @since 0.1.0
 * @category summarising
 */
export const summarise = (id: string, file: string, profile: CpuProfile): ProfileSummary => {
  const frames = new Map(profile.nodes.map((node) => [node.id, node.callFrame]))
  const parents = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id)
  const attributed = (nodeId: number, frame: CallFrame): string => {
    if (!isNativeHelper(frame) || (frame.url === "" && NATIVE_DRIVER.has(frame.functionName))) {
      return componentOf(frame)
    }
    for (let at = parents.get(nodeId); at !== undefined; at = parents.get(at)) {
      const caller = frames.get(at)
      if (caller !== undefined && !isNativeHelper(caller) && caller.url !== "") return componentOf(caller)
    }
    return componentOf(frame)
  }
  const byComponent = new Map<string, number>()
  const byFunction = new Map<string, number>()
  let total = 0
  profile.samples.forEach((nodeId, index) => {
    const delta = profile.timeDeltas[index] ?? 0
    const frame = frames.get(nodeId)
    // The profiler's own start and stop run inside the inspector session's native dispatch: not the contender's.
    if (frame === undefined || (frame.url === "" && frame.functionName === "dispatch")) return
    total += delta
    const component = attributed(nodeId, frame)
    byComponent.set(component, (byComponent.get(component) ?? 0) + delta)
    const name = frameName(frame)
    byFunction.set(name, (byFunction.get(name) ?? 0) + delta)
  })
  const shares = (map: Map<string, number>, limit: number) =>
    [...map].sort((a, b) => b[1] - a[1]).slice(0, limit).map(([key, value]) =>
      [key, total === 0 ? 0 : value / total] as const
    )
  return {
    id,
    file,
    sampledMs: total / 1000,
    components: shares(byComponent, 12).map(([component, share]) => ({ component, share })),
    functions: shares(byFunction, 10).map(([name, share]) => ({ name, share }))
  }
}

/**
 * Runs `effect` repeatedly for about `durationMs` under the sampling profiler, writes `<directory>/<id>.cpuprofile`
 * and returns its summary.
 *
 * @since 0.1.0
 * @category profiling
 */
export const profile = (
  id: string,
  effect: Effect.Effect<void, unknown>,
  options: { readonly durationMs: number; readonly directory: string }
): Effect.Effect<ProfileSummary, unknown> =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const session = new inspector.Session()
      session.connect()
      return session
    }),
    (session) =>
      Effect.gen(function*() {
        yield* Effect.promise(() => session.post("Profiler.enable"))
        yield* Effect.promise(() => session.post("Profiler.setSamplingInterval", { interval: 100 }))
        yield* Effect.promise(() => session.post("Profiler.start"))
        const end = Date.now() + options.durationMs
        while (Date.now() < end) yield* effect
        const { profile: cpuProfile } = yield* Effect.promise(() => session.post("Profiler.stop"))
        const file = path.join(options.directory, `${id}.cpuprofile`)
        fs.mkdirSync(options.directory, { recursive: true })
        fs.writeFileSync(file, JSON.stringify(cpuProfile))
        return summarise(id, file, cpuProfile as unknown as CpuProfile)
      }),
    (session) => Effect.sync(() => session.disconnect())
  )
