/**
 * @since 0.1.0
 */
export * as AtomicFile from "./AtomicFile.js"
export * as Cli from "./Cli.js"
export * as Demo from "./Demo.js"
export * as Health from "./Health.js"
export * as Labels from "./Labels.js"
