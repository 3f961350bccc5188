/**
 * Real lock contention: a second OS process (`lockHolder.mjs`, plain better-sqlite3) that takes SQLite's write lock
 * with `BEGIN EXCLUSIVE` in bursts, so the SQLITE_BUSY the pool meets comes from SQLite itself, not from a simulation.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process"
import type { Readable } from "node:stream"
import { fileURLToPath } from "node:url"
import type { LockHolderPlan } from "./FaultPlan.js"
import { LockHolderError } from "./SimulationError.js"

const script = fileURLToPath(new URL("./lockHolder.mjs", import.meta.url))

/** How long the process may take to start and open the database. */
const startTimeoutMs = 15_000
/** How long stopping waits for the process before killing it. */
const stopTimeoutMs = 5_000

/**
 * A running lock holder.
 *
 * @since 0.1.0
 * @category models
 */
export interface LockHolder {
  /** the process id */
  readonly pid: number
  /** bursts started so far (times the process took the write lock) */
  readonly bursts: Effect.Effect<number>
  /** true while the process holds the write lock */
  readonly holding: Effect.Effect<boolean>
  /** completes once the process holds the write lock (at once if it holds it now) */
  readonly whenHolding: Effect.Effect<void>
}

/** Calls `onLine` with each complete line `stream` writes. */
const readLines = (stream: Readable, onLine: (line: string) => void): void => {
  let buffered = ""
  stream.on("data", (chunk: Buffer) => {
    buffered += chunk.toString()
    const lines = buffered.split("\n")
    buffered = lines.pop() ?? ""
    for (const line of lines) onLine(line)
  })
}

/**
 * Asks the process to stop (SIGTERM, and its stdin closed) and waits until it has exited, killing it after
 * `stopTimeoutMs`. A bounded wait built from a timer: a finalizer is uninterruptible, so an Effect timeout would never
 * fire.
 */
const stopProcess = (child: ChildProcessWithoutNullStreams, exited: Promise<void>): Effect.Effect<void> =>
  Effect.async<void>((done) => {
    if (child.exitCode !== null || child.signalCode !== null) return done(Effect.void)
    const killTimer = setTimeout(() => child.kill("SIGKILL"), stopTimeoutMs)
    void exited.then(() => {
      clearTimeout(killTimer)
      done(Effect.void)
    })
    child.kill("SIGTERM")
    child.stdin.end()
  })

/**
 * Starts the lock holder on `filename` and waits until it has opened the database; stops it (and waits for it) when
 * the Scope closes. The process also stops by itself if this one dies, since its stdin then closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const start = (
  filename: string,
  plan: LockHolderPlan
): Effect.Effect<LockHolder, LockHolderError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ readonly holder: LockHolder; readonly stop: Effect.Effect<void> }, LockHolderError>((resume) => {
      const child = spawn(process.execPath, [script, filename, String(plan.holdMs), String(plan.everyMs)], {
        stdio: ["pipe", "pipe", "pipe"]
      })
      let bursts = 0
      let holding = false
      let ready = false
      let stderr = ""
      const holdingWaiters = new Set<() => void>()
      const exited = new Promise<void>((done) => child.once("exit", () => done()))
      const fail = (reason: string, cause?: unknown) => {
        if (ready) return
        ready = true
        clearTimeout(startTimer)
        child.kill("SIGKILL")
        resume(Effect.fail(new LockHolderError({ reason, cause })))
      }
      const startTimer = setTimeout(
        () => fail(`it did not open ${filename} within ${startTimeoutMs / 1000} seconds`),
        startTimeoutMs
      )
      child.stderr.on("data", (chunk: Buffer) => {
        stderr = (stderr + chunk.toString()).slice(-2000)
      })
      readLines(child.stdout, (line) => {
        if (line.startsWith("locked ")) {
          bursts++
          holding = true
          for (const wake of holdingWaiters) wake()
          holdingWaiters.clear()
        } else if (line.startsWith("released ")) {
          holding = false
        } else if (line === "ready" && !ready) {
          ready = true
          clearTimeout(startTimer)
          resume(Effect.succeed({ holder, stop: stopProcess(child, exited) }))
        }
      })
      child.once("error", (error) => fail(`cannot start ${process.execPath}: ${error.message}`, error))
      child.once("exit", (code, signal) => {
        const lastLine = stderr.trim().split("\n").pop() ?? ""
        fail(`it exited (${signal ?? `code ${code}`}) before opening ${filename}${lastLine ? `: ${lastLine}` : ""}`)
      })
      const holder: LockHolder = {
        pid: child.pid ?? -1,
        bursts: Effect.sync(() => bursts),
        holding: Effect.sync(() => holding),
        whenHolding: Effect.async<void>((wake) => {
          if (holding) return wake(Effect.void)
          const waiter = () => wake(Effect.void)
          holdingWaiters.add(waiter)
          return Effect.sync(() => holdingWaiters.delete(waiter))
        })
      }
      return Effect.sync(() => {
        clearTimeout(startTimer)
        child.kill("SIGKILL")
      })
    }),
    ({ stop }) => stop
  ).pipe(Effect.map(({ holder }) => holder))
