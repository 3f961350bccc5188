/**
 * The pool's configuration: one validated value with the defaults of the original brief.
 *
 * @since 0.1.0
 */
import type * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import type BetterSqlite3 from "better-sqlite3"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { PoolConfigError } from "./PoolError.js"

/**
 * What a user may pass: every field is optional; unknown fields are rejected.
 *
 * @since 0.1.0
 * @category models
 */
export interface Input {
  /** database file, or ":memory:" (one private database shared by all connections of the pool) */
  readonly filename?: string | undefined
  /** most connections open at once (integer >= 1, default 5) */
  readonly maxConnections?: number | undefined
  /** connections opened while the pool is built (integer >= 0, <= maxConnections, default 0: lazy) */
  readonly minConnections?: number | undefined
  /** size of SqlitePool's read-only Reader pool (integer >= 0, default 4; 0 runs reads on the writer) */
  readonly readConnections?: number | undefined
  /** retries of a failed connect after the first attempt, transient errors only (integer >= 0, default 3) */
  readonly retries?: number | undefined
  /** first retry delay; each next one doubles (default 10 millis) */
  readonly retryBaseDelay?: Duration.DurationInput | undefined
  /** cap on one retry delay (default 1 second) */
  readonly retryMaxDelay?: Duration.DurationInput | undefined
  /** randomise each retry delay within +-20 % (default false) */
  readonly retryJitter?: boolean | undefined
  /** longest wait for a connection (default 5 seconds) */
  readonly acquireTimeout?: Duration.DurationInput | undefined
  /** SQLite busy_timeout per connection (default 0: waiting happens in Effect, not inside SQLite) */
  readonly busyTimeout?: Duration.DurationInput | undefined
  /** idle connections above minConnections are closed after this (default 5 minutes) */
  readonly idleTimeToLive?: Duration.DurationInput | undefined
  /** a connection older than this is retired when it is next idle (>= 1 second, or null: no limit; default null) */
  readonly maxLifetime?: Duration.DurationInput | null | undefined
  /** how long closing the pool waits for leased connections (default 5 seconds) */
  readonly shutdownTimeout?: Duration.DurationInput | undefined
  /** an idle connection used more recently than this is handed out without a `SELECT 1` probe (default 0: always probe) */
  readonly validationInterval?: Duration.DurationInput | undefined
  /** SQLite page cache per connection in KiB (PRAGMA cache_size = -N; integer >= 0, default 2000, SQLite's own) */
  readonly pageCacheKiB?: number | undefined
  /** each of SqlitePool's Reader connections lives in a worker thread of its own (default false) */
  readonly readerThreads?: boolean | undefined
  /** prepared statements kept per connection (integer >= 0, default 200, as SqliteClient) */
  readonly prepareCacheSize?: number | undefined
  /** a kept statement unused for this long is prepared afresh (default 10 minutes, as SqliteClient) */
  readonly prepareCacheTTL?: Duration.DurationInput | undefined
  /** as SqliteClient's: names in queries (`sql("userName")`, `sql.insert(...)`) go through this, e.g. to snake_case */
  readonly transformQueryNames?: ((name: string) => string) | undefined
  /** as SqliteClient's: column names of result rows go through this, e.g. to camelCase */
  readonly transformResultNames?: ((name: string) => string) | undefined
  /** attributes added to every statement's and transaction's span, as SqliteClient's */
  readonly spanAttributes?: Readonly<Record<string, unknown>> | undefined
  /**
   * Runs on every new connection, writer and readers, before its first use (pragmas, user functions, extensions).
   * Its failure is a permanent `ConnectError` that names the hook.
   */
  readonly onConnect?: ((connection: NewConnection) => Effect.Effect<void, unknown>) | undefined
}

/**
 * What `onConnect` is given: the new connection's client, and its better-sqlite3 handle (for `function`,
 * `aggregate`, `loadExtension`) when the connection lives on this thread.
 *
 * @since 0.1.0
 * @category models
 */
export interface NewConnection {
  readonly sql: SqliteClient.SqliteClient
  readonly database: BetterSqlite3.Database | undefined
  /** "writer" or "reader" for SqlitePool's connections, "pool" for ConnectionPool's */
  readonly role: "writer" | "reader" | "pool"
}

/**
 * The resolved configuration: every field present, durations as `Duration` values.
 *
 * @since 0.1.0
 * @category models
 */
export interface PoolConfig {
  readonly filename: string
  readonly maxConnections: number
  readonly minConnections: number
  readonly readConnections: number
  readonly retries: number
  readonly retryBaseDelay: Duration.Duration
  readonly retryMaxDelay: Duration.Duration
  readonly retryJitter: boolean
  readonly acquireTimeout: Duration.Duration
  readonly busyTimeout: Duration.Duration
  readonly idleTimeToLive: Duration.Duration
  readonly maxLifetime: Duration.Duration | null
  readonly shutdownTimeout: Duration.Duration
  readonly validationInterval: Duration.Duration
  readonly pageCacheKiB: number
  readonly readerThreads: boolean
  readonly prepareCacheSize: number
  readonly prepareCacheTTL: Duration.Duration
  readonly transformQueryNames: ((name: string) => string) | undefined
  readonly transformResultNames: ((name: string) => string) | undefined
  readonly spanAttributes: Readonly<Record<string, unknown>>
  readonly onConnect: ((connection: NewConnection) => Effect.Effect<void, unknown>) | undefined
}

/**
 * The defaults, as a user would have written them.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  filename: ":memory:",
  maxConnections: 5,
  minConnections: 0,
  readConnections: 4,
  retries: 3,
  retryBaseDelay: "10 millis",
  retryMaxDelay: "1 second",
  retryJitter: false,
  acquireTimeout: "5 seconds",
  busyTimeout: "0 millis",
  idleTimeToLive: "5 minutes",
  maxLifetime: null,
  shutdownTimeout: "5 seconds",
  validationInterval: "0 millis",
  pageCacheKiB: 2000,
  readerThreads: false,
  prepareCacheSize: 200,
  prepareCacheTTL: "10 minutes"
} as const satisfies Omit<Required<Input>, FunctionField | "spanAttributes">

/** Fields whose values are functions: they have no textual default and no environment variable. */
type FunctionField = "transformQueryNames" | "transformResultNames" | "onConnect"

const DURATION_TEXT = /^(-?\d+(?:\.\d+)?)\s+(nanos?|micros?|millis?|seconds?|minutes?|hours?|days?|weeks?)$/

/** A DurationInput that is finite-or-infinite but never negative or NaN (Effect itself would clamp those to 0). */
const NonNegativeDuration = Schema.declare(
  (input: unknown): input is Duration.DurationInput => parseDuration(input) !== undefined,
  {
    identifier: "NonNegativeDuration",
    message: (issue) =>
      `must be a non-negative duration such as "250 millis", "5 seconds" or a number of milliseconds, got ${
        show(issue.actual)
      }`
  }
)

const parseDuration = (input: unknown): Duration.Duration | undefined => {
  if (typeof input === "number") {
    return Number.isNaN(input) || input < 0 ? undefined : Duration.millis(input)
  }
  if (typeof input === "bigint") return input < 0n ? undefined : Duration.nanos(input)
  if (typeof input === "string") {
    const match = DURATION_TEXT.exec(input.trim())
    if (match === null || Number(match[1]) < 0) return undefined
    return Duration.decode(input.trim() as Duration.DurationInput)
  }
  if (Duration.isDuration(input)) return input
  if (Array.isArray(input) && input.length === 2 && input.every((n) => typeof n === "number" && n >= 0)) {
    return Duration.decode(input as unknown as readonly [number, number])
  }
  return undefined
}

/** Connection counts above this are a configuration mistake (and would exhaust file descriptors), not a pool. */
const MAX_CONNECTIONS = 1000

const integerBetween = (minimum: number, maximum: number) => {
  const rule = (actual: unknown) => `must be an integer from ${minimum} to ${maximum}, got ${show(actual)}`
  return Schema.Number.pipe(
    Schema.filter((n) => Number.isInteger(n) && n >= minimum && n <= maximum, {
      message: (issue) => rule(issue.actual)
    })
  ).annotations({ message: (issue) => rule(issue.actual) })
}

const AFunction = Schema.declare(
  (input: unknown): input is (...args: ReadonlyArray<never>) => unknown => typeof input === "function",
  { identifier: "Function", message: (issue) => `must be a function, got ${show(issue.actual)}` }
)

const InputSchema = Schema.Struct({
  filename: Schema.optional(
    Schema.String.pipe(Schema.filter((s) => s.length > 0 && !s.includes("\0"), {
      message: () => `must be a non-empty path without NUL bytes, or ":memory:"`
    })).annotations({ message: (issue) => `must be a string (a file path or ":memory:"), got ${show(issue.actual)}` })
  ),
  maxConnections: Schema.optional(integerBetween(1, MAX_CONNECTIONS)),
  minConnections: Schema.optional(integerBetween(0, MAX_CONNECTIONS)),
  readConnections: Schema.optional(integerBetween(0, MAX_CONNECTIONS)),
  retries: Schema.optional(integerBetween(0, 1000)),
  retryBaseDelay: Schema.optional(NonNegativeDuration),
  retryMaxDelay: Schema.optional(NonNegativeDuration),
  retryJitter: Schema.optional(
    Schema.Boolean.annotations({ message: (issue) => `must be true or false, got ${show(issue.actual)}` })
  ),
  acquireTimeout: Schema.optional(NonNegativeDuration),
  busyTimeout: Schema.optional(NonNegativeDuration),
  idleTimeToLive: Schema.optional(NonNegativeDuration),
  maxLifetime: Schema.optional(Schema.NullOr(NonNegativeDuration)),
  shutdownTimeout: Schema.optional(NonNegativeDuration),
  validationInterval: Schema.optional(NonNegativeDuration),
  pageCacheKiB: Schema.optional(integerBetween(0, 2 ** 31 - 1)),
  readerThreads: Schema.optional(
    Schema.Boolean.annotations({ message: (issue) => `must be true or false, got ${show(issue.actual)}` })
  ),
  prepareCacheSize: Schema.optional(integerBetween(0, 100_000)),
  prepareCacheTTL: Schema.optional(NonNegativeDuration),
  transformQueryNames: Schema.optional(AFunction),
  transformResultNames: Schema.optional(AFunction),
  onConnect: Schema.optional(AFunction),
  spanAttributes: Schema.optional(
    Schema.Record({ key: Schema.String, value: Schema.Unknown }).annotations({
      message: (issue) => `must be an object of span attributes, got ${show(issue.actual)}`
    })
  )
})

const show = (value: unknown): string => {
  if (typeof value === "bigint") return `${value}n`
  if (value === undefined) return "undefined"
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

const toConfigError = (error: ParseResult.ParseError): PoolConfigError => {
  const [issue] = ParseResult.ArrayFormatter.formatErrorSync(error)
  const field = issue?.path[0] === undefined ? "(input)" : String(issue.path[0])
  if (issue?._tag === "Unexpected") {
    return new PoolConfigError({
      field,
      message: `unknown field "${field}": the known fields are ${Object.keys(defaults).join(", ")}`
    })
  }
  return new PoolConfigError({ field, message: `${field} ${issue?.message ?? "is invalid"}` })
}

const decodeInput = Schema.decodeUnknownEither(InputSchema, { onExcessProperty: "error", errors: "first" })

/**
 * Validates an input and fills in the defaults.
 *
 * @example
 * const config = yield* PoolConfig.make({ filename: "app.db", maxConnections: 8 })
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (input: Input = {}): Effect.Effect<PoolConfig, PoolConfigError> =>
  Effect.suspend(() => {
    if (typeof input !== "object" || input === null || Array.isArray(input)) {
      return Effect.fail(new PoolConfigError({ field: "(input)", message: "the pool configuration must be an object" }))
    }
    // `undefined` means "use the default", as with any optional field.
    const present = Object.fromEntries(Object.entries(input).filter(([, value]) => value !== undefined))
    const decoded = decodeInput(present)
    if (Either.isLeft(decoded)) return Effect.fail(toConfigError(decoded.left))
    const given = decoded.right
    const value = <K extends keyof typeof defaults>(key: K) => given[key] ?? defaults[key]
    const duration = (key: keyof typeof defaults) => parseDuration(given[key as keyof typeof given] ?? defaults[key])!
    const config: PoolConfig = {
      filename: value("filename"),
      maxConnections: value("maxConnections"),
      minConnections: value("minConnections"),
      readConnections: value("readConnections"),
      retries: value("retries"),
      retryBaseDelay: duration("retryBaseDelay"),
      retryMaxDelay: duration("retryMaxDelay"),
      retryJitter: value("retryJitter"),
      acquireTimeout: duration("acquireTimeout"),
      busyTimeout: duration("busyTimeout"),
      idleTimeToLive: duration("idleTimeToLive"),
      maxLifetime: given.maxLifetime === undefined || given.maxLifetime === null
        ? null
        : parseDuration(given.maxLifetime)!,
      shutdownTimeout: duration("shutdownTimeout"),
      validationInterval: duration("validationInterval"),
      pageCacheKiB: value("pageCacheKiB"),
      prepareCacheSize: value("prepareCacheSize"),
      prepareCacheTTL: duration("prepareCacheTTL"),
      transformQueryNames: input.transformQueryNames,
      transformResultNames: input.transformResultNames,
      spanAttributes: input.spanAttributes ?? {},
      onConnect: input.onConnect,
      readerThreads: value("readerThreads")
    }
    if (config.minConnections > config.maxConnections) {
      return Effect.fail(
        new PoolConfigError({
          field: "minConnections",
          message: `minConnections (${config.minConnections}) must not exceed maxConnections (${config.maxConnections})`
        })
      )
    }
    if (Duration.lessThan(config.retryBaseDelay, Duration.millis(1))) {
      return Effect.fail(
        new PoolConfigError({
          field: "retryBaseDelay",
          message: `retryBaseDelay must be at least 1 millis (got ${Duration.format(config.retryBaseDelay)}): ` +
            "retries without a delay would spin"
        })
      )
    }
    if (Duration.lessThan(config.retryMaxDelay, config.retryBaseDelay)) {
      return Effect.fail(
        new PoolConfigError({
          field: "retryMaxDelay",
          message: `retryMaxDelay (${Duration.format(config.retryMaxDelay)}) must not be shorter than ` +
            `retryBaseDelay (${Duration.format(config.retryBaseDelay)})`
        })
      )
    }
    if (config.maxLifetime !== null && Duration.lessThan(config.maxLifetime, Duration.seconds(1))) {
      return Effect.fail(
        new PoolConfigError({
          field: "maxLifetime",
          message: `maxLifetime must be at least 1 second, or null for no limit (got ${
            Duration.format(config.maxLifetime)
          }): a connection retired as soon as it is opened would be reopened for every acquire`
        })
      )
    }
    if (Duration.toMillis(config.busyTimeout) > 2 ** 31 - 1) {
      return Effect.fail(
        new PoolConfigError({ field: "busyTimeout", message: "busyTimeout must be finite and below 24.8 days" })
      )
    }
    return Effect.succeed(config)
  })

/**
 * The environment variables `fromConfig` reads, by field.
 *
 * @since 0.1.0
 * @category constants
 */
export const environmentVariables = {
  filename: "SQLSIM_FILENAME",
  maxConnections: "SQLSIM_MAX_CONNECTIONS",
  minConnections: "SQLSIM_MIN_CONNECTIONS",
  readConnections: "SQLSIM_READ_CONNECTIONS",
  retries: "SQLSIM_RETRIES",
  retryBaseDelay: "SQLSIM_RETRY_BASE_DELAY",
  retryMaxDelay: "SQLSIM_RETRY_MAX_DELAY",
  retryJitter: "SQLSIM_RETRY_JITTER",
  acquireTimeout: "SQLSIM_ACQUIRE_TIMEOUT",
  busyTimeout: "SQLSIM_BUSY_TIMEOUT",
  idleTimeToLive: "SQLSIM_IDLE_TIME_TO_LIVE",
  maxLifetime: "SQLSIM_MAX_LIFETIME",
  shutdownTimeout: "SQLSIM_SHUTDOWN_TIMEOUT",
  validationInterval: "SQLSIM_VALIDATION_INTERVAL",
  pageCacheKiB: "SQLSIM_PAGE_CACHE_KIB",
  readerThreads: "SQLSIM_READER_THREADS",
  prepareCacheSize: "SQLSIM_PREPARE_CACHE_SIZE",
  prepareCacheTTL: "SQLSIM_PREPARE_CACHE_TTL"
} as const satisfies Record<keyof typeof defaults, string>

const integerFields = new Set<keyof Input>([
  "maxConnections",
  "minConnections",
  "readConnections",
  "retries",
  "pageCacheKiB",
  "prepareCacheSize"
])

/**
 * The configuration as an Effect `Config` read from environment variables (see `environmentVariables`); a variable
 * that is not set leaves its field at the default. Text values are passed through the same validation as `make`:
 * "abc" for SQLSIM_MAX_CONNECTIONS fails with a PoolConfigError naming `maxConnections`.
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Record<string, unknown>> = Config.all(
  Object.fromEntries(
    Object.entries(environmentVariables).map(([field, name]) => [field, Config.option(Config.string(name))])
  )
).pipe(Config.map((entries) => {
  const input: Record<string, unknown> = {}
  for (const [field, value] of Object.entries(entries)) {
    if (Option.isNone(value)) continue
    input[field] = fromText(field as keyof Input, value.value)
  }
  return input
}))

const fromText = (field: keyof Input, text: string): unknown => {
  const trimmed = text.trim()
  if (integerFields.has(field)) return /^-?\d+$/.test(trimmed) ? Number(trimmed) : trimmed
  if (field === "retryJitter" || field === "readerThreads") {
    return trimmed === "true" ? true : trimmed === "false" ? false : trimmed
  }
  if (field === "maxLifetime" && (trimmed === "" || trimmed === "null" || trimmed === "none")) return null
  if (field === "filename") return text
  return /^-?\d+(?:\.\d+)?$/.test(trimmed) ? Number(trimmed) : trimmed
}

/**
 * Reads the configuration from the environment (`config`), overlaid by `overrides`, and validates it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromConfig = (overrides: Input = {}): Effect.Effect<PoolConfig, PoolConfigError> =>
  Effect.flatMap(
    Effect.mapError(
      config,
      (error) => new PoolConfigError({ field: "(environment)", message: `cannot read the environment: ${error}` })
    ),
    (fromEnvironment) =>
      make({
        ...fromEnvironment,
        ...Object.fromEntries(Object.entries(overrides).filter(([, value]) => value !== undefined))
      } as Input)
  )
