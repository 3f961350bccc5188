/**
 * One connection as the fault injector hands it to the pool: its checks, its probe and its statements are the events
 * at which the plan's connection faults fire, each decided by a draw of its own (the run's seed, the connection's
 * number, the event's number on it), so that a seed repeats them exactly on the virtual clock.
 *
 * Each fault is a real failure where one can be made: a dead connection has its driver handle really closed (the
 * pool's check, its probe or the statement that was about to run finds it closed); an I/O error and SQLITE_BUSY are
 * the driver's own error (better-sqlite3's `SqliteError` with SQLite's code and words) in the `SqlError` the
 * statement fails with, as the driver reports them.
 */
import type * as SqlConnection from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import type { Connector } from "@sqlsim/sqlite-pool"
import Database from "better-sqlite3"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Scope from "effect/Scope"
import type { FaultPlan } from "../FaultPlan.js"

/** Where a fault of a connection was met. */
export type Site = "check" | "probe" | "statement"

/** The faults of a connection's events. */
export type ConnectionFault = "die" | "ping" | "ioerr" | "busy" | "slow-statement"

/**
 * A uniform draw in [0, 1) for a key: FNV-1a of the key, mixed by one step of mulberry32. No state: the same key
 * gives the same draw in every run, whichever fiber asks and whenever.
 */
export const draw = (key: string): number => {
  let hash = 0x811c9dc5
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  let t = (hash + 0x6d2b79f5) >>> 0
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

/**
 * Which fault one draw `u` decides at an event: one range of [0, 1) for each kind, in the plan's order; `die` and
 * `ping` at checks and probes, `die` and the statement faults at statements. SQLITE_BUSY only where SQLite can
 * answer it (`canBeBusy`): a statement that takes the write lock, not a read in WAL mode (a writer never blocks it),
 * nor a statement inside a transaction that holds the lock already (BEGIN IMMEDIATE took it).
 */
export const decide = (
  plan: FaultPlan,
  site: Site,
  u: number,
  canBeBusy: boolean
): ConnectionFault | undefined => {
  const ranges: ReadonlyArray<readonly [ConnectionFault, number, boolean]> = [
    ["die", plan.die, true],
    ["ping", plan.ping, site !== "statement"],
    ["ioerr", plan.ioerr, site === "statement"],
    ["busy", plan.busyStatement, site === "statement" && canBeBusy],
    ["slow-statement", plan.slowStatement, site === "statement"]
  ]
  let upTo = 0
  for (const [fault, chance, applies] of ranges) {
    upTo += chance
    if (u < upTo) return applies ? fault : undefined
  }
  return undefined
}

/** What the workload operation running on a fiber has met: the faults of its statements, its first connection. */
export interface OperationState {
  readonly faults: Array<ConnectionFault>
  /** the connection its first statement ran on, once one did */
  connection: Tracked | undefined
}

/** The operation the current fiber runs for the workload, if any: its statements' faults are counted against it. */
export const currentOperation: FiberRef.FiberRef<OperationState | undefined> = FiberRef.unsafeMake<
  OperationState | undefined
>(undefined)

/** What every connection of one injector reports to: decisions, counts and the record of each fault. */
export interface Host {
  readonly plan: FaultPlan
  readonly seed: number
  readonly armed: () => boolean
  /** counts one chance at `site` */
  readonly chance: (site: Site) => void
  /** records one fault (its count, its event) */
  readonly injected: (fault: ConnectionFault, site: Site, connection: Tracked, delayMs?: number) => void
  /** an operation's first statement ran on `connection`: on one that had served an operation before, or a new one */
  readonly serve: (reused: boolean) => void
  /** modelled cost of every statement on the virtual clock, in ms (0: none) */
  readonly statementCostMs: number
  /** on the virtual clock, when the statements queued for the database's one write lock are done */
  writeFreeAtMs: number
}

/** One connection the injector opened: its number, its events so far, and what broke it. */
export class Tracked {
  /** events (checks, probes, statements) that drew a decision */
  events = 0
  /** operations whose first statement ran on it */
  operations = 0
  /** the fault that made it unusable, for what the pool did next (`die`, `ping` or `ioerr`) */
  brokenBy: ConnectionFault | undefined = undefined
  /** what its check and probe say from a `ping` fault on: a connection found broken stays broken */
  problem: string | undefined = undefined
  /** on the virtual clock, when the statements queued on it are done (one connection runs one at a time) */
  freeAtMs = 0

  constructor(
    /** its number, in the order the injector opened connections */
    readonly number: number,
    /** it was opened read-write: its statements may take the database's one write lock */
    readonly writes: boolean,
    /** whether a transaction is open on it (false where the handle is not on this thread: a libSQL server's) */
    readonly inTransaction: () => boolean,
    /** closes its driver handle (the pool's own scope of it stays open until the pool closes it) */
    readonly closeHandle: Effect.Effect<void>
  ) {}

  /** Draws this event's decision: undefined while the injector is disarmed or once the connection is broken. */
  next(host: Host, site: Site): ConnectionFault | undefined {
    if (!host.armed() || this.brokenBy !== undefined) return undefined
    host.chance(site)
    this.events++
    const canBeBusy = this.writes && !this.inTransaction()
    return decide(host.plan, site, draw(`${host.seed}/connection/${this.number}/${this.events}`), canBeBusy)
  }
}

/** The extra latency of a slow statement or open: exponential with the given mean, capped at 10 times the mean. */
export const slowLatency = (meanMs: number, u: number): number => Math.min(-meanMs * Math.log(1 - u), 10 * meanMs)

/** The driver's own error for `code`, as better-sqlite3 reports a failed statement. */
const driverError = (code: "SQLITE_IOERR" | "SQLITE_BUSY") =>
  new SqlError({
    cause: new Database.SqliteError(
      code === "SQLITE_IOERR" ? "disk I/O error (injected fault)" : "database is locked (injected fault)",
      code
    ),
    message: "Failed to execute statement"
  })

/**
 * The modelled cost of one statement: it waits for the statements queued before it, then takes its own. A
 * connection runs one statement at a time; a read-write connection's statements queue for the database's one write
 * lock, whichever connection they run on (what the lock's holder does between its statements is not modelled).
 */
const cost = (host: Host, tracked: Tracked): Effect.Effect<void> =>
  host.statementCostMs <= 0 ? Effect.void : Effect.flatMap(Clock.currentTimeMillis, (now) => {
    const queue = tracked.writes ? host.writeFreeAtMs : tracked.freeAtMs
    const doneAt = Math.max(now, queue) + host.statementCostMs
    if (tracked.writes) host.writeFreeAtMs = doneAt
    else tracked.freeAtMs = doneAt
    return Effect.sleep(Duration.millis(doneAt - now))
  })

/** One statement on `tracked`, as its event decides: run, slowed down, failed, or met by a closed handle. */
const statement = <A>(
  host: Host,
  tracked: Tracked,
  run: Effect.Effect<A, SqlError>
): Effect.Effect<A, SqlError> =>
  Effect.flatMap(FiberRef.get(currentOperation), (operation) => {
    if (operation !== undefined && operation.connection === undefined) {
      operation.connection = tracked
      host.serve(tracked.operations++ > 0)
    }
    const fault = tracked.next(host, "statement")
    if (fault === undefined) return Effect.zipRight(cost(host, tracked), run)
    operation?.faults.push(fault)
    switch (fault) {
      case "die":
        // The handle closes before the statement runs: the statement meets the closed connection, as the driver
        // reports it (ClosedConnection), and never ran.
        tracked.brokenBy = "die"
        host.injected(fault, "statement", tracked)
        return Effect.zipRight(tracked.closeHandle, run)
      case "ioerr":
        tracked.brokenBy = "ioerr"
        host.injected(fault, "statement", tracked)
        return Effect.zipRight(cost(host, tracked), Effect.fail(driverError("SQLITE_IOERR")))
      case "busy":
        host.injected(fault, "statement", tracked)
        return Effect.zipRight(cost(host, tracked), Effect.fail(driverError("SQLITE_BUSY")))
      default: {
        const u = draw(`${host.seed}/slow/${tracked.number}/${tracked.events}`)
        const delayMs = slowLatency(host.plan.slowStatementMs, u)
        host.injected(fault, "statement", tracked, delayMs)
        return Effect.sleep(Duration.millis(delayMs)).pipe(Effect.zipRight(cost(host, tracked)), Effect.zipRight(run))
      }
    }
  })

/** The pool's O(1) check, subject to `die` (the handle closed, then the real check) and `ping` (found broken). */
const check = (host: Host, tracked: Tracked, live: Connector.Connection) => (): string | undefined => {
  const problem = live.check() ?? tracked.problem
  if (problem !== undefined) return problem
  const fault = tracked.next(host, "check")
  if (fault === "die") {
    tracked.brokenBy = "die"
    host.injected(fault, "check", tracked)
    // The check is synchronous: the close starts now, and a driver that closes at once (better-sqlite3) is closed
    // when the real check runs; one that closes asynchronously is reported closed all the same.
    Effect.runFork(tracked.closeHandle)
    return live.check() ?? "the connection was closed"
  }
  if (fault === "ping") {
    tracked.brokenBy = "ping"
    tracked.problem = "its health check failed (injected fault)"
    host.injected(fault, "check", tracked)
    return tracked.problem
  }
  return undefined
}

/** The pool's probe, subject to `die` (the handle closed, then the real probe) and `ping` (the probe fails). */
const probe = (host: Host, tracked: Tracked, live: Connector.Connection) =>
  Effect.suspend((): Effect.Effect<void, Connector.InvalidConnection> => {
    if (tracked.problem !== undefined) return Effect.fail({ reason: tracked.problem })
    const fault = tracked.next(host, "probe")
    if (fault === "die") {
      tracked.brokenBy = "die"
      host.injected(fault, "probe", tracked)
      return Effect.zipRight(tracked.closeHandle, live.validate)
    }
    if (fault === "ping") {
      tracked.brokenBy = "ping"
      tracked.problem = "the health ping failed (injected fault)"
      host.injected(fault, "probe", tracked)
      return Effect.fail({ reason: tracked.problem })
    }
    return live.validate
  })

/**
 * The live connection with its events subject to the plan: its handle lives in `handleScope`, a child of the pool's
 * scope of the connection, so that a fault can close the handle while the pool still holds the connection.
 */
export const wrap = (
  host: Host,
  number: number,
  readOnly: boolean,
  live: Connector.Connection,
  handleScope: Scope.CloseableScope
): { readonly connection: Connector.Connection; readonly tracked: Tracked } => {
  const handle = live.driver?.database
  const inTransaction = () => handle !== undefined && handle.open && handle.inTransaction
  const tracked = new Tracked(number, !readOnly, inTransaction, Scope.close(handleScope, Exit.void))
  return {
    tracked,
    connection: {
      ...live,
      check: check(host, tracked, live),
      validate: probe(host, tracked, live),
      connection: statements(host, tracked, live.connection),
      readOnly: live.readOnly === undefined ? undefined : statements(host, tracked, live.readOnly)
    }
  }
}

/** `sql`'s statements subject to the plan (a stream is passed through: it holds its connection alone till it ends). */
const statements = (host: Host, tracked: Tracked, sql: SqlConnection.Connection): SqlConnection.Connection => ({
  execute: (text, params, transformRows) => statement(host, tracked, sql.execute(text, params, transformRows)),
  executeRaw: (text, params) => statement(host, tracked, sql.executeRaw(text, params)),
  executeValues: (text, params) => statement(host, tracked, sql.executeValues(text, params)),
  executeUnprepared: (text, params, transformRows) =>
    statement(host, tracked, sql.executeUnprepared(text, params, transformRows)),
  executeStream: (text, params, transformRows) => sql.executeStream(text, params, transformRows)
})
