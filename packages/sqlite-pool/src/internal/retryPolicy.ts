/**
 * The retry policy of connects (and of busy writes): exponential backoff on `Schedule.exponential`, each delay capped,
 * optionally jittered, a bounded number of retries.
 *
 * The implementation behind the public module of the same name, which documents each export.
 *
 * @internal
 */
import { SqlError } from "@effect/sql/SqlError"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { ConnectError } from "./errors.js"
import * as SqliteCode from "./sqliteCode.js"

/** */
export interface Options {
  readonly retries: number
  readonly retryBaseDelay: Duration.Duration
  readonly retryMaxDelay: Duration.Duration
  readonly retryJitter: boolean
}

/**
 * The delay before retry number `retry` (0-based) without jitter: base * 2^retry, capped.
 */
export const delay = (options: Pick<Options, "retryBaseDelay" | "retryMaxDelay">, retry: number): Duration.Duration =>
  Duration.min(Duration.times(options.retryBaseDelay, 2 ** retry), options.retryMaxDelay)

/**
 * Every delay of the policy without jitter, in order: 10, 20, 40 ms for the defaults.
 */
export const delays = (options: Omit<Options, "retryJitter">): ReadonlyArray<Duration.Duration> =>
  Array.from({ length: options.retries }, (_, retry) => delay(options, retry))

/**
 * The backoff alone, without a limit: `Schedule.exponential(retryBaseDelay)`, jittered within +-20 % when asked, each
 * delay capped at `retryMaxDelay`. `schedule` bounds it by a retry count (connects); busy writes bound it by time.
 */
export const backoff = (options: Omit<Options, "retries">): Schedule.Schedule<Duration.Duration> => {
  const exponential = Schedule.exponential(options.retryBaseDelay, 2)
  const paced = options.retryJitter ? Schedule.jitteredWith(exponential, { min: 0.8, max: 1.2 }) : exponential
  // modifyDelay passes (output, delay): the output of `exponential` is the nominal delay, so the cap must read the
  // second argument or it would discard the jitter.
  return paced.pipe(Schedule.modifyDelay((_, delay) => Duration.min(delay, options.retryMaxDelay)))
}

/**
 * The connect retry schedule: `backoff`, stopping after `retries` recurrences. Its output is the number of the retry
 * about to be made (0-based).
 */
export const schedule = (options: Options): Schedule.Schedule<number> =>
  Schedule.intersect(backoff(options), Schedule.recurs(options.retries)).pipe(Schedule.map(([, retry]) => retry))

/**
 * Connect with retries: runs `attempt` (one connect) and retries it on `schedule` while it fails with a transient
 * `ConnectError`; the final error says how many attempts were made over how long. `observe` hears of every failed
 * attempt and every retry (the pool counts them). The pool and the simulator's connection-per-operation target both
 * connect through this.
 */
export const retryConnect = <A, R>(
  attempt: Effect.Effect<A, ConnectError, R>,
  options: Options,
  observe: { readonly failed?: (error: ConnectError) => void; readonly retrying?: () => void } = {}
): Effect.Effect<A, ConnectError, R> =>
  Effect.flatMap(Clock.currentTimeMillis, (startedAt) => {
    let attempts = 0
    const counted = Effect.suspend(() => {
      if (attempts++ > 0) observe.retrying?.()
      return attempt
    }).pipe(Effect.tapError((error) => Effect.sync(() => observe.failed?.(error))))
    return Effect.retry(counted, { schedule: schedule(options), while: (error) => error.transient }).pipe(
      Effect.catchAll((error) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.fail(new ConnectError({ ...error, cause: error.cause, attempts, elapsedMs: now - startedAt })))
      )
    )
  })

/**
 * Counts the retries `retryWhileBusy` makes.
 */
export interface BusyCounter {
  retries: number
}

/**
 * Retries a statement while it fails with SQLITE_BUSY or SQLITE_LOCKED (another connection holds the lock): on
 * `backoff`, for at most `acquireTimeout` in all, then fails with a `SqlError` that says the database is locked.
 * Retrying is safe because a statement that met BUSY did nothing. Until a statement meets BUSY this costs one
 * `catchIf`.
 */
export const retryWhileBusy = (
  options: Omit<Options, "retries"> & { readonly acquireTimeout: Duration.Duration },
  counter: BusyCounter
) => {
  const busySchedule = backoff(options).pipe(
    Schedule.upTo(options.acquireTimeout),
    Schedule.tapOutput(() => Effect.sync(() => counter.retries++))
  )
  return <A>(effect: Effect.Effect<A, SqlError>): Effect.Effect<A, SqlError> =>
    Effect.catchIf(effect, SqliteCode.isBusy, (first) =>
      Effect.flatMap(Clock.currentTimeMillis, (startedAt) => {
        // The first attempt has failed already: it is replayed as the schedule's first failure, so that the first
        // retry, too, comes after the first delay.
        let replay = true
        const attempt = Effect.suspend(() => {
          if (!replay) return effect
          replay = false
          return Effect.fail(first)
        })
        return attempt.pipe(
          Effect.retry({ schedule: busySchedule, while: SqliteCode.isBusy }),
          Effect.catchIf(SqliteCode.isBusy, (error) =>
            Effect.flatMap(Clock.currentTimeMillis, (now) =>
              Effect.fail(
                new SqlError({
                  cause: error.cause,
                  message: `the database is locked by another connection (${SqliteCode.codeOf(error)}); ` +
                    `still locked after ${now - startedAt} ms of retries: retry later, or find the long ` +
                    `transaction holding the write lock`
                })
              )))
        )
      }))
}
