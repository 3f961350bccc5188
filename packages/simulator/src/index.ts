/**
 * Fault injection, workload generation and reports for `@sqlsim/sqlite-pool`: one namespace per module.
 *
 * @since 0.1.0
 */

/**
 * A fault-injecting `Connector` that wraps the live one as a `FaultPlan` asks.
 *
 * @since 0.1.0
 */
export * as FaultInjector from "./FaultInjector.js"

/**
 * Which faults a simulation injects, and how often.
 *
 * @since 0.1.0
 */
export * as FaultPlan from "./FaultPlan.js"

/**
 * Real lock contention: a second OS process that takes SQLite's write lock in bursts.
 *
 * @since 0.1.0
 */
export * as LockHolder from "./LockHolder.js"

/**
 * The report of a simulation as JSON-ready data and as a text table.
 *
 * @since 0.1.0
 */
export * as Report from "./Report.js"

/**
 * The report as one self-contained HTML page with charts.
 *
 * @since 0.1.0
 */
export * as ReportHtml from "./ReportHtml.js"

/**
 * libSQL servers killed and started again during a simulation.
 *
 * @since 0.1.0
 */
export * as ServerFaults from "./ServerFaults.js"

/**
 * A simulation: a workload against the pool under faults, and its report.
 *
 * @since 0.1.0
 */
export * as Simulation from "./Simulation.js"

/**
 * Typed errors of the simulator.
 *
 * @since 0.1.0
 */
export * as SimulationError from "./SimulationError.js"

/**
 * Real libSQL servers (`sqld` processes) on loopback ports.
 *
 * @since 0.1.0
 */
export * as SqldServers from "./SqldServers.js"

/**
 * What a workload runs against: the pooled layer, or a fresh connection per operation.
 *
 * @since 0.1.0
 */
export * as Target from "./Target.js"

/**
 * Virtual time for exact replays.
 *
 * @since 0.1.0
 */
export * as VirtualClock from "./VirtualClock.js"

/**
 * The workload generator: concurrent fibers running a mix of reads, writes and transactions.
 *
 * @since 0.1.0
 */
export * as Workload from "./Workload.js"
