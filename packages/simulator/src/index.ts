/**
 * @since 0.1.0
 */
export * as FaultInjector from "./FaultInjector.js"
export * as FaultPlan from "./FaultPlan.js"
export * as LockHolder from "./LockHolder.js"
export * as Report from "./Report.js"
export * as ReportHtml from "./ReportHtml.js"
export * as ServerFaults from "./ServerFaults.js"
export * as Simulation from "./Simulation.js"
export * as SimulationError from "./SimulationError.js"
export * as SqldServers from "./SqldServers.js"
export * as Target from "./Target.js"
export * as VirtualClock from "./VirtualClock.js"
export * as Workload from "./Workload.js"
