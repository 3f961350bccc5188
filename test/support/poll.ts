/**
 * Waiting on real time, for tests against real servers (sqld processes): a server's state changes on its own clock,
 * so these poll with real timers (not Effect's Clock, which `it.scoped` replaces with the TestClock).
 */
import * as Effect from "effect/Effect"

/** Sleeps `ms` milliseconds of real time. */
export const sleep = (ms: number): Effect.Effect<void> =>
  Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

/**
 * Runs `effect` every 5 ms until it yields true (a failure counts as false), dying with `what` after `ms`; returns
 * how long it took.
 */
export const eventually = <E, R>(
  effect: Effect.Effect<boolean, E, R>,
  ms: number,
  what: string
): Effect.Effect<number, never, R> =>
  Effect.gen(function*() {
    const started = performance.now()
    while (!(yield* Effect.orElseSucceed(effect, () => false))) {
      if (performance.now() - started > ms) return yield* Effect.dieMessage(`${what}: not within ${ms} ms`)
      yield* sleep(5)
    }
    return performance.now() - started
  })
