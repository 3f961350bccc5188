/**
 * What a run measured: one record per finished operation (kept in typed arrays, so a run of a million operations
 * costs about 20 MB), error counts by tag, and gauge samples over time. Plain mutable state changed in synchronous
 * steps; reports are computed from it afterwards (or from what it holds so far, when a run is interrupted).
 *
 * @internal
 */
import { Connector, SqliteCode } from "@sqlsim/sqlite-pool"
import * as Cause from "effect/Cause"
import * as Option from "effect/Option"

/**
 * The kinds of operation, in the order reports list them.
 *
 * @since 0.1.0
 * @category constants
 */
export const kinds = ["read", "write", "transaction"] as const

/**
 * @since 0.1.0
 * @category models
 */
export type OperationKind = typeof kinds[number]

/**
 * Connections open, in use and idle, fibers waiting for one, and the WAL's size, at one instant.
 *
 * @since 0.1.0
 * @category models
 */
export interface Gauges {
  readonly open: number
  readonly inUse: number
  readonly idle: number
  readonly waiting: number
  /** the -wal's size in bytes as the pool last saw it (pooled runs on a file; absent otherwise) */
  readonly walBytes?: number | undefined
}

/**
 * Gauges sampled during a run.
 *
 * @since 0.1.0
 * @category models
 */
export interface Sample extends Gauges {
  /** milliseconds since the run started */
  readonly tMs: number
}

export class Recorder {
  started = 0
  finished = 0
  completed = 0
  failed = 0
  /** clock time (ms) when the workers started, and when the last of them stopped */
  startMs = 0
  endMs: number | undefined = undefined
  readonly errors = new Map<string, number>()
  readonly samples: Array<Sample> = []
  private capacity = 4096
  /** for finished operation i: its start (ms since the run started), latency (ms), kind and outcome (1 = ok) */
  private startOffsets = new Float64Array(this.capacity)
  private latencies = new Float64Array(this.capacity)
  private kindCodes = new Uint8Array(this.capacity)
  private outcomes = new Uint8Array(this.capacity)

  record(kind: OperationKind, startMs: number, endMs: number, failure: string | undefined): void {
    if (this.finished === this.capacity) this.grow()
    const i = this.finished++
    this.startOffsets[i] = startMs - this.startMs
    this.latencies[i] = endMs - startMs
    this.kindCodes[i] = kinds.indexOf(kind)
    this.outcomes[i] = failure === undefined ? 1 : 0
    if (failure === undefined) {
      this.completed++
    } else {
      this.failed++
      this.errors.set(failure, (this.errors.get(failure) ?? 0) + 1)
    }
  }

  /** The finished operations, as views (no copy). */
  operations() {
    return {
      count: this.finished,
      startOffsets: this.startOffsets.subarray(0, this.finished),
      latencies: this.latencies.subarray(0, this.finished),
      kinds: this.kindCodes.subarray(0, this.finished),
      outcomes: this.outcomes.subarray(0, this.finished)
    }
  }

  private grow(): void {
    this.capacity *= 2
    const grown = <T extends Float64Array | Uint8Array>(old: T, make: (n: number) => T): T => {
      const next = make(this.capacity)
      next.set(old)
      return next
    }
    this.startOffsets = grown(this.startOffsets, (n) => new Float64Array(n))
    this.latencies = grown(this.latencies, (n) => new Float64Array(n))
    this.kindCodes = grown(this.kindCodes, (n) => new Uint8Array(n))
    this.outcomes = grown(this.outcomes, (n) => new Uint8Array(n))
  }
}

const tagOf = (value: unknown): string | undefined => {
  const tag = typeof value === "object" && value !== null ? (value as { _tag?: unknown })._tag : undefined
  return typeof tag === "string" ? tag : undefined
}

/**
 * The key an operation's failure is counted under: the error's `_tag`, with what caused it for an `SqlError`
 * ("SqlError(SQLITE_BUSY)", "SqlError(ConnectError)", "SqlError(ClosedConnection)" for a statement that met its
 * connection closed); "Defect" for an unexpected exception.
 */
export const failureKey = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    const tag = tagOf(error) ?? "UnknownError"
    if (tag !== "SqlError") return tag
    const inner = tagOf((error as { cause?: unknown }).cause)
    if (inner !== undefined) return `SqlError(${inner})`
    if (Connector.isClosedConnection(error)) return "SqlError(ClosedConnection)"
    const code = SqliteCode.codeOf(error)
    return code === undefined ? "SqlError" : `SqlError(${code})`
  }
  if (Cause.isDie(cause)) return "Defect"
  return Cause.isInterruptedOnly(cause) ? "Interrupted" : "UnknownError"
}
