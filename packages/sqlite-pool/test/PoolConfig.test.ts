import { describe, expect, it } from "@effect/vitest"
import { ConnectionPool, LibsqlConnector, PoolConfig, PoolError, SqlitePool } from "@sqlsim/sqlite-pool"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"

const millis = (duration: Duration.Duration | null) => duration === null ? null : Duration.toMillis(duration)

/** The PoolConfigError of an input that must be rejected (a defect or a success fails the test). */
const rejection = (input: unknown) => Effect.flip(PoolConfig.make(input as PoolConfig.Input))

describe("PoolConfig.make", () => {
  it.effect("fills in every default of the README's Configuration table", () =>
    Effect.gen(function*() {
      const config = yield* PoolConfig.make({})
      expect(config.filename).toBe(":memory:")
      expect(config.maxConnections).toBe(5)
      expect(config.minConnections).toBe(0)
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
    ["readConnections, which only SqlitePool has", { readConnections: 2 }, "readConnections"],
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
      expect((yield* rejection({ minConnections: 9, maxConnections: 4 })).message).toMatch(
        /maxConnections \(4\), got 9/
      )
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

describe("PoolConfig.makeSqlite", () => {
  it.effect("fills in SqlitePool's defaults and shares the common ones with make", () =>
    Effect.gen(function*() {
      const config = yield* PoolConfig.makeSqlite()
      expect(config.readConnections).toBe(4)
      expect(config.minConnections).toBe(0)
      expect(config.readerThreads).toBe(false)
      expect(config.walCheckpointBytes).toBe(64 * 2 ** 20)
      expect((yield* PoolConfig.makeSqlite({ walCheckpointBytes: null })).walCheckpointBytes).toBe(null)
      expect("maxConnections" in config).toBe(false)
      const { maxConnections: _max, minConnections: _min, ...common } = yield* PoolConfig.make()
      const {
        minConnections: _readMin,
        readConnections: _read,
        readerThreads: _threads,
        walCheckpointBytes: _wal,
        ...sqliteCommon
      } = config
      expect(sqliteCommon).toEqual(common)
    }))

  const invalid: ReadonlyArray<readonly [string, Record<string, unknown>, string, RegExp]> = [
    ["maxConnections, which SqlitePool does not have", { maxConnections: 4 }, "maxConnections", /readConnections/],
    ["readConnections negative", { readConnections: -1 }, "readConnections", /integer from 0/],
    ["minConnections above readConnections", { readConnections: 2, minConnections: 3 }, "minConnections", /2.*3/],
    ["minConnections with no Reader pool", { readConnections: 0, minConnections: 1 }, "minConnections", /0.*1/],
    ["readerThreads not a boolean", { readerThreads: "yes" }, "readerThreads", /true or false/],
    ["walCheckpointBytes 0", { walCheckpointBytes: 0 }, "walCheckpointBytes", /integer number of bytes.*got 0/],
    ["walCheckpointBytes fractional", { walCheckpointBytes: 1.5 }, "walCheckpointBytes", /at least 1.*got 1.5/],
    ["walCheckpointBytes as text", { walCheckpointBytes: "64 MiB" }, "walCheckpointBytes", /or null.*"64 MiB"/],
    ["walCheckpointBytes infinite", { walCheckpointBytes: Infinity }, "walCheckpointBytes", /integer number of bytes/],
    ["a common rule", { retryBaseDelay: "0 millis" }, "retryBaseDelay", /at least 1 millis/]
  ]

  it.effect.each(invalid)("rejects %s", ([, input, field, message]) =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(PoolConfig.makeSqlite(input as PoolConfig.SqliteInput))
      expect(error.field).toBe(field)
      expect(error.message).toMatch(message)
    }))

  it.effect("ConnectionPool's make says where readConnections belongs", () =>
    Effect.gen(function*() {
      const error = yield* rejection({ readConnections: 2 })
      expect(error.message).toMatch(/only SqlitePool has a Reader pool/)
      const wal = yield* rejection({ walCheckpointBytes: 1 })
      expect(wal.message).toMatch(/only SqlitePool checkpoints the WAL/)
    }))
})

describe("PoolConfig's Schemas", () => {
  it("decode and encode with Effect's Schema: one definition of every rule", () => {
    const decoded = Schema.decodeUnknownSync(PoolConfig.PoolConfigSchema)({ maxConnections: 2, acquireTimeout: 250 })
    expect(decoded.maxConnections).toBe(2)
    expect(Duration.toMillis(decoded.acquireTimeout)).toBe(250)
    expect(() => Schema.decodeUnknownSync(PoolConfig.PoolConfigSchema)({ minConnections: 3, maxConnections: 2 }))
      .toThrow(/minConnections must not exceed maxConnections \(2\), got 3/)
    const encoded = Schema.encodeSync(PoolConfig.SqliteConfigSchema)(
      Schema.decodeUnknownSync(PoolConfig.SqliteConfigSchema)({ readConnections: 1 })
    )
    expect(encoded.readConnections).toBe(1)
  })
})

describe("layerConfig (an Effect Config of the input, as @effect/sql clients take it)", () => {
  const provider = (variables: Record<string, string>) =>
    Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(variables))))

  it.scoped("ConnectionPool.layerConfig reads each field's Config when the layer is built", () =>
    Effect.gen(function*() {
      const layer = ConnectionPool.layerConfig({
        maxConnections: Config.integer("POOL_SIZE"),
        acquireTimeout: Config.duration("ACQUIRE_TIMEOUT")
      }).pipe(Layer.provide(provider({ POOL_SIZE: "3", ACQUIRE_TIMEOUT: "2 seconds" })))
      const pool = yield* Effect.provide(ConnectionPool.ConnectionPool, layer)
      expect(pool.config.maxConnections).toBe(3)
      expect(Duration.toMillis(pool.config.acquireTimeout)).toBe(2000)
      expect(pool.config.filename).toBe(":memory:")
    }))

  it.scoped("SqlitePool.layerConfig takes SqlitePool's fields", () =>
    Effect.gen(function*() {
      const layer = SqlitePool.layerConfig({ readConnections: Config.integer("READERS") }).pipe(
        Layer.provide(provider({ READERS: "2" }))
      )
      const service = yield* Effect.provide(SqlitePool.SqlitePool, layer)
      expect(service.config.readConnections).toBe(2)
    }))

  it.effect("a variable that is missing is a ConfigError naming it", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Layer.build(
          ConnectionPool.layerConfig({ filename: Config.string("DATABASE_FILE") }).pipe(Layer.provide(provider({})))
        ).pipe(Effect.scoped)
      )
      expect(error._tag).not.toBe("PoolConfigError")
      expect(String(error)).toContain("DATABASE_FILE")
    }))

  it.effect("a value the Config reads but the pool refuses is a PoolConfigError naming the field", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Layer.build(
          ConnectionPool.layerConfig({ maxConnections: Config.integer("POOL_SIZE") }).pipe(
            Layer.provide(provider({ POOL_SIZE: "0" }))
          )
        ).pipe(Effect.scoped)
      )
      expect(error).toBeInstanceOf(PoolError.PoolConfigError)
      expect((error as PoolError.PoolConfigError).field).toBe("maxConnections")
    }))
})

describe("PoolConfig's messages and edges", () => {
  it.effect("every kind of duration input is checked for its sign: numbers, text, bigints, [seconds, nanos] pairs", () =>
    Effect.gen(function*() {
      for (const acquireTimeout of [-1, "-1 millis", -5n, [-1, 0], [0, -5], [Number.NaN, 0]] as const) {
        const error = yield* rejection({ acquireTimeout })
        expect(error.field).toBe("acquireTimeout")
      }
      // Zero is not negative, in every form: a validationInterval of 0 (probe every checkout) is the default.
      for (const validationInterval of [0, "0 millis", 0n, [0, 0]] as const) {
        expect(millis((yield* PoolConfig.make({ validationInterval })).validationInterval)).toBe(0)
      }
      expect(millis((yield* PoolConfig.make({ acquireTimeout: 5_000_000n })).acquireTimeout)).toBe(5)
      expect(millis((yield* PoolConfig.make({ acquireTimeout: [1, 500_000_000] })).acquireTimeout)).toBe(1500)
    }))

  it.effect("integers are bounded above too, and the message shows the value as written", () =>
    Effect.gen(function*() {
      expect((yield* rejection({ maxConnections: 1001 })).message).toBe(
        "maxConnections must be an integer from 1 to 1000, got 1001"
      )
      expect((yield* rejection({ retries: 1001 })).field).toBe("retries")
      expect((yield* rejection({ maxConnections: 5n })).message).toMatch(/got 5n$/)
      expect((yield* rejection({ maxConnections: () => 5 })).message).toMatch(/got \(\) => 5$/)
      expect((yield* PoolConfig.make({ maxConnections: 1000 })).maxConnections).toBe(1000)
    }))

  it.effect("cross-field rules name their field once, with both values", () =>
    Effect.gen(function*() {
      expect((yield* rejection({ minConnections: 9, maxConnections: 4 })).message).toBe(
        "minConnections must not exceed maxConnections (4), got 9"
      )
      expect((yield* rejection({ retryBaseDelay: "1 second", retryMaxDelay: "10 millis" })).message).toBe(
        "retryMaxDelay must not be shorter than retryBaseDelay (1s), got 10ms"
      )
      expect((yield* rejection({ maxLifetime: "500 millis" })).message).toBe(
        "maxLifetime must be at least 1 second, or null for no limit, got 500ms: a connection retired as soon as it " +
          "is opened would be reopened for every acquire"
      )
      expect((yield* PoolConfig.make({ maxLifetime: "1 second" })).maxLifetime).not.toBeNull()
      const sqlite = yield* Effect.flip(PoolConfig.makeSqlite({ readConnections: 2, minConnections: 3 }))
      expect(sqlite.message).toBe("minConnections must not exceed readConnections (2), got 3")
    }))

  it.effect("functions, span attributes and file names say what they must be, with the value given", () =>
    Effect.gen(function*() {
      expect((yield* rejection({ transformQueryNames: "snake_case" })).message).toBe(
        "transformQueryNames must be a function, got \"snake_case\""
      )
      expect((yield* rejection({ onConnect: 5 })).message).toBe("onConnect must be a function, got 5")
      expect((yield* rejection({ spanAttributes: "service" })).message).toBe(
        "spanAttributes must be an object of span attributes, got \"service\""
      )
      expect((yield* rejection({ filename: "" })).message).toBe(
        "filename must be a non-empty path without NUL bytes, or \":memory:\", got \"\""
      )
      expect((yield* rejection({ filename: 42 })).message).toBe(
        "filename must be a string (a file path or \":memory:\"), got 42"
      )
      const camel = (name: string) => name
      expect((yield* PoolConfig.make({ transformQueryNames: camel })).transformQueryNames).toBe(camel)
    }))

  it.effect("busyTimeout may be as long as a timer can wait (2^31 - 1 ms), not longer", () =>
    Effect.gen(function*() {
      expect(millis((yield* PoolConfig.make({ busyTimeout: 2 ** 31 - 1 })).busyTimeout)).toBe(2 ** 31 - 1)
      expect((yield* rejection({ busyTimeout: 2 ** 31 })).field).toBe("busyTimeout")
    }))

  it.effect("holdWarningThreshold is off unless given, and then a finite duration of at least 1 millis", () =>
    Effect.gen(function*() {
      expect((yield* PoolConfig.make({})).holdWarningThreshold).toBeUndefined()
      expect(millis((yield* PoolConfig.make({ holdWarningThreshold: "2 seconds" })).holdWarningThreshold!)).toBe(2000)
      for (const holdWarningThreshold of [0, "0 millis", Duration.infinity]) {
        const error = yield* rejection({ holdWarningThreshold })
        expect(error.field).toBe("holdWarningThreshold")
        expect(error.message).toContain("holdWarningThreshold must be a finite duration of at least 1 millis")
      }
      expect((yield* rejection({ holdWarningThreshold: "-1 second" })).field).toBe("holdWarningThreshold")
    }))

  it.effect("poolName is left out unless given, and then a non-blank string, for both pools", () =>
    Effect.gen(function*() {
      expect((yield* PoolConfig.make({})).poolName).toBeUndefined()
      expect((yield* PoolConfig.make({ poolName: "orders" })).poolName).toBe("orders")
      expect((yield* PoolConfig.makeSqlite({ poolName: "orders" })).poolName).toBe("orders")
      for (const poolName of ["", "  ", 42]) {
        const error = yield* rejection({ poolName })
        expect(error.field).toBe("poolName")
        expect(error.message).toMatch(/^poolName must (name the pool|be a string)/)
      }
    }))

  it.effect("an input that is not an object, and an unknown field, say what was expected", () =>
    Effect.gen(function*() {
      for (const input of [null, [], "pool.db", 5]) {
        expect((yield* rejection(input)).message).toBe("the pool configuration must be an object")
      }
      const unknown = yield* rejection({ poolSize: 3 })
      expect(unknown.message).toContain("the known fields are filename, retries, ")
      expect(unknown.message).toContain("maxConnections, minConnections")
    }))

  it.effect("a field inside a list is named with its index (the libSQL options share the decoder)", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        LibsqlConnector.resolve({ primaryUrl: "http://x", replicaUrls: ["http://y", "nope"] })
      )
      expect(error.field).toBe("replicaUrls[1]")
      expect(error.message.startsWith("replicaUrls[1] ")).toBe(true)
      expect((yield* Effect.flip(LibsqlConnector.resolve(null as never))).message).toBe(
        "the libSQL options must be an object"
      )
    }))
})
