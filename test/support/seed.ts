/**
 * Seeds for randomised tests: storms and soaks print their seed so that a failure can be replayed.
 */

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
