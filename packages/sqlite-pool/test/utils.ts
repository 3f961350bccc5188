/**
 * Fixtures of the pool's tests: a pool on a fresh file behind the fault connector, and the invariants of its stats.
 * Temporary directories, the connector and the waits come from the test kit.
 */
import { PoolConfig, type PoolStats } from "@sqlsim/sqlite-pool"
import * as FaultConnector from "@sqlsim/test-kit/FaultConnector"
import { tempDir } from "@sqlsim/test-kit/TempDir"
import * as Effect from "effect/Effect"
import * as path from "node:path"
import * as Pool from "../src/internal/pool.js"

export { randomBytes, tempDir } from "@sqlsim/test-kit/TempDir"
export { advanceUntil, eventually, waitUntil, yieldEventLoop } from "@sqlsim/test-kit/Wait"

/** The three invariants the README ("Statistics, metrics, spans") states for every instant. */
export const invariantsHold = (stats: PoolStats.PoolStats): boolean =>
  stats.inUse + stats.idle === stats.open &&
  stats.created - stats.closed === stats.open &&
  stats.acquired === stats.released + stats.inUse &&
  stats.open >= 0 && stats.idle >= 0 && stats.inUse >= 0 && stats.waiting >= 0

/** A pool on a file in a fresh temporary directory, opening its connections through the fault connector. */
export const makeTestPool = (
  input: PoolConfig.Input = {},
  faultFor?: (attempt: number) => FaultConnector.Fault | undefined
) =>
  Effect.gen(function*() {
    const directory = yield* tempDir
    const filename = input.filename ?? path.join(directory, "test.db")
    const connector = yield* FaultConnector.make(directory, faultFor)
    const config = yield* PoolConfig.make({ ...input, filename })
    const core = yield* Pool.make(config, { connector: connector.service })
    return { pool: Pool.service(core), core, connector, directory, filename }
  })
