/**
 * SQLite's sqlite3_interrupt() for connections in worker threads, through the small extension in
 * `native/sqlsim_interrupt.c` (better-sqlite3 does not expose the call, and its build omits the progress handler).
 * `worker.terminate()` only takes effect when the thread runs JavaScript again; an interrupted statement returns
 * SQLITE_INTERRUPT from SQLite's next jump instruction, so an aggregate or a sort stops within milliseconds instead of
 * running to its first row. The same extension gives the Reader's main-thread connection its time budget
 * (`sqlsim_budget`, readerRoute.ts).
 *
 * The extension is compiled once per process, the first time a worker connection opens, against the headers of the
 * SQLite that better-sqlite3 bundles (its `deps/sqlite3`), with the C compiler of the machine (`$CC`, or `cc`), into a
 * private temporary directory removed at exit. Where that cannot be done (no compiler, a better-sqlite3 without its
 * sources, a compiler that does not finish within 10 seconds) interruption falls back to terminating the worker,
 * which stops the SQLite work at its next row; a process warning (code `SQLSIM_NO_INTERRUPT`) says so, once, at the
 * first worker open.
 *
 * @internal
 */
import Database from "better-sqlite3"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/** What the process can do once the extension is built. */
export interface Interrupter {
  /** the shared object, for the workers to load */
  readonly extension: string
  /** interrupts the connection with this id (its `sqlsim_connection_id()`): true if it was open */
  readonly interrupt: (id: number) => boolean
}

const source = fileURLToPath(new URL("../../native/sqlsim_interrupt.c", import.meta.url))

let building: Promise<Interrupter | undefined> | undefined

/** The interrupter, built on first use; undefined where it cannot be built (then workers are only terminated). */
export const interrupter = (): Promise<Interrupter | undefined> => building ??= build()

const build = async (): Promise<Interrupter | undefined> => {
  const unavailable = (reason: string): undefined => {
    process.emitWarning(
      `cannot build the extension that interrupts SQLite in Reader worker threads (${reason}): a cancelled or ` +
        `timed-out Reader statement stops only at its next row (an aggregate or a sort runs on until its first), ` +
        `and a process exiting meanwhile is killed (SIGKILL); install a C compiler (cc, or set CC) to stop them at once`,
      { code: "SQLSIM_NO_INTERRUPT" }
    )
    return undefined
  }
  try {
    const require = createRequire(import.meta.url)
    const headers = path.join(path.dirname(require.resolve("better-sqlite3/package.json")), "deps", "sqlite3")
    if (!fs.existsSync(path.join(headers, "sqlite3ext.h")) || !fs.existsSync(source)) {
      return unavailable("better-sqlite3 was installed without the SQLite headers")
    }
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), "sqlsim-native-"))
    process.once("exit", () => fs.rmSync(directory, { recursive: true, force: true }))
    const extension = path.join(directory, "sqlsim_interrupt.so")
    const compiler = process.env.CC ?? "cc"
    await new Promise<void>((resolve, reject) =>
      execFile(
        compiler,
        ["-shared", "-fPIC", "-O2", "-I", headers, "-o", extension, source],
        { timeout: 10_000 },
        (error) => error === null ? resolve() : reject(error)
      )
    )
    // One connection on this thread to call it from: sqlite3_interrupt may be called from any thread.
    const caller = new Database(":memory:")
    caller.loadExtension(extension)
    const statement = caller.prepare<[number], { found: number }>("SELECT sqlsim_interrupt(?) AS found")
    return { extension, interrupt: (id) => statement.get(id)?.found === 1 }
  } catch (cause) {
    return unavailable(cause instanceof Error ? cause.message.split("\n")[0]! : String(cause))
  }
}
