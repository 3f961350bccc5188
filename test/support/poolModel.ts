/**
 * The reference model of a ConnectionPool, and the harness that drives a real pool the same way, for the model-based
 * property test. The model is deliberately naive: permits first come first served, an idle connection is reused
 * before a new one is opened, a lease that needs a new connection opens exactly one, an invalidated connection closes
 * when its lease ends (at once when idle), a waiter times out after acquireTimeout. Every counter and gauge of the
 * real pool must equal the model's after every step.
 */
import { SqlError } from "@effect/sql/SqlError"
import type { ConnectionPool, PoolStats } from "@sqlsim/sqlite-pool"
import type { Fault, FaultConnector } from "@sqlsim/test-kit/FaultConnector"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { violations } from "./invariants.js"

/** What the model says a lease (one acquire, numbered L1, L2 ... in order) is doing. */
export type LeaseState =
  | { readonly status: "waiting"; readonly since: number }
  | { readonly status: "held"; readonly connection: number | "an idle one"; invalidated: boolean }
  | { readonly status: "released" | "failedInside" | "interruptedHolder" | "reclaimed" }
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
  /** labels of held leases a keeper holds (as a lane keeps its connection): given back when someone would wait */
  kept: Array<number> = []
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

  /** A new acquire: served at once if a permit is free and nobody waits, queued otherwise. */
  acquire(): number {
    const label = this.nextLabel++
    if (this.waiters.length === 0 && this.held.length < this.maxConnections) this.serve(label)
    else {
      this.leases.set(label, { status: "waiting", since: this.now })
      this.waiters.push(label)
      this.reclaim()
    }
    return label
  }

  /** A keeper's lease, taken only when it is served at once (the harness's Keep command checks that). */
  keep(): number {
    const label = this.nextLabel++
    this.serve(label)
    if (this.leases.get(label)?.status === "held") this.kept.push(label)
    return label
  }

  /** A health check served at once: a lease that ends as soon as it began. */
  healthCheck(): void {
    const pendingIdle =
      [...this.leases.values()].filter((state) => state.status === "held" && state.connection === "an idle one").length
    this.counters.acquired++
    this.counters.released++
    if (this.idle.size > pendingIdle) {
      // Served by an idle connection, which is idle again afterwards.
      this.counters.reused++
    } else {
      this.counters.created++
      this.idle.add(this.counters.created)
    }
  }

  /**
   * Someone waits while keepers hold connections: keepers give theirs back, one per waiter, the oldest connection
   * first (the pool asks its connections in the order they were opened).
   */
  private reclaim(): void {
    while (this.waiters.length > 0 && this.kept.length > 0) {
      const connectionOf = (label: number) => {
        const state = this.heldState(label)
        return typeof state.connection === "number" ? state.connection : Infinity
      }
      const oldest = this.kept.reduce((best, label) => connectionOf(label) < connectionOf(best) ? label : best)
      this.endLease(oldest, "reclaimed")
    }
  }

  /** A lease got a permit: an idle connection if there is one, else a new one (or a connect failure). */
  private serve(label: number): void {
    const pendingIdle =
      [...this.leases.values()].filter((state) => state.status === "held" && state.connection === "an idle one").length
    if (this.idle.size > pendingIdle) {
      this.counters.acquired++
      this.counters.reused++
      this.leases.set(label, { status: "held", connection: "an idle one", invalidated: false })
      this.held.push(label)
    } else if (this.fault !== undefined) {
      this.counters.connectFailures++
      this.leases.set(label, { status: "connectError" })
    } else {
      this.counters.created++
      this.counters.acquired++
      this.leases.set(label, { status: "held", connection: this.counters.created, invalidated: false })
      this.held.push(label)
    }
  }

  /** Hands free permits to waiters, oldest first (a failed connect frees its permit for the next one). */
  private pump(): void {
    while (this.waiters.length > 0 && this.held.length < this.maxConnections) {
      const next = this.waiters.shift()!
      this.serve(next)
    }
  }

  endLease(label: number, how: "released" | "failedInside" | "interruptedHolder" | "reclaimed"): void {
    const state = this.heldState(label)
    this.counters.released++
    this.held = this.held.filter((held) => held !== label)
    this.kept = this.kept.filter((kept) => kept !== label)
    if (state.invalidated) {
      this.counters.invalidated++
      this.counters.closed++
    } else {
      this.idle.add(state.connection as number)
    }
    this.leases.set(label, { status: how })
    this.pump()
    this.reclaim()
  }

  invalidateIdle(id: number): void {
    this.idle.delete(id)
    this.counters.invalidated++
    this.counters.closed++
  }

  interruptWaiter(label: number): void {
    this.waiters = this.waiters.filter((waiter) => waiter !== label)
    this.leases.set(label, { status: "interrupted" })
  }

  tick(millis: number): ReadonlyArray<number> {
    this.now += millis
    const expired = this.waiters.filter((label) => {
      const state = this.leases.get(label)
      return state?.status === "waiting" && this.now - state.since >= this.acquireTimeoutMs
    })
    for (const label of expired) {
      this.waiters = this.waiters.filter((waiter) => waiter !== label)
      this.leases.set(label, { status: "timeout" })
      this.counters.timeouts++
    }
    return expired
  }

  /** The statistics the real pool must report. */
  expectedStats(): PoolStats.PoolStats {
    return {
      ...this.counters,
      open: this.open,
      idle: this.open - this.held.length,
      inUse: this.held.length,
      waiting: this.waiters.length
    }
  }

  /** After the real pool served a lease "from an idle connection", the model learns which one it was. */
  resolveIdle(label: number, id: number): string | undefined {
    const state = this.heldState(label)
    if (state.connection !== "an idle one") return undefined
    if (!this.idle.has(id)) {
      return `L${label} was served connection ${id}, which was not idle (idle: ${[...this.idle].join(", ") || "none"})`
    }
    this.idle.delete(id)
    this.leases.set(label, { ...state, connection: id })
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
    readonly connector: FaultConnector,
    readonly forkIn: Scope.Scope
  ) {}

  private holder(lease: RealLease): Effect.Effect<void> {
    const pool = this.pool
    const leases = this.leases
    const doubleLeases = this.doubleLeases
    const connections = this.connections
    return Effect.scoped(Effect.gen(function*() {
      const connection = yield* pool.acquire
      for (const other of leases.values()) {
        if (other.status === "held" && other.connection?.id === connection.id) {
          doubleLeases.push(`connection ${connection.id} handed to L${lease.label} while L${other.label} held it`)
        }
      }
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

  /**
   * A keeper's lease, as a lane takes it: through `lease` with a `reclaim` callback that gives the connection back
   * at once; otherwise it ends as a held lease does.
   */
  startKeeper(label: number): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const lease = yield* this.newLease(label)
      const pool = this.pool
      const connections = this.connections
      const keeper = Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const reclaimed = yield* Deferred.make<void>()
          // Called by the pool's dispatch, never before the lease is handed out.
          let giveBack = (): void => undefined
          const leased = yield* pool.lease("lane", restore, () => giveBack())
          giveBack = () => {
            lease.status = "reclaimed"
            leased.release(Exit.void)
            Deferred.unsafeDone(reclaimed, Exit.void)
          }
          lease.connection = leased.pooled
          connections.set(leased.pooled.id, leased.pooled)
          lease.status = "held"
          const ending = yield* restore(
            Effect.raceFirst(Deferred.await(lease.ending), Effect.as(Deferred.await(reclaimed), "reclaimed" as const))
          )
            .pipe(Effect.onInterrupt(() =>
              Effect.sync(() => {
                lease.status = "interruptedHolder"
                leased.release(Exit.interrupt(FiberId.none))
              })
            ))
          if (ending === "reclaimed") return
          leased.release(
            ending === "fail" ? Exit.fail(new SqlError({ cause: undefined, message: "failed inside" })) : Exit.void
          )
          lease.status = ending === "fail" ? "failedInside" : "released"
        })
      )
      const ended = Effect.onExit(keeper, (exit) =>
        Effect.sync(() => {
          if (lease.status === "waiting") lease.status = statusOfExit(exit, false)
        }))
      lease.fiber = yield* Effect.forkIn(Effect.ignore(ended), this.forkIn)
    })
  }

  private newLease(label: number): Effect.Effect<RealLease> {
    return Effect.map(Deferred.make<Ending>(), (ending) => {
      const lease: RealLease = { label, fiber: undefined, ending, connection: undefined, status: "waiting" }
      this.leases.set(label, lease)
      return lease
    })
  }

  startLease(label: number): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const lease = yield* this.newLease(label)
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
        } else if (expected.status === "held" && typeof expected.connection === "number") {
          if (real.connection?.id !== expected.connection) {
            problems.push(`L${label} should hold connection ${expected.connection} but holds ${real.connection?.id}`)
          }
        }
      }
      const heldIds = [...this.leases.values()].filter((lease) => lease.status === "held").map((lease) =>
        lease.connection?.id
      )
      if (new Set(heldIds).size !== heldIds.length) problems.push(`a connection is leased twice: ${heldIds.join(", ")}`)
      const stats = yield* this.pool.stats
      const expected = model.expectedStats()
      for (const key of Object.keys(expected) as Array<keyof PoolStats.PoolStats>) {
        if (stats[key] !== expected[key]) problems.push(`stats.${key} should be ${expected[key]} but is ${stats[key]}`)
      }
      problems.push(...violations(stats, model.maxConnections).map((rule) => `invariant broken: ${rule}`))
      problems.push(...this.pool.violations().map((rule) => `core invariant broken: ${rule}`))
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
