/**
 * Waiting without sleeping on the clock: a test gives other fibers (and pending I/O callbacks) turns of the event
 * loop until the state it expects is reached, moves the TestClock step by step, or (against real processes and
 * servers, whose state changes on their own clock) polls on real timers with a generous bound.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/TestClock"

/** Lets every other fiber and pending I/O callback run once (a turn of the event loop, not a wait for time). */
export const yieldEventLoop: Effect.Effect<void> = Effect.promise(() =>
  new Promise<void>((resolve) => setImmediate(resolve))
)

/** Gives other fibers `turns` turns of the event loop, so whatever was going to happen without time passing has. */
export const settle = (turns = 20): Effect.Effect<void> => Effect.repeatN(yieldEventLoop, turns - 1)

/**
 * Gives other fibers turns of the event loop until `condition` holds; fails the test if it never does. This is how a
 * test waits for the pool to reach a state without sleeping on the clock.
 */
export const waitUntil = <E, R>(
  condition: Effect.Effect<boolean, E, R>,
  description: string,
  turns = 2000
): Effect.Effect<void, E, R> =>
  Effect.gen(function*() {
    for (let turn = 0; turn < turns; turn++) {
      if (yield* condition) return
      yield* yieldEventLoop
    }
    return yield* Effect.dieMessage(`never happened: ${description}`)
  })

/** Sleeps `ms` milliseconds of real time, whatever Clock the test runs on. */
export const sleep = (ms: number): Effect.Effect<void> =>
  Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

/**
 * For waits on real time (another process, a server, a worker thread): checks `condition` every 5 ms of real time
 * until it holds (a failure counts as "not yet"); fails the test if it does not within `limitMillis`, a generous
 * bound, not a measurement. Returns how long it took.
 */
export const eventually = <E, R>(
  condition: Effect.Effect<boolean, E, R>,
  description: string,
  limitMillis = 10_000
): Effect.Effect<number, never, R> =>
  Effect.gen(function*() {
    const started = performance.now()
    while (!(yield* Effect.orElseSucceed(condition, () => false))) {
      if (performance.now() - started > limitMillis) {
        return yield* Effect.dieMessage(`never happened within ${limitMillis} ms: ${description}`)
      }
      yield* sleep(5)
    }
    return performance.now() - started
  })

/**
 * Moves the TestClock forward in steps of `step` until `condition` holds (at most `limit` in total), letting fibers
 * run after every step. Returns how far the clock moved, in milliseconds.
 */
export const advanceUntil = <E, R>(
  condition: Effect.Effect<boolean, E, R>,
  options: {
    readonly step: Duration.DurationInput
    readonly limit: Duration.DurationInput
    readonly description: string
  }
): Effect.Effect<number, E, R> =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    const limitMillis = Duration.toMillis(options.limit)
    while (!(yield* condition)) {
      const now = yield* Clock.currentTimeMillis
      if (now - start >= limitMillis) {
        return yield* Effect.dieMessage(
          `never happened within ${Duration.format(options.limit)}: ${options.description}`
        )
      }
      yield* TestClock.adjust(options.step)
      yield* yieldEventLoop
    }
    return (yield* Clock.currentTimeMillis) - start
  })
