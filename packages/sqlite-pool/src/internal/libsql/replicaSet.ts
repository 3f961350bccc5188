/**
 * A primary and its replicas as the pool's connector sees them: where the writer's connection and each Reader
 * connection open, and what their results tell about replication (kept in a `ReplicationState`).
 *
 * - The writer's connections open on the primary; a primary connection reports the generation of its numbering.
 * - A Reader connection opens on the replicas in turn, starting after the last one used. A replica that cannot
 *   serve is out: its connect failed (unreachable, stalled, refused: an HTTP server or a gRPC port answering, a
 *   rejected token), or a statement on it found it stalled (`statementTimeout`) or too far behind. The Reader passes
 *   it over, without a connect, for `fallbackLifetime`, doubled with each failure in a row up to 8 times; its open
 *   connections retire. A replica that answers but has not followed a restarted primary is passed over too (its
 *   connection closed at once): its connect told whether it follows now.
 * - When no replica will do, the Reader connection opens on the primary (a fallback) and retires after
 *   `fallbackLifetime`, so reads return to the replicas once they are back. Only the primary's failures fail a
 *   connect (a misconfigured primary stays a permanent `ConnectError`).
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import type { ReplicaOut, Replication } from "../../Connector.js"
import type * as LibsqlConnector from "../../LibsqlConnector.js"
import type { ConnectError } from "../errors.js"
import { HranaTransportError } from "../hranaSocket.js"
import { connect, type LibsqlConnection } from "./connection.js"
import { ReplicationState } from "./replication.js"

export interface ReplicaSetOptions extends LibsqlConnector.ResolvedOptions {
  /** a replica answered this many frames behind the primary (for a metric) */
  readonly onLag?: ((replicaUrl: string, frames: number) => void) | undefined
  /** a replica went out of the Reader's rotation (`out`), or came back from it (for a metric) */
  readonly onOut?: ((replicaUrl: string, cause: ReplicaOut["cause"], out: boolean) => void) | undefined
}

/** Why a failed connect puts a replica out. */
const outCause = (error: ConnectError): ReplicaOut["cause"] =>
  error.code === "SQLITE_AUTH"
    ? "rejected"
    : error.cause instanceof HranaTransportError && error.cause.code === "ETIMEDOUT"
    ? "stalled"
    : error.transient
    ? "unreachable"
    : "refused"

const notFollowing = "the primary restarted and this replica has not followed it yet"
const fallbackRetired = "a replica is preferred: this fallback connection retires"

export class ReplicaSet {
  /** the options it was made with */
  readonly #options: ReplicaSetOptions
  /** what the connections have told about the primary's numbering and each replica's progress in it */
  readonly #state: ReplicationState
  /** the replica the next Reader connect tries first */
  #next = 0

  constructor(options: ReplicaSetOptions) {
    this.#options = options
    this.#state = new ReplicationState(options.replicaUrls)
  }

  readonly status: Effect.Effect<Replication> = Effect.sync(() => this.#state.status())

  /** A connection for the writer lane: on the primary, raising its fiber's position after every statement. */
  readonly connectWriter: Effect.Effect<LibsqlConnection, ConnectError, Scope.Scope> = Effect.suspend(() =>
    this.#openPrimary(false)
  )

  /** A connection for the Reader: on a replica that follows the primary, else on the primary for a while. */
  readonly connectReader: Effect.Effect<LibsqlConnection, ConnectError, Scope.Scope> = Effect.suspend(() =>
    this.#connectReader()
  )

  #connectReader(): Effect.Effect<LibsqlConnection, ConnectError, Scope.Scope> {
    return Effect.gen(this, function*() {
      const clock = yield* Effect.clock
      const replicas = this.#state.replicaCount
      for (let tried = 0; tried < replicas; tried++) {
        const replica = this.#next
        this.#next = (this.#next + 1) % replicas
        if (this.#state.isOut(replica, clock.unsafeCurrentTimeMillis())) continue
        const scope = yield* Effect.flatMap(Effect.scope, (parent) => Scope.fork(parent, ExecutionStrategy.sequential))
        const opened = yield* Effect.either(Scope.extend(this.#openReplica(replica, clock), scope))
        if (opened._tag === "Right" && this.#state.follows(replica)) return opened.right
        yield* Scope.close(scope, Exit.void)
      }
      return yield* replicas === 0 ? this.#openPrimary(true) : this.#openFallback()
    })
  }

  /** A Reader connection on the primary while no replica will do; it retires after `fallbackLifetime`. */
  #openFallback(): Effect.Effect<LibsqlConnection, ConnectError, Scope.Scope> {
    return Effect.gen(this, function*() {
      const clock = yield* Effect.clock
      const retireAt = clock.unsafeCurrentTimeMillis() + Duration.toMillis(this.#options.fallbackLifetime)
      const connection = yield* this.#openPrimary(
        true,
        () => clock.unsafeCurrentTimeMillis() >= retireAt ? fallbackRetired : undefined
      )
      this.#state.onFallback()
      return connection
    })
  }

  #openPrimary(
    readOnly: boolean,
    retired?: () => string | undefined
  ): Effect.Effect<LibsqlConnection, ConnectError, Scope.Scope> {
    return Effect.suspend(() => {
      const mark = this.#state.primaryMark()
      return connect({
        ...this.#common(),
        url: this.#options.primaryUrl,
        readOnly,
        raiseFiberIndex: !readOnly,
        generation: () => this.#state.generation,
        // The primary has every write, from every generation.
        indexToAwait: () => undefined,
        onReplicationIndex: (index, opening) =>
          opening ? this.#state.onPrimaryOpened(mark, index) : this.#state.onPrimaryAnswered(index),
        retired
      })
    })
  }

  /** Puts the replica out of the Reader's rotation (see `ReplicationState.putOut`), and tells the metric. */
  #putOut(replica: number, why: Pick<ReplicaOut, "cause" | "reason">, clock: Clock.Clock): void {
    const lifetimeMs = Duration.toMillis(this.#options.fallbackLifetime)
    const out = this.#state.putOut(replica, why, clock.unsafeCurrentTimeMillis(), lifetimeMs)
    this.#options.onOut?.(this.#state.urlOf(replica), out.cause, true)
  }

  #openReplica(replica: number, clock: Clock.Clock): Effect.Effect<LibsqlConnection, ConnectError, Scope.Scope> {
    const url = this.#state.urlOf(replica)
    return connect({
      ...this.#common(),
      url,
      readOnly: true,
      indexToAwait: (position) => this.#state.indexToAwait(replica, position),
      onReplicationIndex: (index) => {
        const lag = this.#state.onReplicaAnswered(replica, index)
        if (lag !== undefined) this.#options.onLag?.(url, lag)
      },
      onCannotServe: (why) => this.#putOut(replica, why, clock),
      retired: () => this.#state.outReason(replica) ?? (this.#state.follows(replica) ? undefined : notFollowing)
    }).pipe(
      Effect.tap(() =>
        Effect.sync(() => {
          const wasOut = this.#state.onReplicaConnected(replica)
          if (wasOut !== undefined) this.#options.onOut?.(url, wasOut.cause, false)
        })
      ),
      Effect.tapError((error) =>
        Effect.sync(() => {
          this.#state.onReplicaConnectFailed(replica)
          this.#putOut(replica, { cause: outCause(error), reason: error.reason }, clock)
        })
      )
    )
  }

  #common() {
    return {
      authToken: this.#options.authToken,
      connectTimeout: this.#options.connectTimeout,
      statementTimeout: this.#options.statementTimeout,
      replicationWaitTimeout: this.#options.replicationWaitTimeout
    }
  }
}
