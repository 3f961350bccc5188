import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { assert, describe, it } from "@effect/vitest"
import { Demo } from "@sqlsim/cli"
import Database from "better-sqlite3"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { eventsOf, filesIn, makeEventsDatabase, tempDir } from "./utils.js"

const run = (options: Demo.Options) => Demo.run(options).pipe(Effect.provide(NodeFileSystem.layer))

const readSummary = (file: string): Demo.Summary => JSON.parse(fs.readFileSync(file, "utf8"))

describe("Demo", () => {
  it.scoped("inserts the labels, reads them back in id order, reuses the connection for the health check", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const input = path.join(directory, "labels.txt")
      const output = path.join(directory, "summary.json")
      fs.writeFileSync(input, "first\r\n\n  second  \nthird\n")
      const result = yield* run({ input, output })
      const summary = readSummary(output)
      assert.strictEqual(result.output, output)
      assert.strictEqual(summary.rows_inserted, 3)
      assert.deepStrictEqual(summary.rows, [
        { id: 1, label: "first" },
        { id: 2, label: "second" },
        { id: 3, label: "third" }
      ])
      assert.strictEqual(summary.pool_stats.created, 1)
      assert.strictEqual(summary.pool_stats.reused, 1)
      assert.strictEqual(summary.pool_stats.acquired, 2)
      assert.strictEqual(summary.pool_stats.in_use, 0)
      assert.isTrue(summary.health.ok)
      assert.match(summary.health.sqlite_version, /^3\.\d+/)
      assert.deepStrictEqual(Object.keys(summary), ["rows_inserted", "rows", "health", "pool_stats"])
      // The file is exactly what `render` gives for the same summary, and no temporary file is left.
      assert.strictEqual(fs.readFileSync(output, "utf8"), Demo.render(summary))
      assert.deepStrictEqual(filesIn(directory), ["labels.txt", "summary.json"])
    }))

  it.scoped("the bundled labels file works with no other input", () =>
    Effect.gen(function*() {
      const output = path.join(yield* tempDir, "summary.json")
      const result = yield* run({ input: Demo.bundledLabels, output })
      assert.isAbove(result.rowsInserted, 0)
      assert.deepStrictEqual(result.preview.map((row) => row.id), readSummary(output).rows.map((row) => row.id))
    }))

  it.scoped("stores quotes, NUL bytes, emoji and SQL text verbatim, as bound parameters", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const labels = [
        `it's "quoted"`,
        "nul\0byte",
        "party 🎉 👩‍💻",
        "Robert'); DROP TABLE events; --",
        "' OR '1'='1",
        "\\backslash\\"
      ]
      const input = path.join(directory, "labels.txt")
      const db = path.join(directory, "events.db")
      fs.writeFileSync(input, labels.join("\n"))
      yield* run({ input, output: path.join(directory, "summary.json"), pool: { filename: db } })
      assert.deepStrictEqual(readSummary(path.join(directory, "summary.json")).rows.map((row) => row.label), labels)
      assert.deepStrictEqual(eventsOf(db)?.map((row) => row.label), labels)
    }))

  it.scoped("an empty file succeeds with 0 rows", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const input = path.join(directory, "empty.txt")
      fs.writeFileSync(input, "")
      const result = yield* run({ input, output: path.join(directory, "summary.json") })
      assert.strictEqual(result.rowsInserted, 0)
      const summary = readSummary(path.join(directory, "summary.json"))
      assert.deepStrictEqual(summary.rows, [])
      assert.strictEqual(summary.pool_stats.reused, 1)
      assert.strictEqual(fs.readFileSync(path.join(directory, "summary.json"), "utf8"), Demo.render(summary))
    }))

  it.scoped("an existing events table is kept: rows_inserted and rows are this run's", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const db = path.join(directory, "events.db")
      const input = path.join(directory, "labels.txt")
      const output = path.join(directory, "summary.json")
      makeEventsDatabase(db, ["older one", "older two"])
      fs.writeFileSync(input, "new one\nnew two\nnew three\n")
      yield* run({ input, output, pool: { filename: db } })
      const summary = readSummary(output)
      assert.strictEqual(summary.rows_inserted, 3)
      assert.deepStrictEqual(summary.rows, [
        { id: 3, label: "new one" },
        { id: 4, label: "new two" },
        { id: 5, label: "new three" }
      ])
      assert.strictEqual(eventsOf(db)?.length, 5)
    }))

  it.scoped("an events table of another shape is a DatabaseError naming the problem; nothing is inserted", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const db = path.join(directory, "events.db")
      const input = path.join(directory, "labels.txt")
      const output = path.join(directory, "summary.json")
      const other = new Database(db)
      other.exec("CREATE TABLE events (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO events (name) VALUES ('x')")
      other.close()
      fs.writeFileSync(input, "one\n")
      const error = yield* Effect.flip(run({ input, output, pool: { filename: db } }))
      assert.strictEqual(error._tag, "DatabaseError")
      assert.include(error.message, "table events has no column named label")
      assert.isFalse(fs.existsSync(output))
      const check = new Database(db)
      assert.deepStrictEqual(check.prepare("SELECT id, name FROM events").all(), [{ id: 1, name: "x" }])
      check.close()
    }))

  it.scoped("more rows than the preview and than one batch: the file has them all, in order", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const input = path.join(directory, "labels.txt")
      const output = path.join(directory, "summary.json")
      const count = Demo.batchSize * 3 + 7
      fs.writeFileSync(input, Array.from({ length: count }, (_, i) => `label ${i + 1}`).join("\n"))
      const result = yield* run({ input, output, previewRows: 5 })
      assert.strictEqual(result.rowsInserted, count)
      assert.deepStrictEqual(result.preview.map((row) => row.id), [1, 2, 3, 4, 5])
      const rows = readSummary(output).rows
      assert.strictEqual(rows.length, count)
      assert.isTrue(rows.every((row, i) => row.id === i + 1 && row.label === `label ${i + 1}`))
    }))

  it.scoped("bad input fails before the database is touched: no database file, no output, old output kept", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const db = path.join(directory, "events.db")
      const output = path.join(directory, "summary.json")
      fs.writeFileSync(output, "previous summary")
      const notUtf8 = path.join(directory, "latin1.txt")
      fs.writeFileSync(notUtf8, Buffer.from("caf\xe9\n", "latin1"))

      const missing = yield* Effect.flip(
        run({ input: path.join(directory, "nope.txt"), output, pool: { filename: db } })
      )
      assert.strictEqual(missing._tag, "InputError")
      const asDirectory = yield* Effect.flip(run({ input: directory, output, pool: { filename: db } }))
      assert.strictEqual(asDirectory._tag, "InputError")
      const badText = yield* Effect.flip(run({ input: notUtf8, output, pool: { filename: db } }))
      assert.strictEqual(badText._tag, "InputError")
      assert.include(badText.message, "not valid UTF-8")

      assert.isFalse(fs.existsSync(db))
      assert.strictEqual(fs.readFileSync(output, "utf8"), "previous summary")
      assert.deepStrictEqual(filesIn(directory), ["latin1.txt", "summary.json"])
    }))

  it.scoped("bad content from a pipe (read once, inside the transaction) is rolled back", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const db = path.join(directory, "events.db")
      const output = path.join(directory, "summary.json")
      const fifo = path.join(directory, "labels.fifo")
      makeEventsDatabase(db, ["kept"])
      execFileSync("mkfifo", [fifo])
      // Several batches of good labels (over many 64 KiB reads) reach the database before the bad byte does.
      const good = Array.from({ length: Demo.batchSize * 4 }, (_, i) => `good ${i} ${"x".repeat(300)}`).join("\n")
      const writer = fs.createWriteStream(fifo)
      writer.on("error", () => {})
      writer.end(Buffer.concat([Buffer.from(`${good}\n`), Buffer.from([0xff, 0x0a]), Buffer.from("after\n")]))

      const error = yield* Effect.flip(run({ input: fifo, output, pool: { filename: db } }))
      assert.strictEqual(error._tag, "InputError")
      assert.include(error.message, `line ${Demo.batchSize * 4 + 1}`)
      assert.deepStrictEqual(eventsOf(db), [{ id: 1, label: "kept" }])
      assert.deepStrictEqual(filesIn(directory).filter((file) => !file.startsWith("events.db")), ["labels.fifo"])
    }))

  it.scoped("an output that cannot be written fails before the database is opened", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const input = path.join(directory, "labels.txt")
      const db = path.join(directory, "events.db")
      fs.writeFileSync(input, "one\n")
      const missingDirectory = yield* Effect.flip(
        run({ input, output: path.join(directory, "no", "summary.json"), pool: { filename: db } })
      )
      assert.strictEqual(missingDirectory._tag, "OutputError")
      assert.include(missingDirectory.message, "does not exist")
      const underAFile = yield* Effect.flip(
        run({ input, output: path.join(input, "summary.json"), pool: { filename: db } })
      )
      assert.strictEqual(underAFile._tag, "OutputError")
      const isDirectory = yield* Effect.flip(run({ input, output: directory, pool: { filename: db } }))
      assert.strictEqual(isDirectory._tag, "OutputError")
      assert.isFalse(fs.existsSync(db))
    }))

  it.scoped("options naming the same file twice are rejected", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const input = path.join(directory, "labels.txt")
      fs.writeFileSync(input, "one\n")
      const sameOutput = yield* Effect.flip(run({ input, output: input }))
      assert.strictEqual(sameOutput._tag, "ConflictError")
      const sameDatabase = yield* Effect.flip(
        run({ input, output: path.join(directory, "s.json"), pool: { filename: input } })
      )
      assert.strictEqual(sameDatabase._tag, "ConflictError")
      assert.strictEqual(fs.readFileSync(input, "utf8"), "one\n")
    }))

  it.scoped("an invalid pool configuration is a typed error naming the field", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const error = yield* Effect.flip(
        run({ input: Demo.bundledLabels, output: path.join(directory, "s.json"), pool: { maxConnections: 0 } })
      )
      assert.strictEqual(error._tag, "PoolConfigError")
      assert.strictEqual((error as { field?: string }).field, "maxConnections")
      assert.deepStrictEqual(filesIn(directory), [])
    }))
})
