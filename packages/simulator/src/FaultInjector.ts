/**
 * A fault-injecting `Connector`: it wraps the live connector of `@sqlsim/sqlite-pool` and, as a `FaultPlan` asks,
 * fails connect attempts, slows them down, kills connections while they sit idle and fails their health pings.
 *
 * Every fault is a real one where SQLite can produce it: a transient open failure opens a path in a directory that
 * does not exist (SQLite's own SQLITE_CANTOPEN), a permanent one opens a file that is not a database (SQLITE_NOTADB),
 * and a dead connection has its better-sqlite3 handle really closed, so the pool's validation really fails.
 *
 * Decisions come from Effect `Random` generators seeded with the run's seed and the event's number: the n-th connect
 * attempt and the n-th validation get the same decision in every run with the same seed, whatever the timing and
 * whichever fiber meets them.
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
import { SetupError } from "./SimulationError.js"

/**
 * @since 0.1.0
 * @category models
 */
export type FaultKind = "open-transient" | "open-permanent" | "slow-open" | "die-idle" | "ping-fail"

/**
 * One injected fault. `index` is the number of the connect attempt (open faults) or of the validation (idle faults)
 * it hit, counted from 1 since the injector was armed.
 *
 * @since 0.1.0
 * @category models
 */
export interface FaultEvent {
  readonly kind: FaultKind
  readonly index: number
  /** milliseconds since the injector was armed */
  readonly atMs: number
  /** the extra latency of a slow open */
  readonly delayMs?: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface FaultCounts {
  /** connect attempts seen while armed */
  readonly connectAttempts: number
  /** validations (the pool probing a connection before handing it out) seen while armed */
  readonly validations: number
  readonly openTransient: number
  readonly openPermanent: number
  readonly slowOpen: number
  /** total extra latency of slow opens, in milliseconds */
  readonly slowOpenMs: number
  readonly dieIdle: number
  readonly pingFail: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface FaultInjector {
  /** the connector to give the pool (`Layer.succeed(Connector.Connector, injector.connector)`) */
  readonly connector: Connector.Service
  /** faults apply from now on; before, connects and validations pass through untouched (and are not counted) */
  readonly arm: Effect.Effect<void>
  readonly counts: Effect.Effect<FaultCounts>
  /** every fault injected so far, in order */
  readonly events: Effect.Effect<ReadonlyArray<FaultEvent>>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly seed: number
  /** the connector to wrap (default: the live one) */
  readonly connector?: Connector.Service | undefined
}

/**
 * The counts of a run with no fault injected.
 *
 * @since 0.1.0
 * @category constants
 */
export const noFaults: FaultCounts = {
  connectAttempts: 0,
  validations: 0,
  openTransient: 0,
  openPermanent: 0,
  slowOpen: 0,
  slowOpenMs: 0,
  dieIdle: 0,
  pingFail: 0
}

/**
 * The latency of a slow open: exponentially distributed with the given mean (from a uniform draw `u` in [0, 1)),
 * capped at 10 times the mean so a single draw cannot stall a run.
 *
 * @since 0.1.0
 * @category utils
 */
export const slowOpenLatency = (meanMs: number, u: number): number => Math.min(-meanMs * Math.log(1 - u), 10 * meanMs)

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

/** What an injector has counted and injected since it was armed (before, nothing is counted). */
class Tally {
  armed = false
  armedAt = 0
  readonly counts: { -readonly [K in keyof FaultCounts]: FaultCounts[K] } = { ...noFaults }
  readonly events: Array<FaultEvent> = []

  record(kind: FaultKind, index: number, delayMs?: number): Effect.Effect<void> {
    return Effect.map(Clock.currentTimeMillis, (now) => {
      const atMs = now - this.armedAt
      this.events.push(delayMs === undefined ? { kind, index, atMs } : { kind, index, atMs, delayMs })
    })
  }
}

/** Everything the wrapped connector's functions share. */
interface Injection {
  readonly plan: FaultPlan
  readonly seed: number
  readonly live: Connector.Service
  readonly badPaths: BadPaths
  readonly tally: Tally
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

const decideValidation = ({ plan, seed }: Injection, index: number) =>
  Effect.map(
    Random.make(`${seed}/validate/${index}`).next,
    (u) => u < plan.dieIdle ? "die" as const : u < plan.dieIdle + plan.pingFail ? "ping" as const : undefined
  )

/** The connection with its probe subject to the plan's idle faults (a dead handle, a failed ping). */
const withValidationFaults = (
  injection: Injection,
  connection: Connector.Connection,
  handleScope: Scope.CloseableScope
): Connector.Connection => ({
  ...connection,
  validate: Effect.suspend(() => {
    const { counts } = injection.tally
    if (!injection.tally.armed) return connection.validate
    const index = ++counts.validations
    return Effect.flatMap(decideValidation(injection, index), (decision) => {
      if (decision === "die") {
        // The connection died while idle: close its handle for real, then let the real probe find out.
        counts.dieIdle++
        return injection.tally.record("die-idle", index).pipe(
          Effect.zipRight(Scope.close(handleScope, Exit.void)),
          Effect.zipRight(connection.validate)
        )
      }
      if (decision === "ping") {
        counts.pingFail++
        return Effect.zipRight(
          injection.tally.record("ping-fail", index),
          Effect.fail({ reason: "the health ping failed (injected fault)" })
        )
      }
      return connection.validate
    })
  })
})

/** Opens `filename` with the wrapped connector; the connection's probe is subject to the idle faults. */
const openFor = (injection: Injection, connectOptions: Connector.ConnectOptions, filename: string) =>
  Effect.gen(function*() {
    // The handle lives in a child of the pool's connection scope, so a fault can close it on its own.
    const handleScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const connection = yield* injection.live.connect({ ...connectOptions, filename }).pipe(
      Scope.extend(handleScope),
      Effect.tapErrorCause((cause) => Scope.close(handleScope, Exit.failCause(cause)))
    )
    return withValidationFaults(injection, connection, handleScope)
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
    if (!injection.tally.armed) return yield* openFor(injection, connectOptions, connectOptions.filename)
    const index = ++counts.connectAttempts
    const decision = yield* decideConnect(injection, index)
    if (decision.delayMs !== undefined) {
      counts.slowOpen++
      counts.slowOpenMs += decision.delayMs
      yield* injection.tally.record("slow-open", index, decision.delayMs)
      yield* Effect.sleep(Duration.millis(decision.delayMs))
    }
    if (decision.open === undefined) return yield* openFor(injection, connectOptions, connectOptions.filename)
    if (decision.open === "transient") counts.openTransient++
    else counts.openPermanent++
    yield* injection.tally.record(decision.open === "transient" ? "open-transient" : "open-permanent", index)
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
    const tally = new Tally()
    const injection: Injection = { plan, seed: options.seed, live, badPaths, tally }
    return {
      connector: Connector.Connector.of({
        // The faults are the connections'; what the connector reports of its replicas is the wrapped one's.
        replication: live.replication,
        connect: (connectOptions) => connectWithFaults(injection, connectOptions)
      }),
      arm: Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.sync(() => {
          tally.armed = true
          tally.armedAt = now
        })),
      counts: Effect.sync(() => ({ ...tally.counts })),
      events: Effect.sync(() => tally.events.slice())
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
