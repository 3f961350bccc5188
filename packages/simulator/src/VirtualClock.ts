/**
 * Virtual time for exact replays. An effect run with `runVirtual` sees a `Clock` that only moves when every one of
 * its fibers is waiting: then it jumps to the earliest pending sleep. Its fibers are scheduled on microtasks only, so
 * "every fiber is waiting" is exactly "the event loop reached its next turn", and the order in which fibers run never
 * depends on how fast the machine is.
 *
 * With faults drawn per event from seeded generators (see FaultInjector) and SQLite calls that are synchronous, a
 * simulation run this way repeats exactly for a given seed: same faults, same counts, same (virtual) latencies.
 * Latencies then count only modelled delays (slow opens, retry backoff, work held in transactions), not CPU time.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Scheduler from "effect/Scheduler"

interface Sleeper {
  readonly wakeAt: number
  readonly sequence: number
  readonly wake: () => void
}

/**
 * A `Clock` whose time moves only when `advance` is called.
 *
 * @since 0.1.0
 * @category models
 */
export class VirtualClock implements Clock.Clock {
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId
  private nowMs = 0
  private sequence = 0
  /** pending sleeps, ordered by wake-up time, then by the order they started */
  private readonly sleepers: Array<Sleeper> = []

  unsafeCurrentTimeMillis(): number {
    return this.nowMs
  }

  readonly currentTimeMillis: Effect.Effect<number> = Effect.sync(() => this.nowMs)

  unsafeCurrentTimeNanos(): bigint {
    return BigInt(Math.round(this.nowMs * 1_000_000))
  }

  readonly currentTimeNanos: Effect.Effect<bigint> = Effect.sync(() => this.unsafeCurrentTimeNanos())

  sleep(duration: Duration.Duration): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      const millis = Duration.toMillis(duration)
      const sleeper: Sleeper = {
        wakeAt: this.nowMs + Math.max(0, millis),
        sequence: this.sequence++,
        wake: () => resume(Effect.void)
      }
      this.insert(sleeper)
      return Effect.sync(() => this.remove(sleeper))
    })
  }

  /** Pending sleeps that can end (an infinite sleep never does). */
  get pending(): number {
    return this.sleepers.filter((sleeper) => Number.isFinite(sleeper.wakeAt)).length
  }

  /**
   * Moves time to the earliest pending wake-up and wakes every sleeper due then, in the order they started sleeping.
   * Returns false (and does nothing) when no sleep can end.
   */
  advance(): boolean {
    const first = this.sleepers[0]
    if (first === undefined || !Number.isFinite(first.wakeAt)) return false
    this.nowMs = first.wakeAt
    const due: Array<Sleeper> = []
    while (this.sleepers[0] !== undefined && this.sleepers[0].wakeAt <= this.nowMs) due.push(this.sleepers.shift()!)
    for (const sleeper of due) sleeper.wake()
    return true
  }

  private insert(sleeper: Sleeper): void {
    let low = 0
    let high = this.sleepers.length
    while (low < high) {
      const middle = (low + high) >>> 1
      const other = this.sleepers[middle]!
      if (other.wakeAt < sleeper.wakeAt || (other.wakeAt === sleeper.wakeAt && other.sequence < sleeper.sequence)) {
        low = middle + 1
      } else {
        high = middle
      }
    }
    this.sleepers.splice(low, 0, sleeper)
  }

  private remove(sleeper: Sleeper): void {
    const index = this.sleepers.indexOf(sleeper)
    if (index >= 0) this.sleepers.splice(index, 1)
  }
}

/**
 * Runs fibers on microtasks only (never on a timer), so that a macrotask (`setImmediate`) runs only once every one
 * of them waits.
 *
 * @since 0.1.0
 * @category constructors
 */
export const microtaskScheduler: Scheduler.Scheduler = new Scheduler.MixedScheduler(Number.MAX_SAFE_INTEGER)

/** How long (real time) the fibers may all wait with no sleep pending before the run counts as stuck. */
const stallLimitMs = 10_000

/**
 * Runs an effect on virtual time (see the module's description). A run in which every fiber waits and none sleeps
 * for 10 real seconds is stuck: it is interrupted and dies with a message saying so.
 *
 * @since 0.1.0
 * @category combinators
 */
export const runVirtual = <A, E, R>(effect: Effect.Effect<A, E, R>, clock: VirtualClock = new VirtualClock()) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(
      effect.pipe(Effect.withClock(clock), Effect.withScheduler(microtaskScheduler))
    )
    let stalled = false
    let finished = false
    let waitingSince: number | undefined
    fiber.addObserver(() => {
      finished = true
    })
    // The driver is a plain event-loop task, independent of the fiber that waits for the result: when that fiber is
    // interrupted, the driver keeps time moving until the run's own finalizers are done.
    const step = () => {
      if (finished) return
      if (clock.advance()) {
        waitingSince = undefined
        setImmediate(step)
        return
      }
      waitingSince ??= Date.now()
      if (!stalled && Date.now() - waitingSince > stallLimitMs) {
        stalled = true
        fiber.unsafeInterruptAsFork(FiberId.none)
      }
      setTimeout(step, 1)
    }
    setImmediate(step)
    const exit = yield* Fiber.await(fiber).pipe(Effect.onInterrupt(() => Fiber.interrupt(fiber)))
    if (stalled) {
      return yield* Effect.dieMessage(
        `the virtual-time run is stuck: every fiber waited ${stallLimitMs / 1000} s and none was sleeping`
      )
    }
    return yield* exit
  })
