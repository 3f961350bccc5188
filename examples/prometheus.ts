// Run with: pnpm tsx examples/prometheus.ts
/**
 * The pool's metrics for Prometheus: an app on `SqlitePool.layer` runs a light workload (a write, a transaction and
 * two reads every 50 ms) and serves every Effect `Metric` in Prometheus' text format at
 * `http://127.0.0.1:$PORT/metrics`, through `@effect/opentelemetry`'s `Metrics.layer` with
 * `@opentelemetry/exporter-prometheus`'s `PrometheusExporter` as the metric reader.
 *
 * The series: OpenTelemetry's database-client connection metrics (`db_client_connection_count`, `_max`, `_idle_max`,
 * `_idle_min`, `_pending_requests`, `_timeouts_total`, and the histograms `_create_time`, `_wait_time`, `_use_time`
 * in seconds), each with `db_client_connection_pool_name` and `sqlsim_lane`; the pool's own `sqlsim_pool_*_total`
 * counters; the WAL's `sqlsim_wal_size`. `PORT` sets the port (default 9464, Prometheus' usual one for exporters),
 * `DATABASE_FILE` the database (default `sqlsim-prometheus.db` in the system's temporary directory). SIGTERM or
 * Ctrl-C stops the workload, the server and the pool, and the process exits with 0; a port in use ends it with one
 * line and exit code 1.
 */
import * as Metrics from "@effect/opentelemetry/Metrics"
import * as Resource from "@effect/opentelemetry/Resource"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { SqlClient } from "@effect/sql"
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus"
import { SqlitePool } from "@sqlsim/sqlite-pool"
import { Config, Console, Effect, Layer, Schedule } from "effect"
import * as os from "node:os"
import * as path from "node:path"

/** One round of the workload: a write, a transaction of two writes, a point read and an aggregate on the Reader. */
const round = (n: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const reader = yield* SqlitePool.Reader
    yield* sql`INSERT INTO event (kind, n) VALUES ('single', ${n})`
    yield* sql.withTransaction(
      Effect.zipRight(
        sql`INSERT INTO event (kind, n) VALUES ('pair', ${n})`,
        sql`INSERT INTO event (kind, n) VALUES ('pair', ${n + 1})`
      )
    )
    yield* reader`SELECT * FROM event WHERE id = ${n}`
    yield* reader`SELECT kind, count(*) AS events FROM event GROUP BY kind`
  })

const workload = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE IF NOT EXISTS event (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, n INTEGER NOT NULL)`
  let n = 0
  yield* Effect.repeat(Effect.suspend(() => round(++n)), Schedule.spaced("50 millis"))
})

/** The exporter's HTTP server, started before the app says where it is (a port in use fails the app here). */
const prometheus = (port: number) =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const exporter = new PrometheusExporter({ host: "127.0.0.1", port, preventServerStart: true })
    // The failure is the one line the app ends with (text, not an Error: a port in use is no place for a stack trace).
    yield* Effect.tryPromise({
      try: () => exporter.startServer(),
      catch: (cause) =>
        `cannot serve the metrics on 127.0.0.1:${port}: ${cause instanceof Error ? cause.message : String(cause)}; ` +
        `set PORT to a free port`
    })
    yield* Console.log(`metrics at http://127.0.0.1:${port}/metrics`)
    // Metrics.layer registers the pool's metrics with the exporter and shuts it down (its server too) at the end.
    return Metrics.layer(() => exporter)
  })).pipe(Layer.provide(Resource.layer({ serviceName: "sqlsim-prometheus-example" })))

const main = Layer.unwrapEffect(Effect.gen(function*() {
  const port = yield* Config.port("PORT").pipe(Config.withDefault(9464))
  const filename = yield* Config.string("DATABASE_FILE").pipe(
    Config.withDefault(path.join(os.tmpdir(), "sqlsim-prometheus.db"))
  )
  return Layer.scopedDiscard(Effect.forkScoped(workload)).pipe(
    Layer.provide(SqlitePool.layer({ filename, readConnections: 2 })),
    Layer.provideMerge(prometheus(port))
  )
}))

Layer.launch(main).pipe(NodeRuntime.runMain)
