/**
 * The writer lane's first-come, first-served gate of `permits` slots with direct handoff: a released slot goes straight to the
 * oldest waiter, so a fiber that releases and immediately asks again queues behind everyone already waiting
 * (HikariCP's handoff queue, tarn's pending list). Effect's own Semaphore lets the releasing fiber retake its slot.
 *
 * @internal
 */
import * as Effect from "effect/Effect"

interface Waiter<E> {
  readonly resume: (effect: Effect.Effect<void, E>) => void
  served: boolean
}

export interface FairGate<E> {
  /** waits for a slot, first come first served; fails with the close error once the gate is closed */
  readonly take: Effect.Effect<void, E>
  /** returns a slot: to the oldest waiter if there is one */
  readonly release: Effect.Effect<void>
  /** `release` outside Effect */
  readonly unsafeRelease: () => void
  /** fails every waiter (and every later take) with `error` */
  readonly close: (error: E) => Effect.Effect<void>
  readonly waiting: () => number
  /** a slot is free and nobody waits */
  readonly free: () => boolean
  /** some slot is taken */
  readonly held: () => boolean
}

export const make = <E>(permits: number): FairGate<E> => {
  let available = permits
  let closedWith: { readonly error: E } | undefined
  // A queue with a moving head: shift() on a large array is O(n).
  let queue: Array<Waiter<E> | undefined> = []
  let head = 0
  let size = 0

  const dequeue = (): Waiter<E> | undefined => {
    while (head < queue.length) {
      const waiter = queue[head]
      queue[head++] = undefined
      if (waiter !== undefined) {
        if (head > 1024 && head * 2 > queue.length) {
          queue = queue.slice(head)
          head = 0
        }
        size--
        return waiter
      }
    }
    return undefined
  }

  const unsafeRelease = () => {
    const next = dequeue()
    if (next === undefined) {
      available++
    } else {
      next.served = true
      next.resume(Effect.void)
    }
  }

  // Joins the queue; returns how to leave it (a slot already handed over goes on to the next waiter).
  const enqueue = (resume: (effect: Effect.Effect<void, E>) => void) => {
    const waiter: Waiter<E> = { resume, served: false }
    const index = queue.length
    queue.push(waiter)
    size++
    return () => {
      if (waiter.served) {
        unsafeRelease()
      } else if (queue[index] === waiter) {
        queue[index] = undefined
        size--
      } else {
        const at = queue.indexOf(waiter, head)
        if (at >= 0) {
          queue[at] = undefined
          size--
        }
      }
    }
  }

  const take = Effect.suspend((): Effect.Effect<void, E> => {
    if (closedWith !== undefined) return Effect.fail(closedWith.error)
    if (available > 0 && size === 0) {
      available--
      return Effect.void
    }
    return Effect.async<void, E>((resume) => {
      const withdraw = enqueue(resume)
      return Effect.sync(withdraw)
    })
  })

  return {
    take,
    release: Effect.sync(unsafeRelease),
    unsafeRelease,
    close: (error) =>
      Effect.sync(() => {
        closedWith = { error }
        let waiter = dequeue()
        while (waiter !== undefined) {
          waiter.served = false
          waiter.resume(Effect.fail(error))
          waiter = dequeue()
        }
      }),
    waiting: () => size,
    free: () => closedWith === undefined && available > 0 && size === 0,
    held: () => available < permits
  }
}
