/**
 * Read-your-writes, alone and on the TestClock: a read whose result is older than the fiber's position is run again
 * on the backoff (1, 2, 4 ... ms, at most 20) until it is not, and fails typed (REPLICA_BEHIND) when the bound
 * passes; a writer's result raises the fiber's position, and a forked fiber inherits it.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import type { StatementResult } from "../src/internal/hranaSocket.js"
import { minimumReplicationIndex, raiseTo, readAtLeast } from "../src/internal/libsql/readYourWrites.js"

const resultAt = (replicationIndex: bigint | undefined): StatementResult => ({
  columns: [],
  rows: [],
  affectedRowCount: 0,
  lastInsertRowid: undefined,
  replicationIndex
})

/** A read whose runs report these indexes in turn (the last one from then on), counting its runs. */
const readReporting = (indexes: ReadonlyArray<bigint | undefined>) => {
  const read: { runs: number; effect: Effect.Effect<StatementResult> } = {
    runs: 0,
    effect: Effect.sync(() => resultAt(indexes[Math.min(read.runs++, indexes.length - 1)]))
  }
  return read
}

describe("libSQL read-your-writes", () => {
  it.effect("a stale read runs again on the backoff until its result is at the index", () =>
    Effect.gen(function*() {
      const read = readReporting([5n, 6n, 9n, 10n])
      const fiber = yield* Effect.fork(readAtLeast(read.effect, 10n, Duration.seconds(2)))
      yield* TestClock.adjust("6 millis")
      // Runs at 0, 1 and 3 ms; the fourth is due at 7 ms.
      expect(read.runs).toBe(3)
      expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
      yield* TestClock.adjust("1 millis")
      const result = yield* Fiber.join(fiber)
      expect(result.replicationIndex).toBe(10n)
      expect(read.runs).toBe(4)
    }))

  it.effect("a replica that never reaches the index fails the read with REPLICA_BEHIND once the bound passes", () =>
    Effect.gen(function*() {
      const read = readReporting([4n])
      const fiber = yield* Effect.fork(readAtLeast(read.effect, 10n, Duration.millis(500)))
      yield* TestClock.adjust("400 millis")
      expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
      // The delays grow to 20 ms and stay there: about 20 runs in 400 ms, not one per millisecond.
      expect(read.runs).toBeGreaterThan(15)
      expect(read.runs).toBeLessThan(30)
      yield* TestClock.adjust("200 millis")
      const exit = yield* Fiber.await(fiber)
      expect(Exit.isFailure(exit)).toBe(true)
      const error = yield* Effect.flip(exit)
      expect(error).toMatchObject({ _tag: "LibsqlStatementError", libsqlCode: "REPLICA_BEHIND" })
      expect(error.message).toMatch(/replication index 10 within 500ms \(it is at 4\)/)
    }))

  it.effect("a read with no index to wait for, or whose result carries none, runs once", () =>
    Effect.gen(function*() {
      const noWait = readReporting([1n])
      expect((yield* readAtLeast(noWait.effect, undefined, Duration.seconds(1))).replicationIndex).toBe(1n)
      const unknown = readReporting([undefined])
      expect((yield* readAtLeast(unknown.effect, 10n, Duration.seconds(1))).replicationIndex).toBeUndefined()
      expect([noWait.runs, unknown.runs]).toEqual([1, 1])
    }))

  it.effect("a read that fails is not run again: its error is the caller's", () =>
    Effect.gen(function*() {
      let runs = 0
      const failing = Effect.suspend(() => {
        runs++
        return Effect.fail("the socket was lost" as const)
      })
      expect(yield* Effect.flip(readAtLeast(failing, 10n, Duration.seconds(1)))).toBe("the socket was lost")
      expect(runs).toBe(1)
    }))

  it.effect("a writer's results raise the fiber's position (never lower it), and a forked fiber inherits it", () =>
    Effect.gen(function*() {
      yield* raiseTo({ generation: 0, index: 7n })
      yield* raiseTo({ generation: 0, index: 3n })
      expect(yield* FiberRef.get(minimumReplicationIndex)).toEqual({ generation: 0, index: 7n })
      const inherited = yield* Fiber.join(yield* Effect.fork(FiberRef.get(minimumReplicationIndex)))
      expect(inherited).toEqual({ generation: 0, index: 7n })
      yield* raiseTo({ generation: 1, index: 1n })
      expect(yield* FiberRef.get(minimumReplicationIndex)).toEqual({ generation: 1, index: 1n })
    }).pipe(Effect.locally(minimumReplicationIndex, undefined)))
})
