/**
 * Replication bookkeeping of a primary and its replicas: which numbering of the primary's log is current, how far
 * each replica has got in it, and what a Reader statement must wait for. A state machine without I/O and without
 * Effect: the replica set feeds it the indexes its connections report and reads its answers.
 *
 * sqld numbers its log afresh (1, 2, ...) when it restarts, and its replicas go on answering on the old numbering
 * for a while (about a second here) before they follow: an index means nothing without the numbering it belongs to.
 * A primary connection that opens at an index below one reported before it started to connect has met a restarted
 * primary: a new generation begins. The old numbering is frozen then (its log went with the old process), so a
 * replica that reports two different indexes in the new generation has followed it.
 *
 * @internal
 */
import type { ReplicaOut, Replication } from "../../Connector.js"

/**
 * A point in the primary's replication log: an index and the generation of the numbering it is in.
 */
export interface ReplicationPosition {
  readonly generation: number
  readonly index: bigint
}

/** The later of two positions: a later generation's replaces an earlier one's (its numbering started again below). */
export const laterPosition = (
  current: ReplicationPosition | undefined,
  reported: ReplicationPosition
): ReplicationPosition =>
  current === undefined || current.generation < reported.generation ||
    (current.generation === reported.generation && current.index < reported.index)
    ? reported
    : current

/** What the primary's numbering was as a connect to it began: its opening index is compared with this. */
export interface PrimaryMark {
  readonly generation: number
  readonly index: bigint | undefined
}

/** One replica, as far as its connections have told. */
interface ReplicaProgress {
  readonly url: string
  /** connections opened to it */
  connects: number
  /** connect attempts that failed */
  failures: number
  /** the newest index one of its connections reported */
  index: bigint | undefined
  /** the generation of the primary's numbering it is known to follow */
  generation: number
  /** the first index it reported in a generation it is not yet known to follow */
  firstSeen: ReplicationPosition | undefined
  /** frames it was behind the primary when it last answered; undefined while it does not follow */
  lagFrames: number | undefined
  /** why and until when the Reader passes it over; cleared by its next connect that succeeds */
  out: ReplicaOut | undefined
}

/** A replica out for the `strikes`-th time in a row waits `fallbackLifetime` doubled each time, up to 8 times it. */
const outFor = (strikes: number, lifetimeMs: number): number => lifetimeMs * Math.min(2 ** (strikes - 1), 8)

export class ReplicationState {
  /** primary restarts noticed: the generation of the numbering the primary's indexes are in now */
  #generation = 0
  /** the newest index a primary connection reported in the current generation */
  #primaryIndex: bigint | undefined
  /** Reader connections opened on the primary because no replica could serve */
  #fallbacks = 0
  /** the replicas, in the order they were configured (callers name them by this position) */
  readonly #replicas: ReadonlyArray<ReplicaProgress>

  constructor(replicaUrls: ReadonlyArray<string>) {
    this.#replicas = replicaUrls.map((url) => ({
      url,
      connects: 0,
      failures: 0,
      index: undefined,
      generation: 0,
      firstSeen: undefined,
      lagFrames: undefined,
      out: undefined
    }))
  }

  get generation(): number {
    return this.#generation
  }

  get replicaCount(): number {
    return this.#replicas.length
  }

  urlOf(replica: number): string {
    return this.#replica(replica).url
  }

  /** Taken as a connect to the primary begins; its opening index is then given with it to `onPrimaryOpened`. */
  primaryMark(): PrimaryMark {
    return { generation: this.#generation, index: this.#primaryIndex }
  }

  /**
   * A primary connection opened at `index`. Every statement answered before `mark` was taken was answered at or
   * below the index the server had then, so a lower one means the numbering started again. (Results of concurrent
   * statements arrive in any order, so they are never compared with each other.)
   */
  onPrimaryOpened(mark: PrimaryMark, index: bigint): void {
    if (mark.generation === this.#generation && mark.index !== undefined && index < mark.index) {
      this.#generation++
      this.#primaryIndex = index
    } else {
      this.onPrimaryAnswered(index)
    }
  }

  /** A primary connection's result reported `index`. */
  onPrimaryAnswered(index: bigint): void {
    if (this.#primaryIndex === undefined || index > this.#primaryIndex) this.#primaryIndex = index
  }

  /** A replica's connection reported `index`: returns the replica's lag in frames, when it is known. */
  onReplicaAnswered(replica: number, index: bigint): number | undefined {
    const progress = this.#replica(replica)
    if (progress.generation !== this.#generation) {
      if (progress.firstSeen?.generation !== this.#generation) {
        progress.firstSeen = { generation: this.#generation, index }
      } else if (progress.firstSeen.index !== index) {
        progress.generation = this.#generation
      }
    }
    progress.index = index
    progress.lagFrames = this.#primaryIndex !== undefined && progress.generation === this.#generation
      ? (this.#primaryIndex > index ? Number(this.#primaryIndex - index) : 0)
      : undefined
    return progress.lagFrames
  }

  /** A connect to the replica succeeded: it is back in the rotation. Returns the out it was in, if any. */
  onReplicaConnected(replica: number): ReplicaOut | undefined {
    const progress = this.#replica(replica)
    const wasOut = progress.out
    progress.connects++
    progress.out = undefined
    return wasOut
  }

  /**
   * The replica cannot serve: the Reader passes it over until `retryAt`, `fallbackLifetime` after the first failure
   * in a row, doubling with each next one. Failures while it is out already (its other connections) change nothing.
   */
  putOut(replica: number, why: Pick<ReplicaOut, "cause" | "reason">, now: number, lifetimeMs: number): ReplicaOut {
    const progress = this.#replica(replica)
    if (progress.out !== undefined && now < progress.out.retryAt) return progress.out
    const strikes = (progress.out?.strikes ?? 0) + 1
    progress.out = { ...why, retryAt: now + outFor(strikes, lifetimeMs), strikes }
    return progress.out
  }

  /** Whether the Reader passes the replica over at `now`. */
  isOut(replica: number, now: number): boolean {
    const out = this.#replica(replica).out
    return out !== undefined && now < out.retryAt
  }

  /** Why the replica is out (its connections retire), or undefined. */
  outReason(replica: number): string | undefined {
    const out = this.#replica(replica).out
    return out === undefined ? undefined : `the replica is out (${out.cause}): ${out.reason}`
  }

  onReplicaConnectFailed(replica: number): void {
    this.#replica(replica).failures++
  }

  onFallback(): void {
    this.#fallbacks++
  }

  /** Whether the replica follows the primary's current numbering (so that its indexes compare with a position). */
  follows(replica: number): boolean {
    return this.#replica(replica).generation === this.#generation
  }

  /**
   * The index, in the replica's numbering, a statement must wait for to include `position`: undefined when no wait
   * is needed (written before a restart the replica has followed: the new numbering starts with it), "unknown" when
   * the replica does not follow the position's numbering yet.
   */
  indexToAwait(replica: number, position: ReplicationPosition): bigint | undefined | "unknown" {
    const followed = this.#replica(replica).generation
    if (position.generation < followed) return undefined
    return position.generation === followed ? position.index : "unknown"
  }

  status(): Replication {
    return {
      primaryIndex: this.#primaryIndex,
      generation: this.#generation,
      replicas: this.#replicas.map(({ connects, failures, generation, index, lagFrames, out, url }) => ({
        url,
        connects,
        failures,
        index,
        generation,
        lagFrames,
        out
      })),
      fallbacks: this.#fallbacks
    }
  }

  #replica(replica: number): ReplicaProgress {
    const progress = this.#replicas[replica]
    if (progress === undefined) throw new RangeError(`no replica ${replica} (there are ${this.#replicas.length})`)
    return progress
  }
}
