/**
 * One SQLite connection in a worker thread (`readerWorker.mjs`), seen from the main thread, as a state machine:
 * the worker's lifecycle is one tagged value (`Opening`, `Open`, `Stopping`, `Exited`), each worker event has one
 * handler, and one failure path (`#setClosed`) fails every request waiting and ends the worker. Needs nothing from
 * Effect: `threadConnector.ts` builds the `@effect/sql` connection over it.
 *
 * Ending a worker that may be running a statement: with the interrupt extension (interrupt.ts) the shared stop flag
 * tells it to run nothing more, sqlite3_interrupt() stops the statement at SQLite's next jump, and the worker closes
 * its database and ends by itself. Without it, `terminate()`, which takes effect at the statement's next row.
 *
 * The process's exit: Node joins every worker thread before it exits (`process.exit` included), and a thread inside
 * one SQLite step cannot be joined until the step ends, minutes for a long aggregate. So at the exit, each thread
 * that may be running a statement is interrupted, and the exit waits (a second at most) until it is out of SQLite.
 * Without the extension nothing can take it out: a statement that does not end within that second makes the process
 * end itself with SIGKILL (its exit code is lost: 137), and `exit` listeners added after the first worker started do
 * not run then. (Only a pool on the main thread does this.)
 *
 * @internal
 */
import { isMainThread, Worker } from "node:worker_threads"
import type { Interrupter } from "./interrupt.js"
import { RequestTable } from "./requestTable.js"
import { type Answer, type OpenAnswer, type Request, revive, type WorkerSettings } from "./workerProtocol.js"

/** Where the worker is in its life. */
export type Lifecycle =
  | { readonly _tag: "Opening" }
  | { readonly _tag: "Open"; readonly interruptId: number | undefined }
  /** given up (stopped, failed, or closing): it runs nothing more and is on its way out */
  | { readonly _tag: "Stopping"; readonly reason: string }
  | { readonly _tag: "Exited"; readonly reason: string }

/** How the worker's opening ended. */
export type OpenOutcome =
  | { readonly _tag: "Opened" }
  /** the set-up failed: the driver's (or `sqliteSetup`'s) error, revived */
  | { readonly _tag: "Failed"; readonly cause: Error }
  /** the worker failed or exited before it answered */
  | { readonly _tag: "Crashed"; readonly reason: string; readonly cause: unknown }

/** Why a request was failed without an answer. */
export type RequestFailure =
  /** the connection was unusable already: the request was not sent */
  | { readonly _tag: "NotSent"; readonly reason: string }
  /** the worker will not answer, and the request had not started: running it elsewhere is safe */
  | { readonly _tag: "NeverRan"; readonly reason: string }
  /** the worker will not answer, and the request may have run */
  | { readonly _tag: "Lost"; readonly reason: string; readonly cause: unknown }
  /** the request could not be sent (a parameter that structured clone refuses) */
  | { readonly _tag: "NotSendable"; readonly cause: unknown }

const workerUrl = new URL("./readerWorker.mjs", import.meta.url)

/** the workers alive in this process */
const running = new Set<Worker>()

/** The workers alive in this process, for tests that stop them from outside the pool. */
export const liveWorkers = (): ReadonlyArray<Worker> => [...running]

/** the connections whose thread may be inside a statement (sent one, and has neither answered all nor exited) */
const mayBeRunning = new Set<WorkerConnection>()

export class WorkerConnection {
  /** the thread; its events drive the state below */
  readonly worker: Worker
  /** where the worker is in its life */
  #state: Lifecycle = { _tag: "Opening" }
  /** requests sent and not answered, oldest first: the worker runs them one at a time in that order */
  readonly #requests = new RequestTable<Answer, RequestFailure>()
  /** when the worker last answered a request (performance.now()) */
  #answeredAt = -Infinity
  /** sqlite3_interrupt, where it could be built */
  readonly #interrupter: Interrupter | undefined
  /**
   * shared with the worker: [0] is 1 once this side has given the connection up, so that it runs nothing more; [1] is
   * 1 while the worker handles a message (set by the worker)
   */
  readonly #stopFlag = new Int32Array(new SharedArrayBuffer(8))
  /** settles `opened`; does nothing once it has */
  #settleOpen: (outcome: OpenOutcome) => void = () => {}
  /** how the opening ended */
  readonly opened: Promise<OpenOutcome>
  /** resolves when the thread has exited */
  readonly #exited: Promise<void>
  /** whether sqlite3_interrupt was called on this connection when it was given up (else it was terminated) */
  #interrupted = false
  /** calls sqlite3_interrupt again until the thread has exited (see `#interrupt`) */
  #interruptAgain: ReturnType<typeof setInterval> | undefined
  /** whether the process's `exit` listener is installed (once, by the first worker) */
  static #exitListenerInstalled = false

  /** Starts the worker; throws what `new Worker` throws. */
  constructor(settings: Omit<WorkerSettings, "stopFlag" | "interruptExtension">, interrupter: Interrupter | undefined) {
    this.#interrupter = interrupter
    this.opened = new Promise((resolve) => (this.#settleOpen = resolve))
    const workerData: WorkerSettings = {
      ...settings,
      interruptExtension: interrupter?.extension,
      stopFlag: this.#stopFlag.buffer as SharedArrayBuffer
    }
    // The worker is plain JavaScript: it needs none of the loaders (tsx, vitest) the main thread runs with, and
    // starts faster without them.
    this.worker = new Worker(workerUrl, { workerData, execArgv: [] })
    this.#exited = new Promise((resolve) => this.worker.once("exit", () => resolve()))
    this.worker.on("message", (message: Answer | OpenAnswer) => this.#onMessage(message))
    this.worker.on("error", (error) => this.#onError(error))
    this.worker.on("messageerror", (error) => this.#onMessageError(error))
    this.worker.on("exit", (code) => this.#onExit(code))
    running.add(this.worker)
    WorkerConnection.#installExitListener()
    // Like a main-thread handle, an idle connection does not keep the process alive; one running a request does.
    this.worker.unref()
  }

  get state(): Lifecycle {
    return this.#state
  }

  /** Why the connection can no longer be used, or undefined while it is opening or open. */
  closedReason(): string | undefined {
    return this.#state._tag === "Stopping" || this.#state._tag === "Exited" ? this.#state.reason : undefined
  }

  /** Open, idle, and answered within the last `millis`: known to work without a probe. */
  answeredWithin(millis: number): boolean {
    return this.#state._tag === "Open" && this.#requests.size === 0 && performance.now() - this.#answeredAt < millis
  }

  /**
   * Sends a request; `resolve` gets the worker's answer (which may say the statement failed), `reject` a
   * `RequestFailure`. Returns the request's id, for `cancel`, or undefined when it was not sent.
   */
  send(request: Request, resolve: (answer: Answer) => void, reject: (failure: RequestFailure) => void) {
    const reason = this.closedReason()
    if (reason !== undefined) {
      reject({ _tag: "NotSent", reason })
      return undefined
    }
    const id = this.#requests.add({ resolve, reject })
    this.worker.ref()
    try {
      this.worker.postMessage({ ...request, id })
      mayBeRunning.add(this)
    } catch (cause) {
      // Nothing was sent.
      this.#requests.reject(id, { _tag: "NotSendable", cause })
      this.#unrefWhenIdle()
      return undefined
    }
    return id
  }

  /**
   * The caller gave up on request `id` (an interrupted fiber): the worker cannot be told to skip one request, so it
   * is stopped with `reason`; the requests waiting fail, those that had not started as never run.
   */
  cancel(id: number, reason: string): void {
    // Once it is withdrawn, the oldest left is still running only if the cancelled one was queued behind it.
    const wasRunning = this.#requests.isOldest(id)
    if (this.#requests.withdraw(id)) this.stop(reason, !wasRunning)
  }

  /** Gives the connection up: every request waiting fails (the oldest as lost if it may have run), the worker ends. */
  stop(reason: string, oldestMayHaveRun = true): void {
    if (this.closedReason() !== undefined) return
    this.#setClosed(reason, reason, undefined, oldestMayHaveRun)
  }

  /**
   * Closes the connection and waits, at most `timeoutMillis` twice, for the thread to exit: gently when idle (the
   * worker closes its database and ends), else by stopping it. A thread still inside one SQLite step after that ends
   * at its next row; it is unreferenced so as not to keep the process alive.
   */
  async close(timeoutMillis: number): Promise<void> {
    if (this.#state._tag === "Exited") return
    if (this.closedReason() === undefined) {
      if (this.#requests.size === 0) {
        this.#state = { _tag: "Stopping", reason: "the connection was closed" }
        this.worker.postMessage({ op: "close" })
      } else {
        const reason = "the connection was closed while a statement ran on it"
        this.#setClosed(reason, reason, undefined, true)
      }
    }
    if (await this.#exitedWithin(timeoutMillis)) return
    void this.worker.terminate()
    if (!(await this.#exitedWithin(timeoutMillis))) this.worker.unref()
  }

  #onMessage(message: Answer | OpenAnswer): void {
    if ("type" in message) return this.#onOpenAnswer(message)
    const answered = this.#requests.resolve(message.id, message)
    if (!answered) return
    this.#answeredAt = performance.now()
    if (this.#requests.size === 0) mayBeRunning.delete(this)
    this.#unrefWhenIdle()
  }

  #onOpenAnswer(message: OpenAnswer): void {
    if (this.#state._tag !== "Opening") return
    if (!message.ok) {
      this.#settleOpen({ _tag: "Failed", cause: revive(message.error!) })
      return
    }
    this.#state = { _tag: "Open", interruptId: message.interruptId }
    this.#settleOpen({ _tag: "Opened" })
  }

  /** An uncaught exception in the worker: it exits next. */
  #onError(error: Error): void {
    this.#setClosed(
      `the worker thread failed: ${error.message}`,
      `the worker thread failed while running the statement: ${error.message}`,
      error,
      true
    )
  }

  #onMessageError(error: Error): void {
    const reason = `an answer of the worker thread could not be read: ${error.message}`
    this.#setClosed(reason, reason, error, true)
  }

  #onExit(code: number): void {
    running.delete(this.worker)
    mayBeRunning.delete(this)
    clearInterval(this.#interruptAgain)
    const reason = `the worker thread exited (code ${code})`
    if (this.#state._tag === "Opening") {
      this.#settleOpen({ _tag: "Crashed", reason: `${reason} before opening`, cause: undefined })
    }
    // Exited before failing the requests: there is no thread left to end.
    this.#state = { _tag: "Exited", reason: this.closedReason() ?? reason }
    this.#setClosed(reason, `${reason} while running the statement`, undefined, true)
  }

  /**
   * The one failure path: the first reason stays the connection's; an opening ends as crashed; every request waiting
   * fails (the oldest, which the worker may be running, with `failure`; the others as never run); the worker is
   * ended unless it has exited.
   */
  #setClosed(reason: string, failure: string, cause: unknown, oldestMayHaveRun: boolean): void {
    if (this.#state._tag === "Opening") this.#settleOpen({ _tag: "Crashed", reason, cause })
    const interruptId = this.#state._tag === "Open" ? this.#state.interruptId : undefined
    if (this.closedReason() === undefined) {
      this.#state = { _tag: "Stopping", reason }
      this.#end(interruptId)
    }
    this.#requests.failAll((position): RequestFailure =>
      position === 0 && oldestMayHaveRun
        ? { _tag: "Lost", reason: failure, cause }
        : { _tag: "NeverRan", reason: failure }
    )
    this.#unrefWhenIdle()
  }

  /**
   * With the interrupt extension: the flag, sqlite3_interrupt for a running statement, and a close request for an
   * idle worker (a busy one reads it after its statement, finds the flag set, and ends). Ending it with
   * `terminate()` instead would race SQLITE_INTERRUPT's error into an isolate that is shutting down.
   */
  #end(interruptId: number | undefined): void {
    if (this.#interrupter === undefined || interruptId === undefined) {
      void this.worker.terminate()
      return
    }
    this.#interrupt(this.#interrupter, interruptId)
    this.worker.postMessage({ op: "close" })
  }

  /**
   * At the process's exit (normal or `process.exit`), before Node joins the worker threads: every thread that may be
   * inside a statement runs nothing more, has its statement interrupted where it can be, and gets a second in all to
   * be out of SQLite. One still inside would hold the exit until its statement ends, so the process ends itself
   * instead (pipes and files have their output already: Node writes them synchronously).
   */
  static #installExitListener(): void {
    // In a worker thread, `exit` is the thread's and SIGKILL would end the whole process.
    if (WorkerConnection.#exitListenerInstalled || !isMainThread) return
    WorkerConnection.#exitListenerInstalled = true
    process.once("exit", () => {
      const deadline = performance.now() + 1_000
      for (const connection of mayBeRunning) connection.#stopForExit()
      if ([...mayBeRunning].some((connection) => !connection.#outOfSqliteBy(deadline))) {
        process.kill(process.pid, "SIGKILL")
      }
    })
  }

  /** Tells the worker to run nothing more, and interrupts its statement unless it was, where it can be. */
  #stopForExit(): void {
    Atomics.store(this.#stopFlag, 0, 1)
    const interruptId = this.#state._tag === "Open" ? this.#state.interruptId : undefined
    if (!this.#interrupted && this.#interrupter !== undefined && interruptId !== undefined) {
      this.#interrupt(this.#interrupter, interruptId)
    }
  }

  /** Waits until the worker has finished the message it handles, or until `deadline`: false if it has not. */
  #outOfSqliteBy(deadline: number): boolean {
    return Atomics.wait(this.#stopFlag, 1, 1, Math.max(0, deadline - performance.now())) !== "timed-out"
  }

  /**
   * Tells the worker to run nothing more, and stops its statement at SQLite's next jump. Again every 50 ms until the
   * thread has exited: a worker that read the stop flag just before it was set may start its statement just after
   * the call, and SQLite forgets an interrupt that came while no statement ran (a CI run saw such an aggregate run
   * on). The id is never given to another connection, so a late call reaches nothing else.
   */
  #interrupt(interrupter: Interrupter, interruptId: number): void {
    Atomics.store(this.#stopFlag, 0, 1)
    interrupter.interrupt(interruptId)
    this.#interrupted = true
    if (this.#interruptAgain !== undefined || this.#state._tag === "Exited") return
    this.#interruptAgain = setInterval(() => interrupter.interrupt(interruptId), 50)
    this.#interruptAgain.unref()
  }

  #unrefWhenIdle(): void {
    if (this.#requests.size === 0) this.worker.unref()
  }

  #exitedWithin(millis: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), millis)
      void this.#exited.then(() => {
        clearTimeout(timer)
        resolve(true)
      })
    })
  }
}
