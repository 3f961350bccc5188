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
  /** interrupted before its time: left in the heap, skipped when it comes up */
  cancelled: boolean
}

const turn: Effect.Effect<void> = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/**
 * A `Clock` whose time moves only when `advance` or `adjust` is called. Its pending sleeps are a binary min-heap on
 * (wake-up time, order of sleeping), so that storms of thousands of sleeping fibers cost O(log n) per sleep.
 *
 * @since 0.1.0
 * @category models
 */
export class VirtualClock implements Clock.Clock {
  /** @since 0.1.0 */
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId
  private nowMs = 0
  private sequence = 0
  private readonly heap: Array<Sleeper> = []

  /**
   * The virtual time, in milliseconds since the clock was made.
   *
   * @since 0.1.0
   */
  unsafeCurrentTimeMillis(): number {
    return this.nowMs
  }

  /** @since 0.1.0 */
  readonly currentTimeMillis: Effect.Effect<number> = Effect.sync(() => this.nowMs)

  /**
   * The virtual time, in nanoseconds.
   *
   * @since 0.1.0
   */
  unsafeCurrentTimeNanos(): bigint {
    return BigInt(Math.round(this.nowMs * 1_000_000))
  }

  /** @since 0.1.0 */
  readonly currentTimeNanos: Effect.Effect<bigint> = Effect.sync(() => this.unsafeCurrentTimeNanos())

  /**
   * Waits until the clock has moved `duration` forward; interrupting it cancels the sleep.
   *
   * @since 0.1.0
   */
  sleep(duration: Duration.Duration): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      const millis = Duration.toMillis(duration)
      const sleeper: Sleeper = {
        wakeAt: this.nowMs + (Number.isFinite(millis) ? Math.max(0, millis) : Infinity),
        sequence: this.sequence++,
        wake: () => resume(Effect.void),
        cancelled: false
      }
      this.push(sleeper)
      return Effect.sync(() => {
        sleeper.cancelled = true
      })
    })
  }

  /** Pending sleeps that can end (an infinite sleep never does). */
  get pending(): number {
    return this.heap.filter((sleeper) => !sleeper.cancelled && Number.isFinite(sleeper.wakeAt)).length
  }

  /**
   * Moves time to the earliest pending wake-up and wakes every sleeper due then, in the order they started sleeping.
   * Returns false (and does nothing) when no sleep can end.
   *
   * @since 0.1.0
   */
  advance(): boolean {
    const first = this.next()
    if (first === undefined || !Number.isFinite(first.wakeAt)) return false
    this.wakeDue(first.wakeAt)
    return true
  }

  /**
   * Moves time forward by `millis` (for tests that drive the clock themselves): wakes the sleepers due on the way,
   * instant by instant, with a turn of the event loop after each instant so that the woken fibers run (and sleep
   * again) before later ones wake.
   *
   * @since 0.1.0
   */
  adjust(millis: number): Effect.Effect<void> {
    return Effect.suspend(() => {
      const target = this.nowMs + millis
      const loop: Effect.Effect<void> = Effect.suspend(() => {
        const next = this.next()
        if (next === undefined || next.wakeAt > target) {
          this.nowMs = target
          return Effect.void
        }
        this.wakeDue(next.wakeAt)
        return Effect.zipRight(turn, loop)
      })
      return loop
    })
  }

  /**
   * The earliest sleeper still pending, dropping cancelled ones on the way.
   *
   * @internal
   */
  private next(): Sleeper | undefined {
    while (this.heap[0] !== undefined && this.heap[0].cancelled) this.pop()
    return this.heap[0]
  }

  /** @internal */
  private wakeDue(instant: number): void {
    this.nowMs = instant
    while (this.heap[0] !== undefined && this.heap[0].wakeAt <= instant) {
      const sleeper = this.pop()!
      if (!sleeper.cancelled) sleeper.wake()
    }
  }

  /** @internal */
  private before(a: Sleeper, b: Sleeper): boolean {
    return a.wakeAt < b.wakeAt || (a.wakeAt === b.wakeAt && a.sequence < b.sequence)
  }

  /** @internal */
  private push(sleeper: Sleeper): void {
    const heap = this.heap
    heap.push(sleeper)
    let index = heap.length - 1
    while (index > 0) {
      const parent = (index - 1) >> 1
      if (!this.before(heap[index]!, heap[parent]!)) break
      ;[heap[index], heap[parent]] = [heap[parent]!, heap[index]!]
      index = parent
    }
  }

  /** @internal */
  private pop(): Sleeper | undefined {
    const heap = this.heap
    const top = heap[0]
    const last = heap.pop()
    if (heap.length > 0 && last !== undefined) {
      heap[0] = last
      let index = 0
      while (true) {
        const left = 2 * index + 1
        const right = left + 1
        let smallest = index
        if (left < heap.length && this.before(heap[left]!, heap[smallest]!)) smallest = left
        if (right < heap.length && this.before(heap[right]!, heap[smallest]!)) smallest = right
        if (smallest === index) break
        ;[heap[index], heap[smallest]] = [heap[smallest]!, heap[index]!]
        index = smallest
      }
    }
    return top
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

/**
 * A scheduler that counts the tasks it is given: every fiber that runs (resumed, woken, or yielding) passes through
 * it, so an unchanged count over a turn of the event loop means that no fiber ran in it.
 */
class CountingScheduler implements Scheduler.Scheduler {
  tasks = 0
  constructor(private readonly scheduler: Scheduler.Scheduler) {}
  scheduleTask(task: Scheduler.Task, priority: number, fiber?: Fiber.RuntimeFiber<unknown, unknown>): void {
    this.tasks++
    this.scheduler.scheduleTask(task, priority, fiber)
  }
  shouldYield(fiber: Fiber.RuntimeFiber<unknown, unknown>): number | false {
    return this.scheduler.shouldYield(fiber)
  }
}

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
    const scheduler = new CountingScheduler(microtaskScheduler)
    const fiber = yield* Effect.fork(effect.pipe(Effect.withClock(clock), Effect.withScheduler(scheduler)))
    let stalled = false
    let finished = false
    let waitingSince: number | undefined
    fiber.addObserver(() => {
      finished = true
    })
    // The driver is a plain event-loop task, independent of the fiber that waits for the result: when that fiber is
    // interrupted, the driver keeps time moving until the run's own finalizers are done. Time moves only after a
    // whole turn of the loop in which no fiber ran: work a fiber left for a later turn (a pool that gives the event
    // loop a turn with `setImmediate` before its next dispatch) is done at the same virtual time, whatever real time
    // it took to get there.
    let tasksSeen = -1
    const step = () => {
      if (finished) return
      if (scheduler.tasks !== tasksSeen) {
        tasksSeen = scheduler.tasks
        setImmediate(step)
        return
      }
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
