/**
 * The set-up and statement cache that the main thread and the worker threads share (`sqliteSetup.mjs`), on real
 * SQLite handles: the pragmas it leaves, the typed errors it throws, and the cache's size and time to live.
 */
import { describe, expect, it, vi } from "@effect/vitest"
import Database from "better-sqlite3"
import * as Effect from "effect/Effect"
import * as path from "node:path"
import { setUp, StatementCache } from "../src/internal/sqliteSetup.mjs"
import { tempDir } from "./utils.js"

const settings = (filename: string) => ({ filename, readOnly: false, busyTimeoutMs: 300, pageCacheKiB: 100 })

describe("sqliteSetup", () => {
  it.scoped("setUp leaves a file in WAL with the configured pragmas; a read-only connection gets query_only", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "app.db")
      const db = new Database(filename)
      setUp(db, settings(filename))
      expect(db.pragma("journal_mode", { simple: true })).toBe("wal")
      expect(db.pragma("busy_timeout", { simple: true })).toBe(300)
      expect(db.pragma("cache_size", { simple: true })).toBe(-100)
      expect(db.pragma("foreign_keys", { simple: true })).toBe(1)
      db.close()
      const reader = new Database(filename)
      setUp(reader, { ...settings(filename), readOnly: true })
      expect(reader.pragma("query_only", { simple: true })).toBe(1)
      reader.close()
    }))

  it.scoped("an extension that does not load is an ExtensionLoadError, recognised by its tag", () =>
    Effect.gen(function*() {
      const filename = path.join(yield* tempDir, "app.db")
      const db = new Database(filename)
      const extension = path.join(path.dirname(filename), "missing.so")
      let thrown: unknown
      try {
        setUp(db, { ...settings(filename), extensions: [extension] })
      } catch (error) {
        thrown = error
      }
      db.close()
      expect(thrown).toMatchObject({ _tag: "ExtensionLoadError", extension })
      expect((thrown as Error).message).toMatch(/^cannot load the extension .*missing\.so: /)
    }))

  it("the cache keeps `size` statements, least recently used out first; an expired one is prepared afresh", () => {
    const db = new Database(":memory:")
    // The cache reads Date.now (it needs nothing from Effect, so no TestClock): a fake clock that moves on request.
    vi.useFakeTimers({ toFake: ["Date"], now: 1_000 })
    try {
      const cache = new StatementCache(db, { size: 2, timeToLiveMillis: 100 })
      const one = cache.prepare("SELECT 1")
      const two = cache.prepare("SELECT 2")
      expect(cache.prepare("SELECT 1")).toBe(one)
      cache.prepare("SELECT 3") // evicts SELECT 2, the least recently used
      expect(cache.prepare("SELECT 1")).toBe(one)
      expect(cache.prepare("SELECT 2")).not.toBe(two)
      vi.setSystemTime(1_100)
      expect(cache.prepare("SELECT 1")).not.toBe(one)
      const fresh = cache.prepare("SELECT 3")
      cache.clear()
      expect(cache.prepare("SELECT 3")).not.toBe(fresh)
      const none = new StatementCache(db, { size: 0, timeToLiveMillis: 100 })
      expect(none.prepare("SELECT 1")).not.toBe(none.prepare("SELECT 1"))
    } finally {
      vi.useRealTimers()
      db.close()
    }
  })
})
