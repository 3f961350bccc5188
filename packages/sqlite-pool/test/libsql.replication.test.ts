/**
 * The replication bookkeeping of a primary and its replicas, alone (no server): a restarted primary noticed as a new
 * generation, a replica known to follow it only once it says so, the lag, and what a Reader statement waits for.
 */
import { describe, expect, it } from "@effect/vitest"
import { laterPosition, ReplicationState } from "../src/internal/libsql/replication.js"

describe("libSQL replication bookkeeping", () => {
  it("a primary connection that opens below the index seen before it began has met a restarted primary", () => {
    const state = new ReplicationState([])
    state.onPrimaryOpened(state.primaryMark(), 5n)
    state.onPrimaryAnswered(40n)
    expect(state.status()).toMatchObject({ generation: 0, primaryIndex: 40n })
    // A connect that began before the answer at 40 opens at 30: the answers crossed, nothing restarted.
    const early = { generation: 0, index: 5n }
    state.onPrimaryOpened(early, 30n)
    expect(state.status()).toMatchObject({ generation: 0, primaryIndex: 40n })
    // One that began after it opens at 2: the log was numbered afresh.
    state.onPrimaryOpened(state.primaryMark(), 2n)
    expect(state.status()).toMatchObject({ generation: 1, primaryIndex: 2n })
    // A connect that began in the old generation and opens low counts no second restart.
    state.onPrimaryOpened({ generation: 0, index: 40n }, 1n)
    expect(state.status()).toMatchObject({ generation: 1, primaryIndex: 2n })
    // Results of any order only ever raise the index.
    state.onPrimaryAnswered(1n)
    expect(state.status().primaryIndex).toBe(2n)
  })

  it("a replica follows a restarted primary once it reports two different indexes in the new generation", () => {
    const state = new ReplicationState(["ws://replica/"])
    state.onPrimaryOpened(state.primaryMark(), 31n)
    expect(state.onReplicaAnswered(0, 31n)).toBe(0)
    state.onPrimaryOpened(state.primaryMark(), 1n)
    expect(state.follows(0)).toBe(false)
    // The old numbering is frozen: the same index again says nothing.
    expect(state.onReplicaAnswered(0, 31n)).toBeUndefined()
    expect(state.onReplicaAnswered(0, 31n)).toBeUndefined()
    expect(state.follows(0)).toBe(false)
    expect(state.status().replicas[0]).toMatchObject({ generation: 0, index: 31n, lagFrames: undefined })
    expect(state.onReplicaAnswered(0, 1n)).toBe(0)
    expect(state.follows(0)).toBe(true)
    expect(state.status().replicas[0]).toMatchObject({ generation: 1, index: 1n, lagFrames: 0 })
  })

  it("the lag is the primary's newest index minus the replica's, never negative", () => {
    const state = new ReplicationState(["ws://a/", "ws://b/"])
    expect(state.onReplicaAnswered(0, 3n)).toBeUndefined() // no primary index yet
    state.onPrimaryAnswered(10n)
    expect(state.onReplicaAnswered(0, 7n)).toBe(3)
    expect(state.onReplicaAnswered(1, 12n)).toBe(0)
    expect(state.status().replicas.map((replica) => replica.lagFrames)).toEqual([3, 0])
  })

  it("what a Reader statement waits for depends on the numbering the replica follows", () => {
    const state = new ReplicationState(["ws://replica/"])
    expect(state.indexToAwait(0, { generation: 0, index: 9n })).toBe(9n)
    state.onPrimaryOpened(state.primaryMark(), 50n)
    state.onPrimaryOpened(state.primaryMark(), 1n)
    // The replica has not followed generation 1: a position in it cannot be compared with its indexes.
    expect(state.indexToAwait(0, { generation: 1, index: 2n })).toBe("unknown")
    expect(state.indexToAwait(0, { generation: 0, index: 9n })).toBe(9n)
    state.onReplicaAnswered(0, 1n)
    state.onReplicaAnswered(0, 2n)
    // Once it follows, a write from before the restart is in it: nothing to wait for.
    expect(state.indexToAwait(0, { generation: 0, index: 9n })).toBeUndefined()
    expect(state.indexToAwait(0, { generation: 1, index: 2n })).toBe(2n)
  })

  it("counts connects, failures and fallbacks, and refuses a replica it does not have", () => {
    const state = new ReplicationState(["ws://a/"])
    state.onReplicaConnected(0)
    state.onReplicaConnectFailed(0)
    state.onReplicaConnectFailed(0)
    state.onFallback()
    expect(state.status()).toEqual({
      primaryIndex: undefined,
      generation: 0,
      replicas: [{
        url: "ws://a/",
        connects: 1,
        failures: 2,
        index: undefined,
        generation: 0,
        lagFrames: undefined,
        out: undefined
      }],
      fallbacks: 1
    })
    expect(() => state.onReplicaAnswered(1, 1n)).toThrow(RangeError)
    expect(() => state.follows(-1)).toThrow(RangeError)
  })

  it("a replica out waits fallbackLifetime, doubled with each failure in a row up to 8 times; a connect brings it back", () => {
    const state = new ReplicationState(["ws://a/"])
    const stalled = { cause: "stalled", reason: "no answer" } as const
    expect(state.putOut(0, stalled, 1_000, 100)).toEqual({ ...stalled, retryAt: 1_100, strikes: 1 })
    expect(state.isOut(0, 1_099)).toBe(true)
    expect(state.outReason(0)).toBe("the replica is out (stalled): no answer")
    // Its other connections failing while it is out change nothing.
    expect(state.putOut(0, { cause: "behind", reason: "late" }, 1_050, 100)).toMatchObject({ retryAt: 1_100 })
    expect(state.isOut(0, 1_100)).toBe(false)
    // Tried again and failed again: the waits double, up to 8 times fallbackLifetime.
    const waits = [2, 3, 4, 5, 6].map((strikes) => {
      const now = 10_000 * strikes
      return state.putOut(0, stalled, now, 100).retryAt - now
    })
    expect(waits).toEqual([200, 400, 800, 800, 800])
    expect(state.status().replicas[0]!.out).toMatchObject({ strikes: 6 })
    // A connect that succeeds ends it, and the next failure starts again at fallbackLifetime.
    expect(state.onReplicaConnected(0)).toMatchObject({ cause: "stalled", strikes: 6 })
    expect(state.outReason(0)).toBeUndefined()
    expect(state.status().replicas[0]!.out).toBeUndefined()
    expect(state.putOut(0, stalled, 100_000, 100)).toMatchObject({ retryAt: 100_100, strikes: 1 })
  })

  it("a fiber's position only moves forward, and a later generation's replaces an earlier one's", () => {
    expect(laterPosition(undefined, { generation: 0, index: 5n })).toEqual({ generation: 0, index: 5n })
    expect(laterPosition({ generation: 0, index: 7n }, { generation: 0, index: 5n })).toEqual({
      generation: 0,
      index: 7n
    })
    expect(laterPosition({ generation: 0, index: 70n }, { generation: 1, index: 2n })).toEqual({
      generation: 1,
      index: 2n
    })
    expect(laterPosition({ generation: 1, index: 2n }, { generation: 0, index: 90n })).toEqual({
      generation: 1,
      index: 2n
    })
  })
})
