#!/usr/bin/env node
/**
 * The `sqlsim` executable.
 *
 * @since 0.1.0
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Cli from "./Cli.js"

// The runtime interrupts the work at the first SIGINT or SIGTERM and then stops listening, so a second signal would
// kill the process before the summary of what completed is written. A second one comes at once when the command runs
// under a wrapper that relays the terminal's Ctrl-C to it (tsx, as `pnpm sqlsim` runs it): one within a second of the
// first is ignored; a later one is a user insisting, and ends the process at once.
let firstSignalAt: number | undefined
const onRepeatedSignal = () => {
  const now = Date.now()
  if (firstSignalAt === undefined) firstSignalAt = now
  else if (now - firstSignalAt > 1000) process.exit(130)
}
process.on("SIGINT", onRepeatedSignal)
process.on("SIGTERM", onRepeatedSignal)

Cli.main(process.argv).pipe(
  Effect.provide(NodeContext.layer),
  (program) => NodeRuntime.runMain(program, { disableErrorReporting: true, teardown: Cli.teardown })
)
