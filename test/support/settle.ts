/**
 * Waiting without sleeping: a test gives other fibers (and pending I/O callbacks) turns of the event loop until the
 * state it expects is reached, and fails with a description if it never is. The clock never moves here.
 */
import * as Effect from "effect/Effect"
import { yieldEventLoop } from "../../packages/sqlite-pool/test/utils.js"

export { waitUntil, yieldEventLoop } from "../../packages/sqlite-pool/test/utils.js"

/** Gives other fibers `turns` turns of the event loop, so whatever was going to happen without time passing has. */
export const settle = (turns = 20): Effect.Effect<void> => Effect.repeatN(yieldEventLoop, turns - 1)

/** A small seeded generator (mulberry32): storms and soaks print their seed so a failure can be replayed. */
export const seededRandom = (seed: number) => {
  let state = seed >>> 0
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    next,
    /** an integer in [0, n) */
    int: (n: number): number => Math.floor(next() * n),
    chance: (p: number): boolean => next() < p
  }
}

/** The seed of a randomised test: SQLSIM_SEED when set (to replay a failure), a fresh one otherwise. */
export const seedFromEnvironment = (): number => {
  const given = process.env.SQLSIM_SEED
  if (given !== undefined && /^\d+$/.test(given)) return Number(given)
  return Math.floor(Math.random() * 2 ** 31)
}
