/**
 * Acquire deadlines without a fiber per acquire. `Effect.timeoutFail` races the acquire against a sleep on two new
 * fibers, which doubled the cost of every acquire that has to wait. Here one fiber per pool sleeps until the oldest
 * pending deadline and ends the wait of an acquire whose deadline has passed. Every deadline is `timeout` after its
 * start, so deadlines pass in the order they were started: a Set (insertion order, O(1) removal) is the whole
 * schedule. The fiber sleeps on the Effect Clock, so `TestClock` drives it.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

export interface Deadline<T> {
  readonly at: number
  readonly timeout: () => T
  expired: boolean
  /** set while the acquire waits: ends that wait with the timeout failure */
  onExpire: (() => void) | undefined
}

export interface Deadlines<T> {
  /** a deadline `timeout` from now; `end` it when the acquire is over, however it ended */
  readonly start: () => Deadline<T>
  readonly end: (deadline: Deadline<T> | undefined) => void
}

/**
 * A wait that a deadline can end. `register` starts waiting (with `resume` to end it) and returns how to withdraw
 * from the wait: it runs if the deadline passes first or the fiber is interrupted, never after `resume`.
 */
export const wait = <E, T>(
  deadline: Deadline<T> | undefined,
  register: (resume: (effect: Effect.Effect<void, E>) => void) => () => void
): Effect.Effect<void, E | T> =>
  Effect.async<void, E | T>((resume) => {
    if (deadline === undefined) {
      const withdraw = register(resume)
      return Effect.sync(withdraw)
    }
    if (deadline.expired) return resume(Effect.fail(deadline.timeout()))
    let settled = false
    const withdraw = register((effect) => {
      settled = true
      deadline.onExpire = undefined
      resume(effect)
    })
    if (settled) return
    deadline.onExpire = () => {
      deadline.onExpire = undefined
      withdraw()
      resume(Effect.fail(deadline.timeout()))
    }
    return Effect.sync(() => {
      deadline.onExpire = undefined
      withdraw()
    })
  })

/** The deadlines of one pool; its timer fiber runs in the current Scope. */
export const make = <T>(timeoutMillis: number, timeout: () => T): Effect.Effect<Deadlines<T>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    const pending = new Set<Deadline<T>>()
    let wakeTimer: (() => void) | undefined

    const expire = (deadline: Deadline<T>) => {
      pending.delete(deadline)
      deadline.expired = true
      deadline.onExpire?.()
    }
    const tick = Effect.suspend((): Effect.Effect<void> => {
      const now = clock.unsafeCurrentTimeMillis()
      for (const deadline of pending) {
        if (deadline.at > now) return Effect.sleep(deadline.at - now)
        expire(deadline)
      }
      // Nothing pending: park until a deadline starts.
      return Effect.async<void>((resume) => {
        wakeTimer = () => {
          wakeTimer = undefined
          resume(Effect.void)
        }
        return Effect.sync(() => wakeTimer = undefined)
      })
    })
    yield* Effect.forkScoped(Effect.forever(tick))

    return {
      start: () => {
        const deadline: Deadline<T> = {
          at: clock.unsafeCurrentTimeMillis() + timeoutMillis,
          timeout,
          expired: false,
          onExpire: undefined
        }
        pending.add(deadline)
        wakeTimer?.()
        return deadline
      },
      end: (deadline) => {
        if (deadline === undefined) return
        pending.delete(deadline)
        deadline.onExpire = undefined
      }
    }
  })
