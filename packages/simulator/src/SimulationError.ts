/**
 * Typed errors of the simulator. A user's mistake (a bad option) is a `SimulationConfigError` naming the field and
 * what to write instead; failures of the machinery around a run (the lock-holder process, writing a report) have
 * their own tags. Failures of the simulated operations are not errors of the simulator: they are counted in the report.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"

/**
 * An invalid simulation option: `field` names it (a field of `Simulation.Input`), `message` says what is wrong and
 * what to write instead. `describe` gives the same message with every field it mentions named by `name`: the command
 * passes its flag names (`operations` is `--ops` there).
 *
 * @since 0.1.0
 * @category errors
 */
export class SimulationConfigError extends Data.TaggedError("SimulationConfigError")<{
  readonly field: string
  readonly describe: (name: (field: string) => string) => string
}> {
  override get message(): string {
    return this.describe((field) => field)
  }
}

/**
 * The lock-holder process (a second OS process that takes SQLite's write lock) could not start or died.
 *
 * @since 0.1.0
 * @category errors
 */
export class LockHolderError extends Data.TaggedError("LockHolderError")<{
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return `the lock-holder process failed: ${this.reason}`
  }
}

/**
 * The database file the run works on was deleted, or replaced by another file, while it ran: every operation then
 * fails (the pool refuses a name whose old `-wal` is still there, or finds an empty database), so the run stops
 * rather than report those failures as the pool's figures.
 *
 * @since 0.1.0
 * @category errors
 */
export class DatabaseLostError extends Data.TaggedError("DatabaseLostError")<{
  readonly filename: string
}> {
  override get message(): string {
    return `the simulation database ${this.filename} was deleted or replaced while the run worked on it: the run `
      + `stopped, and no report was written. Any ${this.filename}-wal and ${this.filename}-shm left beside it `
      + "belong to the old file: remove them before a database is opened under that name again"
  }
}

/**
 * A write met SQLITE_FULL: the disk that holds the database is full. Every write would fail the same way, at once,
 * so the run stops rather than report those failures as the pool's figures.
 *
 * @since 0.1.0
 * @category errors
 */
export class DiskFullError extends Data.TaggedError("DiskFullError")<{
  readonly filename: string
}> {
  override get message(): string {
    return `the disk that holds the simulation database ${this.filename} is full (SQLITE_FULL): the run stopped, `
      + "and no report was written; free some space, or run it on a database on another disk"
  }
}

/**
 * A simulated operation did not finish within the simulator's bound on one operation. The pool bounds every wait by
 * `acquireTimeout`, so this marks a hang that the pool failed to prevent.
 *
 * @since 0.1.0
 * @category errors
 */
export class OperationTimeoutError extends Data.TaggedError("OperationTimeoutError")<{
  readonly operation: number
  readonly timeoutMs: number
}> {
  override get message(): string {
    return `operation ${this.operation} did not finish within ${this.timeoutMs} ms`
  }
}

/**
 * The database used for the run could not be prepared (tables created, rows seeded).
 *
 * @since 0.1.0
 * @category errors
 */
export class SetupError extends Data.TaggedError("SetupError")<{
  readonly filename: string
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return `cannot prepare the simulation database ${this.filename}: ${this.reason}`
  }
}
