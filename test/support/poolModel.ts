/**
 * The reference model of a ConnectionPool, and the harness that drives a real pool the same way, for the model-based
 * property test. The model is deliberately naive: leases are served first come first served; an exclusive lease
 * needs a connection of its own, a shared one joins the connection shared leases hold (when nobody waits before it)
 * or takes one like an exclusive lease; an idle connection is reused before a new one is opened, a lease that needs
 * a new connection opens exactly one, an invalidated connection closes when its last lease ends (at once when idle),
 * a waiter times out after acquireTimeout. Every counter and gauge of the real pool must equal the model's after
 * every step.
 */
import { SqlError } from "@effect/sql/SqlError"
import type { ConnectionPool, PoolStats } from "@sqlsim/sqlite-pool"
import type { Fault, FaultConnector } from "@sqlsim/test-kit/FaultConnector"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Pool from "../../packages/sqlite-pool/src/internal/pool.js"
import { violations } from "./invariants.js"

/** A connection in use, as the model knows it: which one, whether it must close, and the leases on it. */
export interface Slot {
  connection: number | "an idle one"
  invalidated: boolean
  readonly mode: Mode
  readonly holders: Set<number>
}

export type Mode = "shared" | "exclusive"

/** What the model says a lease (one acquire, numbered L1, L2 ... in order) is doing. */
export type LeaseState =
  | { readonly status: "waiting"; readonly since: number; readonly mode: Mode }
  | { readonly status: "held"; readonly slot: Slot }
  | { readonly status: "released" | "failedInside" | "interruptedHolder" }
  | { readonly status: "connectError" | "timeout" | "interrupted" }

type Counters = Omit<PoolStats.PoolStats, "open" | "idle" | "inUse" | "waiting">

export class Model {
  readonly leases = new Map<number, LeaseState>()
  /** ids of open connections that are not leased */
  readonly idle = new Set<number>()
  /** labels of waiting leases, oldest first */
  waiters: Array<number> = []
  /** labels of held leases, in the order they were served */
  held: Array<number> = []
  /** the connection shared leases join now (none when no shared lease holds one, or it was invalidated) */
  sharedSlot: Slot | undefined = undefined
  fault: Fault | undefined = undefined
  now = 0
  nextLabel = 1
  readonly counters: { -readonly [K in keyof Counters]: number } = {
    created: 0,
    reused: 0,
    acquired: 0,
    released: 0,
    invalidated: 0,
    closed: 0,
    connectFailures: 0,
    retries: 0,
    timeouts: 0
  }

  constructor(readonly maxConnections: number, readonly acquireTimeoutMs: number) {}

  get open(): number {
    return this.counters.created - this.counters.closed
  }

  heldState(label: number) {
    const state = this.leases.get(label)
    if (state?.status !== "held") throw new Error(`model: L${label} is not held`)
    return state
  }

  /** connections in use: each held by one exclusive lease or by one or more shared ones */
  get inUse(): number {
    return new Set(this.held.map((label) => this.heldState(label).slot)).size
  }

  /** A new acquire: served at once if it can be and nobody waits, queued otherwise. */
  acquire(mode: Mode): number {
    const label = this.nextLabel++
    if (this.waiters.length > 0 || !this.tryServe(label, mode)) {
      this.leases.set(label, { status: "waiting", since: this.now, mode })
      this.waiters.push(label)
    }
    return label
  }

  /** Serves a lease if it can be now: a shared one joins the shared connection, anyone takes a free permit. */
  private tryServe(label: number, mode: Mode): boolean {
    const joinable = this.sharedSlot
    if (mode === "shared" && joinable !== undefined) {
      joinable.holders.add(label)
      this.leases.set(label, { status: "held", slot: joinable })
      this.held.push(label)
      return true
    }
    if (this.inUse >= this.maxConnections) return false
    this.serve(label, mode)
    return true
  }

  /** A health check served at once: a lease that ends as soon as it began. */
  healthCheck(): void {
    this.counters.acquired++
    this.counters.released++
    if (this.idle.size > this.pendingIdle()) {
      // Served by an idle connection, which is idle again afterwards.
      this.counters.reused++
    } else {
      this.counters.created++
      this.idle.add(this.counters.created)
    }
  }

  /** connections handed out whose id the model has not learnt yet (served "from an idle one") */
  private pendingIdle(): number {
    const slots = new Set(this.held.map((label) => this.heldState(label).slot))
    return [...slots].filter((slot) => slot.connection === "an idle one").length
  }

  /** A lease got a permit: an idle connection if there is one, else a new one (or a connect failure). */
  private serve(label: number, mode: Mode): void {
    const take = (connection: Slot["connection"]) => {
      const slot: Slot = { connection, invalidated: false, mode, holders: new Set([label]) }
      this.counters.acquired++
      this.leases.set(label, { status: "held", slot })
      this.held.push(label)
      if (mode === "shared") this.sharedSlot = slot
    }
    if (this.idle.size > this.pendingIdle()) {
      this.counters.reused++
      take("an idle one")
    } else if (this.fault !== undefined) {
      this.counters.connectFailures++
      this.leases.set(label, { status: "connectError" })
    } else {
      this.counters.created++
      take(this.counters.created)
    }
  }

  /** Serves waiters, oldest first, while the oldest can be served (a failed connect lets the next one try). */
  private pump(): void {
    while (this.waiters.length > 0) {
      const next = this.waiters[0]!
      const state = this.leases.get(next)
      if (state?.status !== "waiting" || !this.tryServe(next, state.mode)) return
      this.waiters.shift()
    }
  }

  endLease(label: number, how: "released" | "failedInside" | "interruptedHolder"): void {
    const { slot } = this.heldState(label)
    this.held = this.held.filter((held) => held !== label)
    slot.holders.delete(label)
    this.leases.set(label, { status: how })
    if (slot.holders.size > 0) return
    this.counters.released++
    if (this.sharedSlot === slot) this.sharedSlot = undefined
    if (slot.invalidated) {
      this.counters.invalidated++
      this.counters.closed++
    } else {
      this.idle.add(slot.connection as number)
    }
    this.pump()
  }

  /** Marks a held connection to close when its last lease ends; shared leases no longer join it. */
  invalidateHeld(label: number): void {
    const { slot } = this.heldState(label)
    slot.invalidated = true
    if (this.sharedSlot === slot) this.sharedSlot = undefined
  }

  invalidateIdle(id: number): void {
    this.idle.delete(id)
    this.counters.invalidated++
    this.counters.closed++
  }

  interruptWaiter(label: number): void {
    this.waiters = this.waiters.filter((waiter) => waiter !== label)
    this.leases.set(label, { status: "interrupted" })
    this.pump()
  }

  /**
   * Time passes: each wait ends at its deadline, in deadline order, and at that moment the waiters behind it are
   * served if they can be (a shared lease behind an exclusive one that gave up joins the shared connection).
   */
  tick(millis: number): ReadonlyArray<number> {
    const end = this.now + millis
    const expired: Array<number> = []
    while (true) {
      const deadlines = this.waiters.map((label) => {
        const state = this.leases.get(label)
        return state?.status === "waiting" ? state.since + this.acquireTimeoutMs : Infinity
      })
      const next = Math.min(...deadlines)
      if (next > end) break
      this.now = Math.max(this.now, next)
      for (const label of this.waiters.filter((_, index) => deadlines[index] === next)) {
        this.waiters = this.waiters.filter((waiter) => waiter !== label)
        this.leases.set(label, { status: "timeout" })
        this.counters.timeouts++
        expired.push(label)
      }
      this.pump()
    }
    this.now = end
    return expired
  }

  /** The statistics the real pool must report. */
  expectedStats(): PoolStats.PoolStats {
    return {
      ...this.counters,
      open: this.open,
      idle: this.open - this.inUse,
      inUse: this.inUse,
      waiting: this.waiters.length
    }
  }

  /** After the real pool served a lease "from an idle connection", the model learns which one it was. */
  resolveIdle(label: number, id: number): string | undefined {
    const { slot } = this.heldState(label)
    if (slot.connection !== "an idle one") return undefined
    if (!this.idle.has(id)) {
      return `L${label} was served connection ${id}, which was not idle (idle: ${[...this.idle].join(", ") || "none"})`
    }
    this.idle.delete(id)
    slot.connection = id
    return undefined
  }
}

/** How a held lease ends when the test tells it to. */
export type Ending = "release" | "fail"

/** One real lease: a fiber that acquires, proves the connection works, holds it until told, then ends. */
export interface RealLease {
  readonly label: number
  fiber: Fiber.RuntimeFiber<void, never> | undefined
  readonly ending: Deferred.Deferred<Ending>
  connection: ConnectionPool.PooledConnection | undefined
  readonly mode: Mode
  /** what the fiber is doing, as the model names it, or "unexpected: ..." for anything the model has no name for */
  status: string
}

export class Harness {
  readonly leases = new Map<number, RealLease>()
  /** every connection ever served, by id, so an idle one can be invalidated */
  readonly connections = new Map<number, ConnectionPool.PooledConnection>()
  /** ids held by two leases at the same moment, if that ever happens */
  readonly doubleLeases: Array<string> = []
  readonly trace: Array<string> = []

  constructor(
    readonly pool: ConnectionPool.Service,
    readonly core: Pool.Core,
    readonly connector: FaultConnector,
    readonly forkIn: Scope.Scope
  ) {}

  /** a connection handed to a lease while another lease held it, unless both are shared */
  private noteDoubleLease(lease: RealLease, connection: ConnectionPool.PooledConnection): void {
    for (const other of this.leases.values()) {
      if (other === lease || other.status !== "held" || other.connection?.id !== connection.id) continue
      if (lease.mode === "shared" && other.mode === "shared") continue
      this.doubleLeases.push(`connection ${connection.id} handed to L${lease.label} while L${other.label} held it`)
    }
  }

  private holder(lease: RealLease): Effect.Effect<void> {
    const pool = this.pool
    const connections = this.connections
    const noteDoubleLease = (connection: ConnectionPool.PooledConnection) => this.noteDoubleLease(lease, connection)
    return Effect.scoped(Effect.gen(function*() {
      const connection = yield* pool.acquire
      noteDoubleLease(connection)
      lease.connection = connection
      connections.set(connection.id, connection)
      lease.status = "held"
      // The connection must work: a dead one must never be handed out.
      const [row] = yield* connection.sql<{ label: number }>`SELECT ${lease.label} AS label`
      if (row?.label !== lease.label) lease.status = `unexpected: SELECT returned ${JSON.stringify(row)}`
      const ending = yield* Deferred.await(lease.ending)
      if (ending === "fail") yield* connection.sql`SELEC this is not SQL`
    })).pipe(
      Effect.onExit((exit) =>
        Effect.sync(() => {
          lease.status = statusOfExit(exit, lease.status === "held")
        })
      ),
      Effect.ignore
    )
  }

  /** A shared lease, as a lane's statement takes it from the core; held until told, then ended as told. */
  startShared(label: number): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const lease = yield* this.newLease(label, "shared")
      const core = this.core
      const connections = this.connections
      const noteDoubleLease = (connection: ConnectionPool.PooledConnection) => this.noteDoubleLease(lease, connection)
      const shared = Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const leased = yield* core.acquire("shared", core.laneLease, restore)
          const connection = leased.entry.handle
          noteDoubleLease(connection)
          lease.connection = connection
          connections.set(connection.id, connection)
          lease.status = "held"
          const exit = yield* Effect.exit(restore(Effect.gen(function*() {
            const [row] = yield* connection.sql<{ label: number }>`SELECT ${lease.label} AS label`
            if (row?.label !== lease.label) lease.status = `unexpected: SELECT returned ${JSON.stringify(row)}`
            const ending = yield* Deferred.await(lease.ending)
            if (ending === "fail") yield* connection.sql`SELEC this is not SQL`
          })))
          leased.release(exit)
          return yield* exit
        })
      )
      const ended = Effect.onExit(shared, (exit) =>
        Effect.sync(() => {
          lease.status = statusOfExit(exit, lease.status === "held")
        }))
      lease.fiber = yield* Effect.forkIn(Effect.ignore(ended), this.forkIn)
    })
  }

  private newLease(label: number, mode: Mode): Effect.Effect<RealLease> {
    return Effect.map(Deferred.make<Ending>(), (ending) => {
      const lease: RealLease = { label, fiber: undefined, ending, connection: undefined, mode, status: "waiting" }
      this.leases.set(label, lease)
      return lease
    })
  }

  startLease(label: number): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const lease = yield* this.newLease(label, "exclusive")
      lease.fiber = yield* Effect.forkIn(this.holder(lease), this.forkIn)
    })
  }

  lease(label: number): RealLease {
    const lease = this.leases.get(label)
    if (lease === undefined) throw new Error(`harness: no lease L${label}`)
    return lease
  }

  /** Every difference between the model and the real pool, as readable sentences (empty when they agree). */
  differences(model: Model): Effect.Effect<ReadonlyArray<string>> {
    return Effect.gen(this, function*() {
      const problems: Array<string> = [...this.doubleLeases]
      for (const [label, expected] of model.leases) {
        const real = this.lease(label)
        if (real.status !== expected.status) {
          problems.push(`L${label} should be ${expected.status} but is ${real.status}`)
        } else if (expected.status === "held" && typeof expected.slot.connection === "number") {
          if (real.connection?.id !== expected.slot.connection) {
            problems.push(
              `L${label} should hold connection ${expected.slot.connection} but holds ${real.connection?.id}`
            )
          }
        }
      }
      const exclusiveIds = [...this.leases.values()].filter((lease) => lease.status === "held").map((lease) =>
        `${lease.connection?.id}${lease.mode === "shared" ? "s" : ""}`
      ).filter((id, index, all) => !id.endsWith("s") || all.indexOf(id) === index)
      const ids = exclusiveIds.map((id) => id.replace("s", ""))
      if (new Set(ids).size !== ids.length) problems.push(`a connection is leased twice: ${exclusiveIds.join(", ")}`)
      const stats = yield* this.pool.stats
      const expected = model.expectedStats()
      for (const key of Object.keys(expected) as Array<keyof PoolStats.PoolStats>) {
        if (stats[key] !== expected[key]) problems.push(`stats.${key} should be ${expected[key]} but is ${stats[key]}`)
      }
      problems.push(...violations(stats, model.maxConnections).map((rule) => `invariant broken: ${rule}`))
      problems.push(...this.core.violations().map((rule) => `core invariant broken: ${rule}`))
      if (this.connector.openHandles() !== stats.open) {
        problems.push(`the pool reports ${stats.open} open but ${this.connector.openHandles()} handles are open`)
      }
      return problems
    })
  }
}

const statusOfExit = (exit: Exit.Exit<void, unknown>, wasHeld: boolean): string => {
  if (Exit.isSuccess(exit)) return "released"
  if (Cause.isInterruptedOnly(exit.cause)) return wasHeld ? "interruptedHolder" : "interrupted"
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    if (wasHeld && error instanceof SqlError) return "failedInside"
    const tag = (error as { _tag?: string } | undefined)?._tag
    if (!wasHeld && tag === "ConnectError") return "connectError"
    if (!wasHeld && tag === "AcquireTimeoutError") return "timeout"
    return `unexpected: failed with ${tag ?? String(error)}`
  }
  return `unexpected: ${Cause.pretty(exit.cause)}`
}
