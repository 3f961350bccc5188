/**
 * The pool core: every connection in exactly one state, one queue of waiters, and one dispatch step (`dispatch`)
 * run after every change, as tarn's `_tryAcquireOrCreate` and HikariCP's entry states do.
 *
 * A connection's states (`Entry.state`):
 *
 * ```
 *   (opening) --connected--> idle --taken--> validating --passed--> leased --released--> idle
 *                              ^                 |                    |
 *                              +---- failed -----+--> retiring <------+ (broken, invalidated, closing)
 *                                                        |
 *                                                        v
 *                                                      closed
 * ```
 *
 * An opening connection has no Entry yet: it is the count `opening`. A leased Entry names its holder (a caller, a
 * lane keeping it between statements, a health check); a holder that only keeps it as an optimisation passes
 * `reclaim`, which the dispatch calls when a waiter would otherwise wait.
 *
 * Invariants, checked after every step by the model-based test (`violations`):
 * - open + opening <= maxConnections, where open counts the idle, validating and leased entries;
 * - created - closed == open (a retiring connection counts as closed: it is no longer usable);
 * - inUse + idle == open (a validating connection counts as idle: it is not handed out yet);
 * - acquired == released + inUse;
 * - waiters are served in arrival order, and a waiter is never left waiting while an idle connection exists.
 *
 * State changes are synchronous: no other fiber runs between reading the state and changing it. Only waiting, a
 * probe and closing a connection take time; connects and closes run on the pool's own fibers.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Scope from "effect/Scope"
import type * as Connector from "../Connector.js"
import type * as PoolConfig from "../PoolConfig.js"
import { AcquireTimeoutError, connectAttemptFailed, type ConnectError, PoolClosedError } from "../PoolError.js"
import type { AcquireError } from "../PoolError.js"
import type { PoolStats } from "../PoolStats.js"
import * as RetryPolicy from "../RetryPolicy.js"
import * as SqliteCode from "../SqliteCode.js"
import { StatsRecorder } from "./stats.js"

export type State = "idle" | "validating" | "leased" | "retiring" | "closed"

/** Who holds a leased connection. */
export type Holder = "caller" | "lane" | "health"

export class Entry<Client> {
  state: State = "idle"
  holder: Holder | undefined = undefined
  /** asks a holder that keeps the connection as an optimisation to give it back */
  reclaim: (() => void) | undefined = undefined
  /** the holder was asked already (once per lease) */
  reclaimAsked = false
  /** leases so far: the next one is a reuse when this is above 0 */
  leases = 0
  lastReleasedAt: number
  /** when the connector's file check (deleted or replaced?) last ran for this connection */
  checkedAt = Number.NEGATIVE_INFINITY
  /** opened for the waiters and verified by the connector: its first checkout needs no probe */
  fresh = true
  /** invalidated while leased: retired when the lease ends */
  invalidated = false
  constructor(
    readonly id: number,
    readonly connection: Connector.Connection,
    readonly sql: Client,
    readonly createdAt: number,
    readonly scope: Scope.CloseableScope
  ) {
    this.lastReleasedAt = createdAt
  }
}

/** A lease handed out by the core; `release` ends it (once; later calls do nothing). */
export interface Lease<Client> {
  readonly entry: Entry<Client>
  readonly release: (exit: Exit.Exit<unknown, unknown>) => void
}

type Outcome<Client> = Exit.Exit<Entry<Client>, AcquireError>

interface Waiter<Client> {
  /** false while in the queue; true once served, failed or withdrawn */
  settled: boolean
  readonly deadline: number
  resume: ((outcome: Outcome<Client>) => void) | undefined
  /** what settled it (kept so that a connection handed to a waiter interrupted meanwhile is not lost) */
  outcome: Outcome<Client> | undefined
}

/** A lease not ended yet. */
interface ActiveLease<Client> {
  readonly entry: Entry<Client>
  ended: boolean
}

export interface Options<Client> {
  readonly config: PoolConfig.PoolConfig
  readonly connector: Connector.Service
  readonly connectOptions: Connector.ConnectOptions
  /** the client a new connection is handed out with, once its set-up (`onConnect`) ran */
  /** the client of a new connection; `invalidate` asks the pool to take that connection out of use */
  readonly makeClient: (
    connection: Connector.Connection,
    invalidate: Effect.Effect<void>
  ) => Effect.Effect<Client, ConnectError>
  /** a failure that leaves the connection unusable, beside SqliteCode.isFatal */
  readonly isFatal: (error: unknown) => boolean
  readonly label: string
}

export const make = <Client>(options: Options<Client>): Effect.Effect<PoolCore<Client>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const poolScope = yield* Scope.make()
    const run = yield* Scope.extend(FiberSet.makeRuntime<never>(), poolScope)
    const clock = yield* Effect.clock
    const core = new PoolCore(options, poolScope, run, clock)
    yield* Effect.addFinalizer(() => core.shutdown)
    yield* Scope.extend(Effect.forkScoped(core.timer), poolScope)
    yield* Scope.extend(Effect.forkScoped(core.reaper), poolScope)
    return core
  })

type Run = <A, E>(effect: Effect.Effect<A, E>) => unknown

export class PoolCore<Client> {
  readonly stats: StatsRecorder
  /** open connections: idle, validating and leased */
  private readonly entries = new Set<Entry<Client>>()
  /** the idle connections, most recently released last */
  private readonly idle: Array<Entry<Client>> = []
  private opening = 0
  private readonly active = new Set<ActiveLease<Client>>()
  /** the waiters in arrival order (withdrawn ones are skipped as the head passes them) */
  private queue: Array<Waiter<Client> | undefined> = []
  private head = 0
  private waiting = 0
  private closing = false
  private nextId = 1
  private lastConnectError: ConnectError | undefined
  private readonly closedError: PoolClosedError
  private readonly maxLifetime: number
  private readonly validationInterval: number
  private readonly idleTimeToLive: number
  private readonly acquireTimeout: number
  /** The span times the wait; it is not made the parent of what runs inside (that copies the fiber's context). */
  private readonly acquireSpan: { readonly attributes: Record<string, string>; readonly captureStackTrace: false }
  private wakeTimer: (() => void) | undefined
  private wakeReaper: (() => void) | undefined
  private drained: (() => void) | undefined
  private dispatching = false
  private dispatchAgain = false

  constructor(
    private readonly options: Options<Client>,
    private readonly poolScope: Scope.CloseableScope,
    private readonly run: Run,
    private readonly clock: Clock.Clock
  ) {
    const { config } = options
    this.stats = new StatsRecorder(options.label)
    this.closedError = new PoolClosedError({ filename: config.filename })
    this.maxLifetime = config.maxLifetime === null ? Infinity : Duration.toMillis(config.maxLifetime)
    this.validationInterval = Duration.toMillis(config.validationInterval)
    this.idleTimeToLive = Duration.toMillis(config.idleTimeToLive)
    this.acquireTimeout = Duration.toMillis(config.acquireTimeout)
    this.acquireSpan = {
      attributes: { "db.system.name": "sqlite", "db.namespace": config.filename },
      captureStackTrace: false
    }
  }

  // --- acquiring -------------------------------------------------------------------------------------------------

  /**
   * A lease for `holder`; the caller must `release` it. Interruptible only while it waits (call it where
   * interruption is masked, so that a lease is never lost between being handed out and being recorded).
   */
  acquire(
    holder: Holder,
    restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>,
    reclaim?: () => void
  ): Effect.Effect<Lease<Client>, AcquireError> {
    if (this.closing) return Effect.fail(this.closedError)
    // Fast path: nobody waits and a connection is idle. Nothing here can wait, so no deadline or span is spent.
    if (this.waiting === 0) {
      const entry = this.idle.pop()
      if (entry !== undefined) {
        entry.state = "validating"
        // Most checkouts need no probe: then the lease is decided here, without another Effect step.
        const problem = this.problemOf(entry)
        if (problem === undefined) return Effect.succeed(this.lease(entry, holder, reclaim))
        return Effect.flatMap(
          this.checkout(entry, problem),
          (ok) => ok ? Effect.succeed(this.lease(entry, holder, reclaim)) : this.wait(holder, restore, reclaim)
        )
      }
    }
    return this.wait(holder, restore, reclaim)
  }

  private wait(
    holder: Holder,
    restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>,
    reclaim: (() => void) | undefined
  ): Effect.Effect<Lease<Client>, AcquireError> {
    const deadline = this.clock.unsafeCurrentTimeMillis() + this.acquireTimeout
    // A connection that fails its checkout sends the waiter back to the front: it keeps its place and deadline,
    // which ends it even if connection after connection fails (no timer needs to fire for that).
    const attempt = (first: boolean): Effect.Effect<Lease<Client>, AcquireError> =>
      Effect.flatMap(
        restore(this.enqueue(deadline, first)),
        (entry) =>
          Effect.flatMap(this.checkout(entry), (ok) =>
            ok
              ? Effect.succeed(this.lease(entry, holder, reclaim))
              : this.clock.unsafeCurrentTimeMillis() >= deadline
              ? Effect.fail(this.timedOut())
              : attempt(false))
      )
    return Effect.useSpan("sqlsim.acquire", this.acquireSpan, () => attempt(true))
  }

  private enqueue(deadline: number, atBack: boolean): Effect.Effect<Entry<Client>, AcquireError> {
    return Effect.async<Entry<Client>, AcquireError>((resume) => {
      if (this.closing) return resume(Effect.fail(this.closedError))
      const waiter: Waiter<Client> = { settled: false, deadline, resume: undefined, outcome: undefined }
      if (atBack) {
        this.queue.push(waiter)
      } else if (this.head > 0) {
        this.queue[--this.head] = waiter
      } else {
        this.queue.unshift(waiter)
      }
      this.waiting++
      this.stats.setWaiting(this.waiting)
      this.dispatch()
      if (waiter.outcome !== undefined) return resume(waiter.outcome)
      waiter.resume = resume
      this.wakeTimer?.()
      // Interrupted while waiting: leave the queue; a connection handed over meanwhile goes to the next waiter.
      return Effect.sync(() => this.withdraw(waiter))
    })
  }

  private settle(waiter: Waiter<Client>, outcome: Outcome<Client>): void {
    waiter.settled = true
    waiter.outcome = outcome
    this.waiting--
    this.stats.setWaiting(this.waiting)
    waiter.resume?.(outcome)
  }

  private withdraw(waiter: Waiter<Client>): void {
    if (!waiter.settled) {
      waiter.settled = true
      this.waiting--
      this.stats.setWaiting(this.waiting)
    } else if (waiter.outcome !== undefined && Exit.isSuccess(waiter.outcome)) {
      // Served, but interrupted before it took the connection: it goes back, to the next waiter.
      const entry = waiter.outcome.value
      entry.state = "idle"
      this.idle.push(entry)
    }
    this.dispatch()
  }

  /** the oldest waiter still waiting, leaving it in the queue */
  private oldest(): Waiter<Client> | undefined {
    while (this.head < this.queue.length) {
      const waiter = this.queue[this.head]
      if (waiter !== undefined && !waiter.settled) return waiter
      this.queue[this.head++] = undefined
    }
    // Empty: start the array afresh rather than let it grow.
    this.queue = []
    this.head = 0
    return undefined
  }

  /**
   * The dispatch step: idle connections to the oldest waiters, connects started for waiters no connection is
   * coming for, and holders that keep a connection as an optimisation asked to give it back. Runs after every change.
   */
  dispatch(): void {
    if (this.dispatching) {
      this.dispatchAgain = true
      return
    }
    this.dispatching = true
    try {
      do {
        this.dispatchAgain = false
        this.dispatchOnce()
      } while (this.dispatchAgain)
    } finally {
      this.dispatching = false
    }
  }

  private dispatchOnce(): void {
    if (this.closing) return
    const { maxConnections } = this.options.config
    // One change at a time, then look again: a connect may complete at once (a local file opens synchronously).
    while (true) {
      const waiter = this.oldest()
      if (waiter === undefined) return
      const entry = this.idle.pop()
      if (entry !== undefined) {
        entry.state = "validating"
        this.settle(waiter, Exit.succeed(entry))
      } else if (this.opening < this.waiting && this.entries.size + this.opening < maxConnections) {
        this.connect()
      } else {
        break
      }
    }
    // Still short: ask holders that keep a connection as an optimisation for theirs, one at a time, as many as
    // are needed. One that gives it back at once has made this step run again; a busy one gives it back when its
    // statement ends, and counts as coming meanwhile.
    let coming = this.opening
    for (const entry of this.entries) {
      if (coming >= this.waiting) return
      if (entry.state !== "leased" || entry.reclaim === undefined) continue
      if (!entry.reclaimAsked) {
        entry.reclaimAsked = true
        entry.reclaim()
        if (this.dispatchAgain) return
      }
      coming++
    }
  }

  // --- checkout and lease ----------------------------------------------------------------------------------------

  /** Checks a connection taken for a lease: true to hand it out; false when it was retired instead. */
  private checkout(entry: Entry<Client>, problem = this.problemOf(entry)): Effect.Effect<boolean> {
    if (problem === undefined) return succeedTrue
    if (problem !== "probe") {
      this.retire(entry, problem !== lifetimeReached, problem)
      return succeedFalse
    }
    return Effect.map(Effect.either(entry.connection.validate), (result) => {
      // A probe that goes elsewhere (a worker, a server) takes time: the pool may have closed it meanwhile.
      if (result._tag === "Right") return entry.state === "validating"
      this.retire(entry, true, result.left.reason)
      return false
    })
  }

  /** Why a connection taken for a lease cannot be handed out as it is: undefined, "probe" it first, or a problem. */
  private problemOf(entry: Entry<Client>): string | undefined {
    if (this.closing) return "the pool is closing"
    const now = this.clock.unsafeCurrentTimeMillis()
    const problem = this.checkAt(entry, now)
    if (problem !== undefined) return problem
    if (entry.fresh) return undefined
    if (now - entry.createdAt >= this.maxLifetime) return lifetimeReached
    if (entry.leases > 0 && now - entry.lastReleasedAt < this.validationInterval) return undefined
    return "probe"
  }

  private lease(entry: Entry<Client>, holder: Holder, reclaim: (() => void) | undefined): Lease<Client> {
    entry.state = "leased"
    entry.holder = holder
    entry.reclaim = reclaim
    entry.reclaimAsked = false
    entry.fresh = false
    this.stats.lease(entry.leases++ > 0)
    const active: ActiveLease<Client> = { entry, ended: false }
    this.active.add(active)
    return { entry, release: (exit) => this.release(active, exit) }
  }

  private release(active: ActiveLease<Client>, exit: Exit.Exit<unknown, unknown>): void {
    if (active.ended) return
    active.ended = true
    this.active.delete(active)
    const { entry } = active
    entry.holder = undefined
    entry.reclaim = undefined
    entry.lastReleasedAt = this.clock.unsafeCurrentTimeMillis()
    this.stats.endLease()
    if (entry.state === "leased") {
      const broken = entry.invalidated ? "it was invalidated" : this.brokenBy(entry, exit)
      if (broken !== undefined) {
        this.retire(entry, true, broken)
      } else if (this.closing) {
        this.retire(entry, false, "the pool is closing")
      } else {
        entry.state = "idle"
        this.idle.push(entry)
        this.wakeReaper?.()
      }
    }
    if (this.closing && this.stats.leased === 0) this.drained?.()
    this.dispatch()
  }

  /**
   * Whether a lease that ended with `exit` left its connection unusable: a fatal SQLite code says so; so does the
   * connection's own check (closed, its file replaced). A caller's error (syntax, constraint) proves SQLite answered.
   */
  private brokenBy(entry: Entry<Client>, exit: Exit.Exit<unknown, unknown>): string | undefined {
    if (Exit.isSuccess(exit)) return undefined
    const errors = [...Cause.failures(exit.cause), ...Cause.defects(exit.cause)]
    const fatal = errors.find((error) => SqliteCode.isFatal(error) || this.options.isFatal(error))
    if (fatal !== undefined) return `a fatal error: ${SqliteCode.codeOf(fatal) ?? "unknown"}`
    return entry.connection.check() ?? entry.connection.checkFile?.()
  }

  /** Closes the connection instead of returning it: when its lease ends, or at once when it is idle. */
  invalidate(entry: Entry<Client>): void {
    if (!this.entries.has(entry)) return // closed already, or another pool's
    if (entry.state === "idle") {
      this.retire(entry, true, "it was invalidated")
      this.dispatch()
    } else if (entry.state === "leased" || entry.state === "validating") {
      entry.invalidated = true
    }
  }

  /** Why a connection of this pool can no longer be used, without a query; undefined when it can. */
  check(entry: Entry<Client>): string | undefined {
    if (entry.state === "retiring" || entry.state === "closed") return "it was closed"
    return this.checkAt(entry, this.clock.unsafeCurrentTimeMillis())
  }

  /**
   * The connector's checks: the O(1) one always, the file's (a stat, the largest single cost of a checkout) at most
   * once per `validationInterval` for each connection, every time with the default of 0. The window counts from the
   * last file check, not the last use, so it bounds how long a replaced file goes unnoticed on a busy connection too.
   */
  private checkAt(entry: Entry<Client>, now: number): string | undefined {
    const problem = entry.connection.check()
    if (problem !== undefined || entry.connection.checkFile === undefined) return problem
    if (now - entry.checkedAt < this.validationInterval) return undefined
    entry.checkedAt = now
    return entry.connection.checkFile()
  }

  // --- opening and closing connections ---------------------------------------------------------------------------

  /** One connect, with retries of transient failures, on a fiber of the pool. */
  private connect(): void {
    this.opening++
    this.run(Effect.exit(this.connectWithRetry).pipe(Effect.flatMap((exit) => Effect.sync(() => this.connected(exit)))))
  }

  /**
   * One attempt: a connection the connector opened, checked at once. One that is unusable as soon as it opens (a
   * server that drops the socket after the handshake, a worker that exits) is a transient connect failure, closed
   * in its attempt's own Scope: retried with the backoff, then reported, never handed out to fail its checkout and
   * be reopened in a loop.
   */
  private readonly connectOnce: Effect.Effect<Connector.Connection, ConnectError, Scope.Scope> = Effect.gen(
    this,
    function*() {
      const attemptScope = yield* Effect.flatMap(
        Effect.scope,
        (parent) => Scope.fork(parent, ExecutionStrategy.sequential)
      )
      const connection = yield* Scope.extend(this.options.connector.connect(this.options.connectOptions), attemptScope)
        .pipe(Effect.tapErrorCause((cause) => Scope.close(attemptScope, Exit.failCause(cause))))
      const problem = connection.check() ?? connection.checkFile?.()
      if (problem === undefined) return connection
      yield* Scope.close(attemptScope, Exit.void)
      return yield* connectAttemptFailed({
        filename: this.options.connectOptions.filename,
        code: "SQLITE_CANTOPEN",
        transient: true,
        reason: `the connection was unusable as soon as it opened: ${problem}`
      })
    }
  )

  /** One physical connection, with retries of transient failures, in a Scope of its own. */
  readonly connectWithRetry: Effect.Effect<Entry<Client>, ConnectError> = Effect.suspend(() => {
    const { config, makeClient } = this.options
    const connect = RetryPolicy.retryConnect(this.connectOnce, config, {
      failed: (error) => {
        this.stats.count("connectFailures")
        this.lastConnectError = error
      },
      retrying: () => this.stats.count("retries")
    })
    return Effect.flatMap(
      Scope.fork(this.poolScope, ExecutionStrategy.sequential),
      (connectionScope) =>
        Effect.uninterruptibleMask((restore) =>
          restore(Scope.extend(connect, connectionScope)).pipe(
            Effect.flatMap((connection) => {
              let entry: Entry<Client> | undefined
              const invalidate = Effect.sync(() => entry !== undefined && this.invalidate(entry))
              return Effect.map(
                makeClient(connection, invalidate),
                (sql) =>
                  entry = new Entry(
                    this.nextId++,
                    connection,
                    sql,
                    this.clock.unsafeCurrentTimeMillis(),
                    connectionScope
                  )
              )
            }),
            Effect.tapErrorCause((cause) => Scope.close(connectionScope, Exit.failCause(cause)))
          )
        )
    )
  })

  /** A connect ended: the connection joins the idle ones (and goes to the oldest waiter), or a waiter hears why not. */
  private connected(exit: Exit.Exit<Entry<Client>, ConnectError>): void {
    this.opening--
    if (Exit.isSuccess(exit)) {
      this.add(exit.value)
      if (this.closing) this.retire(exit.value, false, "the pool is closing")
    } else if (!this.closing) {
      // The attempts ran out: the oldest waiter fails with the reason (the others keep their connects, or get new ones).
      const waiter = this.oldest()
      const error = Cause.failureOption(exit.cause)
      if (waiter !== undefined && error._tag === "Some") this.settle(waiter, Exit.fail(error.value))
    }
    this.dispatch()
  }

  private add(entry: Entry<Client>): void {
    this.stats.count("created")
    this.entries.add(entry)
    this.idle.push(entry)
    // The reaper may be waiting for a connection to become idle: one that no waiter took is one.
    this.wakeReaper?.()
  }

  /** Takes a connection out of use for good and closes it on a fiber of the pool. */
  private retire(entry: Entry<Client>, invalidated: boolean, reason: string): void {
    if (entry.state === "retiring" || entry.state === "closed") return
    if (entry.state === "idle") this.idle.splice(this.idle.indexOf(entry), 1)
    entry.state = "retiring"
    this.entries.delete(entry)
    if (invalidated) this.stats.count("invalidated")
    this.stats.count("closed")
    this.run(
      Effect.logDebug(`sqlsim: connection ${entry.id} closed: ${reason}`).pipe(
        Effect.zipRight(Scope.close(entry.scope, Exit.void)),
        Effect.ensuring(Effect.sync(() => entry.state = "closed"))
      )
    )
    if (!this.closing && this.entries.size + this.opening < this.options.config.minConnections) this.connect()
  }

  /** Opens minConnections before the pool is handed out; a failure fails the construction. */
  readonly fill: Effect.Effect<void, ConnectError> = Effect.suspend(() => {
    const count = this.options.config.minConnections
    return Effect.forEach(Array.from({ length: count }), () => this.connectWithRetry, { concurrency: count }).pipe(
      Effect.map((opened) => opened.forEach((entry) => this.add(entry)))
    )
  })

  // --- time: acquire deadlines, idle and lifetime limits ---------------------------------------------------------

  /**
   * Ends the wait of every waiter whose deadline passed. Every deadline is acquireTimeout after its waiter arrived,
   * so the oldest waiter's comes first: one fiber sleeping until it is the whole schedule (a timeout per acquire
   * would fork two fibers per wait).
   */
  readonly timer: Effect.Effect<never> = Effect.forever(Effect.suspend((): Effect.Effect<void> => {
    const waiter = this.oldest()
    if (waiter === undefined || !Number.isFinite(this.acquireTimeout)) {
      return Effect.async<void>((resume) => {
        this.wakeTimer = () => {
          this.wakeTimer = undefined
          resume(Effect.void)
        }
        return Effect.sync(() => this.wakeTimer = undefined)
      })
    }
    const now = this.clock.unsafeCurrentTimeMillis()
    if (waiter.deadline > now) return Effect.sleep(waiter.deadline - now)
    this.settle(waiter, Exit.fail(this.timedOut()))
    return Effect.void
  }))

  /** The failure of a wait that reached its deadline (counted). */
  private timedOut(): AcquireTimeoutError {
    this.stats.count("timeouts")
    return new AcquireTimeoutError({
      waitedMs: this.acquireTimeout,
      stats: this.stats.snapshot(),
      lastError: this.lastConnectError
    })
  }

  /**
   * Closes idle connections above minConnections once idle for idleTimeToLive, and idle connections older than
   * maxLifetime. Sleeps until the next such moment, or until a connection becomes idle when none is.
   */
  readonly reaper: Effect.Effect<never> = Effect.forever(Effect.suspend((): Effect.Effect<void> => {
    const now = this.clock.unsafeCurrentTimeMillis()
    let wake = Infinity
    // Oldest release first: the idle list is last-in first-out.
    for (const entry of [...this.idle]) {
      const idleFor = now - entry.lastReleasedAt
      const age = now - entry.createdAt
      const surplus = this.entries.size + this.opening > this.options.config.minConnections
      if (surplus && idleFor >= this.idleTimeToLive) {
        this.retire(entry, false, "idle for idleTimeToLive")
      } else if (age >= this.maxLifetime) {
        this.retire(entry, false, lifetimeReached)
      } else {
        if (surplus) wake = Math.min(wake, this.idleTimeToLive - idleFor)
        wake = Math.min(wake, this.maxLifetime - age)
      }
    }
    if (Number.isFinite(wake)) return Effect.sleep(Math.max(wake, 1))
    return Effect.async<void>((resume) => {
      this.wakeReaper = () => {
        this.wakeReaper = undefined
        resume(Effect.void)
      }
      return Effect.sync(() => this.wakeReaper = undefined)
    })
  }))

  // --- shutdown --------------------------------------------------------------------------------------------------

  /**
   * Refuses new acquires and fails every waiter at once, closes the idle connections, asks keepers to give theirs
   * back, gives leases shutdownTimeout to end, then closes every connection (leased ones too) and stops the pool's
   * fibers. The wait is made interruptible explicitly: finalizers are not, and a timeout inside one never fires.
   */
  get shutdown(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.closing = true
      let waiter = this.oldest()
      while (waiter !== undefined) {
        this.settle(waiter, Exit.fail(this.closedError))
        waiter = this.oldest()
      }
      for (const entry of [...this.idle]) this.retire(entry, false, "the pool is closing")
      for (const entry of [...this.entries]) entry.reclaim?.()
      const wait = this.stats.leased === 0 ? Effect.void : Effect.interruptible(
        Effect.async<void>((resume) => {
          this.drained = () => resume(Effect.void)
          if (this.stats.leased === 0) resume(Effect.void)
        })
      ).pipe(Effect.timeoutOption(this.options.config.shutdownTimeout), Effect.asVoid)
      return Effect.zipRight(
        wait,
        Effect.suspend(() => {
          // Leases that outlived shutdownTimeout: their connections are closed under them (an open transaction
          // rolls back), and they count as ended so that the statistics stay consistent.
          for (const active of [...this.active]) {
            active.ended = true
            this.active.delete(active)
            this.stats.endLease()
            this.retire(active.entry, false, "shutdownTimeout passed")
          }
          for (const entry of [...this.entries]) this.retire(entry, false, "the pool is closed")
          return Scope.close(this.poolScope, Exit.void)
        })
      )
    })
  }

  // --- observation -----------------------------------------------------------------------------------------------

  openEntries(): ReadonlyArray<Entry<Client>> {
    return [...this.entries]
  }

  snapshot(): PoolStats {
    return this.stats.snapshot()
  }

  /** The invariants this core promises that do not hold right now (empty when all do). */
  violations(): ReadonlyArray<string> {
    const found: Array<string> = []
    const stats = this.stats.snapshot()
    const count = (state: State) => [...this.entries].filter((entry) => entry.state === state).length
    const open = this.entries.size
    if (open + this.opening > this.options.config.maxConnections) found.push("open + opening > maxConnections")
    if (stats.created - stats.closed !== open) {
      found.push(`created - closed (${stats.created - stats.closed}) != open (${open})`)
    }
    if (stats.open !== open) found.push(`stats.open (${stats.open}) != open (${open})`)
    if (stats.inUse !== count("leased")) found.push(`inUse (${stats.inUse}) != leased (${count("leased")})`)
    if (stats.inUse + stats.idle !== stats.open) found.push("inUse + idle != open")
    if (stats.acquired !== stats.released + stats.inUse) found.push("acquired != released + inUse")
    if (this.idle.length !== count("idle")) found.push("the idle list and the idle states disagree")
    if (stats.waiting !== this.waiting) found.push("stats.waiting != waiting")
    if (this.waiting > 0 && this.idle.length > 0 && !this.dispatching && !this.closing) {
      found.push("a waiter waits while a connection is idle")
    }
    return found
  }
}

const lifetimeReached = "it reached maxLifetime"
const succeedTrue = Effect.succeed(true)
const succeedFalse = Effect.succeed(false)
