/**
 * A simulation: prepare a database file, then run the workload against the pool (and, with `compare`, against a
 * fresh connection per operation, with the same seed, so the same operations and the same fault decisions), with
 * the faults of a `FaultPlan`, and report what happened.
 *
 * A run is interruptible: interrupting it stops the workers, stops the lock holder and closes the pool; `snapshot`
 * then reports what finished before the stop.
 *
 * @since 0.1.0
 */
import { Connector, LibsqlConnector, PoolConfig, type PoolError, SqliteCode } from "@sqlsim/sqlite-pool"
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import type * as MetricPair from "effect/MetricPair"
import * as MetricState from "effect/MetricState"
import * as Random from "effect/Random"
import type * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as FaultInjector from "./FaultInjector.js"
import * as FaultPlan from "./FaultPlan.js"
import { failureKey, Recorder } from "./internal/recorder.js"
import * as internal from "./internal/resolve.js"
import * as LockHolder from "./LockHolder.js"
import * as Report from "./Report.js"
import * as ServerFaults from "./ServerFaults.js"
import {
  DatabaseLostError,
  DiskFullError,
  type LockHolderError,
  SetupError,
  type SimulationConfigError
} from "./SimulationError.js"
import * as SqldServers from "./SqldServers.js"
import * as Target from "./Target.js"
import * as VirtualClock from "./VirtualClock.js"
import * as Workload from "./Workload.js"

/**
 * What a caller may set; everything has a default but the seed.
 *
 * @since 0.1.0
 * @category models
 */
export interface Input {
  readonly seed: number
  /** concurrent fibers (1 .. 512, default 8) */
  readonly workers?: number | undefined
  /** stop after this many operations (1 .. 1,000,000) */
  readonly operations?: number | undefined
  /** stop after this long (up to 1 hour); the default when `operations` is not given is 5 seconds */
  readonly duration?: Duration.DurationInput | undefined
  /** a Mix, or its text form "read=70,write=20,transaction=10" (the default) */
  readonly mix?: Workload.Mix | string | undefined
  /** work held inside each transaction, in ms (0 .. 10,000, default 0) */
  readonly holdMs?: number | undefined
  /**
   * a long reader: from the start of each run, a read transaction reads one row (so it holds its snapshot) and then
   * holds it this long, in ms (1 .. 3,600,000; default none): the WAL cannot be checkpointed past its snapshot
   */
  readonly longReadMs?: number | undefined
  /** a FaultPlan, or its text form "open=0.1,busy=lock-holder" (default none) */
  readonly faults?: FaultPlan.FaultPlan | string | undefined
  /** also run connect-per-operation, and compare */
  readonly compare?: boolean | undefined
  /** the database file (created if missing, tables sim_items and sim_counters added); default a temporary file */
  readonly database?: string | undefined
  /**
   * Run against a libSQL server instead of a file: the writer lane on the primary, the Reader on the replicas (the
   * tables are created there, as in a file). Not with `database`, virtual time, reader threads or faults that need a
   * file (open, open-permanent, busy=lock-holder).
   */
  readonly libsql?: LibsqlConnector.Options | undefined
  /**
   * Start the libSQL servers for the run instead of giving `libsql`: a sqld primary and `replicas` replicas (default
   * 1) from the binary `sqld`, on loopback ports, with data in a temporary directory, stopped at the end. `kills`
   * (`ServerFaults`, or their text form "primary@2s+1s") crash one of them mid-run and start it again.
   */
  readonly servers?: {
    readonly sqld: string
    readonly replicas?: number | undefined
    readonly kills?: ReadonlyArray<ServerFaults.Kill> | string | undefined
  } | undefined
  /** read-only connections of the pool's Reader (0 .. 64, default 4) */
  readonly readers?: number | undefined
  /** each Reader connection in a worker thread of its own (the pool's `readerThreads`; default false) */
  readonly readerThreads?: boolean | undefined
  /** "virtual": run on virtual time, so that the run repeats exactly (see VirtualClock); default "real" */
  readonly clock?: "real" | "virtual" | undefined
  /** on virtual time: the modelled cost of a statement in ms (0 .. 1000, default 0.02); one connection runs one at a time */
  readonly statementMs?: number | undefined
  /** on virtual time: the modelled cost of opening a connection in ms (0 .. 1000, default 0.5) */
  readonly connectMs?: number | undefined
  /** further pool settings (filename, readConnections and readerThreads come from the options above) */
  readonly pool?: Omit<PoolConfig.SqliteInput, "filename" | "readConnections" | "readerThreads"> | undefined
  /** how often gauges are sampled, in ms (default 50) */
  readonly sampleEveryMs?: number | undefined
  /** rows seeded for reads (default 1000) */
  readonly rows?: number | undefined
}

/**
 * The validated options.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly seed: number
  readonly workers: number
  readonly stop: Workload.Stop
  readonly mix: Workload.Mix
  readonly holdMs: number
  /** the long reader's hold in ms; null: none */
  readonly longReadMs: number | null
  readonly faults: FaultPlan.FaultPlan
  readonly compare: boolean
  readonly database: string | undefined
  readonly libsql: LibsqlConnector.Options | undefined
  readonly servers: Servers | undefined
  readonly readers: number
  readonly readerThreads: boolean
  readonly clock: "real" | "virtual"
  readonly pool: Omit<PoolConfig.SqliteInput, "filename" | "readConnections" | "readerThreads">
  readonly sampleEveryMs: number
  readonly rows: number
  /** the modelled cost of a statement in ms (0 on a real clock) */
  readonly statementMs: number
  /** the modelled cost of opening a connection in ms (0 on a real clock) */
  readonly connectMs: number
}

/**
 * The servers a simulation starts for itself, validated.
 *
 * @since 0.1.0
 * @category models
 */
export interface Servers {
  readonly sqld: string
  readonly replicas: number
  readonly kills: ReadonlyArray<ServerFaults.Kill>
}

/**
 * Bounds of the options.
 *
 * @since 0.1.0
 * @category constants
 */
export const limits: typeof internal.limits = internal.limits

/**
 * The modelled costs of a statement and of an open on the virtual clock, when none is given.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultCosts: typeof internal.defaultCosts = internal.defaultCosts

/**
 * Validates the input and fills in the defaults.
 *
 * @since 0.1.0
 * @category constructors
 */
export const resolve: (input: Input) => Either.Either<Options, SimulationConfigError> = internal.resolve

/**
 * Where a run stands.
 *
 * @since 0.1.0
 * @category models
 */
export interface Progress {
  /** 1-based number of the run going on, of `runs` */
  readonly run: number
  readonly runs: number
  readonly mode: Target.Mode
  readonly elapsedMs: number
  readonly completed: number
  readonly failed: number
  /** 0 .. 1 */
  readonly fraction: number
}

/**
 * What a failed simulation can fail with (the simulated operations' own failures are counted, not raised).
 *
 * @since 0.1.0
 * @category models
 */
export type Error =
  | SetupError
  | DatabaseLostError
  | DiskFullError
  | LockHolderError
  | SqldServers.SqldError
  | PoolError.PoolConfigError
  | PoolError.ConnectError

/**
 * A simulation ready to run.
 *
 * @since 0.1.0
 * @category models
 */
export interface Session {
  readonly options: Options
  /** runs the simulation (once) and reports */
  readonly run: Effect.Effect<Report.Report, Error>
  /** the report of what finished so far: after an interruption, the summary of what completed */
  readonly snapshot: Effect.Effect<Report.Report>
  readonly progress: Effect.Effect<Progress | undefined>
}

interface RunState {
  readonly mode: Target.Mode
  readonly recorder: Recorder
  clock: Clock.Clock | undefined
  target: Target.MeasuredTarget | undefined
  injector: FaultInjector.FaultInjector | undefined
  lockHolder: LockHolder.LockHolder | undefined
  replication: ReplicationTracker | undefined
  readonly serverEvents: Array<ServerFaults.Event>
  finished: boolean
  /** the pool's name in its metrics, this run's own, so that the wait-time histograms read are this run's alone */
  readonly poolName: string
  /** how the long reader ended; undefined while it runs or when there is none */
  longRead: string | undefined
}

/** Pooled runs made in this process so far: each names its pool after its number. */
let pooledRuns = 0

/** The replicas' lag of a libSQL target, read from its connector whenever the gauges are sampled. */
interface ReplicationTracker {
  readonly observe: Effect.Effect<void>
  readonly report: Effect.Effect<Report.Replication>
}

const trackReplication = (connector: LibsqlConnector.Service): ReplicationTracker => {
  const most = new Map<string, number>()
  const observe = Effect.map(connector.status, (status) => {
    for (const replica of status.replicas) {
      if (replica.lagFrames !== undefined) {
        most.set(replica.url, Math.max(most.get(replica.url) ?? 0, replica.lagFrames))
      }
    }
    return status
  })
  return {
    observe: Effect.asVoid(observe),
    report: Effect.map(observe, (status) => ({
      replicas: status.replicas.map((replica) => ({
        url: replica.url,
        connects: replica.connects,
        lagFrames: replica.lagFrames ?? null,
        maxLagFrames: most.get(replica.url) ?? null
      })),
      fallbacks: status.fallbacks
    }))
  }
}

/** Servers a simulation started: the connector's options for them, each by name, and the kills to run. */
interface Cluster {
  readonly libsql: LibsqlConnector.Options
  readonly byName: ReadonlyMap<string, SqldServers.SqldProcess>
  readonly kills: ReadonlyArray<ServerFaults.Kill>
}

const startServers = (servers: Servers): Effect.Effect<Cluster, SqldServers.SqldError, Scope.Scope> =>
  Effect.map(SqldServers.startCluster(servers.replicas, { binary: servers.sqld }), ({ primary, replicas }) => ({
    libsql: { primaryUrl: primary.httpUrl, replicaUrls: replicas.map((replica) => replica.httpUrl) },
    byName: new Map([["primary", primary], ...replicas.map((replica) => [replica.name, replica] as const)]),
    kills: servers.kills
  }))

/**
 * The modes a simulation runs, in order: the pooled run first (so that warm caches, if anything, favour the other).
 *
 * @since 0.1.0
 * @category constants
 */
export const modes = (options: Options): ReadonlyArray<Target.Mode> =>
  options.compare ? ["pooled", "connect-per-operation"] : ["pooled"]

/** A temporary directory that cannot be made (a missing or read-only TMPDIR) is the environment's, not a bug. */
const temporaryDatabase: Effect.Effect<string, SetupError, Scope.Scope> = Effect.acquireRelease(
  Effect.try({
    try: () => fs.mkdtempSync(path.join(os.tmpdir(), "sqlsim-simulate-")),
    catch: (cause) =>
      new SetupError({
        filename: "(a temporary file)",
        reason: `cannot create it in the temporary directory ${os.tmpdir()} (${
          (cause as { code?: unknown }).code ?? String(cause)
        }); set TMPDIR to a directory you can write to, or give --db`,
        cause
      })
  }),
  (directory) => Effect.ignore(Effect.try(() => fs.rmSync(directory, { recursive: true, force: true })))
).pipe(Effect.map((directory) => path.join(directory, "simulate.db")))

/**
 * Creates the tables if missing and seeds them (counters, and `rows` items for reads to find), on a connection of
 * its own (opened by `connector`, the live one by default), before any fault is armed.
 *
 * @since 0.1.0
 * @category running
 */
export const setup = (
  database: string,
  rows: number,
  connector?: Connector.Service
): Effect.Effect<void, SetupError> =>
  Effect.scoped(Effect.gen(function*() {
    const opener = connector ?? (yield* Connector.makeLive)
    const connection = yield* opener.connect({
      filename: database,
      readOnly: false,
      busyTimeout: Duration.seconds(5),
      pageCacheKiB: 2000
    }).pipe(Effect.mapError((error) => new SetupError({ filename: database, reason: error.message, cause: error })))
    const sql = yield* Connector.client(connection, database)
    yield* sql.withTransaction(Effect.gen(function*() {
      for (const statement of Workload.schema) yield* sql.unsafe(statement)
      for (let id = 1; id <= Target.counters; id++) {
        yield* sql`INSERT OR IGNORE INTO sim_counters (id, hits) VALUES (${id}, 0)`
      }
      const [existing] = yield* sql<{ n: number }>`SELECT count(*) AS n FROM sim_items`
      for (let id = (existing?.n ?? 0) + 1; id <= rows; id++) {
        yield* sql`INSERT INTO sim_items (value, operation) VALUES (${`seed ${id}`}, ${-id})`
      }
    })).pipe(Effect.mapError((error) => new SetupError({ filename: database, reason: error.message, cause: error })))
  }))

/** What a session has done so far: its runs, in order, and the database they ran on once it is known. */
interface SessionState {
  readonly startedAt: Date
  readonly runs: Array<RunState>
  database: string
}

const workloadOptions = (options: Options): Workload.Options => ({
  seed: options.seed,
  workers: options.workers,
  stop: options.stop,
  mix: options.mix,
  holdMs: options.holdMs,
  rows: options.rows,
  operationTimeoutMs: 60_000,
  sampleEveryMs: options.sampleEveryMs,
  // On virtual time a turn is a sleep of 0 on the virtual clock: its driver is an event-loop task that runs when
  // every fiber waits, and wakes the sleepers due now without moving time, so the run still repeats exactly.
  turn: options.clock === "virtual"
    ? { everyOperations: Workload.defaultTurn.everyOperations, everyMillis: Infinity, wait: Effect.sleep(0) }
    : Workload.defaultTurn
})

/** The target of one mode (the pool, or a connection per operation), through a fresh fault injector. */
const makeTarget = (options: Options, state: RunState, filename: string, cluster: Cluster | undefined) =>
  Effect.gen(function*() {
    const libsqlOptions = cluster?.libsql ?? options.libsql
    // Each run gets its own injector with the same seed: the n-th connect attempt meets the same fault in both.
    const libsql = libsqlOptions === undefined ? undefined : yield* LibsqlConnector.make(libsqlOptions)
    const injector = yield* FaultInjector.make(options.faults, {
      seed: options.seed,
      connector: libsql,
      statementCostMs: options.statementMs,
      connectCostMs: options.connectMs
    })
    state.injector = injector
    const poolInput: PoolConfig.SqliteInput = {
      ...options.pool,
      poolName: state.poolName,
      filename,
      readConnections: options.readers,
      readerThreads: options.readerThreads
    }
    const target = state.mode === "pooled"
      ? yield* Target.pooled(poolInput, { connector: injector.connector, holdMs: options.holdMs })
      : Target.perOperation(yield* PoolConfig.makeSqlite(poolInput), {
        connector: injector.connector,
        holdMs: options.holdMs,
        workers: options.workers
      })
    const replication = libsql === undefined ? undefined : trackReplication(libsql)
    state.replication = replication
    // Each operation runs as the injector's: the faults its statements meet count against its outcome.
    const measured = { ...target, run: (operation: Workload.Operation) => injector.operation(target.run(operation)) }
    state.target = replication === undefined
      ? measured
      : { ...measured, gauges: Effect.zipLeft(target.gauges, replication.observe) }
    return { target: state.target, injector }
  })

/** Runs the workload in one mode, its state added to the session's runs first so that a snapshot sees it. */
const runOne = (
  options: Options,
  session: SessionState,
  mode: Target.Mode,
  filename: string,
  cluster: Cluster | undefined,
  afterFailure: Workload.Options["afterFailure"]
) =>
  Effect.gen(function*() {
    const state: RunState = {
      mode,
      recorder: new Recorder(),
      clock: yield* Effect.clock,
      target: undefined,
      injector: undefined,
      lockHolder: undefined,
      replication: undefined,
      serverEvents: [],
      finished: false,
      poolName: `${options.pool.poolName ?? "sqlsim simulate"} #${++pooledRuns}`,
      longRead: undefined
    }
    session.runs.push(state)
    const { injector, target } = yield* makeTarget(options, state, filename, cluster)
    if (options.faults.lockHolder !== undefined) {
      state.lockHolder = yield* LockHolder.start(filename, options.faults.lockHolder)
    }
    yield* injector.arm
    // Forked after the pool was made: the end of the run interrupts it first, so the pool closes with no lease out.
    if (options.longReadMs !== null) yield* Effect.forkScoped(longRead(target, options.longReadMs, state))
    // The kills are timed from the start of the workload; ending the run ends them, a server down restarted.
    if (cluster !== undefined && cluster.kills.length > 0) {
      yield* Effect.forkScoped(ServerFaults.schedule(cluster.kills, cluster.byName, state.serverEvents))
    }
    // Disarmed before the pool closes: its closing connections at the end are not what followed a fault.
    yield* Workload.run(target, { ...workloadOptions(options), afterFailure }, state.recorder).pipe(
      Effect.ensuring(injector.disarm)
    )
    state.finished = true
  }).pipe(Effect.scoped)

/** The long reader of a run, its outcome kept in the run's state for the report. */
const longRead = (target: Target.MeasuredTarget, holdMs: number, state: RunState): Effect.Effect<void> =>
  Effect.asVoid(Effect.exit(
    target.longRead(holdMs).pipe(
      Effect.onExit((exit) =>
        Effect.sync(() => {
          state.longRead = Exit.isSuccess(exit)
            ? "completed"
            : Cause.isInterruptedOnly(exit.cause)
            ? "cut short"
            : failureKey(exit.cause)
        })
      )
    )
  ))

/**
 * After a failed operation: whether what every operation needs is still there, the database file set up for the run
 * (the pool refuses the name when it was deleted or replaced, or finds an empty database there) and room on its disk
 * (SQLITE_FULL). Every operation would fail at once without them, so the workers would spin on failures to the end
 * of the run.
 */
const checkAfterFailure = (filename: string, opened: string | undefined) => (failure: Cause.Cause<unknown>) =>
  Effect.suspend((): Effect.Effect<void, DatabaseLostError | DiskFullError> => {
    if (opened !== undefined && Connector.fileIdentity(filename)?.database !== opened) {
      return Effect.fail(new DatabaseLostError({ filename }))
    }
    const error = Cause.failureOption(failure)
    return error._tag === "Some" && SqliteCode.codeOf(error.value) === "SQLITE_FULL"
      ? Effect.fail(new DiskFullError({ filename }))
      : Effect.void
  })

/** Starts the servers or makes the database, sets it up, and runs every mode in turn. */
const runAll = (options: Options, session: SessionState) =>
  Effect.gen(function*() {
    const cluster = options.servers === undefined ? undefined : yield* startServers(options.servers)
    const libsql = cluster?.libsql ?? options.libsql
    const filename = libsql?.primaryUrl ?? options.database ?? (yield* temporaryDatabase)
    session.database = filename
    yield* setup(filename, options.rows, libsql === undefined ? undefined : yield* LibsqlConnector.make(libsql))
    const afterFailure = libsql === undefined
      ? checkAfterFailure(filename, Connector.fileIdentity(filename)?.database)
      : undefined
    for (const mode of modes(options)) yield* runOne(options, session, mode, filename, cluster, afterFailure)
  }).pipe(Effect.scoped, Effect.withRandom(Random.make(options.seed)))

const settings = (options: Options, database: string): Report.Settings => ({
  seed: options.seed,
  workers: options.workers,
  operations: options.stop._tag === "Operations" ? options.stop.count : null,
  durationMs: options.stop._tag === "Duration" ? options.stop.millis : null,
  mix: options.mix,
  holdMs: options.holdMs,
  faults: FaultPlan.format(options.faults),
  servers: options.servers === undefined ? null : {
    replicas: options.servers.replicas,
    kills: ServerFaults.format(options.servers.kills)
  },
  readers: options.readers,
  readerThreads: options.readerThreads,
  database,
  clock: options.clock,
  costs: options.clock === "virtual" ? { statementMs: options.statementMs, connectMs: options.connectMs } : null,
  longReadMs: options.longReadMs
})

/** A lane's wait-time histogram of the pool named `poolName`, as the pool's metric holds it. */
const waitHistogram = (
  pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>,
  poolName: string,
  lane: "writer" | "reader"
): Report.Histogram | undefined => {
  const pair = pairs.find(({ metricKey }) =>
    metricKey.name === "db.client.connection.wait_time" &&
    metricKey.tags.some((tag) => tag.key === "db.client.connection.pool.name" && tag.value === poolName) &&
    metricKey.tags.some((tag) => tag.key === "sqlsim.lane" && tag.value === lane)
  )
  if (pair === undefined || !MetricState.isHistogramState(pair.metricState)) return undefined
  const { buckets, count, max, min } = pair.metricState
  return { buckets, count, max, min }
}

/** The pool's hold-warning threshold in ms, as the pool read it (undefined: off). */
const holdWarningMs = (options: Options): number | undefined =>
  options.pool.holdWarningThreshold === undefined
    ? undefined
    : Duration.toMillis(Duration.decode(options.pool.holdWarningThreshold))

const runReport = (options: Options, state: RunState) =>
  Effect.gen(function*() {
    const counts = state.target === undefined ? emptyCounts : yield* state.target.counts
    return Report.runReport({
      mode: state.mode,
      recorder: state.recorder,
      counts,
      pool: state.target === undefined ? undefined : yield* state.target.poolStats,
      plan: options.faults,
      faults: state.injector === undefined ? FaultInjector.noFaults : yield* state.injector.counts,
      faultEvents: state.injector === undefined ? [] : yield* state.injector.events,
      faultOutcomes: state.injector === undefined ? noOutcomes : yield* state.injector.outcomes,
      served: state.injector === undefined ? notServed : yield* state.injector.served,
      lockHolder: state.lockHolder === undefined || options.faults.lockHolder === undefined
        ? undefined
        : { bursts: yield* state.lockHolder.bursts, ...options.faults.lockHolder },
      replication: state.replication === undefined ? undefined : yield* state.replication.report,
      servers: state.serverEvents,
      interrupted: !state.finished,
      nowMs: state.clock === undefined ? 0 : Number(state.clock.unsafeCurrentTimeNanos()) / 1_000_000,
      waits: state.mode === "pooled"
        ? yield* Effect.map(Metric.snapshot, (pairs) => ({
          writer: waitHistogram(pairs, state.poolName, "writer"),
          readers: waitHistogram(pairs, state.poolName, "reader")
        }))
        : undefined,
      holdWarningMs: holdWarningMs(options),
      longRead: options.longReadMs === null
        ? undefined
        : { holdMs: options.longReadMs, outcome: state.longRead ?? "running" }
    })
  })

/** Where the latest run stands, or undefined before the first one starts. */
const progressOf = (options: Options, session: SessionState): Progress | undefined => {
  const state = session.runs[session.runs.length - 1]
  if (state === undefined || state.clock === undefined) return undefined
  const { recorder } = state
  const now = Number(state.clock.unsafeCurrentTimeNanos()) / 1_000_000
  const elapsedMs = recorder.startMs === 0 && recorder.started === 0
    ? 0
    : (recorder.endMs ?? now) - recorder.startMs
  const fraction = options.stop._tag === "Operations"
    ? recorder.finished / options.stop.count
    : Math.min(1, elapsedMs / options.stop.millis)
  return {
    run: session.runs.length,
    runs: modes(options).length,
    mode: state.mode,
    elapsedMs,
    completed: recorder.completed,
    failed: recorder.failed,
    fraction: Math.max(0, Math.min(1, fraction))
  }
}

/**
 * Prepares a simulation.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Session> =>
  Effect.sync(() => {
    const session: SessionState = {
      startedAt: new Date(),
      runs: [],
      database: options.database ?? "(a temporary file)"
    }
    const program = runAll(options, session)
    const snapshot = Effect.map(
      Effect.forEach(session.runs, (state) => runReport(options, state)),
      (reports) => Report.make(settings(options, session.database), session.startedAt, reports)
    )
    return {
      options,
      run: Effect.zipRight(options.clock === "virtual" ? VirtualClock.runVirtual(program) : program, snapshot),
      snapshot,
      progress: Effect.sync(() => progressOf(options, session))
    } satisfies Session
  })

/**
 * Validates, prepares and runs a simulation.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (input: Input): Effect.Effect<Report.Report, Error | SimulationConfigError> =>
  Effect.flatMap(Effect.flatMap(resolve(input), make), (session) => session.run)

const noOutcomes = Object.fromEntries(
  FaultInjector.faultKinds.map((kind) => [kind, FaultInjector.noOutcome])
) as Record<FaultInjector.FaultKind, FaultInjector.FaultOutcome>

const notServed: FaultInjector.Served = { onNewConnection: 0, onReusedConnection: 0 }

const emptyCounts: Omit<Target.ConnectionCounts, "reused"> = {
  created: 0,
  closed: 0,
  invalidated: 0,
  connectFailures: 0,
  connectRetries: 0,
  busyRetries: 0,
  timeouts: 0,
  capacity: 0
}
