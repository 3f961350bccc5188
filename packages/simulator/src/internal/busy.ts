/**
 * Busy retries for the connect-per-operation target, on the same schedule as the pool's writer lane (exponential
 * from retryBaseDelay, each delay capped at retryMaxDelay, for at most acquireTimeout), so that the comparison with
 * the pool measures pooling and nothing else.
 *
 * @internal
 */
import type { SqlError } from "@effect/sql/SqlError"
import { type PoolConfig, SqliteCode } from "@sqlsim/sqlite-pool"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"

export interface BusyCounter {
  retries: number
}

export const retryBusy = (config: PoolConfig.PoolConfig, counter: BusyCounter) => {
  const exponential = Schedule.exponential(config.retryBaseDelay, 2)
  const paced = config.retryJitter ? Schedule.jitteredWith(exponential, { min: 0.8, max: 1.2 }) : exponential
  const schedule = paced.pipe(
    Schedule.modifyDelay((delay) => Duration.min(delay, config.retryMaxDelay)),
    Schedule.upTo(config.acquireTimeout),
    Schedule.tapOutput(() => Effect.sync(() => counter.retries++))
  )
  return <A>(effect: Effect.Effect<A, SqlError>): Effect.Effect<A, SqlError> =>
    Effect.retry(effect, { schedule, while: SqliteCode.isBusy })
}
