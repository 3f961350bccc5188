/**
 * Bookkeeping shared by the storm and soak tests: how each operation ended, and a guard that notices a connection
 * leased by two fibers at once.
 */
import type { ConnectionPool } from "@sqlsim/sqlite-pool"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"

/** How an operation ended, by name; `unexpected` collects anything that is not a typed, expected outcome. */
export class Outcomes {
  readonly counts = new Map<string, number>()
  readonly unexpected: Array<string> = []

  constructor(readonly expectedTags: ReadonlySet<string>) {}

  record(exit: Exit.Exit<unknown, unknown>, expectedDefect?: (defect: unknown) => boolean): void {
    const name = this.nameOf(exit, expectedDefect)
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1)
  }

  private nameOf(exit: Exit.Exit<unknown, unknown>, expectedDefect?: (defect: unknown) => boolean): string {
    if (Exit.isSuccess(exit)) return "ok"
    if (Cause.isInterruptedOnly(exit.cause)) return "interrupted"
    const failure = Cause.failureOption(exit.cause)
    if (Option.isSome(failure)) {
      const tag = (failure.value as { _tag?: unknown } | undefined)?._tag
      const name = typeof tag === "string" ? tag : String(failure.value)
      if (!this.expectedTags.has(name)) this.unexpected.push(`failure ${name}: ${Cause.pretty(exit.cause)}`)
      return name
    }
    const defects = [...Cause.defects(exit.cause)]
    if (defects.length > 0 && expectedDefect !== undefined && defects.every(expectedDefect)) return "expected defect"
    this.unexpected.push(`defect: ${Cause.pretty(exit.cause)}`)
    return "defect"
  }

  get total(): number {
    let sum = 0
    for (const count of this.counts.values()) sum += count
    return sum
  }

  /** "ok=12 AcquireTimeoutError=3 ..." in a stable order. */
  toString(): string {
    return [...this.counts.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, count]) => `${name}=${count}`)
      .join(" ")
  }
}

/** Notices a connection that two fibers hold at the same moment. */
export class LeaseGuard {
  private readonly holders = new Set<number>()
  readonly doubleLeases: Array<number> = []
  maxHeldAtOnce = 0

  /** Wraps the body of a lease: registers the connection for as long as the body runs. */
  guard<A, E, R>(
    connection: ConnectionPool.PooledConnection,
    body: Effect.Effect<A, E, R>
  ): Effect.Effect<A, E, R> {
    return Effect.suspend(() => {
      if (this.holders.has(connection.id)) this.doubleLeases.push(connection.id)
      this.holders.add(connection.id)
      this.maxHeldAtOnce = Math.max(this.maxHeldAtOnce, this.holders.size)
      return Effect.ensuring(body, Effect.sync(() => this.holders.delete(connection.id)))
    })
  }

  get held(): number {
    return this.holders.size
  }
}
