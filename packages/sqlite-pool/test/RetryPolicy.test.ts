import { SqlError } from "@effect/sql/SqlError"
import { describe, expect, it } from "@effect/vitest"
import { PoolConfig, PoolError, RetryPolicy } from "@sqlsim/sqlite-pool"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as TestClock from "effect/TestClock"

const policy = (input: PoolConfig.Input) => PoolConfig.make(input)

const busy = new SqlError({
  cause: Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" }),
  message: "Failed to execute statement"
})

/**
 * Runs an always-failing effect under the policy's schedule on the TestClock and returns the clock at every attempt.
 * The retrying fiber is a child of the test, so one TestClock.adjust runs all its sleeps in order.
 */
const attemptTimes = (options: RetryPolicy.Options, advanceBy: Duration.DurationInput = "1 hour") =>
  Effect.gen(function*() {
    const times: Array<number> = []
    const failing = Effect.flatMap(Clock.currentTimeMillis, (now) => {
      times.push(now)
      return Effect.fail("refused" as const)
    })
    const fiber = yield* Effect.fork(Effect.retry(failing, RetryPolicy.schedule(options)))
    yield* TestClock.adjust(advanceBy)
    const exit = yield* Fiber.join(fiber).pipe(Effect.exit, Effect.timeoutOption("0 millis"))
    return { times, exit }
  })

const connectError = (transient: boolean) =>
  new PoolError.ConnectError({
    filename: "test.db",
    attempts: 1,
    code: transient ? "SQLITE_CANTOPEN" : "SQLITE_NOTADB",
    transient,
    reason: "refused",
    elapsedMs: 0,
    cause: undefined
  })

const gaps = (times: ReadonlyArray<number>) => times.slice(1).map((time, index) => time - times[index]!)

describe("RetryPolicy", () => {
  it.effect("the defaults wait 10, 20 and 40 ms", () =>
    Effect.gen(function*() {
      const config = yield* policy({})
      expect(RetryPolicy.delays(config).map(Duration.toMillis)).toEqual([10, 20, 40])
      expect(RetryPolicy.delay(config, 0)).toEqual(Duration.millis(10))
      expect(RetryPolicy.delay(config, 2)).toEqual(Duration.millis(40))
    }))

  it.effect("each delay doubles and is capped by retryMaxDelay", () =>
    Effect.gen(function*() {
      const config = yield* policy({ retries: 6, retryBaseDelay: "100 millis", retryMaxDelay: "500 millis" })
      expect(RetryPolicy.delays(config).map(Duration.toMillis)).toEqual([100, 200, 400, 500, 500, 500])
    }))

  it.effect("no retries, no delays", () =>
    Effect.gen(function*() {
      expect(RetryPolicy.delays(yield* policy({ retries: 0 }))).toEqual([])
    }))

  it.effect("the schedule waits exactly 10, 20, 40 ms on the clock, then gives up after retries + 1 attempts", () =>
    Effect.gen(function*() {
      const { exit, times } = yield* attemptTimes(yield* policy({}))
      expect(times).toEqual([0, 10, 30, 70])
      expect(gaps(times)).toEqual([10, 20, 40])
      expect(exit._tag === "Some" && Exit.isFailure(exit.value)).toBe(true)
    }))

  it.effect("the waits are real: before 30 ms only two attempts have been made", () =>
    Effect.gen(function*() {
      const { exit, times } = yield* attemptTimes(yield* policy({}), "29 millis")
      expect(times).toEqual([0, 10])
      expect(exit._tag).toBe("None") // still waiting for the third attempt
    }))

  it.effect("the cap applies on the clock too", () =>
    Effect.gen(function*() {
      const config = yield* policy({ retries: 5, retryBaseDelay: "100 millis", retryMaxDelay: "250 millis" })
      const { times } = yield* attemptTimes(config)
      expect(gaps(times)).toEqual([100, 200, 250, 250, 250])
    }))

  it.effect("retries: 0 makes one attempt", () =>
    Effect.gen(function*() {
      const { times } = yield* attemptTimes(yield* policy({ retries: 0 }))
      expect(times).toEqual([0])
    }))

  it.effect("with jitter, the extremes of the random source give exactly -20 % and +20 %", () =>
    Effect.gen(function*() {
      const config = yield* policy({ retryJitter: true })
      const { times } = yield* attemptTimes(config).pipe(Effect.withRandom(Random.fixed([0, 0.5, 1])))
      const [first, second, third] = gaps(times)
      expect(first).toBeCloseTo(8, 9)
      expect(second).toBeCloseTo(20, 9)
      expect(third).toBeCloseTo(48, 9)
    }))

  it.effect.prop(
    "with jitter, every delay stays within +-20 % of 10 * 2^n and under the cap",
    [FastCheck.integer(), FastCheck.integer({ min: 1, max: 8 })],
    ([seed, retries]) =>
      Effect.gen(function*() {
        const config = yield* policy({ retries, retryJitter: true, retryMaxDelay: "1 second" })
        const { times } = yield* attemptTimes(config).pipe(Effect.withRandom(Random.make(seed)))
        expect(times).toHaveLength(retries + 1)
        gaps(times).forEach((gap, retry) => {
          const nominal = 10 * 2 ** retry
          expect(gap).toBeGreaterThanOrEqual(Math.min(nominal * 0.8, 1000) - 1e-9)
          expect(gap).toBeLessThanOrEqual(Math.min(nominal * 1.2, 1000) + 1e-9)
        })
      }),
    { fastCheck: { numRuns: 20 } }
  )

  it.effect("jitter actually varies the delays", () =>
    Effect.gen(function*() {
      const config = yield* policy({ retries: 8, retryJitter: true, retryMaxDelay: "10 seconds" })
      const { times } = yield* attemptTimes(config).pipe(Effect.withRandom(Random.make(42)))
      const ratios = gaps(times).map((gap, retry) => gap / (10 * 2 ** retry))
      expect(new Set(ratios.map((ratio) => ratio.toFixed(6))).size).toBeGreaterThan(1)
      expect(ratios.some((ratio) => Math.abs(ratio - 1) > 1e-6)).toBe(true)
    }))

  it.effect("the schedule's output is the number of the retry about to be made", () =>
    Effect.gen(function*() {
      const outputs = yield* Schedule.run(RetryPolicy.schedule(yield* policy({})), 0, [1, 2, 3, 4, 5])
      // Retries 0, 1 and 2; Schedule.run also reports the output of the step that stops (3).
      expect(Chunk.toReadonlyArray(outputs)).toEqual([0, 1, 2, 3])
    }))

  it.effect("retryConnect: the final error counts the attempts and the time they took, from whenever it started", () =>
    Effect.gen(function*() {
      // Not at 0: the time is measured from the first attempt, not from the epoch.
      yield* TestClock.adjust("1 hour")
      const fiber = yield* Effect.fork(Effect.flip(RetryPolicy.retryConnect(
        Effect.fail(connectError(true)),
        yield* policy({})
      )))
      yield* TestClock.adjust("1 second")
      const error = yield* Fiber.join(fiber)
      expect(error).toMatchObject({ attempts: 4, elapsedMs: 70, code: "SQLITE_CANTOPEN", transient: true })
      expect(error.message).toContain("gave up after 4 attempts over 70 ms")
    }))

  it.effect("retryConnect: observe hears of every failed attempt and of every retry, not of the first attempt", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      let attempt = 0
      const twiceThenOpen = Effect.suspend(() =>
        ++attempt <= 2 ? Effect.fail(connectError(true)) : Effect.succeed("open" as const)
      )
      const fiber = yield* Effect.fork(RetryPolicy.retryConnect(twiceThenOpen, yield* policy({}), {
        failed: (error) => seen.push(`failed ${error.code}`),
        retrying: () => seen.push("retrying")
      }))
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(fiber)).toBe("open")
      expect(seen).toEqual(["failed SQLITE_CANTOPEN", "retrying", "failed SQLITE_CANTOPEN", "retrying"])
    }))

  it.effect("retryConnect: a permanent error is not retried, and no observer is needed", () =>
    Effect.gen(function*() {
      let attempts = 0
      const permanent = Effect.suspend(() => {
        attempts++
        return Effect.fail(connectError(false))
      })
      const error = yield* Effect.flip(RetryPolicy.retryConnect(permanent, yield* policy({})))
      expect(attempts).toBe(1)
      expect(error).toMatchObject({ attempts: 1, elapsedMs: 0, transient: false })
      // Transient ones are retried without an observer too.
      attempts = 0
      const fiber = yield* Effect.fork(Effect.flip(RetryPolicy.retryConnect(
        Effect.suspend(() => {
          attempts++
          return Effect.fail(connectError(true))
        }),
        yield* policy({ retries: 2 })
      )))
      yield* TestClock.adjust("1 second")
      expect((yield* Fiber.join(fiber)).attempts).toBe(3)
      expect(attempts).toBe(3)
    }))

  it.effect("retryWhileBusy: every retry of a busy statement waits its delay (10, 20, 40 ms), and each is counted", () =>
    Effect.gen(function*() {
      const times: Array<number> = []
      const busyThrice = Effect.flatMap(Clock.currentTimeMillis, (now) => {
        times.push(now)
        return times.length <= 3 ? Effect.fail(busy) : Effect.succeed("done")
      })
      const counter: RetryPolicy.BusyCounter = { retries: 0 }
      const retry = RetryPolicy.retryWhileBusy({ ...(yield* policy({})), retryJitter: false }, counter)
      const fiber = yield* Effect.fork(retry(busyThrice))
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(fiber)).toBe("done")
      expect(times).toEqual([0, 10, 30, 70])
      expect(counter.retries).toBe(3)
    }))

  it.effect("retryWhileBusy: still busy after acquireTimeout, a SqlError that says the database is locked", () =>
    Effect.gen(function*() {
      const counter: RetryPolicy.BusyCounter = { retries: 0 }
      const retry = RetryPolicy.retryWhileBusy({ ...(yield* policy({ acquireTimeout: "100 millis" })) }, counter)
      const fiber = yield* Effect.fork(Effect.flip(retry(Effect.fail(busy))))
      yield* TestClock.adjust("1 second")
      const error = yield* Fiber.join(fiber)
      expect(error.message).toMatch(
        /^the database is locked by another connection \(SQLITE_BUSY\); still locked after \d+ ms/
      )
      expect(counter.retries).toBeGreaterThan(2)
    }))

  it.effect("retryWhileBusy: the time it reports is the time spent retrying, from whenever it started", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust("1 hour")
      const counter: RetryPolicy.BusyCounter = { retries: 0 }
      const retry = RetryPolicy.retryWhileBusy(
        { ...(yield* policy({ acquireTimeout: "100 millis" })), retryJitter: false },
        counter
      )
      const fiber = yield* Effect.fork(Effect.flip(retry(Effect.fail(busy))))
      yield* TestClock.adjust("1 second")
      const error = yield* Fiber.join(fiber)
      const reported = Number(/still locked after (\d+) ms/.exec(error.message)?.[1])
      // Retries at 10, 30, 70 and 150 ms: the schedule stops once acquireTimeout has passed.
      expect(reported).toBeGreaterThanOrEqual(100)
      expect(reported).toBeLessThanOrEqual(200)
      expect(error.cause).toBe(busy.cause)
      expect(error.message).toMatch(/: retry later, or find the long transaction holding the write lock$/)
    }))

  it.effect("retryWhileBusy: a statement that is not busy is neither retried nor rewritten", () =>
    Effect.gen(function*() {
      const counter: RetryPolicy.BusyCounter = { retries: 0 }
      const constraint = new SqlError({
        cause: Object.assign(new Error("UNIQUE constraint failed"), { code: "SQLITE_CONSTRAINT_UNIQUE" }),
        message: "Failed to execute statement"
      })
      let attempts = 0
      const retry = RetryPolicy.retryWhileBusy({ ...(yield* policy({})) }, counter)
      const error = yield* Effect.flip(retry(Effect.suspend(() => {
        attempts++
        return Effect.fail(constraint)
      })))
      expect(error).toBe(constraint)
      expect(attempts).toBe(1)
      expect(counter.retries).toBe(0)
    }))
})
