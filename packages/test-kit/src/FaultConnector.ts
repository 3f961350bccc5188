/**
 * The tests' one fault connector: it delegates to the live connector and injects real faults. An attempt can be sent
 * to a path that really fails (a file in a directory that does not exist: transient; a directory: permanent
 * SQLITE_CANTOPEN; a file of random bytes: permanent SQLITE_NOTADB), so every failure the pool sees is one SQLite
 * and better-sqlite3 really produce, classified by the live connector. It records every attempt and every probe, and
 * keeps each connection's handle in a Scope of its own so a test can close it behind the pool's back.
 */
import { Connector } from "@sqlsim/sqlite-pool"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as path from "node:path"
import { randomBytes } from "./TempDir.js"

/** Where a faulty attempt is sent instead of the pool's file. */
export type Fault = "missingDirectory" | "directory" | "notADatabase"

/** One connect attempt the connector saw. */
export interface Attempt {
  /** 1, 2, 3 ... over every attempt */
  readonly number: number
  /** the clock (TestClock in `it.effect`) when the attempt started */
  readonly at: number
  /** the path opened: the pool's file, or the fault's */
  readonly filename: string
  readonly fault: Fault | undefined
  readonly outcome: "opened" | "failed"
  readonly code: string | undefined
}

export interface FaultConnector {
  /** provide it as `Connector.Connector` to the pool under test */
  readonly service: Connector.Service
  /** the fault every next attempt gets (undefined: connect for real); `faultFor` takes precedence */
  fault: Fault | undefined
  /** a per-attempt decision (for scripted or random faults); undefined falls back to `fault` */
  faultFor: ((attempt: number) => Fault | undefined) | undefined
  readonly attempts: ReadonlyArray<Attempt>
  readonly attemptCount: () => number
  readonly openedCount: () => number
  readonly failedCount: () => number
  /** probes (`validate`) the pool ran */
  readonly probes: () => number
  /** handles opened and not closed yet (by the pool or by `closeHandle`) */
  readonly openHandles: () => number
  /** the numbers (1-based) of connections whose handle is still open */
  readonly liveHandles: () => ReadonlyArray<number>
  /**
   * Closes the database handle of the `n`-th connection opened (1-based; with one pool per connector that is the
   * pool's connection id), as a crashed or killed connection would be. The pool is not told.
   */
  readonly closeHandle: (n: number) => Effect.Effect<void>
}

/** Makes a fault connector whose bad paths live in `directory` (a test's temporary directory). */
export const make = (
  directory: string,
  faultFor?: (attempt: number) => Fault | undefined
): Effect.Effect<FaultConnector> =>
  Effect.gen(function*() {
    const live = yield* Connector.makeLive
    const attempts: Array<Attempt> = []
    const handles: Array<{ readonly scope: Scope.CloseableScope; open: boolean }> = []
    let probes = 0
    const badPath = (fault: Fault): string => {
      switch (fault) {
        case "missingDirectory":
          return path.join(directory, "no-such-directory", "test.db")
        case "directory": {
          const target = path.join(directory, "a-directory")
          fs.mkdirSync(target, { recursive: true })
          return target
        }
        case "notADatabase": {
          const target = path.join(directory, "random.bin")
          if (!fs.existsSync(target)) fs.writeFileSync(target, randomBytes(8192))
          return target
        }
      }
    }
    const connector: FaultConnector = {
      fault: undefined,
      faultFor,
      attempts,
      attemptCount: () => attempts.length,
      openedCount: () => attempts.filter((attempt) => attempt.outcome === "opened").length,
      failedCount: () => attempts.filter((attempt) => attempt.outcome === "failed").length,
      probes: () => probes,
      openHandles: () => handles.filter((handle) => handle.open).length,
      liveHandles: () => handles.flatMap((handle, index) => handle.open ? [index + 1] : []),
      closeHandle: (n) =>
        Effect.suspend(() => {
          const handle = handles[n - 1]
          return handle === undefined
            ? Effect.dieMessage(`no connection #${n} was opened`)
            : Scope.close(handle.scope, Exit.void)
        }),
      service: Connector.Connector.of({
        connect: (options) =>
          Effect.gen(function*() {
            const number = attempts.length + 1
            const at = yield* Clock.currentTimeMillis
            const fault = connector.faultFor?.(number) ?? connector.fault
            const filename = fault === undefined ? options.filename : badPath(fault)
            // The handle lives in a child of the pool's connection scope: closing the child closes the real handle.
            const handleScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
            const exit = yield* Effect.exit(Scope.extend(live.connect({ ...options, filename }), handleScope))
            if (Exit.isFailure(exit)) {
              const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
              attempts.push({ number, at, filename, fault, outcome: "failed", code: failure?.code })
              yield* Scope.close(handleScope, exit)
              return yield* exit
            }
            attempts.push({ number, at, filename, fault, outcome: "opened", code: undefined })
            const handle = { scope: handleScope, open: true }
            handles.push(handle)
            yield* Scope.addFinalizer(handleScope, Effect.sync(() => handle.open = false))
            return {
              ...exit.value,
              validate: Effect.zipRight(Effect.sync(() => probes++), exit.value.validate)
            }
          })
      })
    }
    return connector
  })
