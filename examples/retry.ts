// Run with: pnpm tsx examples/retry.ts
/**
 * A connect that fails transiently and recovers. The database lives in a directory that appears a moment after the
 * app starts (a volume still being mounted, say). Until then every open fails with SQLITE_CANTOPEN, which the pool
 * treats as transient: it retries on an exponential schedule (`retryBaseDelay`, doubling, capped by
 * `retryMaxDelay`: 20 ms, 40 ms, 80 ms ... 1 s here) and the first acquire succeeds once the directory exists.
 *
 * Every attempt is logged through the `Connector` seam: a connector provided in the context wraps the live one.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { ConnectionPool, Connector, PoolConfig, RetryPolicy } from "@sqlsim/sqlite-pool"
import { Clock, Console, Duration, Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** The live connector, logging each attempt with the time since the program started. */
const loggingConnector = (startedAt: number) =>
  Layer.effect(
    Connector.Connector,
    Effect.gen(function*() {
      const live = yield* Connector.makeLive
      let attempt = 0
      const since = Effect.map(Clock.currentTimeMillis, (now) => `+${String(now - startedAt).padStart(4)} ms`)
      return Connector.Connector.of({
        connect: (options) =>
          Effect.suspend(() => {
            const number = ++attempt
            return live.connect(options).pipe(
              Effect.tapBoth({
                onFailure: (error) =>
                  Effect.flatMap(since, (at) =>
                    Console.log(
                      `attempt ${number} at ${at}: failed, ${error.code} (${error.reason}), ` +
                        (error.transient ? "transient: the pool will retry" : "permanent: no retry")
                    )),
                onSuccess: () => Effect.flatMap(since, (at) => Console.log(`attempt ${number} at ${at}: connected`))
              })
            )
          })
      })
    })
  )

const program = Effect.gen(function*() {
  const startedAt = yield* Clock.currentTimeMillis
  // A directory that does not exist yet, removed again at the end.
  const directory = yield* Effect.acquireRelease(
    Effect.sync(() => path.join(os.tmpdir(), `sqlsim-retry-example-${process.pid}`)),
    (directory) => Effect.sync(() => fs.rmSync(directory, { recursive: true, force: true }))
  )
  const input: PoolConfig.Input = {
    filename: path.join(directory, "app.db"),
    retries: 8,
    retryBaseDelay: "20 millis",
    retryMaxDelay: "1 second"
  }
  const config = yield* PoolConfig.make(input)
  const planned = RetryPolicy.delays(config).map((delay) => Duration.format(delay)).join(", ")
  yield* Console.log(`Planned retry delays: ${planned}`)

  // Another party creates the directory a little later.
  yield* Effect.fork(
    Effect.sleep("250 millis").pipe(
      Effect.zipRight(Effect.sync(() => fs.mkdirSync(directory, { recursive: true }))),
      Effect.zipRight(
        Effect.flatMap(
          Clock.currentTimeMillis,
          (now) => Console.log(`the directory appears at +${String(now - startedAt).padStart(4)} ms`)
        )
      )
    )
  )

  const pool = yield* ConnectionPool.make(input).pipe(Effect.provide(loggingConnector(startedAt)))
  const [row] = yield* pool.use(({ sql }) => sql<{ answer: number }>`SELECT 42 AS answer`)
  const stats = yield* pool.stats
  yield* Console.log(
    `Connected after ${stats.connectFailures + 1} attempts (connectFailures ${stats.connectFailures}, ` +
      `retries ${stats.retries}); SELECT 42 gave ${row?.answer}`
  )
})

program.pipe(Effect.scoped, NodeRuntime.runMain)
