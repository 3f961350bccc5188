/**
 * Fixtures of the simulator's tests: scoped temporary directories and turns of the event loop.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** A fresh temporary directory, removed with everything in it when the Scope closes. */
export const tempDir: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "sqlsim-simulator-test-"))),
  (directory) => Effect.sync(() => fs.rmSync(directory, { recursive: true, force: true }))
)

/** A database path in a fresh temporary directory (the file does not exist yet). */
export const tempDatabase: Effect.Effect<string, never, Scope.Scope> = Effect.map(
  tempDir,
  (directory) => path.join(directory, "test.db")
)

/** Lets every other fiber and pending I/O callback run once (a turn of the event loop, not a wait for time). */
export const yieldEventLoop: Effect.Effect<void> = Effect.promise(() =>
  new Promise<void>((resolve) => setImmediate(resolve))
)

/** True while a process with this id exists. */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * Moves the TestClock forward in steps of `stepMillis` until `done` holds (at most `limitMillis` in total), letting
 * fibers run after every step. Returns how far the clock moved.
 */
export const advanceUntil = (
  done: Effect.Effect<boolean>,
  stepMillis: number,
  limitMillis: number
): Effect.Effect<number> =>
  Effect.gen(function*() {
    let moved = 0
    yield* yieldEventLoop
    while (!(yield* done)) {
      if (moved >= limitMillis) return yield* Effect.dieMessage(`not done after ${limitMillis} ms of TestClock time`)
      yield* TestClock.adjust(stepMillis)
      moved += stepMillis
      yield* yieldEventLoop
    }
    return moved
  })
