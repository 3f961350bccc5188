import { describe, expect, it } from "@effect/vitest"
import { PoolConfig, PoolError } from "@sqlsim/sqlite-pool"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"

const millis = (duration: Duration.Duration | null) => duration === null ? null : Duration.toMillis(duration)

/** The PoolConfigError of an input that must be rejected (a defect or a success fails the test). */
const rejection = (input: unknown) => Effect.flip(PoolConfig.make(input as PoolConfig.Input))

const withEnvironment = (variables: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(variables))))

describe("PoolConfig.make", () => {
  it.effect("fills in every default of API.md", () =>
    Effect.gen(function*() {
      const config = yield* PoolConfig.make({})
      expect(config.filename).toBe(":memory:")
      expect(config.maxConnections).toBe(5)
      expect(config.minConnections).toBe(0)
      expect(config.readConnections).toBe(4)
      expect(config.retries).toBe(3)
      expect(millis(config.retryBaseDelay)).toBe(10)
      expect(millis(config.retryMaxDelay)).toBe(1000)
      expect(config.retryJitter).toBe(false)
      expect(millis(config.acquireTimeout)).toBe(5000)
      expect(millis(config.busyTimeout)).toBe(0)
      expect(millis(config.idleTimeToLive)).toBe(5 * 60 * 1000)
      expect(config.maxLifetime).toBeNull()
      expect(millis(config.shutdownTimeout)).toBe(5000)
    }))

  it.effect("no argument and explicit undefined fields mean the defaults", () =>
    Effect.gen(function*() {
      const none = yield* PoolConfig.make()
      const undefinedFields = yield* PoolConfig.make({ maxConnections: undefined, retryBaseDelay: undefined })
      expect(undefinedFields).toEqual(none)
      expect(none.maxConnections).toBe(5)
    }))

  it.effect("keeps every valid value given, with durations in any DurationInput form", () =>
    Effect.gen(function*() {
      const config = yield* PoolConfig.make({
        filename: "/tmp/app.db",
        maxConnections: 8,
        minConnections: 8,
        readConnections: 0,
        retries: 0,
        retryBaseDelay: "250 millis",
        retryMaxDelay: Duration.seconds(30),
        retryJitter: true,
        acquireTimeout: 1500,
        busyTimeout: "2 seconds",
        idleTimeToLive: "1 minute",
        maxLifetime: "1 hour",
        shutdownTimeout: "0 millis"
      })
      expect(config).toMatchObject({
        filename: "/tmp/app.db",
        maxConnections: 8,
        minConnections: 8,
        readConnections: 0,
        retries: 0,
        retryJitter: true
      })
      expect(millis(config.retryBaseDelay)).toBe(250)
      expect(millis(config.retryMaxDelay)).toBe(30_000)
      expect(millis(config.acquireTimeout)).toBe(1500)
      expect(millis(config.busyTimeout)).toBe(2000)
      expect(millis(config.idleTimeToLive)).toBe(60_000)
      expect(millis(config.maxLifetime)).toBe(3_600_000)
      expect(millis(config.shutdownTimeout)).toBe(0)
    }))

  it.effect("a file in a directory that does not exist (yet) is not a configuration error", () =>
    Effect.gen(function*() {
      const config = yield* PoolConfig.make({ filename: "/no/such/directory/app.db" })
      expect(config.filename).toBe("/no/such/directory/app.db")
    }))

  it.effect("maxLifetime: null means no limit", () =>
    Effect.gen(function*() {
      expect((yield* PoolConfig.make({ maxLifetime: null })).maxLifetime).toBeNull()
    }))

  const invalid: ReadonlyArray<readonly [string, Record<string, unknown>, string]> = [
    ["maxConnections 0", { maxConnections: 0 }, "maxConnections"],
    ["maxConnections negative", { maxConnections: -3 }, "maxConnections"],
    ["maxConnections fractional", { maxConnections: 2.5 }, "maxConnections"],
    ["maxConnections NaN", { maxConnections: Number.NaN }, "maxConnections"],
    ["maxConnections infinite", { maxConnections: Number.POSITIVE_INFINITY }, "maxConnections"],
    ["maxConnections as text", { maxConnections: "5" }, "maxConnections"],
    ["minConnections negative", { minConnections: -1 }, "minConnections"],
    ["minConnections fractional", { minConnections: 0.5 }, "minConnections"],
    ["minConnections above maxConnections", { minConnections: 6, maxConnections: 5 }, "minConnections"],
    ["minConnections above the default maxConnections", { minConnections: 6 }, "minConnections"],
    ["readConnections negative", { readConnections: -1 }, "readConnections"],
    ["retries negative", { retries: -1 }, "retries"],
    ["retries fractional", { retries: 1.5 }, "retries"],
    ["retryBaseDelay negative number", { retryBaseDelay: -10 }, "retryBaseDelay"],
    ["retryBaseDelay negative text", { retryBaseDelay: "-10 millis" }, "retryBaseDelay"],
    ["retryBaseDelay not a duration", { retryBaseDelay: "soon" }, "retryBaseDelay"],
    ["retryMaxDelay negative", { retryMaxDelay: "-1 second" }, "retryMaxDelay"],
    ["retryMaxDelay below retryBaseDelay", { retryBaseDelay: "1 second", retryMaxDelay: "10 millis" }, "retryMaxDelay"],
    ["retryJitter not a boolean", { retryJitter: "yes" }, "retryJitter"],
    ["acquireTimeout negative", { acquireTimeout: -1 }, "acquireTimeout"],
    ["acquireTimeout NaN", { acquireTimeout: Number.NaN }, "acquireTimeout"],
    ["busyTimeout negative", { busyTimeout: "-5 millis" }, "busyTimeout"],
    ["busyTimeout infinite", { busyTimeout: Duration.infinity }, "busyTimeout"],
    ["idleTimeToLive negative", { idleTimeToLive: -60_000 }, "idleTimeToLive"],
    ["maxLifetime negative", { maxLifetime: "-1 hour" }, "maxLifetime"],
    ["shutdownTimeout negative", { shutdownTimeout: -1 }, "shutdownTimeout"],
    ["shutdownTimeout not a duration", { shutdownTimeout: { seconds: 5 } }, "shutdownTimeout"],
    ["filename empty", { filename: "" }, "filename"],
    ["filename not text", { filename: 42 }, "filename"],
    ["filename with a NUL byte", { filename: "a\0b.db" }, "filename"],
    ["an unknown field", { maxConnection: 3 }, "maxConnection"],
    ["an unknown field beside valid ones", { filename: "x.db", poolSize: 3 }, "poolSize"]
  ]

  it.effect.each(invalid)(
    "rejects %s with a PoolConfigError naming the field",
    ([, input, field]) =>
      Effect.gen(function*() {
        const error = yield* rejection(input)
        expect(error).toBeInstanceOf(PoolError.PoolConfigError)
        expect(error._tag).toBe("PoolConfigError")
        expect(error.field).toBe(field)
        // A person can act on the message: it names the field and says what is expected.
        expect(error.message).toContain(field)
        expect(error.message.length).toBeGreaterThan(field.length + 10)
        expect(error.message).not.toMatch(/\n\s+at /)
      })
  )

  it.effect("says which values are allowed", () =>
    Effect.gen(function*() {
      expect((yield* rejection({ maxConnections: 0 })).message).toMatch(/integer from 1 to 1000, got 0/)
      expect((yield* rejection({ minConnections: 9, maxConnections: 4 })).message).toMatch(/9.*4/)
      expect((yield* rejection({ retryBaseDelay: "-10 millis" })).message).toMatch(/non-negative duration/)
      const unknown = yield* rejection({ maxConection: 3 })
      expect(unknown.message).toContain("unknown field")
      expect(unknown.message).toContain("maxConnections")
    }))

  it.effect.each([null, [], "pool.db", 5])(
    "rejects a configuration that is not an object (%j)",
    (input) =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(PoolConfig.make(input as unknown as PoolConfig.Input))
        // A typed failure, not a defect: a user mistake never becomes a stack trace.
        expect(Exit.isFailure(exit) && exit.cause._tag === "Fail").toBe(true)
        const error = yield* rejection(input)
        expect(error.field).toBe("(input)")
      })
  )

  it.effect.prop(
    "accepts exactly the integers >= 1 as maxConnections",
    [FastCheck.oneof(FastCheck.integer({ min: -1000, max: 1000 }), FastCheck.double({ min: -1000, max: 1000 }))],
    ([maxConnections]) =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(PoolConfig.make({ maxConnections }))
        if (Number.isInteger(maxConnections) && maxConnections >= 1) {
          expect(Exit.isSuccess(exit) && exit.value.maxConnections === maxConnections).toBe(true)
        } else {
          const error = yield* rejection({ maxConnections })
          expect(error.field).toBe("maxConnections")
        }
      }),
    { fastCheck: { numRuns: 50 } }
  )

  it.effect.prop(
    "accepts minConnections exactly when 0 <= min <= max",
    [FastCheck.integer({ min: -5, max: 20 }), FastCheck.integer({ min: 1, max: 20 })],
    ([minConnections, maxConnections]) =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(PoolConfig.make({ minConnections, maxConnections }))
        expect(Exit.isSuccess(exit)).toBe(minConnections >= 0 && minConnections <= maxConnections)
        if (Exit.isFailure(exit)) {
          expect((yield* rejection({ minConnections, maxConnections })).field).toBe("minConnections")
        }
      }),
    { fastCheck: { numRuns: 50 } }
  )

  it.effect.prop(
    "never clamps a negative duration to 0",
    [
      FastCheck.constantFrom(
        "retryBaseDelay",
        "retryMaxDelay",
        "acquireTimeout",
        "busyTimeout",
        "idleTimeToLive",
        "maxLifetime",
        "shutdownTimeout"
      ),
      FastCheck.integer({ min: 1, max: 1_000_000 }),
      FastCheck.boolean()
    ],
    ([field, amount, asText]) =>
      Effect.gen(function*() {
        const error = yield* rejection({ [field]: asText ? `-${amount} millis` : -amount })
        expect(error.field).toBe(field)
      }),
    { fastCheck: { numRuns: 50 } }
  )
})

describe("PoolConfig.fromConfig (environment variables)", () => {
  it.effect("names one variable for every field of Input that is not a function or an object", () =>
    Effect.gen(function*() {
      const resolved = yield* PoolConfig.make({})
      const textual = Object.keys(resolved).filter((key) =>
        !["transformQueryNames", "transformResultNames", "onConnect", "spanAttributes"].includes(key)
      )
      expect(Object.keys(PoolConfig.environmentVariables).sort()).toEqual(textual.sort())
      for (const name of Object.values(PoolConfig.environmentVariables)) expect(name).toMatch(/^SQLSIM_[A-Z_]+$/)
    }))

  it.effect("an empty environment gives the defaults", () =>
    Effect.gen(function*() {
      const fromEnvironment = yield* PoolConfig.fromConfig().pipe(withEnvironment({}))
      expect(fromEnvironment).toEqual(yield* PoolConfig.make({}))
    }))

  it.effect("reads every kind of field from text", () =>
    Effect.gen(function*() {
      const config = yield* PoolConfig.fromConfig().pipe(withEnvironment({
        SQLSIM_FILENAME: "/data/app.db",
        SQLSIM_MAX_CONNECTIONS: "8",
        SQLSIM_MIN_CONNECTIONS: " 2 ",
        SQLSIM_READ_CONNECTIONS: "0",
        SQLSIM_RETRIES: "6",
        SQLSIM_RETRY_BASE_DELAY: "25 millis",
        SQLSIM_RETRY_MAX_DELAY: "2 seconds",
        SQLSIM_RETRY_JITTER: "true",
        SQLSIM_ACQUIRE_TIMEOUT: "750",
        SQLSIM_BUSY_TIMEOUT: "0 millis",
        SQLSIM_IDLE_TIME_TO_LIVE: "10 minutes",
        SQLSIM_MAX_LIFETIME: "30 minutes",
        SQLSIM_SHUTDOWN_TIMEOUT: "1 second"
      }))
      expect(config).toMatchObject({
        filename: "/data/app.db",
        maxConnections: 8,
        minConnections: 2,
        readConnections: 0,
        retries: 6,
        retryJitter: true
      })
      expect(millis(config.retryBaseDelay)).toBe(25)
      expect(millis(config.retryMaxDelay)).toBe(2000)
      expect(millis(config.acquireTimeout)).toBe(750)
      expect(millis(config.idleTimeToLive)).toBe(600_000)
      expect(millis(config.maxLifetime)).toBe(1_800_000)
      expect(millis(config.shutdownTimeout)).toBe(1000)
    }))

  it.effect.each(["none", "null", ""])("SQLSIM_MAX_LIFETIME=%j means no limit", (text) =>
    Effect.gen(function*() {
      const config = yield* PoolConfig.fromConfig().pipe(withEnvironment({ SQLSIM_MAX_LIFETIME: text }))
      expect(config.maxLifetime).toBeNull()
    }))

  it.effect("explicit overrides win over the environment", () =>
    Effect.gen(function*() {
      const config = yield* PoolConfig.fromConfig({ maxConnections: 3, filename: undefined }).pipe(
        withEnvironment({ SQLSIM_MAX_CONNECTIONS: "8", SQLSIM_FILENAME: "env.db" })
      )
      expect(config.maxConnections).toBe(3)
      expect(config.filename).toBe("env.db")
    }))

  const badVariables: ReadonlyArray<readonly [string, string, string]> = [
    ["SQLSIM_MAX_CONNECTIONS", "abc", "maxConnections"],
    ["SQLSIM_MAX_CONNECTIONS", "0", "maxConnections"],
    ["SQLSIM_MAX_CONNECTIONS", "2.5", "maxConnections"],
    ["SQLSIM_MIN_CONNECTIONS", "-1", "minConnections"],
    ["SQLSIM_RETRIES", "three", "retries"],
    ["SQLSIM_RETRY_JITTER", "maybe", "retryJitter"],
    ["SQLSIM_RETRY_BASE_DELAY", "-5 millis", "retryBaseDelay"],
    ["SQLSIM_ACQUIRE_TIMEOUT", "-1", "acquireTimeout"],
    ["SQLSIM_IDLE_TIME_TO_LIVE", "forever", "idleTimeToLive"],
    ["SQLSIM_FILENAME", "", "filename"]
  ]

  it.effect.each(badVariables)(
    "%s=%j fails with a PoolConfigError naming %s",
    ([variable, text, field]) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(PoolConfig.fromConfig().pipe(withEnvironment({ [variable]: text })))
        expect(error._tag).toBe("PoolConfigError")
        expect(error.field).toBe(field)
      })
  )

  it.effect("min > max across environment and overrides is still caught", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        PoolConfig.fromConfig({ maxConnections: 2 }).pipe(withEnvironment({ SQLSIM_MIN_CONNECTIONS: "3" }))
      )
      expect(error.field).toBe("minConnections")
    }))
})
