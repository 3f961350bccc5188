/**
 * Read-your-writes on Effect: the position a fiber has written (or read) up to, carried by a `FiberRef` (so a
 * forked fiber inherits it), and a read retried on a `Schedule` until its result is at that position.
 *
 * @internal
 */
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Schedule from "effect/Schedule"
import type * as Hrana from "../hranaSocket.js"
import * as RetryPolicy from "../retryPolicy.js"
import { LibsqlStatementError } from "./errorCodes.js"
import { laterPosition, type ReplicationPosition } from "./replication.js"

/**
 * While set, a statement runs only once the server has applied this replication index: on a replica, once it has
 * caught up with the write that produced the index (a primary has it already). A connection whose server has not
 * confirmed this index yet asks it to wait for it, or gives up after `replicationWaitTimeout` with a
 * `LibsqlStatementError` whose `libsqlCode` is "REPLICA_BEHIND".
 */
export const minimumReplicationIndex: FiberRef.FiberRef<ReplicationPosition | undefined> = FiberRef.unsafeMake<
  ReplicationPosition | undefined
>(undefined)

/** Raises the fiber's position to `reported` (a writer's result: the fiber's later reads must see it). */
export const raiseTo = (reported: ReplicationPosition): Effect.Effect<void> =>
  FiberRef.update(minimumReplicationIndex, (current) => laterPosition(current, reported))

/** The replica did not reach `wanted` within the bound (`reached` is where it was, when it said). */
export const replicaBehind = (wanted: bigint, reached: bigint | undefined, bound: Duration.Duration) =>
  new LibsqlStatementError(
    `the server did not reach replication index ${wanted} within ${Duration.format(bound)} ` +
      `(it is at ${reached ?? "an unknown index"}): the replica is behind`,
    undefined,
    "REPLICA_BEHIND",
    undefined
  )

/** The replica still answers on the numbering from before a primary restart: it cannot tell whether it has this. */
export const replicaNotFollowing = (position: ReplicationPosition) =>
  new LibsqlStatementError(
    `the replica has not followed the primary's restart yet, so it cannot tell whether it has replication index ` +
      `${position.index} of the restarted primary: the replica is behind`,
    undefined,
    "REPLICA_BEHIND",
    undefined
  )

/** A result from before the index a read waits for: the read is run again (never leaves `readAtLeast`). */
class StaleRead extends Data.TaggedError("StaleRead")<{ readonly reported: bigint }> {}

/** 1, 2, 4 ... ms between the runs of a stale read, at most 20: the replica is a moment away from the index. */
const staleReadBackoff = RetryPolicy.backoff({
  retryBaseDelay: Duration.millis(1),
  retryMaxDelay: Duration.millis(20),
  retryJitter: false
})

/**
 * Runs a read until its result is at `index` or later, for at most `bound`; then fails with REPLICA_BEHIND.
 *
 * Why: the replica has applied the index (the HTTP wait before the read said so), yet a statement can still be
 * answered from a moment before it (seen in this project's tests now and then, on a read right after a write); its
 * result says so by its index. Outside a transaction running a read again is safe, and inside a read transaction the
 * snapshot was taken after the wait, at its first statement.
 */
export const readAtLeast = <E, R>(
  read: Effect.Effect<Hrana.StatementResult, E, R>,
  index: bigint | undefined,
  bound: Duration.Duration
): Effect.Effect<Hrana.StatementResult, E | LibsqlStatementError, R> => {
  if (index === undefined) return read
  const atIndex = Effect.flatMap(read, (result) => {
    const reported = result.replicationIndex
    return reported === undefined || reported >= index ? Effect.succeed(result) : new StaleRead({ reported })
  })
  return atIndex.pipe(
    Effect.retry({
      schedule: Schedule.upTo(staleReadBackoff, bound),
      while: (error) => error instanceof StaleRead
    }),
    Effect.catchIf(
      (error): error is StaleRead => error instanceof StaleRead,
      (stale) => Effect.fail(replicaBehind(index, stale.reported, bound))
    )
  )
}
