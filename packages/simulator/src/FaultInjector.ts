/**
 * A fault-injecting `Connector`: it wraps the live connector of `@sqlsim/sqlite-pool` and, as a `FaultPlan` asks,
 * fails connect attempts or slows them down, and wraps every connection it opens so that its events (the pool's
 * check as it hands the connection out or lets a statement join it, the pool's probe, each statement) meet the
 * connection faults: a handle closed under the pool, a health check that fails, a statement's I/O error or
 * SQLITE_BUSY, a slow statement. Wherever the connection is (idle in the pool, kept by a lane, leased by a caller,
 * inside a transaction), its next event can meet them.
 *
 * Every fault is a real one where SQLite can produce it: a transient open failure opens a path in a directory that
 * does not exist (SQLite's own SQLITE_CANTOPEN), a permanent one opens a file that is not a database (SQLITE_NOTADB),
 * a dead connection has its driver handle really closed, so the pool's check, its probe or the statement finds it
 * closed; a statement's I/O error and SQLITE_BUSY are the driver's own error with SQLite's code.
 *
 * Decisions come from generators seeded with the run's seed and the event's number: the n-th connect attempt, and
 * the n-th event of the n-th connection opened, get the same decision in every run with the same seed, so that a
 * run on the virtual clock repeats exactly.
 *
 * @since 0.1.0
 */
import { Connector, PoolError } from "@sqlsim/sqlite-pool"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { FaultPlan } from "./FaultPlan.js"
import * as Faulty from "./internal/faultyConnection.js"
import { failureKey } from "./internal/recorder.js"
import { SetupError } from "./SimulationError.js"

/**
 * @since 0.1.0
 * @category models
 */
export type FaultKind =
  | "open-transient"
  | "open-permanent"
  | "slow-open"
  | "die"
  | "ping"
  | "ioerr"
  | "busy"
  | "slow-statement"

/**
 * Where a fault was met: a connect attempt, the pool's O(1) check of a connection (as it hands it out or lets a
 * statement join it), the pool's probe of a connection, or a statement.
 *
 * @since 0.1.0
 * @category models
 */
export type FaultSite = "connect" | "check" | "probe" | "statement"

/**
 * One injected fault. `index` is the number of the connect attempt (open faults, counted from 1 since the injector
 * was armed) or of the event on its connection (the connection's faults, with `connection` its number in the order
 * the injector opened connections).
 *
 * @since 0.1.0
 * @category models
 */
export interface FaultEvent {
  readonly kind: FaultKind
  readonly site: FaultSite
  readonly index: number
  readonly connection?: number
  /** milliseconds since the injector was armed */
  readonly atMs: number
  /** the extra latency of a slow open or a slow statement */
  readonly delayMs?: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface FaultCounts {
  /** connect attempts seen while armed */
  readonly connectAttempts: number
  /** the pool's checks of a connection (each checkout, each statement joining a shared connection) seen while armed */
  readonly checks: number
  /** probes (the pool validating a connection before handing it out) seen while armed */
  readonly validations: number
  /** statements seen while armed */
  readonly statements: number
  readonly openTransient: number
  readonly openPermanent: number
  readonly slowOpen: number
  /** total extra latency of slow opens, in milliseconds */
  readonly slowOpenMs: number
  readonly die: number
  readonly ping: number
  readonly ioerr: number
  readonly busy: number
  readonly slowStatement: number
  /** total extra latency of slow statements, in milliseconds */
  readonly slowStatementMs: number
}

/**
 * What followed the faults of one kind.
 *
 * @since 0.1.0
 * @category models
 */
export interface FaultOutcome {
  /** connections the fault left unusable that the pool then closed (it opens another when one is needed) */
  readonly connectionsClosed: number
  /** workload operations a statement fault hit that completed all the same (the statement ran again, or was retried) */
  readonly operationsCompleted: number
  /** workload operations a statement fault hit that failed, by the key of their error ("SqlError(SQLITE_IOERR)") */
  readonly operationsFailed: Readonly<Record<string, number>>
}

/**
 * Workload operations by the connection their first statement ran on: one that had served an operation before (a
 * reuse), or a new one.
 *
 * @since 0.1.0
 * @category models
 */
export interface Served {
  readonly onNewConnection: number
  readonly onReusedConnection: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface FaultInjector {
  /** the connector to give the pool (`Layer.succeed(Connector.Connector, injector.connector)`) */
  readonly connector: Connector.Service
  /** faults apply from now on; before, connects and the connections' events pass through untouched (and uncounted) */
  readonly arm: Effect.Effect<void>
  /** faults stop (before the pool closes, so that its closing is not counted as what followed a fault) */
  readonly disarm: Effect.Effect<void>
  readonly counts: Effect.Effect<FaultCounts>
  /** every fault injected so far, in order */
  readonly events: Effect.Effect<ReadonlyArray<FaultEvent>>
  /** what followed the faults of each kind */
  readonly outcomes: Effect.Effect<Readonly<Record<FaultKind, FaultOutcome>>>
  readonly served: Effect.Effect<Served>
  /**
   * Closes the driver handle of every connection the injector opened that is still open, whatever holds it (idle in
   * the pool, kept by a lane, leased, inside a transaction): what a crash under the app does to the connections the
   * pool keeps. Not a drawn fault: not counted in `counts` nor `events`. Returns how many it closed.
   */
  readonly kill: Effect.Effect<number>
  /** runs `effect` as one workload operation: the faults its statements meet count against its outcome */
  readonly operation: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly seed: number
  /** the connector to wrap (default: the live one) */
  readonly connector?: Connector.Service | undefined
  /** the modelled cost of a statement in ms, slept on the clock before it runs (for the virtual clock; default 0) */
  readonly statementCostMs?: number | undefined
  /** the modelled cost of opening a connection in ms (for the virtual clock; default 0) */
  readonly connectCostMs?: number | undefined
}

/**
 * The counts of a run with no fault injected.
 *
 * @since 0.1.0
 * @category constants
 */
export const noFaults: FaultCounts = {
  connectAttempts: 0,
  checks: 0,
  validations: 0,
  statements: 0,
  openTransient: 0,
  openPermanent: 0,
  slowOpen: 0,
  slowOpenMs: 0,
  die: 0,
  ping: 0,
  ioerr: 0,
  busy: 0,
  slowStatement: 0,
  slowStatementMs: 0
}

/**
 * Every fault kind, in the order reports list them.
 *
 * @since 0.1.0
 * @category constants
 */
export const faultKinds: ReadonlyArray<FaultKind> = [
  "open-transient",
  "open-permanent",
  "slow-open",
  "die",
  "ping",
  "ioerr",
  "busy",
  "slow-statement"
]

/**
 * What followed no fault.
 *
 * @since 0.1.0
 * @category constants
 */
export const noOutcome: FaultOutcome = { connectionsClosed: 0, operationsCompleted: 0, operationsFailed: {} }

/**
 * The latency of a slow open: exponentially distributed with the given mean (from a uniform draw `u` in [0, 1)),
 * capped at 10 times the mean so a single draw cannot stall a run.
 *
 * @since 0.1.0
 * @category utils
 */
export const slowOpenLatency: (meanMs: number, u: number) => number = Faulty.slowLatency

/** The paths whose opening fails for real: a file in a directory that does not exist, a file that is no database. */
interface BadPaths {
  readonly missingDirectory: string
  readonly notADatabase: string
}

/** A scratch directory holding the bad paths, removed when the Scope closes. */
const makeBadPaths: Effect.Effect<BadPaths, SetupError, Scope.Scope> = Effect.map(
  Effect.acquireRelease(
    Effect.try({
      try: () => fs.mkdtempSync(path.join(os.tmpdir(), "sqlsim-faults-")),
      catch: (cause) =>
        new SetupError({
          filename: "(the fault injector's scratch directory)",
          reason: `cannot create it in the temporary directory ${os.tmpdir()} (${
            (cause as { code?: unknown }).code ?? String(cause)
          }); set TMPDIR to a directory you can write to`,
          cause
        })
    }),
    (created) => Effect.ignore(Effect.try(() => fs.rmSync(created, { recursive: true, force: true })))
  ),
  (directory) => {
    const notADatabase = path.join(directory, "not-a-database.db")
    // Any first page without SQLite's header makes SQLite answer SQLITE_NOTADB.
    fs.writeFileSync(notADatabase, Buffer.alloc(4096, "not a database\n"))
    return { missingDirectory: path.join(directory, "no-such-directory", "simulated.db"), notADatabase }
  }
)

type Mutable<T> = { -readonly [K in keyof T]: T[K] }

const countOf: Record<Faulty.ConnectionFault, keyof FaultCounts> = {
  "die": "die",
  "ping": "ping",
  "ioerr": "ioerr",
  "busy": "busy",
  "slow-statement": "slowStatement"
}

const chanceOf: Record<Faulty.Site, keyof FaultCounts> = {
  check: "checks",
  probe: "validations",
  statement: "statements"
}

/** What an injector has counted and injected since it was armed (before, nothing is counted). */
class Tally implements Faulty.Host {
  armedNow = false
  armedAt = 0
  /** the clock of the fiber that armed the injector: the run's (virtual, on virtual time) */
  clock: Clock.Clock | undefined = undefined
  /** connections opened, armed or not: each one's number */
  opened = 0
  readonly counts: Mutable<FaultCounts> = { ...noFaults }
  readonly events: Array<FaultEvent> = []
  readonly outcomes = new Map<
    FaultKind,
    { connectionsClosed: number; operationsCompleted: number; operationsFailed: Record<string, number> }
  >(
    faultKinds.map((kind) => [kind, { connectionsClosed: 0, operationsCompleted: 0, operationsFailed: {} }])
  )
  readonly served: Mutable<Served> = { onNewConnection: 0, onReusedConnection: 0 }
  writeFreeAtMs = 0
  /** connections open now (the pool has not closed them), for `kill` */
  readonly open = new Set<Faulty.Tracked>()

  constructor(readonly plan: FaultPlan, readonly seed: number, readonly statementCostMs: number) {}

  readonly armed = () => this.armedNow

  readonly chance = (site: Faulty.Site) => {
    this.counts[chanceOf[site]]++
  }

  readonly injected = (
    fault: Faulty.ConnectionFault,
    site: Faulty.Site,
    connection: Faulty.Tracked,
    delayMs?: number
  ) => {
    this.counts[countOf[fault]]++
    if (delayMs !== undefined) this.counts.slowStatementMs += delayMs
    this.record({ kind: fault, site, index: connection.events, connection: connection.number }, delayMs)
  }

  readonly serve = (reused: boolean) => {
    if (reused) this.served.onReusedConnection++
    else this.served.onNewConnection++
  }

  /** Records a fault at the time of the clock the injector was armed with (a check is synchronous, on any fiber). */
  record(event: Omit<FaultEvent, "atMs" | "delayMs">, delayMs?: number): void {
    const atMs = (this.clock?.unsafeCurrentTimeMillis() ?? this.armedAt) - this.armedAt
    this.events.push(delayMs === undefined ? { ...event, atMs } : { ...event, atMs, delayMs })
  }

  /** The pool closed `connection`: what followed the fault that broke it, if one did while armed. */
  closed(connection: Faulty.Tracked): void {
    this.open.delete(connection)
    if (this.armedNow && connection.brokenBy !== undefined) this.outcomes.get(connection.brokenBy)!.connectionsClosed++
  }

  /** An operation ended: what followed the faults its statements met. */
  settled(operation: Faulty.OperationState, exit: Exit.Exit<unknown, unknown>): void {
    for (const fault of operation.faults) {
      const outcome = this.outcomes.get(fault)!
      if (Exit.isSuccess(exit)) outcome.operationsCompleted++
      else {
        const key = failureKey(exit.cause)
        outcome.operationsFailed[key] = (outcome.operationsFailed[key] ?? 0) + 1
      }
    }
  }
}

/** Everything the wrapped connector's functions share. */
interface Injection {
  readonly plan: FaultPlan
  readonly seed: number
  readonly live: Connector.Service
  readonly badPaths: BadPaths
  readonly tally: Tally
  readonly connectCostMs: number
}

// Each decision has a generator of its own, seeded with the run's seed and the event's number: the n-th connect
// attempt gets the same decision whatever happened before it and whichever fiber makes it.
const decideConnect = ({ plan, seed }: Injection, index: number) =>
  Effect.gen(function*() {
    const random = Random.make(`${seed}/connect/${index}`)
    const failure = yield* random.next
    const slow = yield* random.next
    const latency = yield* random.next
    const open = failure < plan.openTransient
      ? "transient" as const
      : failure < plan.openTransient + plan.openPermanent
      ? "permanent" as const
      : undefined
    const delayMs = slow < plan.slowOpen ? slowOpenLatency(plan.slowOpenMs, latency) : undefined
    return { open, delayMs }
  })

/** Opens `filename` with the wrapped connector; the connection's events are subject to the plan. */
const openFor = (injection: Injection, connectOptions: Connector.ConnectOptions, filename: string) =>
  Effect.gen(function*() {
    // The handle lives in a child of the pool's connection scope, so a fault can close it on its own.
    const handleScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const live = yield* injection.live.connect({ ...connectOptions, filename }).pipe(
      Scope.extend(handleScope),
      Effect.tapErrorCause((cause) => Scope.close(handleScope, Exit.failCause(cause)))
    )
    const { connection, tracked } = Faulty.wrap(
      injection.tally,
      ++injection.tally.opened,
      connectOptions.readOnly,
      live,
      handleScope
    )
    injection.tally.open.add(tracked)
    yield* Effect.addFinalizer(() => Effect.sync(() => injection.tally.closed(tracked)))
    return connection
  })

/** A real open failure of a bad path, reported as the failure of the database the pool asked for. */
const failOpen = (injection: Injection, connectOptions: Connector.ConnectOptions, open: "transient" | "permanent") => {
  const filename = connectOptions.filename
  const badPath = open === "transient" ? injection.badPaths.missingDirectory : injection.badPaths.notADatabase
  return openFor(injection, connectOptions, badPath).pipe(
    Effect.mapError((error) =>
      new PoolError.ConnectError({ ...error, cause: error.cause, filename, reason: `${error.reason} (injected fault)` })
    ),
    // A bad path that opened after all (it must not): close it and report the fault anyway.
    Effect.flatMap(() =>
      Effect.fail(
        new PoolError.ConnectError({
          filename,
          attempts: 1,
          code: "UNKNOWN",
          transient: open === "transient",
          reason: "injected fault",
          elapsedMs: 0,
          cause: undefined
        })
      )
    )
  )
}

/** One connect attempt as the plan decides for its number: slowed down, failed, or passed through. */
const connectWithFaults = (injection: Injection, connectOptions: Connector.ConnectOptions) =>
  Effect.gen(function*() {
    const { counts } = injection.tally
    if (injection.connectCostMs > 0) yield* Effect.sleep(Duration.millis(injection.connectCostMs))
    if (!injection.tally.armedNow) return yield* openFor(injection, connectOptions, connectOptions.filename)
    const index = ++counts.connectAttempts
    const decision = yield* decideConnect(injection, index)
    if (decision.delayMs !== undefined) {
      counts.slowOpen++
      counts.slowOpenMs += decision.delayMs
      injection.tally.record({ kind: "slow-open", site: "connect", index }, decision.delayMs)
      yield* Effect.sleep(Duration.millis(decision.delayMs))
    }
    if (decision.open === undefined) return yield* openFor(injection, connectOptions, connectOptions.filename)
    if (decision.open === "transient") counts.openTransient++
    else counts.openPermanent++
    const kind = decision.open === "transient" ? "open-transient" : "open-permanent"
    injection.tally.record({ kind, site: "connect", index })
    return yield* failOpen(injection, connectOptions, decision.open)
  })

/**
 * Makes an injector in the current Scope (its scratch directory, holding the paths that fail for real, is removed
 * when the Scope closes).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (plan: FaultPlan, options: Options): Effect.Effect<FaultInjector, SetupError, Scope.Scope> =>
  Effect.gen(function*() {
    const live = options.connector ?? (yield* Connector.makeLive)
    const badPaths = yield* makeBadPaths
    const tally = new Tally(plan, options.seed, options.statementCostMs ?? 0)
    const injection: Injection = {
      plan,
      seed: options.seed,
      live,
      badPaths,
      tally,
      connectCostMs: options.connectCostMs ?? 0
    }
    return {
      connector: Connector.Connector.of({
        // The faults are the connections'; what the connector reports of its replicas is the wrapped one's.
        replication: live.replication,
        connect: (connectOptions) => connectWithFaults(injection, connectOptions)
      }),
      arm: Effect.map(Effect.clock, (clock) => {
        tally.armedNow = true
        tally.clock = clock
        tally.armedAt = clock.unsafeCurrentTimeMillis()
      }),
      disarm: Effect.sync(() => {
        tally.armedNow = false
      }),
      counts: Effect.sync(() => ({ ...tally.counts })),
      events: Effect.sync(() => tally.events.slice()),
      outcomes: Effect.sync(() =>
        Object.fromEntries(
          faultKinds.map((kind) => {
            const outcome = tally.outcomes.get(kind)!
            return [kind, { ...outcome, operationsFailed: { ...outcome.operationsFailed } }]
          })
        ) as Record<FaultKind, FaultOutcome>
      ),
      served: Effect.sync(() => ({ ...tally.served })),
      kill: Effect.suspend(() => {
        const open = [...tally.open]
        return Effect.as(Effect.forEach(open, (tracked) => tracked.closeHandle, { discard: true }), open.length)
      }),
      operation: (effect) =>
        Effect.suspend(() => {
          const state: Faulty.OperationState = { faults: [], connection: undefined }
          return effect.pipe(
            Effect.locally(Faulty.currentOperation, state),
            Effect.onExit((exit) => Effect.sync(() => tally.settled(state, exit)))
          )
        })
    }
  })

/**
 * The injector's connector as a Layer, for `SqlitePool.layer(config).pipe(Layer.provide(...))`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (injector: FaultInjector): Layer.Layer<Connector.Connector> =>
  Layer.succeed(Connector.Connector, injector.connector)
