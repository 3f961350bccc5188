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
    const directory = yield* Effect.acquireRelease(
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
    )
    const missingDirectoryPath = path.join(directory, "no-such-directory", "simulated.db")
    const notADatabasePath = path.join(directory, "not-a-database.db")
    // Any first page without SQLite's header makes SQLite answer SQLITE_NOTADB.
    fs.writeFileSync(notADatabasePath, Buffer.alloc(4096, "not a database\n"))

    let armed = false
    let armedAt = 0
    const counts: { -readonly [K in keyof FaultCounts]: FaultCounts[K] } = { ...noFaults }
    const events: Array<FaultEvent> = []

    const record = (kind: FaultKind, index: number, delayMs?: number) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        events.push(
          delayMs === undefined ? { kind, index, atMs: now - armedAt } : { kind, index, atMs: now - armedAt, delayMs }
        )
      })

    // Each decision has a generator of its own, seeded with the run's seed and the event's number: the n-th connect
    // attempt gets the same decision whatever happened before it and whichever fiber makes it.
    const decideConnect = (index: number) =>
      Effect.gen(function*() {
        const random = Random.make(`${options.seed}/connect/${index}`)
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

    const decideValidation = (index: number) =>
      Effect.map(
        Random.make(`${options.seed}/validate/${index}`).next,
        (u) => u < plan.dieIdle ? "die" as const : u < plan.dieIdle + plan.pingFail ? "ping" as const : undefined
      )

    const wrap = (connection: Connector.Connection, handleScope: Scope.CloseableScope): Connector.Connection => ({
      ...connection,
      validate: Effect.suspend(() => {
        if (!armed) return connection.validate
        const index = ++counts.validations
        return Effect.flatMap(decideValidation(index), (decision) => {
          if (decision === "die") {
            // The connection died while idle: close its handle for real, then let the real probe find out.
            counts.dieIdle++
            return record("die-idle", index).pipe(
              Effect.zipRight(Scope.close(handleScope, Exit.void)),
              Effect.zipRight(connection.validate)
            )
          }
          if (decision === "ping") {
            counts.pingFail++
            return Effect.zipRight(
              record("ping-fail", index),
              Effect.fail({ reason: "the health ping failed (injected fault)" })
            )
          }
          return connection.validate
        })
      })
    })

    const openFor = (connectOptions: Connector.ConnectOptions, filename: string) =>
      Effect.gen(function*() {
        // The handle lives in a child of the pool's connection scope, so a fault can close it on its own.
        const handleScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
        const connection = yield* live.connect({ ...connectOptions, filename }).pipe(
          Scope.extend(handleScope),
          Effect.tapErrorCause((cause) => Scope.close(handleScope, Exit.failCause(cause)))
        )
        return wrap(connection, handleScope)
      })

    const injected = (error: PoolError.ConnectError, filename: string) =>
      new PoolError.ConnectError({ ...error, cause: error.cause, filename, reason: `${error.reason} (injected fault)` })

    const connector = Connector.Connector.of({
      // The faults are the connections'; what the connector reports of its replicas is the wrapped one's.
      replication: live.replication,
      connect: (connectOptions) =>
        Effect.gen(function*() {
          if (!armed) return yield* openFor(connectOptions, connectOptions.filename)
          const index = ++counts.connectAttempts
          const decision = yield* decideConnect(index)
          if (decision.delayMs !== undefined) {
            counts.slowOpen++
            counts.slowOpenMs += decision.delayMs
            yield* record("slow-open", index, decision.delayMs)
            yield* Effect.sleep(Duration.millis(decision.delayMs))
          }
          if (decision.open === undefined) return yield* openFor(connectOptions, connectOptions.filename)
          if (decision.open === "transient") counts.openTransient++
          else counts.openPermanent++
          yield* record(decision.open === "transient" ? "open-transient" : "open-permanent", index)
          const badPath = decision.open === "transient" ? missingDirectoryPath : notADatabasePath
          return yield* openFor(connectOptions, badPath).pipe(
            Effect.mapError((error) => injected(error, connectOptions.filename)),
            // A bad path that opened after all (it must not): close it and report the fault anyway.
            Effect.flatMap(() =>
              Effect.fail(
                new PoolError.ConnectError({
                  filename: connectOptions.filename,
                  attempts: 1,
                  code: "UNKNOWN",
                  transient: decision.open === "transient",
                  reason: "injected fault",
                  elapsedMs: 0,
                  cause: undefined
                })
              )
            )
          )
        })
    })

    return {
      connector,
      arm: Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.sync(() => {
          armed = true
          armedAt = now
        })),
      counts: Effect.sync(() => ({ ...counts })),
      events: Effect.sync(() => events.slice())
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
