/**
 * Fixtures of the worker-thread tests: a read that never ends by itself, and what the process holds.
 */
import * as fs from "node:fs"

/**
 * A read that produces a row every 10 000 steps for minutes: a worker running it reaches JavaScript after every row,
 * so stopping the worker ends it there.
 */
export const endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000000) " +
  "SELECT x FROM c WHERE x % 10000 = 0"

/**
 * A read that computes for minutes before its one row (a sum over 10^10 steps): a worker running it never reaches
 * JavaScript, so only sqlite3_interrupt() stops it.
 */
export const endlessAggregate =
  "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000000) " +
  "SELECT sum(x) AS s FROM c"

/** Threads of this process (the main thread, libuv's and V8's, and one per live worker). */
export const threads = (): number => fs.readdirSync("/proc/self/task").length

/** Open file descriptors of this process. */
export const descriptors = (): number => fs.readdirSync("/proc/self/fd").length
