/**
 * A primary and its replicas as the pool's connector sees them: where the writer's connection and each Reader
 * connection open, and what their results tell about replication (kept in a `ReplicationState`).
 *
 * - The writer's connections open on the primary; a primary connection reports the generation of its numbering.
 * - A Reader connection opens on the replicas in turn, starting after the last one used. A replica that cannot be
 *   reached (a transient failure) is passed over; a permanent failure (a rejected token) fails the connect, as it
 *   would on the primary. A replica that answers but has not followed a restarted primary is passed over too (its
 *   connection closed at once): its connect told whether it follows now.
 * - When no replica will do, the Reader connection opens on the primary (a fallback) and retires after
 *   `fallbackLifetime`, so reads return to the replicas once they are back.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import type { Replication } from "../../Connector.js"
import type * as LibsqlConnector from "../../LibsqlConnector.js"
import type { ConnectError } from "../errors.js"
import { connect, type LibsqlConnection } from "./connection.js"
import { ReplicationState } from "./replication.js"

export interface ReplicaSetOptions extends LibsqlConnector.ResolvedOptions {
  /** a replica answered this many frames behind the primary (for a metric) */
  readonly onLag?: ((replicaUrl: string, frames: number) => void) | undefined
}

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
      const replicas = this.#state.replicaCount
      for (let tried = 0; tried < replicas; tried++) {
        const replica = this.#next
        this.#next = (this.#next + 1) % replicas
        const scope = yield* Effect.flatMap(Effect.scope, (parent) => Scope.fork(parent, ExecutionStrategy.sequential))
        const opened = yield* Effect.either(Scope.extend(this.#openReplica(replica), scope))
        if (opened._tag === "Right" && this.#state.follows(replica)) return opened.right
        yield* Scope.close(scope, Exit.void)
        if (opened._tag === "Left" && !opened.left.transient) return yield* opened.left
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

  #openReplica(replica: number): Effect.Effect<LibsqlConnection, ConnectError, Scope.Scope> {
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
      retired: () => this.#state.follows(replica) ? undefined : notFollowing
    }).pipe(
      Effect.tap(() => Effect.sync(() => this.#state.onReplicaConnected(replica))),
      Effect.tapError(() => Effect.sync(() => this.#state.onReplicaConnectFailed(replica)))
    )
  }

  #common() {
    return {
      authToken: this.#options.authToken,
      connectTimeout: this.#options.connectTimeout,
      replicationWaitTimeout: this.#options.replicationWaitTimeout
    }
  }
}
