/**
 * Which faults a simulation injects, and how often: the value behind `--faults open=0.1,busy=lock-holder,...`.
 *
 * Probabilities are per event: per connect attempt (`open`, `open-permanent`, `slow`); per event of a connection
 * (`die`, `ping`: the pool's check as it hands the connection out or lets a statement join it, its probe, and every
 * statement); per statement (`ioerr`, `stmt-busy`, `stmt-slow`). `busy=lock-holder` starts a second OS process that
 * takes SQLite's write lock in bursts, so SQLITE_BUSY comes from SQLite itself.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import { SimulationConfigError } from "./SimulationError.js"

/**
 * The lock-holder process: holds the write lock (`BEGIN EXCLUSIVE`) for `holdMs`, then releases it for the rest of
 * each `everyMs` period.
 *
 * @since 0.1.0
 * @category models
 */
export interface LockHolderPlan {
  readonly holdMs: number
  readonly everyMs: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface FaultPlan {
  /** probability that a connect attempt fails with a transient error (a real SQLITE_CANTOPEN: a missing directory) */
  readonly openTransient: number
  /** probability that a connect attempt fails for good (a real SQLITE_NOTADB: a file that is not a database) */
  readonly openPermanent: number
  /** probability that a connect attempt is slow */
  readonly slowOpen: number
  /** mean extra latency of a slow open: exponentially distributed, capped at 10 times the mean */
  readonly slowOpenMs: number
  /**
   * probability that a connection dies at one of its events (its handle really closed): found by the pool's check or
   * probe, or by the statement that was about to run on it
   */
  readonly die: number
  /** probability that the pool's check or probe of a connection finds it broken (the connection is left as it is) */
  readonly ping: number
  /** probability that a statement fails with SQLITE_IOERR (a disk or file-system error; fatal to the connection) */
  readonly ioerr: number
  /** probability that a statement fails with SQLITE_BUSY (another process kept the write lock past busy_timeout) */
  readonly busyStatement: number
  /** probability that a statement answers slowly */
  readonly slowStatement: number
  /** mean extra latency of a slow statement: exponentially distributed, capped at 10 times the mean */
  readonly slowStatementMs: number
  /** the lock-holder process, or undefined */
  readonly lockHolder: LockHolderPlan | undefined
}

/**
 * No faults.
 *
 * @since 0.1.0
 * @category constants
 */
export const none: FaultPlan = {
  openTransient: 0,
  openPermanent: 0,
  slowOpen: 0,
  slowOpenMs: 50,
  die: 0,
  ping: 0,
  ioerr: 0,
  busyStatement: 0,
  slowStatement: 0,
  slowStatementMs: 20,
  lockHolder: undefined
}

/**
 * The lock holder's defaults: 50 ms bursts every 500 ms.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultLockHolder: LockHolderPlan = { holdMs: 50, everyMs: 500 }

/**
 * The keys `--faults` accepts, with what each one means (for help texts and error messages).
 *
 * @since 0.1.0
 * @category constants
 */
export const keys = {
  "open": "probability (0..1) that a connect attempt fails with a transient error",
  "open-permanent": "probability (0..1) that a connect attempt fails with a permanent error",
  "slow": "probability (0..1) that a connect attempt is slow",
  "slow-ms": "mean extra latency of a slow open in milliseconds (exponential distribution)",
  "die":
    "probability (0..1) per event of a connection (a check as the pool hands it out, a probe, a statement) that its handle is closed",
  "ping": "probability (0..1) per check or probe of a connection that the pool finds it broken",
  "ioerr": "probability (0..1) that a statement fails with SQLITE_IOERR (disk I/O error)",
  "stmt-busy": "probability (0..1) that a statement fails with SQLITE_BUSY (the lock held elsewhere)",
  "stmt-slow": "probability (0..1) that a statement answers slowly",
  "stmt-slow-ms": "mean extra latency of a slow statement in milliseconds (exponential distribution, default 20)",
  "busy": "lock-holder (a second process takes the write lock in bursts) or off",
  "lock-ms": "how long each lock-holder burst holds the write lock, in milliseconds",
  "lock-every": "the period of lock-holder bursts, in milliseconds"
} as const

type Key = keyof typeof keys

/**
 * The chance that one event of a connection meets a fault: one draw decides among die, ping and the statement faults.
 *
 * @since 0.1.0
 * @category utils
 */
export const connectionEventChance = (plan: FaultPlan): number =>
  plan.die + plan.ping + plan.ioerr + plan.busyStatement + plan.slowStatement

const probabilityKeys = {
  "open": "openTransient",
  "open-permanent": "openPermanent",
  "slow": "slowOpen",
  "die": "die",
  "ping": "ping",
  "ioerr": "ioerr",
  "stmt-busy": "busyStatement",
  "stmt-slow": "slowStatement"
} as const satisfies Partial<Record<Key, keyof FaultPlan>>

/** A plain decimal number such as 0.1, 5, .25 or 1e-7 (not hex, not Infinity, not empty). */
const DECIMAL = /^(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/

/** `rest` follows the field's name: "faults open=2: must be ..." (the command says "--faults open=2: ..."). */
const error = (rest: string) =>
  new SimulationConfigError({ field: "faults", describe: (name) => `${name("faults")}${rest}` })

const parseNumber = (
  key: string,
  text: string,
  rule: "probability" | "milliseconds"
): Either.Either<number, SimulationConfigError> => {
  const value = DECIMAL.test(text) ? Number(text) : Number.NaN
  if (rule === "probability") {
    return Number.isFinite(value) && value >= 0 && value <= 1
      ? Either.right(value)
      : Either.left(error(` ${key}=${text}: must be a probability between 0 and 1, such as ${key}=0.1`))
  }
  return Number.isFinite(value) && value >= 1 && value <= 60_000
    ? Either.right(value)
    : Either.left(error(` ${key}=${text}: must be a number of milliseconds between 1 and 60000`))
}

/**
 * Parses a fault specification: comma-separated `key=value` pairs (see `keys`), or "none" / "" for no faults.
 *
 * @example
 * import { FaultPlan } from "@sqlsim/simulator"
 * import * as Either from "effect/Either"
 *
 * const plan = Either.getOrThrow(FaultPlan.parse("open=0.1,die=0.05,busy=lock-holder,lock-ms=80"))
 * assert.strictEqual(plan.openTransient, 0.1)
 *
 * @since 0.1.0
 * @category constructors
 */
export const parse = (spec: string): Either.Either<FaultPlan, SimulationConfigError> => {
  const trimmed = spec.trim()
  if (trimmed === "" || trimmed === "none") return Either.right(none)
  const plan: { -readonly [K in keyof FaultPlan]: FaultPlan[K] } = { ...none }
  let busy: "lock-holder" | "off" = "off"
  let holdMs: number | undefined
  let everyMs: number | undefined
  const seen = new Set<string>()
  for (const part of trimmed.split(",")) {
    const match = /^\s*([a-z-]+)\s*=\s*(.*?)\s*$/.exec(part)
    if (match === null) {
      return Either.left(error(`: "${part.trim()}" is not key=value; write for example open=0.1,die=0.05`))
    }
    const key = match[1]!
    const text = match[2]!
    if (!(key in keys)) {
      return Either.left(error(`: unknown fault "${key}": the known ones are ${Object.keys(keys).join(", ")}`))
    }
    if (seen.has(key)) return Either.left(error(`: "${key}" is given twice`))
    seen.add(key)
    if (key in probabilityKeys) {
      const parsed = parseNumber(key, text, "probability")
      if (Either.isLeft(parsed)) return Either.left(parsed.left)
      plan[probabilityKeys[key as keyof typeof probabilityKeys]] = parsed.right
    } else if (key === "busy") {
      if (text !== "lock-holder" && text !== "off") {
        return Either.left(error(` busy=${text}: must be busy=lock-holder or busy=off`))
      }
      busy = text
    } else {
      const parsed = parseNumber(key, text, "milliseconds")
      if (Either.isLeft(parsed)) return Either.left(parsed.left)
      if (key === "slow-ms") plan.slowOpenMs = parsed.right
      if (key === "stmt-slow-ms") plan.slowStatementMs = parsed.right
      if (key === "lock-ms") holdMs = parsed.right
      if (key === "lock-every") everyMs = parsed.right
    }
  }
  if (plan.openTransient + plan.openPermanent > 1) {
    return Either.left(error(": open + open-permanent must not exceed 1 (both are chances of one attempt)"))
  }
  if (connectionEventChance(plan) >= 1) {
    // One draw decides an event of a connection: at 1, no check and no statement would ever pass.
    return Either.left(
      error(
        ": die + ping + ioerr + stmt-busy + stmt-slow must be below 1 (all are chances of one event of a connection; " +
          "at 1 none would pass)"
      )
    )
  }
  if (busy === "off" && (holdMs !== undefined || everyMs !== undefined)) {
    return Either.left(error(": lock-ms and lock-every only apply with busy=lock-holder"))
  }
  if (busy === "lock-holder") {
    const lockHolder = { holdMs: holdMs ?? defaultLockHolder.holdMs, everyMs: everyMs ?? defaultLockHolder.everyMs }
    if (lockHolder.holdMs >= lockHolder.everyMs) {
      return Either.left(
        error(`: lock-ms (${lockHolder.holdMs}) must be shorter than lock-every (${lockHolder.everyMs})`)
      )
    }
    plan.lockHolder = lockHolder
  }
  return Either.right(plan)
}

/**
 * Writes a plan back as a specification that `parse` reads to the same plan (only the fields that differ from
 * `none`).
 *
 * @since 0.1.0
 * @category utils
 */
export const format = (plan: FaultPlan): string => {
  const parts: Array<string> = []
  for (const [key, field] of Object.entries(probabilityKeys)) {
    if (plan[field] > 0) parts.push(`${key}=${plan[field]}`)
  }
  if (plan.slowOpenMs !== none.slowOpenMs) parts.push(`slow-ms=${plan.slowOpenMs}`)
  if (plan.slowStatementMs !== none.slowStatementMs) parts.push(`stmt-slow-ms=${plan.slowStatementMs}`)
  if (plan.lockHolder !== undefined) {
    parts.push("busy=lock-holder", `lock-ms=${plan.lockHolder.holdMs}`, `lock-every=${plan.lockHolder.everyMs}`)
  }
  return parts.length === 0 ? "none" : parts.join(",")
}

/**
 * True when the plan injects nothing.
 *
 * @since 0.1.0
 * @category utils
 */
export const isNone = (plan: FaultPlan): boolean => format(plan) === "none"
