/**
 * Turns of the event loop for work that never waits on it. better-sqlite3 is synchronous and Effect resumes fibers
 * on microtasks, so a burst of statements (10,000 transactions forked onto the writer lane) would otherwise run
 * start to end with no timer, I/O callback, signal or `Effect.timeout` in between. Plain JavaScript, no Effect.
 *
 * @internal
 */

/**
 * Counts the work done since the event loop last turned, and says when the loop is owed a turn: after
 * `everyOperations` operations or `everyMillis` on the caller's clock (real time in an app; on a `TestClock` or a
 * simulation's virtual clock, that clock's time, so that a run on virtual time repeats exactly). It notices a turn by
 * itself: the first operation after a turn arms a `setImmediate`, which
 * calls back only once the loop has polled for I/O and run due timers; so work spread over turns anyway (requests
 * of an HTTP server) is never held back. The defaults (2,048 leases or 20 ms) keep a forced turn's cost out of the
 * writer lane's throughput (`pnpm bench`, target 2: every 256 leases or 5 ms cost about a fifth of it).
 *
 * @internal
 */
export class EventLoopTurns {
  /** operations since the loop last turned */
  private operations = 0
  /** `now()` at the first operation since the loop last turned */
  private since = 0
  /** an immediate is armed: it resets the count when the loop turns */
  private watching = false
  private readonly turned = () => {
    this.watching = false
    this.operations = 0
  }

  constructor(
    private readonly now: () => number,
    readonly everyOperations = 2048,
    readonly everyMillis = 20
  ) {}

  /** One operation done. */
  count(): void {
    if (!this.watching) {
      this.watching = true
      this.since = this.now()
      setImmediate(this.turned)
    }
    this.operations++
  }

  /** Whether more work should wait for a turn of the loop first. */
  owed(): boolean {
    return this.watching &&
      (this.operations >= this.everyOperations || this.now() - this.since >= this.everyMillis)
  }
}
