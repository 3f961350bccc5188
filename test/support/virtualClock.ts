/**
 * A virtual clock for storms of thousands of sleeping fibers. Like `TestClock`, time moves only when the test moves
 * it and no test ever waits on the wall clock; unlike `TestClock`, waking a sleeper does not first wait (with
 * `setTimeout`) for every fiber of the test to suspend, which makes TestClock cost about 3 ms per wake-up, minutes for
 * a storm. Sleepers due at the same instant wake together, then the event loop turns once before the next instant.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"

interface Sleeper {
  readonly wakeAt: number
  readonly order: number
  readonly wake: () => void
  cancelled: boolean
}

export interface VirtualClock extends Clock.Clock {
  /** moves time forward by `millis`, waking every sleeper due on the way, in order */
  readonly adjust: (millis: number) => Effect.Effect<void>
  /** sleepers not woken (nor interrupted) yet */
  readonly pending: () => number
}

const turn: Effect.Effect<void> = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

export const make = (): VirtualClock => {
  let now = 0
  let order = 0
  // A binary min-heap on (wakeAt, order): first due first, ties in the order they went to sleep.
  const heap: Array<Sleeper> = []
  const before = (a: Sleeper, b: Sleeper) => a.wakeAt < b.wakeAt || (a.wakeAt === b.wakeAt && a.order < b.order)
  const push = (sleeper: Sleeper) => {
    heap.push(sleeper)
    let index = heap.length - 1
    while (index > 0) {
      const parent = (index - 1) >> 1
      if (!before(heap[index]!, heap[parent]!)) break
      ;[heap[index], heap[parent]] = [heap[parent]!, heap[index]!]
      index = parent
    }
  }
  const pop = (): Sleeper | undefined => {
    const top = heap[0]
    const last = heap.pop()
    if (heap.length > 0 && last !== undefined) {
      heap[0] = last
      let index = 0
      while (true) {
        const left = 2 * index + 1
        const right = left + 1
        let smallest = index
        if (left < heap.length && before(heap[left]!, heap[smallest]!)) smallest = left
        if (right < heap.length && before(heap[right]!, heap[smallest]!)) smallest = right
        if (smallest === index) break
        ;[heap[index], heap[smallest]] = [heap[smallest]!, heap[index]!]
        index = smallest
      }
    }
    return top
  }

  const sleep = (duration: Duration.Duration): Effect.Effect<void> =>
    Effect.async<void>((resume) => {
      const millis = Duration.toMillis(duration)
      const sleeper: Sleeper = {
        wakeAt: now + (Number.isFinite(millis) ? Math.max(0, millis) : Infinity),
        order: order++,
        wake: () => resume(Effect.void),
        cancelled: false
      }
      push(sleeper)
      return Effect.sync(() => {
        sleeper.cancelled = true
      })
    })

  const adjust = (millis: number): Effect.Effect<void> =>
    Effect.gen(function*() {
      const target = now + millis
      while (true) {
        while (heap.length > 0 && heap[0]!.cancelled) pop()
        const next = heap[0]
        if (next === undefined || next.wakeAt > target) break
        now = next.wakeAt
        while (heap.length > 0 && heap[0]!.wakeAt === now) {
          const sleeper = pop()!
          if (!sleeper.cancelled) sleeper.wake()
        }
        yield* turn
      }
      now = target
    })

  return {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: () => now,
    unsafeCurrentTimeNanos: () => BigInt(now) * 1_000_000n,
    currentTimeMillis: Effect.sync(() => now),
    currentTimeNanos: Effect.sync(() => BigInt(now) * 1_000_000n),
    sleep,
    adjust,
    pending: () => heap.filter((sleeper) => !sleeper.cancelled).length
  }
}
