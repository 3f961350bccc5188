import { assert, describe, it } from "@effect/vitest"
import { Health } from "@sqlsim/cli"
import Database from "better-sqlite3"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { eventsOf, filesIn, makeEventsDatabase, tempDir } from "./utils.js"

// Health opens with URI filenames, which better-sqlite3 enables only if this is set before its first open (the
// fixtures below open databases too).
process.env.SQLITE_USE_URI = "1"

describe("Health", () => {
  it.scoped("a database file is healthy, and checking it changes nothing (not even its journal mode)", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const db = path.join(directory, "events.db")
      makeEventsDatabase(db, ["one"])
      const before = fs.readFileSync(db)
      const report = yield* Health.check({ filename: db })
      assert.isTrue(report.ok)
      if (!report.ok) return
      assert.strictEqual(report.database, db)
      assert.strictEqual(report.journal_mode, "delete")
      assert.strictEqual(report.wal_bytes, 0)
      assert.strictEqual(report.wal_frames_not_checkpointed, 0)
      assert.match(report.sqlite_version, /^3\.\d+/)
      assert.deepStrictEqual(fs.readFileSync(db), before)
      assert.deepStrictEqual(eventsOf(db), [{ id: 1, label: "one" }])
    }))

  it.scoped("a WAL database: the -wal's size and its frames not yet checkpointed, read without a checkpoint", () =>
    Effect.gen(function*() {
      const db = path.join(yield* tempDir, "wal.db")
      const writer = new Database(db)
      yield* Effect.addFinalizer(() => Effect.sync(() => writer.close()))
      writer.pragma("journal_mode = wal")
      writer.pragma("wal_autocheckpoint = 0")
      writer.exec("CREATE TABLE t (x BLOB)")
      for (let i = 0; i < 10; i++) writer.prepare("INSERT INTO t VALUES (randomblob(10000))").run()
      const pageSize = writer.pragma("page_size", { simple: true }) as number
      const walBytes = fs.statSync(`${db}-wal`).size
      // A fresh log, never restarted: every frame in it (after the 32-byte header) is one not checkpointed.
      const frames = (walBytes - 32) / (pageSize + 24)
      assert.isAbove(frames, 10)
      // The main file and the log stay as they were (the -shm is the live writer's shared memory: its read marks move).
      const files = () => ["", "-wal"].map((suffix) => fs.readFileSync(db + suffix))
      const before = files()
      const report = yield* Health.check({ filename: db })
      assert.isTrue(report.ok)
      if (!report.ok) return
      assert.strictEqual(report.journal_mode, "wal")
      assert.strictEqual(report.wal_bytes, walBytes)
      assert.strictEqual(report.wal_frames_not_checkpointed, frames)
      assert.deepStrictEqual(files(), before)
      // A checkpoint copies every frame; the -wal keeps its size until the log restarts.
      const [checkpoint] = writer.pragma("wal_checkpoint(PASSIVE)") as Array<
        { busy: number; log: number; checkpointed: number }
      >
      assert.deepStrictEqual(checkpoint, { busy: 0, log: frames, checkpointed: frames })
      const after = yield* Health.check({ filename: db })
      assert.isTrue(after.ok)
      if (!after.ok) return
      assert.strictEqual(after.wal_bytes, walBytes)
      assert.strictEqual(after.wal_frames_not_checkpointed, 0)
    }))

  it.scoped("a missing file is unhealthy and is not created", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const report = yield* Health.check({ filename: path.join(directory, "missing.db") })
      assert.isFalse(report.ok)
      if (report.ok) return
      assert.include(report.error, "does not exist")
      assert.deepStrictEqual(filesIn(directory), [])
    }))

  it.scoped("a file that is not a database, and a directory, are unhealthy at once (not retried)", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const text = path.join(directory, "notes.txt")
      fs.writeFileSync(text, "this is not a database, just some text that is long enough to be read as a header\n")
      const notADatabase = yield* Health.check({ filename: text, retries: 5 })
      assert.isFalse(notADatabase.ok)
      if (!notADatabase.ok) assert.include(notADatabase.error, "not a SQLite database (SQLITE_NOTADB)")
      const asDirectory = yield* Health.check({ filename: directory, retries: 5 })
      assert.isFalse(asDirectory.ok)
      if (!asDirectory.ok) assert.include(asDirectory.error, "directory")
      assert.strictEqual(fs.readFileSync(text, "utf8").startsWith("this is not a database"), true)
    }))

  it.effect("an invalid configuration is a typed error", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Health.check({ filename: "x.db", retries: -1 }))
      assert.strictEqual(error._tag, "PoolConfigError")
      assert.strictEqual(error.field, "retries")
    }))
})
