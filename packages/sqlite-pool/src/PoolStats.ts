/**
 * The pool's statistics: counters since the pool was made, and gauges of the current state.
 *
 * Invariants at every instant: `inUse + idle == open`, `created - closed == open`, `acquired == released + inUse`.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 * @category models
 */
export interface PoolStats {
  /** physical connections opened */
  readonly created: number
  /** times a connection that had been handed out before was handed out again */
  readonly reused: number
  /** times a connection was handed out (statements sharing a connection at once count once) */
  readonly acquired: number
  /** times a connection was given back (its last lease ended), invalidated ones included */
  readonly released: number
  /** connections closed because they were invalidated (explicitly, by a fatal error or by failed validation) */
  readonly invalidated: number
  /** physical connections closed, for any reason */
  readonly closed: number
  /** failed connect attempts */
  readonly connectFailures: number
  /** connect retries made (attempts after a first failure) */
  readonly retries: number
  /** acquires that failed with AcquireTimeoutError */
  readonly timeouts: number
  /** connections open now */
  readonly open: number
  /** open connections not leased */
  readonly idle: number
  /** open connections leased (one being probed for a waiter is not handed out yet: it counts as idle) */
  readonly inUse: number
  /** fibers waiting for a connection */
  readonly waiting: number
}

/**
 * The all-zero statistics of a pool that has done nothing yet.
 *
 * @since 0.1.0
 * @category constructors
 */
export const empty: PoolStats = {
  created: 0,
  reused: 0,
  acquired: 0,
  released: 0,
  invalidated: 0,
  closed: 0,
  connectFailures: 0,
  retries: 0,
  timeouts: 0,
  open: 0,
  idle: 0,
  inUse: 0,
  waiting: 0
}
