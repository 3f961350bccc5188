/**
 * The pools' configuration: one Schema per pool, from what a user writes (`Input`, `SqliteInput`) to the resolved
 * value (`PoolConfig`, `SqliteConfig`), with the defaults of the original brief. Every rule, the ones between fields
 * included, lives in the Schema; `make` and `makeSqlite` turn its first issue into a `PoolConfigError`.
 *
 * @since 0.1.0
 */
import type * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import type BetterSqlite3 from "better-sqlite3"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { PoolConfigError } from "./PoolError.js"

/**
 * The fields both pools accept.
 *
 * @since 0.1.0
 * @category models
 */
export interface CommonInput {
  /** database file, or ":memory:" (one private database shared by all connections of the pool) */
  readonly filename?: string | undefined
  /** retries of a failed connect after the first attempt, transient errors only (integer >= 0, default 3) */
  readonly retries?: number | undefined
  /** first retry delay, at least 1 millis; each next one doubles (default 10 millis) */
  readonly retryBaseDelay?: Duration.DurationInput | undefined
  /** cap on one retry delay, not below retryBaseDelay (default 1 second) */
  readonly retryMaxDelay?: Duration.DurationInput | undefined
  /** randomise each retry delay within +-20 % (default false) */
  readonly retryJitter?: boolean | undefined
  /** longest wait for a connection (default 5 seconds) */
  readonly acquireTimeout?: Duration.DurationInput | undefined
  /**
   * the pool's name in its metrics (`db.client.connection.pool.name`) and messages, as HikariCP's `poolName`
   * (default: the filename, with " (writer)" or " (readers)" for SqlitePool's lanes, which `sqlsim.lane` tells apart)
   */
  readonly poolName?: string | undefined
  /** SQLite busy_timeout per connection (default 0: waiting happens in Effect, not inside SQLite) */
  readonly busyTimeout?: Duration.DurationInput | undefined
  /** idle connections above minConnections are closed after this (default 5 minutes) */
  readonly idleTimeToLive?: Duration.DurationInput | undefined
  /** a connection older than this is retired when it is next idle (>= 1 second, or null: no limit; default null) */
  readonly maxLifetime?: Duration.DurationInput | null | undefined
  /** how long closing the pool waits for leased connections (default 5 seconds) */
  readonly shutdownTimeout?: Duration.DurationInput | undefined
  /**
   * a lease held longer than this logs one warning naming its holder and where it was acquired (default undefined:
   * off, and the acquire site is not captured)
   */
  readonly holdWarningThreshold?: Duration.DurationInput | undefined
  /**
   * an idle connection used more recently than this is handed out without a `SELECT 1` probe, and a connection's
   * cheap check (closed? its file deleted or replaced?) runs at most once per this interval (default 0: always both)
   */
  readonly validationInterval?: Duration.DurationInput | undefined
  /** SQLite page cache per connection in KiB (PRAGMA cache_size = -N; integer >= 0, default 2000, SQLite's own) */
  readonly pageCacheKiB?: number | undefined
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
   * Runs on every new connection before its first use (pragmas, user functions, extensions).
   * Its failure is a permanent `ConnectError` that names the hook.
   */
  readonly onConnect?: ((connection: NewConnection) => Effect.Effect<void, unknown>) | undefined
}

/**
 * What `ConnectionPool` accepts: every field is optional; unknown fields are rejected.
 *
 * @since 0.1.0
 * @category models
 */
export interface Input extends CommonInput {
  /** most connections open at once (integer >= 1, default 5) */
  readonly maxConnections?: number | undefined
  /** connections opened while the pool is built (integer >= 0, <= maxConnections, default 0: lazy) */
  readonly minConnections?: number | undefined
}

/**
 * What `SqlitePool` accepts. Its writer lane is always one connection, opened while the layer is built, so there is
 * no `maxConnections`; the Reader pool is sized by `readConnections`.
 *
 * @since 0.1.0
 * @category models
 */
export interface SqliteInput extends CommonInput {
  /** size of the read-only Reader pool (integer >= 0, default 4; 0 runs reads on the writer) */
  readonly readConnections?: number | undefined
  /** Reader connections opened while the layer is built (integer >= 0, <= readConnections, default 0: lazy) */
  readonly minConnections?: number | undefined
  /**
   * each Reader connection lives in a worker thread of its own, and the Reader keeps one more on the main thread for
   * statements not known long (its route: README "Reader threads"; default false)
   */
  readonly readerThreads?: boolean | undefined
  /**
   * when the `-wal` file passes this many bytes, the writer lane checkpoints it and truncates it to zero (integer
   * >= 1, default 64 MiB; null: only SQLite's automatic checkpoint, which never shrinks the file)
   */
  readonly walCheckpointBytes?: number | null | undefined
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
 * The resolved fields both pools have: every field present (functions may be absent), durations as `Duration`s.
 *
 * @since 0.1.0
 * @category models
 */
export interface CommonConfig {
  readonly filename: string
  readonly retries: number
  readonly retryBaseDelay: Duration.Duration
  readonly retryMaxDelay: Duration.Duration
  readonly retryJitter: boolean
  readonly acquireTimeout: Duration.Duration
  /** undefined: named after the file */
  readonly poolName?: string | undefined
  readonly busyTimeout: Duration.Duration
  readonly idleTimeToLive: Duration.Duration
  readonly maxLifetime: Duration.Duration | null
  readonly shutdownTimeout: Duration.Duration
  /** undefined: off */
  readonly holdWarningThreshold?: Duration.Duration | undefined
  readonly validationInterval: Duration.Duration
  readonly pageCacheKiB: number
  readonly prepareCacheSize: number
  readonly prepareCacheTTL: Duration.Duration
  readonly transformQueryNames?: ((name: string) => string) | undefined
  readonly transformResultNames?: ((name: string) => string) | undefined
  readonly spanAttributes: Readonly<Record<string, unknown>>
  readonly onConnect?: ((connection: NewConnection) => Effect.Effect<void, unknown>) | undefined
}

/**
 * `ConnectionPool`'s resolved configuration.
 *
 * @since 0.1.0
 * @category models
 */
export interface PoolConfig extends CommonConfig {
  readonly maxConnections: number
  readonly minConnections: number
}

/**
 * `SqlitePool`'s resolved configuration.
 *
 * @since 0.1.0
 * @category models
 */
export interface SqliteConfig extends CommonConfig {
  readonly readConnections: number
  readonly minConnections: number
  readonly readerThreads: boolean
  readonly walCheckpointBytes: number | null
}

/**
 * The defaults of every field with one, as a user would have written them.
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
  walCheckpointBytes: 64 * 2 ** 20,
  prepareCacheSize: 200,
  prepareCacheTTL: "10 minutes"
} as const satisfies Required<
  Omit<Input & SqliteInput, FunctionField | "spanAttributes" | "holdWarningThreshold" | "poolName">
>

/** Fields whose values are functions: they have no textual default. */
type FunctionField = "transformQueryNames" | "transformResultNames" | "onConnect"

const show = (value: unknown): string => {
  if (typeof value === "bigint") return `${value}n`
  if (value === undefined) return "undefined"
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

/** Effect's durations clamp a negative amount to 0: the sign is read before it is lost. */
const isNegative = (input: Duration.DurationInput): boolean => {
  if (typeof input === "number") return input < 0 || Number.isNaN(input)
  if (typeof input === "bigint") return input < 0n
  if (typeof input === "string") return input.startsWith("-")
  if (Array.isArray(input)) return input.some((n) => n < 0 || Number.isNaN(n))
  return false
}

const durationRule = (actual: unknown) =>
  `must be a non-negative duration such as "250 millis", "5 seconds" or a number of milliseconds, got ${show(actual)}`

/**
 * A `DurationInput` (Effect's own decoding) that is not negative, decoded to a `Duration`: the one duration rule of
 * every configuration in this package.
 *
 * @internal
 */
export const NonNegativeDuration: Schema.Schema<Duration.Duration, Duration.DurationInput> = Schema.transformOrFail(
  Schema.declare(
    (input: unknown): input is Duration.DurationInput =>
      Duration.decodeUnknown(input)._tag === "Some" && !isNegative(input as Duration.DurationInput),
    { identifier: "NonNegativeDuration", message: (issue) => durationRule(issue.actual) }
  ),
  Schema.DurationFromSelf,
  {
    strict: true,
    decode: (input) => ParseResult.succeed(Duration.decode(input)),
    encode: (duration) => ParseResult.succeed(duration)
  }
)

/** Connection counts above this are a configuration mistake (and would exhaust file descriptors), not a pool. */
const MAX_CONNECTIONS = 1000

const integerBetween = (minimum: number, maximum: number) => {
  const rule = (actual: unknown) => `must be an integer from ${minimum} to ${maximum}, got ${show(actual)}`
  // On the number itself too: "5" or 5n gets the same rule as 0.5, not Schema's "Expected number".
  return Schema.Number.annotations({ message: (issue) => rule(issue.actual) }).pipe(
    Schema.filter((n) => Number.isInteger(n) && n >= minimum && n <= maximum, {
      message: (issue) => rule(issue.actual)
    })
  )
}

const walBytesRule = (actual: unknown) =>
  `must be an integer number of bytes (at least 1, e.g. 67108864 for 64 MiB), or null for no limit, got ${show(actual)}`

const WalCheckpointBytes = Schema.NullOr(
  Schema.Number.annotations({ message: (issue) => walBytesRule(issue.actual) }).pipe(
    Schema.filter((n) => Number.isSafeInteger(n) && n >= 1, { message: (issue) => walBytesRule(issue.actual) })
  )
).annotations({ message: (issue) => walBytesRule(issue.actual) })

const Flag = Schema.Boolean.annotations({ message: (issue) => `must be true or false, got ${show(issue.actual)}` })

const AFunction = <F extends (...args: ReadonlyArray<never>) => unknown>() =>
  Schema.declare((input: unknown): input is F => typeof input === "function", {
    identifier: "Function",
    message: (issue) => `must be a function, got ${show(issue.actual)}`
  })

const withDefault = <A, I>(schema: Schema.Schema<A, I>, value: () => A) =>
  Schema.optionalWith(schema, { default: value })

const duration = (text: Duration.DurationInput) => withDefault(NonNegativeDuration, () => Duration.decode(text))

const commonFields = {
  filename: withDefault(
    Schema.String.annotations({
      message: (issue) => `must be a string (a file path or ":memory:"), got ${show(issue.actual)}`
    }).pipe(Schema.filter((s) => s.length > 0 && !s.includes("\0"), {
      message: (issue) => `must be a non-empty path without NUL bytes, or ":memory:", got ${show(issue.actual)}`
    })),
    () => defaults.filename
  ),
  retries: withDefault(integerBetween(0, 1000), () => defaults.retries),
  retryBaseDelay: duration(defaults.retryBaseDelay),
  retryMaxDelay: duration(defaults.retryMaxDelay),
  retryJitter: withDefault(Flag, () => defaults.retryJitter),
  acquireTimeout: duration(defaults.acquireTimeout),
  poolName: Schema.optional(
    Schema.String.annotations({
      message: (issue) => `must be a string (the pool's name in metrics and messages), got ${show(issue.actual)}`
    }).pipe(Schema.filter((s) => s.trim().length > 0, {
      message: (issue) =>
        `must name the pool (a non-blank string), or be left out to name it after the file, got ${show(issue.actual)}`
    }))
  ),
  busyTimeout: duration(defaults.busyTimeout),
  idleTimeToLive: duration(defaults.idleTimeToLive),
  maxLifetime: withDefault(Schema.NullOr(NonNegativeDuration), () => defaults.maxLifetime),
  shutdownTimeout: duration(defaults.shutdownTimeout),
  holdWarningThreshold: Schema.optional(NonNegativeDuration),
  validationInterval: duration(defaults.validationInterval),
  pageCacheKiB: withDefault(integerBetween(0, 2 ** 31 - 1), () => defaults.pageCacheKiB),
  prepareCacheSize: withDefault(integerBetween(0, 100_000), () => defaults.prepareCacheSize),
  prepareCacheTTL: duration(defaults.prepareCacheTTL),
  transformQueryNames: Schema.optional(AFunction<(name: string) => string>()),
  transformResultNames: Schema.optional(AFunction<(name: string) => string>()),
  spanAttributes: withDefault(
    Schema.Record({ key: Schema.String, value: Schema.Unknown }).annotations({
      message: (issue) => `must be an object of span attributes, got ${show(issue.actual)}`
    }),
    () => ({})
  ),
  onConnect: Schema.optional(AFunction<(connection: NewConnection) => Effect.Effect<void, unknown>>())
}

type Issue = { readonly path: ReadonlyArray<string>; readonly message: string } | undefined

/** The rules between fields both pools share. */
const commonRules = (config: CommonConfig): ReadonlyArray<Issue> => [
  Duration.lessThan(config.retryBaseDelay, Duration.millis(1)) ?
    {
      path: ["retryBaseDelay"],
      message: `retryBaseDelay must be at least 1 millis, got ${
        Duration.format(config.retryBaseDelay)
      }: retries without a delay would spin`
    } :
    undefined,
  Duration.lessThan(config.retryMaxDelay, config.retryBaseDelay) ?
    {
      path: ["retryMaxDelay"],
      message: `retryMaxDelay must not be shorter than retryBaseDelay (${Duration.format(config.retryBaseDelay)}), ` +
        `got ${Duration.format(config.retryMaxDelay)}`
    } :
    undefined,
  config.maxLifetime !== null && Duration.lessThan(config.maxLifetime, Duration.seconds(1)) ?
    {
      path: ["maxLifetime"],
      message: `maxLifetime must be at least 1 second, or null for no limit, got ${
        Duration.format(config.maxLifetime)
      }: a connection retired as soon as it is opened would be reopened for every acquire`
    } :
    undefined,
  Duration.toMillis(config.busyTimeout) > 2 ** 31 - 1 ?
    { path: ["busyTimeout"], message: "busyTimeout must be finite and below 24.8 days" } :
    undefined,
  config.holdWarningThreshold !== undefined &&
    !(Duration.toMillis(config.holdWarningThreshold) >= 1 && Duration.isFinite(config.holdWarningThreshold)) ?
    {
      path: ["holdWarningThreshold"],
      message: `holdWarningThreshold must be a finite duration of at least 1 millis (e.g. "2 seconds"), or left out ` +
        `for no warnings, got ${Duration.format(config.holdWarningThreshold)}`
    } :
    undefined
]

const atMost = (field: string, value: number, bound: string, limit: number): Issue =>
  value > limit ? { path: [field], message: `${field} must not exceed ${bound} (${limit}), got ${value}` } : undefined

const firstIssue = (issues: ReadonlyArray<Issue>) => issues.find((issue) => issue !== undefined)

/**
 * `ConnectionPool`'s configuration, from `Input` to `PoolConfig`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const PoolConfigSchema: Schema.Schema<PoolConfig, Input> = Schema.Struct({
  ...commonFields,
  maxConnections: withDefault(integerBetween(1, MAX_CONNECTIONS), () => defaults.maxConnections),
  minConnections: withDefault(integerBetween(0, MAX_CONNECTIONS), () => defaults.minConnections)
}).pipe(Schema.filter((config) =>
  firstIssue([
    atMost("minConnections", config.minConnections, "maxConnections", config.maxConnections),
    ...commonRules(config)
  ])
))

/**
 * `SqlitePool`'s configuration, from `SqliteInput` to `SqliteConfig`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const SqliteConfigSchema: Schema.Schema<SqliteConfig, SqliteInput> = Schema.Struct({
  ...commonFields,
  readConnections: withDefault(integerBetween(0, MAX_CONNECTIONS), () => defaults.readConnections),
  minConnections: withDefault(integerBetween(0, MAX_CONNECTIONS), () => defaults.minConnections),
  readerThreads: withDefault(Flag, () => defaults.readerThreads),
  walCheckpointBytes: withDefault(WalCheckpointBytes, () => defaults.walCheckpointBytes)
}).pipe(Schema.filter((config) =>
  firstIssue([
    atMost("minConnections", config.minConnections, "readConnections", config.readConnections),
    ...commonRules(config)
  ])
))

/** A field's path as a user writes it: `replicaUrls[1]`, `maxConnections`. */
const fieldName = (path: ReadonlyArray<PropertyKey>): string =>
  path.length === 0
    ? "(input)"
    : path.map((key, index) => typeof key === "number" ? `[${key}]` : index === 0 ? String(key) : `.${String(key)}`)
      .join("")

/**
 * Validates with `schema`: its first issue as a `PoolConfigError` naming the field (unknown fields named as given,
 * with `hints` for the ones that belong elsewhere).
 *
 * @internal
 */
export const decoder = <A, I>(
  schema: Schema.Schema<A, I>,
  options: {
    /** what the input is, for the message when it is not an object */
    readonly what: string
    readonly fields: ReadonlyArray<string>
    readonly hints?: Readonly<Record<string, string>> | undefined
  }
) => {
  const { fields, hints = {}, what } = options
  const decode = Schema.decodeUnknownEither(schema, { onExcessProperty: "error", errors: "first" })
  return (input: unknown): Effect.Effect<A, PoolConfigError> =>
    Effect.suspend(() => {
      if (typeof input !== "object" || input === null || Array.isArray(input)) {
        return Effect.fail(
          new PoolConfigError({ field: "(input)", message: `${what} must be an object` })
        )
      }
      const decoded = decode(input)
      if (Either.isRight(decoded)) return Effect.succeed(decoded.right)
      const [issue] = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)
      const field = fieldName(issue?.path ?? [])
      const message = issue?._tag === "Unexpected"
        ? `unknown field "${field}": ${hints[field] ?? `the known fields are ${fields.join(", ")}`}`
        : issue?.message.startsWith(field)
        ? issue.message
        : `${field} ${issue?.message ?? "is invalid"}`
      return Effect.fail(new PoolConfigError({ field, message }))
    })
}

/**
 * Validates `ConnectionPool`'s input and fills in the defaults.
 *
 * @example
 * import { PoolConfig } from "@sqlsim/sqlite-pool"
 * import * as Effect from "effect/Effect"
 *
 * const config = Effect.runSync(PoolConfig.make({ filename: "app.db", maxConnections: 8 }))
 * assert.strictEqual(config.maxConnections, 8)
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (input?: Input) => Effect.Effect<PoolConfig, PoolConfigError> = (() => {
  const decode = decoder(PoolConfigSchema, {
    what: "the pool configuration",
    fields: [...Object.keys(commonFields), "maxConnections", "minConnections"],
    hints: {
      readConnections: "only SqlitePool has a Reader pool; a ConnectionPool is sized by maxConnections",
      readerThreads: "only SqlitePool's Reader connections can live in worker threads",
      walCheckpointBytes: "only SqlitePool checkpoints the WAL (on its writer lane)"
    }
  })
  return (input: Input = {}) => decode(input)
})()

/**
 * Validates `SqlitePool`'s input and fills in the defaults.
 *
 * @example
 * import { PoolConfig } from "@sqlsim/sqlite-pool"
 * import * as Effect from "effect/Effect"
 *
 * const config = Effect.runSync(PoolConfig.makeSqlite({ filename: "app.db", readConnections: 2 }))
 * assert.strictEqual(config.readConnections, 2)
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeSqlite: (input?: SqliteInput) => Effect.Effect<SqliteConfig, PoolConfigError> = (() => {
  const decode = decoder(SqliteConfigSchema, {
    what: "the pool configuration",
    fields: [...Object.keys(commonFields), "readConnections", "minConnections", "readerThreads", "walCheckpointBytes"],
    hints: {
      maxConnections: "SqlitePool's writer lane is always one connection; size its Reader pool with readConnections"
    }
  })
  return (input: SqliteInput = {}) => decode(input)
})()
