/**
 * The pool core: every connection in exactly one state, one queue of waiters, and one dispatch step (`dispatch`)
 * run after every change, as tarn's `_tryAcquireOrCreate` and HikariCP's entry states do.
 *
 * A connection's states (`Entry.state`):
 *
 * ```
 *   (opening) --connected--> idle --taken--> validating --probed--> leased --last lease ended--> idle
 *                              |                 |                    |
 *                              +--- problem -----+--> retiring <------+ (broken, invalidated, past its lifetime, closing)
 *                                                        |
 *                                                        v
 *                                                      closed
 * ```
 *
 * An opening connection has no Entry yet: it is the count `opening`. A connection taken for a lease that needs no
 * probe goes from idle to leased in one step; one with a problem (closed, file replaced, past maxLifetime) is retired
 * instead of handed out.
 *
 * Leases are shared or exclusive, as Effect's `PoolItem.refCount` under `concurrency`: a shared lease (one statement,
 * which runs to completion inside the driver) may join a connection other shared leases hold; an exclusive lease (a
 * transaction, a stream, a caller's `acquire`) holds its connection alone. Both are served in arrival order by the
 * one queue: a shared lease never joins ahead of an exclusive one that waits, so a transaction waits only for the
 * statements that came before it. A connection goes back to the idle list when its last lease ends; the idle list
 * is last-in first-out, so the next statement finds the connection the last one used (affinity, never ownership).
 *
 * Invariants, checked after every step by the model-based test (`violations`):
 * - open + opening <= maxConnections, where open counts the idle, validating and leased entries;
 * - created - closed == open (a retiring connection counts as closed: it is no longer usable);
 * - inUse + idle == open (a validating connection counts as idle: it is not handed out yet);
 * - acquired == released + inUse: the counters count connections handed out and given back (statements sharing a
 *   connection count once), and a leased connection has at least one lease, an exclusive one exactly one;
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
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as FiberSet from "effect/FiberSet"
import * as Scope from "effect/Scope"
import type * as Tracer from "effect/Tracer"
import type * as Connector from "../Connector.js"
import type * as PoolConfig from "../PoolConfig.js"
import type { PoolStats } from "../PoolStats.js"
import {
  AcquireTimeoutError,
  connectAttemptFailed,
  type ConnectError,
  describeHolder,
  type Holder,
  PoolClosedError
} from "./errors.js"
import type { AcquireError } from "./errors.js"
import { EventLoopTurns } from "./eventLoop.js"
import * as RetryPolicy from "./retryPolicy.js"
import * as SqliteCode from "./sqliteCode.js"
import { StatsRecorder } from "./stats.js"

export type State = "idle" | "validating" | "leased" | "retiring" | "closed"

/** How a lease holds its connection: alone, or beside other shared leases. */
export type Mode = "shared" | "exclusive"

/** What a lease asks for beside its mode. */
export interface LeaseOptions {
  /**
   * An idle connection released less than this many milliseconds ago is handed out without a probe (`SELECT 1`);
   * one idle longer is probed first. A caller's lease (`PoolCore.callerLease`) uses `validationInterval`.
   */
  readonly probeUnlessUsedWithin: number
}

/**
 * A lane's statements and transactions probe a connection only after it was idle this long (at least; more with a
 * longer `validationInterval`), as HikariCP's alive-bypass window: a probe per statement would double its cost, a
 * statement on a connection that died fails typed and retires it, and a closed handle is caught by the O(1) check.
 */
export const laneProbeWindowMillis = 1000

/**
 * Where the lease the fiber asks for next was asked for in the application's code (a transaction's
 * `withTransaction` call, a `ConnectionPool.use` call); set around the acquire only when `holdWarningThreshold` is
 * set, read by the core only then.
 */
export const acquireSite: FiberRef.FiberRef<string | undefined> = FiberRef.unsafeMake<string | undefined>(undefined)

/** The stack of the caller's caller, without the `Error` line: the acquire site `acquireSite` carries. */
export const callSite = (): string | undefined => new Error().stack?.split("\n").slice(3).join("\n")

/** The fiber asking for a lease, as the core sees it: `currentSpan`, `id`, `getFiberRef` are all it reads. */
export type Asker = Fiber.RuntimeFiber<any, any>

/** Why a connection must be closed once its last lease ends. */
interface Doom {
  readonly reason: string
  /** counted as invalidated (broken or invalidated), rather than only closed (lifetime, closing) */
  readonly invalidated: boolean
}

export class Entry<Client> {
  state: State = "idle"
  /** while leased: how its leases hold it */
  mode: Mode = "exclusive"
  /** leases on it now: 0 unless leased; more than 1 only when shared */
  holders = 0
  /** set while leased when it must not be handed out again: closed once its last lease ends */
  doomed: Doom | undefined = undefined
  /** times it was handed out so far: the next one is a reuse when this is above 0 */
  checkouts = 0
  lastReleasedAt: number
  /** when the connector's file check (deleted or replaced?) last ran for this connection */
  checkedAt = Number.NEGATIVE_INFINITY
  /** opened for the waiters and verified by the connector: its first checkout needs no probe */
  fresh = true
  /** what a user holds (`PooledConnection`): never the entry itself, mapped back by the core that made it */
  readonly handle: Handle<Client>
  constructor(
    readonly id: number,
    readonly connection: Connector.Connection,
    readonly client: Client,
    readonly createdAt: number,
    readonly scope: Scope.CloseableScope
  ) {
    this.lastReleasedAt = createdAt
    this.handle = { id, sql: client }
  }
}

/** A connection as its lease holder sees it: `id` is 1, 2, 3 ... in the order this pool opened them. */
export interface Handle<Client> {
  readonly id: number
  readonly sql: Client
}

/** A lease handed out by the core; `release` ends it (once; later calls do nothing). */
export interface Lease<Client> {
  readonly entry: Entry<Client>
  readonly release: (exit: Exit.Exit<unknown, unknown>) => void
}

/** What a waiter is handed: a lease, or a connection to probe before it becomes one. */
type Grant<Client> =
  | { readonly _tag: "Leased"; readonly lease: Lease<Client> }
  | { readonly _tag: "Probe"; readonly entry: Entry<Client> }

type Outcome<Client> = Exit.Exit<Grant<Client>, AcquireError>

interface Waiter<Client> {
  readonly mode: Mode
  readonly options: LeaseOptions
  /** who will hold the lease once it is served */
  readonly mark: Mark
  readonly deadline: number
  /** false while in the queue; true once served, failed or withdrawn */
  settled: boolean
  resume: ((outcome: Outcome<Client>) => void) | undefined
  /** what settled it (kept so that a connection handed to a waiter interrupted meanwhile is not lost) */
  outcome: Outcome<Client> | undefined
}

/** Who holds a lease, taken as it is asked for: two field reads, and a FiberRef read with holdWarningThreshold set. */
interface Mark {
  readonly fiber: FiberId.Runtime
  readonly span: Tracer.AnySpan | undefined
  /** the acquire site (`acquireSite`), with `holdWarningThreshold` set */
  readonly site: string | undefined
}

/** A lease not ended yet. */
interface ActiveLease<Client> {
  readonly entry: Entry<Client>
  ended: boolean
  /** when it was handed out (the clock's nanoseconds): its use time ends at its release */
  readonly since: bigint
  readonly mark: Mark
  /** its hold was reported as longer than holdWarningThreshold (once per lease) */
  warned: boolean
}

const parentOf = (span: Tracer.AnySpan): Tracer.AnySpan | undefined =>
  span._tag === "Span" && span.parent._tag === "Some" ? span.parent.value : undefined

/**
 * The innermost span the application opened: `@effect/sql`'s own spans (`sql.execute`, `sql.transaction`) are
 * passed over.
 */
const spanName = (span: Tracer.AnySpan | undefined): string | undefined => {
  for (let current = span; current !== undefined; current = parentOf(current)) {
    if (current._tag === "ExternalSpan") return `external span ${current.spanId}`
    if (!current.name.startsWith("sql.")) return current.name
  }
  return span?._tag === "Span" ? span.name : undefined
}

export interface Options<Client> {
  readonly config: PoolConfig.PoolConfig
  readonly connector: Connector.Service
  readonly connectOptions: Connector.ConnectOptions
  /** the client of a new connection, once its set-up (`onConnect`) ran; `invalidate` takes that connection out of use */
  readonly makeClient: (
    connection: Connector.Connection,
    invalidate: Effect.Effect<void>
  ) => Effect.Effect<Client, ConnectError>
  /** a failure that leaves the connection unusable, beside SqliteCode.isFatal */
  readonly isFatal: (error: unknown) => boolean
  /** `db.client.connection.pool.name` in the pool's metrics */
  readonly label: string
  /** how messages name the pool (SqlitePool's lanes: "<poolName or filename> (writer)"); default `label` */
  readonly describedAs?: string | undefined
  /** `sqlsim.lane` in the pool's metrics, for SqlitePool's two pools */
  readonly lane?: "writer" | "reader" | undefined
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
    if (core.holdWarningMillis !== undefined) yield* Scope.extend(Effect.forkScoped(core.holdWatch), poolScope)
    return core
  })

type Run = <A, E>(effect: Effect.Effect<A, E>) => unknown
type Restore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

export class PoolCore<Client> {
  readonly stats: StatsRecorder
  readonly config: PoolConfig.PoolConfig
  /** open connections: idle, validating and leased */
  private readonly entries = new Set<Entry<Client>>()
  /** every connection this pool opened, by the handle its holders see (another pool's handle is simply unknown) */
  private readonly byHandle = new WeakMap<Handle<Client>, Entry<Client>>()
  /** the idle connections, most recently released last */
  private readonly idle: Array<Entry<Client>> = []
  /** the connection shared leases join now (leased shared, not doomed); undefined when none is */
  private shared: Entry<Client> | undefined = undefined
  private opening = 0
  private readonly active = new Set<ActiveLease<Client>>()
  /** the waiters in arrival order (withdrawn ones are skipped as the head passes them) */
  private queue: Array<Waiter<Client> | undefined> = []
  private head = 0
  /** waiters in the queue, and how many of them want an exclusive lease */
  private waiting = 0
  private waitingExclusive = 0
  private closing = false
  private nextId = 1
  private lastConnectError: ConnectError | undefined
  /**
   * What each connect asks of the connector, with the files the latest connection opened (`previousFile`): a database
   * file deleted or replaced under the pool, its old `-wal` left beside the name, is then a ConnectError rather than
   * a new file with the old one's WAL read into it.
   */
  private connectOptions: Connector.ConnectOptions
  private readonly closedError: PoolClosedError
  private readonly maxLifetime: number
  private readonly validationInterval: number
  private readonly idleTimeToLive: number
  private readonly acquireTimeout: number
  /** holdWarningThreshold in milliseconds; undefined: off (no acquire site captured, no watch) */
  readonly holdWarningMillis: number | undefined
  private wakeHoldWatch: (() => void) | undefined
  /** what a caller's lease asks for, and a lane's (see `laneProbeWindowMillis`) */
  readonly callerLease: LeaseOptions
  readonly laneLease: LeaseOptions
  /** The span times the wait; it is not made the parent of what runs inside (that copies the fiber's context). */
  private readonly acquireSpan: { readonly attributes: Record<string, string>; readonly captureStackTrace: false }
  private wakeTimer: (() => void) | undefined
  private wakeReaper: (() => void) | undefined
  private drained: (() => void) | undefined
  private dispatching = false
  private dispatchAgain = false
  /** a dispatch is scheduled for a later turn (`dispatchLater`): no connect starts before it */
  private dispatchPending = false
  /** leases handed out since the event loop last turned: a burst of them gives the loop a turn every so often */
  private readonly turns: EventLoopTurns

  constructor(
    private readonly options: Options<Client>,
    private readonly poolScope: Scope.CloseableScope,
    private readonly run: Run,
    private readonly clock: Clock.Clock
  ) {
    const { config } = options
    this.config = config
    this.stats = new StatsRecorder({
      name: options.label,
      lane: options.lane,
      maxConnections: config.maxConnections,
      minConnections: config.minConnections
    })
    this.closedError = new PoolClosedError({ filename: config.filename })
    this.connectOptions = options.connectOptions
    this.maxLifetime = config.maxLifetime === null ? Infinity : Duration.toMillis(config.maxLifetime)
    this.validationInterval = Duration.toMillis(config.validationInterval)
    this.idleTimeToLive = Duration.toMillis(config.idleTimeToLive)
    this.acquireTimeout = Duration.toMillis(config.acquireTimeout)
    this.turns = new EventLoopTurns(() => this.clock.unsafeCurrentTimeMillis())
    this.holdWarningMillis = config.holdWarningThreshold === undefined
      ? undefined
      : Duration.toMillis(config.holdWarningThreshold)
    this.callerLease = { probeUnlessUsedWithin: this.validationInterval }
    this.laneLease = { probeUnlessUsedWithin: Math.max(this.validationInterval, laneProbeWindowMillis) }
    this.acquireSpan = {
      attributes: { "db.system.name": "sqlite", "db.namespace": config.filename },
      captureStackTrace: false
    }
  }

  // --- acquiring -------------------------------------------------------------------------------------------------

  /**
   * A lease; the caller must `release` it. Interruptible only while it waits (call it where interruption is masked,
   * so that a lease is never lost between being handed out and being recorded). The fiber that runs it is named as
   * its holder; `site` is where the application asked for it (else `acquireSite`'s value is).
   */
  acquire(
    mode: Mode,
    options: LeaseOptions,
    restore: Restore,
    site?: string
  ): Effect.Effect<Lease<Client>, AcquireError> {
    return Effect.withFiberRuntime((asker) => this.acquireFor(asker, mode, options, restore, site))
  }

  private acquireFor(
    asker: Asker,
    mode: Mode,
    options: LeaseOptions,
    restore: Restore,
    site: string | undefined
  ): Effect.Effect<Lease<Client>, AcquireError> {
    if (this.closing) return Effect.fail(this.closedError)
    const mark: Mark = {
      fiber: asker.id(),
      span: asker.currentSpan,
      site: this.holdWarningMillis === undefined ? undefined : site ?? asker.getFiberRef(acquireSite)
    }
    // Fast path: nobody waits, so nobody is passed over. Most leases are decided here without another Effect step.
    // When the event loop is owed a turn, the lease waits in the queue, which is served after the turn.
    if (this.waiting === 0 && !this.turns.owed()) {
      if (mode === "shared") {
        const joined = this.join(mark)
        if (joined !== undefined) return Effect.succeed(this.servedAtOnce(joined))
      }
      const grant = this.takeIdle(mode, options, mark)
      if (grant === retired) return this.timeWait(this.wait(mode, options, restore, mark))
      if (grant?._tag === "Leased") return Effect.succeed(this.servedAtOnce(grant.lease))
      if (grant !== undefined) {
        return this.timeWait(Effect.flatMap(
          this.probe(grant.entry, mode, mark),
          (lease) => lease !== undefined ? Effect.succeed(lease) : this.wait(mode, options, restore, mark)
        ))
      }
    }
    return this.timeWait(this.wait(mode, options, restore, mark))
  }

  /** A lease handed out without waiting: its wait time is 0. */
  private servedAtOnce(lease: Lease<Client>): Lease<Client> {
    this.stats.waited(0n)
    return lease
  }

  /** Records the wait time of a lease not handed out at once: from now (the acquire) until it is handed out. */
  private timeWait(acquire: Effect.Effect<Lease<Client>, AcquireError>): Effect.Effect<Lease<Client>, AcquireError> {
    const started = this.clock.unsafeCurrentTimeNanos()
    return Effect.tap(acquire, () => this.stats.waited(this.clock.unsafeCurrentTimeNanos() - started))
  }

  private wait(
    mode: Mode,
    options: LeaseOptions,
    restore: Restore,
    mark: Mark
  ): Effect.Effect<Lease<Client>, AcquireError> {
    const deadline = this.clock.unsafeCurrentTimeMillis() + this.acquireTimeout
    // A connection that fails its probe sends the waiter back to the front: it keeps its place and deadline, which
    // ends it even if connection after connection fails (no timer needs to fire for that).
    const attempt = (first: boolean): Effect.Effect<Lease<Client>, AcquireError> =>
      Effect.flatMap(restore(this.enqueue({ mode, options, mark }, deadline, first)), (grant) => {
        if (grant._tag === "Leased") return Effect.succeed(grant.lease)
        return Effect.flatMap(this.probe(grant.entry, mode, mark), (lease) =>
          lease !== undefined
            ? Effect.succeed(lease)
            : this.clock.unsafeCurrentTimeMillis() >= deadline
            ? Effect.fail(this.timedOut())
            : attempt(false))
      })
    return Effect.useSpan("sqlsim.acquire", this.acquireSpan, () => attempt(true))
  }

  private enqueue(
    ask: Pick<Waiter<Client>, "mode" | "options" | "mark">,
    deadline: number,
    atBack: boolean
  ): Effect.Effect<Grant<Client>, AcquireError> {
    return Effect.async<Grant<Client>, AcquireError>((resume) => {
      if (this.closing) return resume(Effect.fail(this.closedError))
      const waiter: Waiter<Client> = { ...ask, settled: false, deadline, resume: undefined, outcome: undefined }
      if (atBack) {
        this.queue.push(waiter)
      } else if (this.head > 0) {
        this.queue[--this.head] = waiter
      } else {
        this.queue.unshift(waiter)
      }
      this.countWaiting(waiter, 1)
      this.dispatch()
      if (waiter.outcome !== undefined) return resume(waiter.outcome)
      waiter.resume = resume
      this.wakeTimer?.()
      // Interrupted while waiting: leave the queue; a connection handed over meanwhile goes to the next waiter.
      return Effect.sync(() => this.withdraw(waiter))
    })
  }

  private countWaiting(waiter: Waiter<Client>, change: 1 | -1): void {
    this.waiting += change
    if (waiter.mode === "exclusive") this.waitingExclusive += change
    this.stats.setWaiting(this.waiting)
  }

  private settle(waiter: Waiter<Client>, outcome: Outcome<Client>): void {
    waiter.settled = true
    waiter.outcome = outcome
    this.countWaiting(waiter, -1)
    waiter.resume?.(outcome)
  }

  private withdraw(waiter: Waiter<Client>): void {
    if (!waiter.settled) {
      waiter.settled = true
      this.countWaiting(waiter, -1)
    } else if (waiter.outcome !== undefined && Exit.isSuccess(waiter.outcome)) {
      // Served, but interrupted before it took what it was handed: that goes back, to the next waiter.
      this.giveBack(waiter.outcome.value)
    }
    this.dispatch()
  }

  /** What a waiter was handed and will not take: its lease ends, or the connection taken for its probe is idle again. */
  private giveBack(grant: Grant<Client>): void {
    if (grant._tag === "Leased") {
      grant.lease.release(Exit.void)
    } else if (grant.entry.state === "validating") {
      grant.entry.state = "idle"
      this.idle.push(grant.entry)
    }
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
   * The dispatch step: the oldest waiters served (a shared one joins the shared connection, anyone takes an idle
   * one), and connects started for waiters no connection is coming for. Runs after every change.
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
      if (this.turns.owed()) return this.dispatchLater("eventLoop")
      const joined = waiter.mode === "shared" ? this.join(waiter.mark) : undefined
      const grant = joined !== undefined
        ? { _tag: "Leased" as const, lease: joined }
        : this.takeIdle(waiter.mode, waiter.options, waiter.mark)
      if (waiter.settled) {
        // Settled meanwhile: takeIdle retired a connection, its replacement (minConnections) failed at once, and that
        // failure went to this waiter (`connected`). What it was about to be handed goes back.
        if (grant !== undefined && grant !== retired) this.giveBack(grant)
        continue
      }
      if (grant === retired) {
        // The waiter keeps its place and its deadline, which ends it even if connection after connection fails its
        // check (no timer needs to fire for that); its next connection is opened on a later turn of the scheduler,
        // so that such connections never make a synchronous loop.
        if (this.clock.unsafeCurrentTimeMillis() < waiter.deadline) return this.dispatchLater("scheduler")
        this.settle(waiter, Exit.fail(this.timedOut()))
        continue
      }
      if (grant !== undefined) {
        this.settle(waiter, Exit.succeed(grant))
      } else if (
        !this.dispatchPending && this.opening < this.connectionsWanted() &&
        this.entries.size + this.opening < maxConnections
      ) {
        this.connect()
      } else {
        return
      }
    }
  }

  /**
   * Runs the dispatch again (once, however often it is asked meanwhile) on a later turn of Effect's scheduler, or
   * after a turn of the event loop, which runs timers, I/O and signal handlers (and so `Effect.timeout`s) first.
   */
  private dispatchLater(after: "scheduler" | "eventLoop"): void {
    if (this.dispatchPending) return
    this.dispatchPending = true
    const dispatch = () => {
      this.dispatchPending = false
      this.dispatch()
    }
    if (after === "eventLoop") setImmediate(dispatch)
    else this.run(Effect.zipRight(Effect.yieldNow(), Effect.sync(dispatch)))
  }

  /** Connections the waiters need: one each for exclusive leases, one for all the shared ones (they share it). */
  private connectionsWanted(): number {
    const shared = this.waiting - this.waitingExclusive
    return this.waitingExclusive + (shared > 0 && this.shared === undefined ? 1 : 0)
  }

  // --- checkout and lease ----------------------------------------------------------------------------------------

  /** A shared lease on the shared connection, if it may still be joined (checked as a checkout would be). */
  private join(mark: Mark): Lease<Client> | undefined {
    const entry = this.shared
    if (entry === undefined) return undefined
    const now = this.clock.unsafeCurrentTimeMillis()
    const problem = this.checkAt(entry, now) ??
      (now - entry.createdAt >= this.maxLifetime ? lifetimeReached : undefined)
    if (problem !== undefined) {
      this.doom(entry, { reason: problem, invalidated: problem !== lifetimeReached })
      return undefined
    }
    entry.holders++
    return this.record(entry, mark)
  }

  /**
   * An idle connection for a lease: leased at once when it needs no probe, handed over to be probed when it does;
   * one with a problem is retired and the next one tried. Undefined when none is idle, `retired` when every idle one
   * was retired.
   */
  private takeIdle(mode: Mode, options: LeaseOptions, mark: Mark): Grant<Client> | typeof retired | undefined {
    let retiredAny = false
    while (true) {
      const entry = this.idle.pop()
      if (entry === undefined) return retiredAny ? retired : undefined
      const problem = this.problemOf(entry, options)
      if (problem === undefined) return { _tag: "Leased", lease: this.occupy(entry, mode, mark) }
      if (problem === "probe") {
        entry.state = "validating"
        return { _tag: "Probe", entry }
      }
      entry.state = "validating"
      this.retire(entry, problem !== lifetimeReached, problem)
      retiredAny = true
    }
  }

  /** Probes a connection taken for a lease: the lease when it answered; undefined when it was retired instead. */
  private probe(entry: Entry<Client>, mode: Mode, mark: Mark): Effect.Effect<Lease<Client> | undefined> {
    return Effect.map(Effect.either(entry.connection.validate), (result) => {
      // A probe that goes elsewhere (a worker, a server) takes time: the pool may have closed it meanwhile.
      if (entry.state !== "validating") return undefined
      // Invalidated while its probe ran: it still serves this lease, and is closed when the lease ends.
      if (result._tag === "Right") return this.occupy(entry, mode, mark)
      this.retire(entry, true, result.left.reason)
      return undefined
    })
  }

  /** Why a connection taken for a lease cannot be handed out as it is: undefined, "probe" it first, or a problem. */
  private problemOf(entry: Entry<Client>, options: LeaseOptions): string | undefined {
    if (this.closing) return "the pool is closing"
    const now = this.clock.unsafeCurrentTimeMillis()
    const problem = this.checkAt(entry, now)
    if (problem !== undefined) return problem
    if (entry.fresh) return undefined
    if (now - entry.createdAt >= this.maxLifetime) return lifetimeReached
    if (entry.checkouts > 0 && now - entry.lastReleasedAt < options.probeUnlessUsedWithin) return undefined
    return "probe"
  }

  /** Hands out a free connection: its first lease. */
  private occupy(entry: Entry<Client>, mode: Mode, mark: Mark): Lease<Client> {
    entry.state = "leased"
    entry.mode = mode
    entry.holders = 1
    entry.fresh = false
    this.stats.lease(entry.checkouts++ > 0)
    if (mode === "shared" && entry.doomed === undefined) this.shared = entry
    return this.record(entry, mark)
  }

  private record(entry: Entry<Client>, mark: Mark): Lease<Client> {
    this.turns.count()
    const since = this.clock.unsafeCurrentTimeNanos()
    const active: ActiveLease<Client> = { entry, ended: false, since, mark, warned: false }
    this.active.add(active)
    this.wakeHoldWatch?.()
    return { entry, release: (exit) => this.release(active, exit) }
  }

  private release(active: ActiveLease<Client>, exit: Exit.Exit<unknown, unknown>): void {
    if (active.ended) return
    active.ended = true
    this.active.delete(active)
    this.stats.used(this.clock.unsafeCurrentTimeNanos() - active.since)
    const { entry } = active
    if (entry.state !== "leased") return this.afterRelease()
    const broken = this.brokenBy(entry, exit)
    if (broken !== undefined) this.doom(entry, { reason: broken, invalidated: true })
    if (--entry.holders > 0) return this.afterRelease()
    if (this.shared === entry) this.shared = undefined
    entry.lastReleasedAt = this.clock.unsafeCurrentTimeMillis()
    this.stats.endLease()
    if (entry.doomed !== undefined) {
      this.retire(entry, entry.doomed.invalidated, entry.doomed.reason)
    } else if (this.closing) {
      this.retire(entry, false, "the pool is closing")
    } else {
      entry.state = "idle"
      this.idle.push(entry)
      this.idled()
    }
    this.afterRelease()
  }

  private afterRelease(): void {
    if (this.closing && this.active.size === 0) this.drained?.()
    this.dispatch()
  }

  /** Marks a leased or validating connection to be closed when it is free; the shared one is no longer joined. */
  private doom(entry: Entry<Client>, doom: Doom): void {
    entry.doomed ??= doom
    if (this.shared === entry) this.shared = undefined
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

  /** The connection behind a handle, if this pool opened it. */
  entryOf(handle: Handle<Client>): Entry<Client> | undefined {
    return this.byHandle.get(handle)
  }

  /** Closes the connection instead of returning it: when its last lease ends, or at once when it is idle. */
  invalidate(entry: Entry<Client>): void {
    if (!this.entries.has(entry)) return // closed already
    if (entry.state === "idle") {
      this.retire(entry, true, "it was invalidated")
      this.dispatch()
    } else {
      this.doom(entry, { reason: "it was invalidated", invalidated: true })
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
      const connection = yield* Scope.extend(this.options.connector.connect(this.connectOptions), attemptScope)
        .pipe(Effect.tapErrorCause((cause) => Scope.close(attemptScope, Exit.failCause(cause))))
      const problem = connection.check() ?? connection.checkFile?.()
      if (problem === undefined) {
        if (connection.fileIdentity !== undefined) {
          this.connectOptions = { ...this.connectOptions, previousFile: connection.fileIdentity }
        }
        return connection
      }
      yield* Scope.close(attemptScope, Exit.void)
      return yield* connectAttemptFailed({
        filename: this.connectOptions.filename,
        code: "SQLITE_CANTOPEN",
        transient: true,
        reason: `the connection was unusable as soon as it opened: ${problem}`
      })
    }
  )

  /** One physical connection, with retries of transient failures, in a Scope of its own. */
  readonly connectWithRetry: Effect.Effect<Entry<Client>, ConnectError> = Effect.suspend(() => {
    const { config, makeClient } = this.options
    const started = this.clock.unsafeCurrentTimeNanos()
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
              return Effect.map(makeClient(connection, invalidate), (sql) => {
                this.stats.created(this.clock.unsafeCurrentTimeNanos() - started)
                return entry = new Entry(
                  this.nextId++,
                  connection,
                  sql,
                  this.clock.unsafeCurrentTimeMillis(),
                  connectionScope
                )
              })
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
    this.byHandle.set(entry.handle, entry)
    this.idle.push(entry)
    this.idled()
  }

  /**
   * A connection became idle. The reaper, if it waits for one, is woken only when it may have to close it some day:
   * past minConnections or with a maxLifetime. A pool at its minimum with no lifetime (the writer lane, the Reader's
   * main-thread connection) would otherwise run the reaper after every statement, for nothing.
   */
  private idled(): void {
    if (this.wakeReaper === undefined) return
    if (Number.isFinite(this.maxLifetime) || this.surplus()) this.wakeReaper()
  }

  /** Whether the pool has connections (open or opening) above minConnections, which idleTimeToLive may close. */
  private surplus(): boolean {
    return this.entries.size + this.opening > this.options.config.minConnections
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
    // Every wait that has passed its deadline ends before anyone is served: then the next waiter may be one that can
    // be served now (a shared lease behind an exclusive one that gave up).
    for (let next = this.oldest(); next !== undefined && next.deadline <= now; next = this.oldest()) {
      this.settle(next, Exit.fail(this.timedOut()))
    }
    this.dispatch()
    return Effect.void
  }))

  /** The failure of a wait that reached its deadline (counted). */
  private timedOut(): AcquireTimeoutError {
    this.stats.count("timeouts")
    return new AcquireTimeoutError({
      waitedMs: this.acquireTimeout,
      stats: this.stats.snapshot(),
      lastError: this.lastConnectError,
      holder: this.oldestHolder(),
      holders: this.active.size,
      lane: this.options.lane
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
      const surplus = this.surplus()
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

  /**
   * With holdWarningThreshold: logs one warning (and counts it) for each lease held longer than the threshold, while
   * it is still held. Leases are recorded in the order they are handed out and share one threshold, so the oldest
   * lease not yet reported is the next to pass it: one fiber sleeping until then is the whole schedule.
   */
  readonly holdWatch: Effect.Effect<never> = Effect.forever(Effect.suspend((): Effect.Effect<void> => {
    const threshold = this.holdWarningMillis ?? Infinity
    const now = this.clock.unsafeCurrentTimeNanos()
    const passed: Array<Holder> = []
    let wake = Infinity
    for (const active of this.active) {
      if (active.warned) continue
      const heldMillis = Number(now - active.since) / 1e6
      if (heldMillis < threshold) {
        wake = threshold - heldMillis
        break
      }
      active.warned = true
      passed.push(this.holderOf(active, now))
    }
    if (passed.length > 0) return Effect.forEach(passed, (holder) => this.warnHeld(holder), { discard: true })
    if (Number.isFinite(wake)) return Effect.sleep(Math.max(Math.ceil(wake), 1))
    return Effect.async<void>((resume) => {
      this.wakeHoldWatch = () => {
        this.wakeHoldWatch = undefined
        resume(Effect.void)
      }
      return Effect.sync(() => this.wakeHoldWatch = undefined)
    })
  }))

  private warnHeld(holder: Holder): Effect.Effect<void> {
    this.stats.holdWarning(holder.span)
    const site = holder.site === undefined
      ? " (its acquire site is captured for transactions and ConnectionPool.use)"
      : `; acquired at:\n${holder.site}`
    // The annotation lets an app (or `sqlsim simulate`, which counts them in its report) tell these warnings apart.
    return Effect.annotateLogs(
      Effect.logWarning(
        `sqlsim: ${this.options.describedAs ?? this.options.label}: a connection held longer than ` +
          `holdWarningThreshold (${this.holdWarningMillis} ms) by ${describeHolder(holder)}${site}`
      ),
      "sqlsim.event",
      "hold-warning"
    )
  }

  // --- shutdown --------------------------------------------------------------------------------------------------

  /**
   * Refuses new acquires and fails every waiter at once, closes the idle connections, gives leases
   * shutdownTimeout to end (a connection is closed as its last lease ends), then closes every connection (leased ones too) and stops the pool's
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
      const wait = this.active.size === 0 ? Effect.void : Effect.interruptible(
        Effect.async<void>((resume) => {
          this.drained = () => resume(Effect.void)
          if (this.active.size === 0) resume(Effect.void)
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
            const { entry } = active
            if (entry.state === "leased" && --entry.holders === 0) {
              this.stats.endLease()
              this.retire(entry, false, "shutdownTimeout passed")
            }
          }
          for (const entry of [...this.entries]) this.retire(entry, false, "the pool is closed")
          return Scope.close(this.poolScope, Exit.void)
        })
      )
    })
  }

  // --- observation -----------------------------------------------------------------------------------------------

  /** the connections open now, idle or leased (for changes every connection must get, such as an extension) */
  openEntries(): ReadonlyArray<Entry<Client>> {
    return [...this.entries]
  }

  snapshot(): PoolStats {
    return this.stats.snapshot()
  }

  /** Who holds a lease, as errors, warnings and stats name it. */
  private holderOf(active: ActiveLease<Client>, now: bigint): Holder {
    return {
      span: spanName(active.mark.span),
      fiber: FiberId.threadName(active.mark.fiber),
      since: Number(active.since / 1_000_000n),
      heldMs: Number(now - active.since) / 1e6,
      site: active.mark.site
    }
  }

  /** The holder of the lease held longest of those not ended; undefined when no lease is held. */
  oldestHolder(): Holder | undefined {
    const [oldest] = this.active
    return oldest === undefined ? undefined : this.holderOf(oldest, this.clock.unsafeCurrentTimeNanos())
  }

  /** The lease held longest of those not ended: its connection, and its holder. */
  oldestLease(): { readonly connectionId: number; readonly holder: Holder } | undefined {
    // A Set keeps insertion order, and leases are recorded as they are handed out: the first is the oldest.
    const [oldest] = this.active
    if (oldest === undefined) return undefined
    return { connectionId: oldest.entry.id, holder: this.holderOf(oldest, this.clock.unsafeCurrentTimeNanos()) }
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
    const leased = [...this.entries].filter((entry) => entry.state === "leased")
    const holders = leased.reduce((sum, entry) => sum + entry.holders, 0)
    if (holders !== this.active.size) found.push(`leases on connections (${holders}) != leases (${this.active.size})`)
    if (leased.some((entry) => entry.holders < 1 || (entry.mode === "exclusive" && entry.holders !== 1))) {
      found.push("a leased connection has no lease, or an exclusive one several")
    }
    if (this.shared !== undefined && (this.shared.state !== "leased" || this.shared.mode !== "shared")) {
      found.push("the shared connection is not leased shared")
    }
    if (this.idle.length !== count("idle")) found.push("the idle list and the idle states disagree")
    if (stats.waiting !== this.waiting) found.push("stats.waiting != waiting")
    if (this.waiting > 0 && this.idle.length > 0 && !this.dispatching && !this.closing) {
      found.push("a waiter waits while a connection is idle")
    }
    return found
  }
}

const lifetimeReached = "it reached maxLifetime"
/** what `takeIdle` says when every idle connection failed its check */
const retired = "retired"
