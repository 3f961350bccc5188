/**
 * The page check of `health` (`PRAGMA quick_check` or `integrity_check`) in a child process of its own. SQLite runs
 * such a check inside one step of native code, for as long as it takes to read the file: run here, it would keep the
 * event loop, and with it Ctrl-C, waiting until it ended. A child process can be killed at any moment, needs no C
 * compiler (unlike sqlite3_interrupt through an extension), and leaves no thread behind for the exit to wait for.
 *
 * The child opens the file the same way (the same URI, read-only, no busy wait) and writes one JSON line: the rows
 * it read, how long that took, and the error that stopped it, if any. It dies with the command, even one killed with
 * SIGKILL (see `program`).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import { spawn } from "node:child_process"
import { createRequire } from "node:module"

/** What the check read: its rows (one row may hold several lines), and the error that stopped it. */
export interface Outcome {
  readonly rows: ReadonlyArray<string>
  /** how long the check ran in the child (its process's start not included) */
  readonly millis: number
  /** the driver's error, with its SQLite code: the rows before it are still the report */
  readonly error: (Error & { readonly code?: string }) | undefined
}

/** The check, in a thread of the child (CommonJS, `eval`): its data is the JSON of what to check. */
const check = `
const { parentPort, workerData } = require("node:worker_threads")
const { driver, uri, pragma, limit } = JSON.parse(workerData)
const Database = require(driver)
const rows = []
let startedAt = performance.now()
const answer = (error) => {
  const described = error === undefined ? undefined : { code: error.code, message: String(error.message ?? error) }
  parentPort.postMessage(JSON.stringify({ rows, millis: performance.now() - startedAt, error: described }))
}
try {
  const db = new Database(uri, uri === ":memory:" ? { timeout: 0 } : { readonly: true, fileMustExist: true, timeout: 0 })
  startedAt = performance.now()
  for (const row of db.prepare("PRAGMA " + pragma + "(" + limit + ")").pluck().iterate()) rows.push(String(row))
  db.close()
  answer(undefined)
} catch (error) {
  answer(error)
}
`

/**
 * The child's program (run with `node -e`, its one argument the JSON of what to check): the check runs in a thread,
 * and the main thread watches its standard input, a pipe from the command. Its end means the command is gone (killed
 * with SIGKILL too): the child then ends itself at once (SIGKILL: a thread inside SQLite would hold a normal exit).
 * It ignores the terminal's signals: Ctrl-C reaches the whole process group, and a child dying of it could answer
 * "killed" before the command has acted on its own SIGINT; the command kills the child when it is interrupted.
 */
const program = `
const { Worker } = require("node:worker_threads")
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"]) process.on(signal, () => {})
process.stdin.on("end", () => process.kill(process.pid, "SIGKILL")).resume()
const thread = new Worker(${JSON.stringify(check)}, { eval: true, workerData: process.argv[1] })
thread.once("message", (answer) => {
  process.stdout.write(answer + "\\n")
  process.exit(0)
})
`

const driver = createRequire(import.meta.url).resolve("better-sqlite3")

/**
 * Runs `PRAGMA <pragma>(<limit>)` on `uri` in a child process. Interrupting the Effect kills the child at once.
 * Fails (with a sentence) only when the child itself could not run or did not answer.
 */
export const run = (uri: string, pragma: string, limit: number): Effect.Effect<Outcome, string> =>
  Effect.async<Outcome, string>((resume) => {
    const child = spawn(process.execPath, ["-e", program, JSON.stringify({ driver, uri, pragma, limit })], {
      // stdin: a pipe never written to, whose end tells the child the command is gone.
      stdio: ["pipe", "pipe", "pipe"],
      // URI filenames (mode=ro, immutable) need this when the driver loads.
      env: { ...process.env, SQLITE_USE_URI: "1" }
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text))
    child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr = (stderr + text).slice(-2000)))
    child.once("error", (error) => resume(Effect.fail(`cannot start the page check: ${error.message}`)))
    child.stdin.on("error", () => {})
    child.once("close", (code, signal) => {
      child.stdin.destroy()
      const answer = parse(stdout)
      if (answer !== undefined) return resume(Effect.succeed(answer))
      const how = signal === null ? `exited with code ${code}` : `was killed (${signal})`
      const said = stderr.trim().split("\n").pop() ?? ""
      resume(Effect.fail(`the page check's process ${how} without an answer${said === "" ? "" : `: ${said}`}`))
    })
    return Effect.sync(() => {
      child.kill("SIGKILL")
      child.stdin.destroy()
    })
  })

const parse = (stdout: string): Outcome | undefined => {
  try {
    const answer = JSON.parse(stdout) as {
      rows: Array<string>
      millis: number
      error: { code?: string; message: string } | undefined
    }
    const error = answer.error === undefined
      ? undefined
      : Object.assign(
        new Error(answer.error.message),
        answer.error.code === undefined ? {} : { code: answer.error.code }
      )
    return { rows: answer.rows, millis: answer.millis, error }
  } catch {
    return undefined
  }
}
