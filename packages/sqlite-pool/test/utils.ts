/**
 * Fixtures of the pool's tests: scoped temporary directories, a connector that counts and redirects opens (to real
 * bad paths, so every failure is one SQLite really produces), and helpers that let fibers run without sleeping.
 */
import { ConnectionPool, Connector, type PoolConfig, type PoolStats } from "@sqlsim/sqlite-pool"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** A fresh temporary directory, removed with everything in it when the Scope closes. */
export const tempDir: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "sqlsim-test-"))),
  (directory) => Effect.sync(() => fs.rmSync(directory, { recursive: true, force: true }))
)

/**
 * Where an open is sent instead of the pool's file: the path of a directory (SQLITE_CANTOPEN, permanent), a file in a
 * directory that does not exist (transient), or a file of random bytes (SQLITE_NOTADB, permanent).
 */
export type Redirect = "directory" | "missingDirectory" | "notADatabase"

/** One open the connector saw. */
export interface OpenRecord {
  /** 1, 2, 3 ... over every connect the pool asked for */
  readonly attempt: number
  /** the (test) clock when the attempt started */
  readonly at: number
  readonly filename: string
  readonly outcome: "opened" | "failed"
  readonly code: string | undefined
}

/** A connector that delegates to the live one and records every attempt. */
export interface TestConnector {
  readonly service: Connector.Service
  readonly opens: ReadonlyArray<OpenRecord>
  readonly attempts: () => number
  readonly opened: () => number
  readonly failed: () => number
  /** database handles opened and not closed yet */
  readonly openHandles: () => number
  /** probes (`validate`) the pool ran */
  readonly probes: () => number
  /**
   * Closes the better-sqlite3 handle of the `n`-th connection opened (1-based, which is the pool's connection id)
   * behind the pool's back, as a crashed or killed connection would be.
   */
  readonly closeHandle: (n: number) => Effect.Effect<void>
}

/**
 * Wraps the live connector. `redirect(attempt)` may send an attempt to a real bad path: the failure that follows is
 * the one better-sqlite3 and SQLite produce for that path, classified by the live connector.
 */
export const makeTestConnector = (
  directory: string,
  redirect: (attempt: number) => Redirect | undefined = () => undefined
): Effect.Effect<TestConnector> =>
  Effect.gen(function*() {
    const live = yield* Connector.makeLive
    const opens: Array<OpenRecord> = []
    const handles: Array<Scope.CloseableScope> = []
    let attempts = 0
    let openHandles = 0
    let probes = 0
    const badPath = (kind: Redirect): string => {
      switch (kind) {
        case "directory": {
          const target = path.join(directory, "a-directory")
          fs.mkdirSync(target, { recursive: true })
          return target
        }
        case "missingDirectory":
          return path.join(directory, "no-such-directory", "test.db")
        case "notADatabase": {
          const target = path.join(directory, "random.bin")
          if (!fs.existsSync(target)) fs.writeFileSync(target, randomBytes(8192))
          return target
        }
      }
    }
    const service = Connector.Connector.of({
      connect: (options) =>
        Effect.gen(function*() {
          const attempt = ++attempts
          const at = yield* Clock.currentTimeMillis
          const kind = redirect(attempt)
          const filename = kind === undefined ? options.filename : badPath(kind)
          const record = (outcome: OpenRecord["outcome"], code: string | undefined) =>
            Effect.sync(() => opens.push({ attempt, at, filename, outcome, code }))
          // The handle lives in a child of the pool's connection scope, so that a test can close it on its own.
          const handleScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
          return yield* live.connect({ ...options, filename }).pipe(
            Scope.extend(handleScope),
            Effect.tap(() =>
              Effect.zipRight(
                record("opened", undefined),
                Effect.sync(() => {
                  handles.push(handleScope)
                  openHandles++
                })
              )
            ),
            Effect.tap(() => Scope.addFinalizer(handleScope, Effect.sync(() => openHandles--))),
            Effect.tapError((error) => record("failed", error.code)),
            Effect.map((connection) => ({
              ...connection,
              validate: Effect.zipRight(Effect.sync(() => probes++), connection.validate)
            }))
          )
        })
    })
    return {
      service,
      opens,
      attempts: () => attempts,
      opened: () => opens.filter((open) => open.outcome === "opened").length,
      failed: () => opens.filter((open) => open.outcome === "failed").length,
      openHandles: () => openHandles,
      probes: () => probes,
      closeHandle: (n) =>
        Effect.suspend(() => {
          const handle = handles[n - 1]
          return handle === undefined
            ? Effect.dieMessage(`no connection #${n} was opened`)
            : Scope.close(handle, Exit.void)
        })
    }
  })

/** Cryptographically random bytes: certainly not a SQLite header. */
export const randomBytes = (size: number): Buffer => {
  const bytes = Buffer.alloc(size)
  for (let offset = 0; offset < size; offset += 65536) {
    globalThis.crypto.getRandomValues(bytes.subarray(offset, Math.min(size, offset + 65536)))
  }
  return bytes
}

/** Lets every other fiber and pending I/O callback run once (a turn of the event loop, not a wait for time). */
export const yieldEventLoop: Effect.Effect<void> = Effect.promise(() =>
  new Promise<void>((resolve) => setImmediate(resolve))
)

/**
 * Gives other fibers turns of the event loop until `condition` holds; fails the test if it never does. This is how a
 * test waits for the pool to reach a state without sleeping on the clock.
 */
export const waitUntil = <E, R>(
  condition: Effect.Effect<boolean, E, R>,
  description: string,
  turns = 2000
): Effect.Effect<void, E, R> =>
  Effect.gen(function*() {
    for (let turn = 0; turn < turns; turn++) {
      if (yield* condition) return
      yield* yieldEventLoop
    }
    return yield* Effect.dieMessage(`never happened: ${description}`)
  })

/**
 * For tests on the real clock: checks `condition` every 10 ms until it holds; fails the test if it does not within
 * `limitMillis` (a generous bound, not a measurement).
 */
export const eventually = <E, R>(
  condition: Effect.Effect<boolean, E, R>,
  description: string,
  limitMillis = 10_000
): Effect.Effect<void, E, R> =>
  Effect.gen(function*() {
    const deadline = Date.now() + limitMillis
    while (!(yield* condition)) {
      if (Date.now() > deadline) {
        return yield* Effect.dieMessage(`never happened within ${limitMillis} ms: ${description}`)
      }
      yield* Effect.sleep("10 millis")
    }
  })

/**
 * Moves the TestClock forward in steps of `step` until `condition` holds (at most `limit` in total), letting fibers
 * run after every step. Returns how far the clock moved.
 */
export const advanceUntil = <E, R>(
  condition: Effect.Effect<boolean, E, R>,
  options: { readonly step: string; readonly limit: string; readonly description: string }
): Effect.Effect<number, E, R> =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    const stepMillis = parseMillis(options.step)
    const limitMillis = parseMillis(options.limit)
    while (!(yield* condition)) {
      const now = yield* Clock.currentTimeMillis
      if (now - start >= limitMillis) {
        return yield* Effect.dieMessage(`never happened within ${options.limit}: ${options.description}`)
      }
      yield* TestClock.adjust(stepMillis)
      yield* yieldEventLoop
    }
    return (yield* Clock.currentTimeMillis) - start
  })

const parseMillis = (text: string): number => {
  const match = /^(\d+) (millis|seconds?|minutes?)$/.exec(text)
  if (match === null) throw new Error(`unsupported duration in a test: ${text}`)
  const unit = match[2] === "millis" ? 1 : match[2]!.startsWith("second") ? 1000 : 60_000
  return Number(match[1]) * unit
}

/** The three invariants API.md states for every instant. */
export const invariantsHold = (stats: PoolStats.PoolStats): boolean =>
  stats.inUse + stats.idle === stats.open &&
  stats.created - stats.closed === stats.open &&
  stats.acquired === stats.released + stats.inUse &&
  stats.open >= 0 && stats.idle >= 0 && stats.inUse >= 0 && stats.waiting >= 0

/** A pool on a file in a fresh temporary directory, opening its connections through a `TestConnector`. */
export const makeTestPool = (
  input: PoolConfig.Input = {},
  redirect?: (attempt: number) => Redirect | undefined
) =>
  Effect.gen(function*() {
    const directory = yield* tempDir
    const filename = input.filename ?? path.join(directory, "test.db")
    const connector = yield* makeTestConnector(directory, redirect)
    const pool = yield* ConnectionPool.make({ ...input, filename }).pipe(
      Effect.provideService(Connector.Connector, connector.service)
    )
    return { pool, connector, directory, filename }
  })
