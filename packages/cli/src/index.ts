/**
 * The `sqlsim` command's modules: one namespace per module.
 *
 * @since 0.1.0
 */

/**
 * Writing a file atomically: a temporary file renamed over the target.
 *
 * @since 0.1.0
 */
export * as AtomicFile from "./AtomicFile.js"

/**
 * The `sqlsim` command and its subcommands.
 *
 * @since 0.1.0
 */
export * as Cli from "./Cli.js"

/**
 * The seed workload: labels in, read back, a JSON summary of the pool's statistics.
 *
 * @since 0.1.0
 */
export * as Demo from "./Demo.js"

/**
 * The read-only health check of a database file.
 *
 * @since 0.1.0
 */
export * as Health from "./Health.js"

/**
 * Reading labels: one per line, streamed, each line bounded.
 *
 * @since 0.1.0
 */
export * as Labels from "./Labels.js"
