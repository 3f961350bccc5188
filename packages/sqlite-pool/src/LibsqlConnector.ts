/**
 * `SqlitePool` on a libSQL server (`sqld`, the engine behind Turso) instead of a local file: a Connector that opens
 * the writer lane's connection on the primary and the Reader's on the replicas, or on the primary when there are
 * none. The pool, its lanes, retries, stats and health checks stay what they are; only where a connection lives
 * changes.
 *
 * Consistency: a fiber reads its own writes. Every result carries the server's replication index; after a statement
 * on the primary the fiber remembers the index it reported, and a Reader statement of that fiber (or of a fiber it
 * forks) first waits until its replica has applied that index (at most `replicationWaitTimeout`). Other fibers read
 * whatever their replica has applied: they may lag, and the lag is measured (`status`, and the gauge
 * `sqlsim_libsql_replica_lag_frames`).
 *
 * A restarted sqld numbers its replication log afresh (1, 2, ...), and its replicas go on answering on the old
 * numbering for a while (about a second here) before they follow: an index then means nothing without the
 * numbering it belongs to. A primary connection that opens at an index below one reported before it started to
 * connect has met a restarted primary: a new generation begins, and a fiber's position carries its generation.
 * The old numbering is frozen then (its log is gone with the old process), so a replica that reports two different
 * indexes in the new generation has followed it; until then its connections report themselves unusable and the
 * Reader reads on the primary. A write from before the restart is in every replica that follows the new numbering.
 *
 * Faults: a replica that cannot serve (unreachable, stalled, not a libSQL server, a rejected token, too far behind)
 * is out: the Reader's new connections go to the next replica, or to the primary, and it is tried again after
 * `fallbackLifetime`, doubled with each failure in a row up to 8 times (`status` and the gauge
 * `sqlsim_libsql_replica_out` say why); a connection that fell back to the primary retires after `fallbackLifetime`,
 * so reads return to the replicas once they are back. A primary that cannot be reached fails connects as transient
 * (the pool retries them with its backoff); a rejected token, or a server there that is not a libSQL server, is
 * permanent.
 *
 * Every statement ends: a server silent for `statementTimeout` while a statement waits loses its connection (the
 * pool replaces it); a Reader read outside a transaction then runs once more elsewhere, a write fails with
 * `STATEMENT_TIMEOUT` (whether it ran is unknown). An idle connection is pinged every 5 seconds, so a stalled server
 * is noticed within 10 seconds.
 *
 * @example
 * import { LibsqlConnector, SqlitePool } from "@sqlsim/sqlite-pool"
 * import * as Layer from "effect/Layer"
 *
 * export const SqlLive = SqlitePool.layer({ readConnections: 4 }).pipe(
 *   Layer.provide(LibsqlConnector.layer({ primaryUrl: "http://db-primary:8080", replicaUrls: ["http://db-replica:8080"] }))
 * )
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Connector from "./Connector.js"
import { ReplicaSet } from "./internal/libsql/replicaSet.js"
import { webSocketUrl } from "./internal/libsql/url.js"
import * as PoolConfig from "./PoolConfig.js"
import type { PoolConfigError } from "./PoolError.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** the primary's URL: `http(s)://`, `ws(s)://` or `libsql://` (required) */
  readonly primaryUrl: string
  /** replicas for the Reader, tried in turn (default none: the Reader reads on the primary) */
  readonly replicaUrls?: ReadonlyArray<string> | undefined
  /** a JWT for servers that require one (`sqld --auth-jwt-key-file`, a Turso database token) */
  readonly authToken?: string | Redacted.Redacted<string> | undefined
  /** bound on one connect: TCP, WebSocket, authentication and a first `SELECT 1` (default 5 seconds) */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /**
   * how long a server may stay silent while a statement waits for its answer before the connection is given up
   * (default 30 seconds): longer than the slowest statement you run
   */
  readonly statementTimeout?: Duration.DurationInput | undefined
  /** longest wait for a replica to catch up with a fiber's own writes (default 2 seconds) */
  readonly replicationWaitTimeout?: Duration.DurationInput | undefined
  /** how long a Reader connection that fell back to the primary is kept before replicas are tried again (default 5 seconds) */
  readonly fallbackLifetime?: Duration.DurationInput | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ResolvedOptions {
  readonly primaryUrl: string
  readonly replicaUrls: ReadonlyArray<string>
  readonly authToken: Redacted.Redacted<string> | undefined
  readonly connectTimeout: Duration.Duration
  readonly statementTimeout: Duration.Duration
  readonly replicationWaitTimeout: Duration.Duration
  readonly fallbackLifetime: Duration.Duration
}

/** A URL a libSQL server answers on, without credentials in it. */
const urlRule = "must be a URL (http://, https://, ws://, wss://, libsql://)"
const Url = Schema.String.annotations({ message: () => urlRule }).pipe(
  Schema.filter((value) => {
    if (value.trim() === "") return urlRule
    const target = webSocketUrl(value)
    return "error" in target ? target.error : true
  })
)

/** A duration above zero and finite: a timeout of 0 or forever would never let a connect or a wait end usefully. */
const PositiveDuration = PoolConfig.NonNegativeDuration.pipe(
  Schema.filter((duration) =>
    Duration.toMillis(duration) > 0 && Duration.isFinite(duration) ? true : "must be positive and finite"
  )
)

const Token = Schema.declare(
  (input: unknown): input is string | Redacted.Redacted<string> =>
    Redacted.isRedacted(input) || (typeof input === "string" && input !== ""),
  { identifier: "AuthToken", message: () => "must be a non-empty string (or a Redacted one)" }
)

const OptionsSchema: Schema.Schema<ResolvedOptions, Options> = Schema.Struct({
  primaryUrl: Url,
  replicaUrls: Schema.optionalWith(
    Schema.Array(Url).annotations({ message: () => "must be an array of URLs" }),
    { default: () => [] }
  ),
  authToken: Schema.optional(Token),
  connectTimeout: Schema.optionalWith(PositiveDuration, { default: () => Duration.seconds(5) }),
  statementTimeout: Schema.optionalWith(PositiveDuration, { default: () => Duration.seconds(30) }),
  replicationWaitTimeout: Schema.optionalWith(PositiveDuration, { default: () => Duration.seconds(2) }),
  fallbackLifetime: Schema.optionalWith(PositiveDuration, { default: () => Duration.seconds(5) })
}).pipe(Schema.transform(
  Schema.Struct({
    primaryUrl: Schema.String,
    replicaUrls: Schema.Array(Schema.String),
    authToken: Schema.UndefinedOr(Schema.RedactedFromSelf(Schema.String)),
    connectTimeout: Schema.DurationFromSelf,
    statementTimeout: Schema.DurationFromSelf,
    replicationWaitTimeout: Schema.DurationFromSelf,
    fallbackLifetime: Schema.DurationFromSelf
  }),
  {
    strict: true,
    decode: (options) => ({
      ...options,
      authToken: options.authToken === undefined || Redacted.isRedacted(options.authToken)
        ? options.authToken
        : Redacted.make(options.authToken)
    }),
    encode: (options) => options
  }
))

const decodeOptions = PoolConfig.decoder(OptionsSchema, {
  what: "the libSQL options",
  fields: [
    "primaryUrl",
    "replicaUrls",
    "authToken",
    "connectTimeout",
    "statementTimeout",
    "replicationWaitTimeout",
    "fallbackLifetime"
  ]
})

/**
 * Validates the options: the same typed `PoolConfigError` (naming the field) as `PoolConfig.make`, for unknown
 * fields, URLs that are not ones a libSQL server answers on (or that carry credentials), and durations that are
 * negative, zero or not durations.
 *
 * @since 0.1.0
 * @category constructors
 */
export const resolve = (input: Options): Effect.Effect<ResolvedOptions, PoolConfigError> => decodeOptions(input)

/**
 * Where the Reader's connections are, and how far each replica is behind (what `SqlitePool.stats` reports as
 * `replication`).
 *
 * @since 0.1.0
 * @category models
 */
export type Status = Connector.Replication

/**
 * @since 0.1.0
 * @category models
 */
export interface Service extends Connector.Service {
  readonly options: ResolvedOptions
  readonly status: Effect.Effect<Status>
}

/**
 * Frames a replica is behind its primary, as of its last answer.
 *
 * @since 0.1.0
 * @category metrics
 */
export const replicaLagFrames = Metric.gauge("sqlsim_libsql_replica_lag_frames", {
  description: "replication frames a libSQL replica was behind the primary when it last answered"
})

/**
 * 1 while a replica is out of the Reader's rotation for `cause` (`Connector.ReplicaOut`), 0 once it serves again.
 *
 * @since 0.1.0
 * @category metrics
 */
export const replicaOut = Metric.gauge("sqlsim_libsql_replica_out", {
  description: "1 while a libSQL replica is out of the Reader's rotation, by cause (unreachable, stalled, refused, " +
    "rejected, behind); 0 once it serves again"
})

/**
 * Makes the connector from validated options.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeWithOptions = (options: ResolvedOptions): Service => {
  const replicaSet = new ReplicaSet({
    ...options,
    onLag: (url, frames) => replicaLagFrames.unsafeUpdate(frames, [MetricLabel.make("replica", url)]),
    onOut: (url, cause, out) =>
      replicaOut.unsafeUpdate(out ? 1 : 0, [MetricLabel.make("replica", url), MetricLabel.make("cause", cause)])
  })
  return {
    options,
    connect: (connectOptions) => connectOptions.readOnly ? replicaSet.connectReader : replicaSet.connectWriter,
    status: replicaSet.status,
    replication: replicaSet.status
  }
}

/**
 * Validates the options and makes the connector.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service, PoolConfigError> =>
  Effect.map(resolve(options), makeWithOptions)

/**
 * The connector as the pool's `Connector`: provide it under `SqlitePool.layer` (or `ConnectionPool.layer`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Connector.Connector, PoolConfigError> =>
  Layer.effect(Connector.Connector, make(options))
