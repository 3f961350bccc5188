/**
 * Type-level tests of the public signatures: what an app's code relies on at compile time. `pnpm check` (tsc -b)
 * compiles this file, so a layer whose error or requirement channel widens, a `Reader` that loses its type, an input
 * field renamed or an error field gone fails CI. vitest never runs it (its name is not `*.test.ts`): nothing here
 * needs to run.
 */
import type * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { ConnectionPool, Connector, LibsqlConnector, PoolConfig, PoolError, SqlitePool } from "@sqlsim/sqlite-pool"
import type { PoolStats } from "@sqlsim/sqlite-pool/PoolStats"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { describe, expectTypeOf, it } from "vitest"

type SqlitePoolServices = SqlClient.SqlClient | SqliteClient.SqliteClient | SqlitePool.SqlitePool | SqlitePool.Reader

describe("the layers' channels", () => {
  it("SqlitePool.layer provides the four services, fails with config and connect errors, needs nothing", () => {
    expectTypeOf(SqlitePool.layer({ filename: "app.db" })).toEqualTypeOf<
      Layer.Layer<SqlitePoolServices, PoolError.PoolConfigError | PoolError.ConnectError, never>
    >()
  })

  it("SqlitePool.layerConfig adds only ConfigError", () => {
    expectTypeOf(SqlitePool.layerConfig({ filename: Config.string("DATABASE_FILE") })).toEqualTypeOf<
      Layer.Layer<
        SqlitePoolServices,
        ConfigError.ConfigError | PoolError.PoolConfigError | PoolError.ConnectError,
        never
      >
    >()
  })

  it("ConnectionPool.layer and layerConfig provide the pool and need nothing", () => {
    expectTypeOf(ConnectionPool.layer({ maxConnections: 4 })).toEqualTypeOf<
      Layer.Layer<ConnectionPool.ConnectionPool, PoolError.PoolConfigError | PoolError.ConnectError, never>
    >()
    expectTypeOf(ConnectionPool.layerConfig({ maxConnections: Config.integer("MAX") })).toEqualTypeOf<
      Layer.Layer<
        ConnectionPool.ConnectionPool,
        ConfigError.ConfigError | PoolError.PoolConfigError | PoolError.ConnectError,
        never
      >
    >()
  })

  it("ConnectionPool.make needs a Scope and nothing else", () => {
    expectTypeOf(ConnectionPool.make()).toEqualTypeOf<
      Effect.Effect<ConnectionPool.Service, PoolError.PoolConfigError | PoolError.ConnectError, Scope.Scope>
    >()
  })

  it("LibsqlConnector.layer provides a Connector and fails only on a bad option", () => {
    expectTypeOf(LibsqlConnector.layer({ primaryUrl: "http://127.0.0.1:8080" })).toEqualTypeOf<
      Layer.Layer<Connector.Connector, PoolError.PoolConfigError, never>
    >()
  })
})

describe("Reader", () => {
  it("is a tag whose service is the SqlClient", () => {
    expectTypeOf<Context.Tag.Service<SqlitePool.Reader>>().toEqualTypeOf<SqlClient.SqlClient>()
    expectTypeOf<Context.Tag.Identifier<typeof SqlitePool.Reader>>().toEqualTypeOf<SqlitePool.Reader>()
  })

  it("yields a SqlClient and requires the Reader", () => {
    const program = Effect.gen(function*() {
      const reader = yield* SqlitePool.Reader
      return yield* reader<{ readonly one: number }>`SELECT 1 AS one`
    })
    expectTypeOf(program).toEqualTypeOf<
      Effect.Effect<ReadonlyArray<{ readonly one: number }>, SqlError, SqlitePool.Reader>
    >()
  })
})

describe("the inputs", () => {
  it("layerConfig takes a Config of each field of the input", () => {
    expectTypeOf(SqlitePool.layerConfig).parameter(0).toEqualTypeOf<Config.Config.Wrap<PoolConfig.SqliteInput>>()
    expectTypeOf(ConnectionPool.layerConfig).parameter(0).toEqualTypeOf<Config.Config.Wrap<PoolConfig.Input>>()
    expectTypeOf<Config.Config<string>>().toMatchTypeOf<
      Exclude<Config.Config.Wrap<PoolConfig.SqliteInput>, Config.Config<any>>["filename"]
    >()
    // A field of the other pool, or a Config of the wrong type, is refused at compile time.
    // @ts-expect-error maxConnections is ConnectionPool's field: SqlitePool sizes its Reader with readConnections
    SqlitePool.layerConfig({ maxConnections: Config.integer("MAX") })
    // @ts-expect-error readConnections is a number
    SqlitePool.layerConfig({ readConnections: Config.string("READ_CONNECTIONS") })
  })

  it("the inputs' fields are optional, with their types", () => {
    expectTypeOf<PoolConfig.SqliteInput["readConnections"]>().toEqualTypeOf<number | undefined>()
    expectTypeOf<PoolConfig.SqliteInput["walCheckpointBytes"]>().toEqualTypeOf<number | null | undefined>()
    expectTypeOf<PoolConfig.Input["maxConnections"]>().toEqualTypeOf<number | undefined>()
    expectTypeOf<PoolConfig.CommonInput["acquireTimeout"]>().toEqualTypeOf<Duration.DurationInput | undefined>()
    expectTypeOf(SqlitePool.layer).parameter(0).toEqualTypeOf<PoolConfig.SqliteInput | undefined>()
  })
})

describe("the errors' fields", () => {
  it("AcquireTimeoutError", () => {
    expectTypeOf<PoolError.AcquireTimeoutError>().toHaveProperty("_tag").toEqualTypeOf<"AcquireTimeoutError">()
    expectTypeOf<PoolError.AcquireTimeoutError["waitedMs"]>().toEqualTypeOf<number>()
    expectTypeOf<PoolError.AcquireTimeoutError["stats"]>().toEqualTypeOf<PoolStats>()
    expectTypeOf<PoolError.AcquireTimeoutError["lastError"]>().toEqualTypeOf<PoolError.ConnectError | undefined>()
    expectTypeOf<PoolError.AcquireTimeoutError["holder"]>().toEqualTypeOf<PoolError.Holder | undefined>()
    expectTypeOf<PoolError.AcquireTimeoutError["holders"]>().toEqualTypeOf<number>()
  })

  it("ConnectError", () => {
    expectTypeOf<PoolError.ConnectError>().toHaveProperty("_tag").toEqualTypeOf<"ConnectError">()
    expectTypeOf<Pick<PoolError.ConnectError, "filename" | "code" | "reason">>().toEqualTypeOf<
      { readonly filename: string; readonly code: string; readonly reason: string }
    >()
    expectTypeOf<PoolError.ConnectError["attempts"]>().toEqualTypeOf<number>()
    expectTypeOf<PoolError.ConnectError["elapsedMs"]>().toEqualTypeOf<number>()
    expectTypeOf<PoolError.ConnectError["transient"]>().toEqualTypeOf<boolean>()
  })

  it("PoolConfigError, PoolClosedError, HealthCheckError and the acquire union", () => {
    expectTypeOf<Pick<PoolError.PoolConfigError, "_tag" | "field">>().toEqualTypeOf<
      { readonly _tag: "PoolConfigError"; readonly field: string }
    >()
    expectTypeOf<PoolError.PoolConfigError["message"]>().toEqualTypeOf<string>()
    expectTypeOf<Pick<PoolError.PoolClosedError, "_tag" | "filename">>().toEqualTypeOf<
      { readonly _tag: "PoolClosedError"; readonly filename: string }
    >()
    expectTypeOf<Pick<PoolError.HealthCheckError, "_tag" | "filename" | "reason">>().toEqualTypeOf<
      { readonly _tag: "HealthCheckError"; readonly filename: string; readonly reason: string }
    >()
    expectTypeOf<PoolError.AcquireError>().toEqualTypeOf<
      PoolError.ConnectError | PoolError.AcquireTimeoutError | PoolError.PoolClosedError
    >()
    expectTypeOf<PoolError.Holder>().toEqualTypeOf<{
      readonly span: string | undefined
      readonly fiber: string
      readonly since: number
      readonly heldMs: number
      readonly site: string | undefined
    }>()
  })
})
