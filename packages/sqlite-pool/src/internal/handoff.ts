/**
 * The idle connections of a pool and the checkouts waiting for one. A returned connection goes straight to the oldest
 * waiter; with nobody waiting it joins the idle list, which is used last-in first-out so that the least recently used
 * connections stay idle long enough to be closed by the idle timeout.
 *
 * A waiter can also be woken without a connection, to look again: when a connection closes or a connect fails, a
 * waiter that could not open a connection of its own (the pool was full of connects in flight) may now do so.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Deadlines from "./deadlines.js"

interface Waiter<A> {
  readonly claim: (item: A) => void
  readonly resume: (effect: Effect.Effect<void>) => void
  woken: boolean
}

export interface Handoff<A> {
  /** gives an item to the oldest waiter, or keeps it idle */
  readonly offer: (item: A) => void
  /** takes the most recently returned idle item, if any */
  readonly poll: () => A | undefined
  /**
   * Waits until an item is offered (`claim` receives it synchronously, at the moment of the handoff, so that an
   * interruption cannot lose it) or until the waiter is woken to look again.
   */
  readonly await: <T = never>(claim: (item: A) => void, deadline?: Deadlines.Deadline<T>) => Effect.Effect<void, T>
  /** wakes the oldest waiter without an item */
  readonly wakeOne: () => void
  /** wakes every waiter without an item */
  readonly wakeAll: () => void
  /** the idle items, oldest release first */
  readonly entries: () => ReadonlyArray<A>
  readonly size: () => number
  readonly remove: (item: A) => void
}

export const make = <A>(): Handoff<A> => {
  const idle: Array<A> = []
  // A Set keeps insertion order: the first waiter is the oldest.
  const waiters = new Set<Waiter<A>>()

  const next = (): Waiter<A> | undefined => {
    for (const waiter of waiters) {
      waiters.delete(waiter)
      return waiter
    }
    return undefined
  }

  const wake = (waiter: Waiter<A>) => {
    waiter.woken = true
    waiter.resume(Effect.void)
  }
  const wakeOne = () => {
    const waiter = next()
    if (waiter !== undefined) wake(waiter)
  }

  return {
    offer: (item) => {
      const waiter = next()
      if (waiter === undefined) {
        idle.push(item)
      } else {
        waiter.claim(item)
        wake(waiter)
      }
    },
    poll: () => idle.pop(),
    await: (claim, deadline) =>
      Deadlines.wait(deadline, (resume) => {
        const waiter: Waiter<A> = { claim, resume, woken: false }
        waiters.add(waiter)
        return () => {
          waiters.delete(waiter)
          // Withdrawn as it was woken: pass the wake-up on. (A claimed item is returned by its claimer.)
          if (waiter.woken) wakeOne()
        }
      }),
    wakeOne,
    wakeAll: () => {
      for (let waiter = next(); waiter !== undefined; waiter = next()) wake(waiter)
    },
    entries: () => idle,
    size: () => idle.length,
    remove: (item) => {
      const index = idle.indexOf(item)
      if (index >= 0) idle.splice(index, 1)
    }
  }
}
