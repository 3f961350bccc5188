/**
 * The command's environment variables (SQLSIM_*): every one read, each text turned into its field's value for the
 * pool's Schema to judge, a bad one reported with the variable's name, flags winning over variables.
 */
import { describe, expect, it } from "@effect/vitest"
import { PoolConfig } from "@sqlsim/sqlite-pool"
import * as Cause from "effect/Cause"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Option from "effect/Option"
import * as Flags from "../src/internal/flags.js"

const withEnvironment = (variables: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(variables))))

const millis = (duration: Duration.Duration | null) => duration === null ? null : Duration.toMillis(duration)

/** The resolved configuration of the environment alone, as `demo` builds it. */
const resolved = (variables: Record<string, string>) =>
  Effect.flatMap(Flags.poolInput({ db: Option.none() }), (input) => PoolConfig.make(input)).pipe(
    withEnvironment(variables)
  )

describe("the command's environment variables", () => {
  it.effect("name one variable for every field of ConnectionPool's input that text can give", () =>
    Effect.gen(function*() {
      // The optional textual fields given, so that the resolved config has their keys.
      const config = yield* PoolConfig.make({ holdWarningThreshold: "1 second", poolName: "app" })
      const textual = Object.keys(config).filter((key) => key !== "spanAttributes")
      expect(Object.keys(Flags.environmentVariables).sort()).toEqual(textual.sort())
      for (const name of Object.values(Flags.environmentVariables)) expect(name).toMatch(/^SQLSIM_[A-Z_]+$/)
    }))

  it.effect("an empty environment gives the defaults", () =>
    Effect.gen(function*() {
      expect(yield* resolved({})).toEqual(yield* PoolConfig.make())
    }))

  it.effect("reads every kind of field from text", () =>
    Effect.gen(function*() {
      const config = yield* resolved({
        SQLSIM_FILENAME: "/data/app.db",
        SQLSIM_MAX_CONNECTIONS: "8",
        SQLSIM_MIN_CONNECTIONS: " 2 ",
        SQLSIM_RETRIES: "6",
        SQLSIM_RETRY_BASE_DELAY: "25 millis",
        SQLSIM_RETRY_MAX_DELAY: " 2 seconds ",
        SQLSIM_RETRY_JITTER: "true",
        SQLSIM_ACQUIRE_TIMEOUT: "750",
        SQLSIM_IDLE_TIME_TO_LIVE: "10 minutes",
        SQLSIM_MAX_LIFETIME: "30 minutes",
        SQLSIM_SHUTDOWN_TIMEOUT: "1 second",
        SQLSIM_HOLD_WARNING_THRESHOLD: "2 seconds",
        SQLSIM_POOL_NAME: "42",
        SQLSIM_PAGE_CACHE_KIB: "4096"
      })
      expect(config).toMatchObject({
        filename: "/data/app.db",
        maxConnections: 8,
        minConnections: 2,
        retries: 6,
        retryJitter: true,
        pageCacheKiB: 4096,
        // A name of digits stays a name.
        poolName: "42"
      })
      expect(millis(config.retryBaseDelay)).toBe(25)
      expect(millis(config.retryMaxDelay)).toBe(2000)
      expect(millis(config.acquireTimeout)).toBe(750)
      expect(millis(config.idleTimeToLive)).toBe(600_000)
      expect(millis(config.maxLifetime)).toBe(1_800_000)
      expect(millis(config.shutdownTimeout)).toBe(1000)
      expect(millis(config.holdWarningThreshold!)).toBe(2000)
    }))

  it.effect.each(["none", "null", ""])("SQLSIM_MAX_LIFETIME=%j means no limit", (text) =>
    Effect.gen(function*() {
      expect((yield* resolved({ SQLSIM_MAX_LIFETIME: text })).maxLifetime).toBeNull()
    }))

  it.effect("a flag wins over its variable", () =>
    Effect.gen(function*() {
      const input = yield* Flags.poolInput({ db: Option.some("flag.db"), poolSize: Option.some(3) }).pipe(
        withEnvironment({ SQLSIM_MAX_CONNECTIONS: "8", SQLSIM_FILENAME: "env.db", SQLSIM_RETRIES: "1" })
      )
      expect(input).toMatchObject({ filename: "flag.db", maxConnections: 3, retries: 1 })
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
    "%s=%j fails with a PoolConfigError naming the variable and %s",
    ([variable, text, field]) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(
          Flags.poolInput({ db: Option.none() }).pipe(withEnvironment({ [variable]: text }))
        )
        expect(error._tag).toBe("PoolConfigError")
        expect(error.field).toBe(field)
        expect(error.message.startsWith(`${variable}: ${field} `)).toBe(true)
      })
  )

  it.effect("min > max across the environment and a flag is still caught, and names no variable", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Flags.poolInput({ db: Option.none(), poolSize: Option.some(2) }).pipe(
          withEnvironment({ SQLSIM_MIN_CONNECTIONS: "3" })
        )
      )
      expect(error.field).toBe("minConnections")
    }))

  it.prop("hostile variables give a typed error or a configuration the pool accepts", [
    FastCheck.dictionary(
      FastCheck.constantFrom(...Object.values(Flags.environmentVariables)),
      FastCheck.oneof(
        FastCheck.constantFrom(
          "",
          " ",
          "abc",
          "-1",
          "-0",
          "0",
          "1.5",
          "1e3",
          "0x10",
          "NaN",
          "Infinity",
          "9".repeat(400),
          "5 seconds",
          "-5 seconds",
          "true",
          "TRUE",
          "null",
          "none",
          ":memory:",
          "\u0000"
        ),
        FastCheck.fullUnicodeString({ maxLength: 30 })
      ),
      { maxKeys: 6 }
    )
  ], ([variables]) => {
    const exit = Effect.runSyncExit(resolved(variables))
    if (Exit.isFailure(exit)) {
      const failure = Cause.failureOption(exit.cause)
      expect(failure._tag, `a defect instead of a typed error: ${Cause.pretty(exit.cause)}`).toBe("Some")
      expect(Option.getOrThrow(failure)._tag).toBe("PoolConfigError")
    } else {
      expect(exit.value.maxConnections).toBeGreaterThanOrEqual(exit.value.minConnections)
    }
  }, { fastCheck: { numRuns: 500 } })
})
