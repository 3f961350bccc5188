/**
 * classifyOpenFailure on real open failures: a name longer than the file system allows is permanent and says so
 * (not "directory does not exist", not retried); a missing directory is transient; running out of file descriptors says "too many open files" and
 * what to do.
 */
import { assert, describe, it } from "@effect/vitest"
import { Connector } from "@sqlsim/sqlite-pool"
import Database from "better-sqlite3"
import * as Effect from "effect/Effect"
import { execFileSync } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { tempDir } from "./utils.js"

/** The error better-sqlite3 throws opening `filename`. */
const openError = (filename: string): unknown => {
  try {
    new Database(filename).close()
  } catch (error) {
    return error
  }
  throw new Error(`${filename} opened`)
}

const connector = fileURLToPath(new URL("../src/Connector.ts", import.meta.url))
const tsx = pathToFileURL(fileURLToPath(new URL("../../../node_modules/tsx/dist/loader.mjs", import.meta.url))).href

describe("classifyOpenFailure", () => {
  it.scoped("a file name longer than the file system allows: permanent, and named as such", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      for (
        const filename of [path.join(directory, `${"n".repeat(300)}.db`), path.join(directory, "d".repeat(300), "x.db")]
      ) {
        const error = Connector.classifyOpenFailure(filename, openError(filename))
        assert.strictEqual(error.transient, false, error.message)
        assert.include(error.reason, "longer than the file system allows")
        assert.notInclude(error.reason, "directory does not exist")
      }
    }))

  it.scoped("a missing directory (better-sqlite3's TypeError, no code): transient, named as such", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "missing", "app.db")
      const error = Connector.classifyOpenFailure(filename, openError(filename))
      assert.strictEqual(error.transient, true, error.message)
      assert.strictEqual(error.code, "SQLITE_CANTOPEN")
      assert.strictEqual(error.reason, "directory does not exist")
    }))

  it("no file descriptor left: 'too many open files' and what to do (in a child with a low descriptor limit)", () => {
    // The child fills its descriptor table, then opens a database: SQLite only says "unable to open database file".
    const script = `
      import Database from "better-sqlite3"
      import * as fs from "node:fs"
      import { classifyOpenFailure } from ${JSON.stringify(pathToFileURL(connector).href)}
      const held = []
      try { for (;;) held.push(fs.openSync("/dev/null", "r")) } catch {}
      let error
      try { new Database(${JSON.stringify(path.join(path.dirname(connector), "never.db"))}) } catch (e) { error = e }
      const classified = classifyOpenFailure("never.db", error)
      for (const fd of held) fs.closeSync(fd)
      console.log(JSON.stringify({ reason: classified.reason, transient: classified.transient }))
    `
    const output = execFileSync(
      "sh",
      ["-c", `ulimit -n 256 && exec "${process.execPath}" --import ${tsx} --input-type=module -e "$0"`, script],
      { cwd: path.dirname(connector), encoding: "utf8" }
    )
    const result = JSON.parse(output.trim().split("\n").pop()!)
    assert.include(result.reason, "too many open files")
    assert.include(result.reason, "ulimit -n")
  })
})
