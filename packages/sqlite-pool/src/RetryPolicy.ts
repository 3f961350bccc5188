/**
 * The retry policy of connects (and of busy writes): exponential backoff on `Schedule.exponential`, each delay capped,
 * optionally jittered, a bounded number of retries.
 *
 * @since 0.1.0
 */
import * as internal from "./internal/retryPolicy.js"

/**
 * @since 0.1.0
 * @category models
 */
export type Options = internal.Options

/**
 * The delay before retry number `retry` (0-based) without jitter: base * 2^retry, capped.
 *
 * @example
 * import { RetryPolicy } from "@sqlsim/sqlite-pool"
 * import * as Duration from "effect/Duration"
 *
 * const third = RetryPolicy.delay({ retryBaseDelay: Duration.millis(10), retryMaxDelay: Duration.seconds(1) }, 2)
 * assert.strictEqual(Duration.toMillis(third), 40)
 *
 * @since 0.1.0
 * @category utils
 */
export const delay: typeof internal.delay = internal.delay

/**
 * Every delay of the policy without jitter, in order: 10, 20, 40 ms for the defaults.
 *
 * @since 0.1.0
 * @category utils
 */
export const delays: typeof internal.delays = internal.delays

/**
 * The backoff alone, without a limit: `Schedule.exponential(retryBaseDelay)`, jittered within +-20 % when asked, each
 * delay capped at `retryMaxDelay`. `schedule` bounds it by a retry count (connects); busy writes bound it by time.
 *
 * @since 0.1.0
 * @category constructors
 */
export const backoff: typeof internal.backoff = internal.backoff

/**
 * The connect retry schedule: `backoff`, stopping after `retries` recurrences. Its output is the number of the retry
 * about to be made (0-based).
 *
 * @since 0.1.0
 * @category constructors
 */
export const schedule: typeof internal.schedule = internal.schedule

/**
 * Connect with retries: runs `attempt` (one connect) and retries it on `schedule` while it fails with a transient
 * `ConnectError`; the final error says how many attempts were made over how long. `observe` hears of every failed
 * attempt and every retry (the pool counts them). The pool and the simulator's connection-per-operation target both
 * connect through this.
 *
 * @since 0.1.0
 * @category constructors
 */
export const retryConnect: typeof internal.retryConnect = internal.retryConnect

/**
 * Counts the retries `retryWhileBusy` makes.
 *
 * @since 0.1.0
 * @category models
 */
export type BusyCounter = internal.BusyCounter

/**
 * Retries a statement while it fails with SQLITE_BUSY or SQLITE_LOCKED (another connection holds the lock): on
 * `backoff`, for at most `acquireTimeout` in all, then fails with a `SqlError` that says the database is locked.
 * Retrying is safe because a statement that met BUSY did nothing. Until a statement meets BUSY this costs one
 * `catchIf`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const retryWhileBusy: typeof internal.retryWhileBusy = internal.retryWhileBusy
