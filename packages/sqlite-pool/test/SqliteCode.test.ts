import { SqlError } from "@effect/sql/SqlError"
import { describe, expect, it } from "@effect/vitest"
import { Connector, SqliteCode } from "@sqlsim/sqlite-pool"
import Database from "better-sqlite3"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as path from "node:path"
import { tempDir } from "./utils.js"

// sqlite.org's result-code table, sorted as SQLITE.md sorts it.
const transient = [
  "SQLITE_BUSY",
  "SQLITE_BUSY_RECOVERY",
  "SQLITE_BUSY_SNAPSHOT",
  "SQLITE_BUSY_TIMEOUT",
  "SQLITE_LOCKED",
  "SQLITE_LOCKED_SHAREDCACHE",
  "SQLITE_PROTOCOL",
  "SQLITE_CANTOPEN"
]
const fatal = [
  "SQLITE_CORRUPT",
  "SQLITE_CORRUPT_INDEX",
  "SQLITE_NOTADB",
  "SQLITE_IOERR",
  "SQLITE_IOERR_SHORT_READ",
  "SQLITE_IOERR_FSYNC",
  "SQLITE_READONLY_DBMOVED"
]
const caller = [
  "SQLITE_ERROR",
  "SQLITE_CONSTRAINT",
  "SQLITE_CONSTRAINT_UNIQUE",
  "SQLITE_CONSTRAINT_FOREIGNKEY",
  "SQLITE_MISMATCH",
  "SQLITE_TOOBIG",
  "SQLITE_RANGE",
  "SQLITE_MISUSE",
  "SQLITE_AUTH",
  "SQLITE_PERM",
  "SQLITE_READONLY",
  "SQLITE_READONLY_ROLLBACK",
  "SQLITE_NOMEM",
  "SQLITE_FULL",
  "SQLITE_INTERRUPT",
  "SQLITE_ABORT_ROLLBACK"
]

describe("SqliteCode", () => {
  it.each(transient)("%s is transient", (code) => expect(SqliteCode.classify(code)).toBe("transient"))
  it.each(fatal)("%s is fatal to the connection", (code) => expect(SqliteCode.classify(code)).toBe("fatal"))
  it.each(caller)("%s is the caller's problem", (code) => expect(SqliteCode.classify(code)).toBe("caller"))

  it("an unknown code is never retried nor fatal", () => {
    expect(SqliteCode.classify("SQLITE_SOMETHING_NEW")).toBe("caller")
    expect(SqliteCode.classify("UNKNOWN")).toBe("caller")
  })

  it("primary strips the extended part only", () => {
    expect(SqliteCode.primary("SQLITE_IOERR_SHORT_READ")).toBe("SQLITE_IOERR")
    expect(SqliteCode.primary("SQLITE_BUSY_SNAPSHOT")).toBe("SQLITE_BUSY")
    expect(SqliteCode.primary("SQLITE_BUSY")).toBe("SQLITE_BUSY")
  })

  it("primary leaves a name without an underscore as it is", () => {
    expect(SqliteCode.primary("UNKNOWN")).toBe("UNKNOWN")
    expect(SqliteCode.primary("")).toBe("")
  })

  it.prop(
    "every extended code has the classification of its primary code (READONLY_DBMOVED aside)",
    [
      FastCheck.constantFrom(...transient, ...fatal, ...caller).filter((code) => code.split("_").length === 2),
      FastCheck.stringMatching(/^[A-Z]{1,12}$/)
    ],
    ([code, extension]) => {
      const extended = `${code}_${extension}`
      const expected = extended === "SQLITE_READONLY_DBMOVED" ? "fatal" : SqliteCode.classify(code)
      return SqliteCode.classify(extended) === expected
    }
  )

  it("codeOf finds the code through SqlError and other wrappers", () => {
    const driverError = Object.assign(new Error("database disk image is malformed"), { code: "SQLITE_CORRUPT" })
    const sqlError = new SqlError({ cause: driverError, message: "Failed to execute statement" })
    expect(SqliteCode.codeOf(driverError)).toBe("SQLITE_CORRUPT")
    expect(SqliteCode.codeOf(sqlError)).toBe("SQLITE_CORRUPT")
    expect(SqliteCode.codeOf({ cause: { cause: sqlError } })).toBe("SQLITE_CORRUPT")
    expect(SqliteCode.isFatal(sqlError)).toBe(true)
    expect(SqliteCode.isBusy(sqlError)).toBe(false)
  })

  it("codeOf ignores what is not a SQLite code", () => {
    expect(SqliteCode.codeOf(new Error("plain"))).toBeUndefined()
    expect(SqliteCode.codeOf(Object.assign(new Error("fs"), { code: "ENOENT" }))).toBeUndefined()
    expect(SqliteCode.codeOf(undefined)).toBeUndefined()
    expect(SqliteCode.codeOf("SQLITE_BUSY")).toBeUndefined()
    // A cycle of causes ends the search instead of looping.
    const cyclic: { cause?: unknown } = {}
    cyclic.cause = cyclic
    expect(SqliteCode.codeOf(cyclic)).toBeUndefined()
    expect(SqliteCode.isFatal(new Error("plain"))).toBe(false)
  })

  it("codeOf, isFatal and isBusy answer for a null cause or a null error instead of throwing", () => {
    const nullCause = Object.assign(new Error("wrapped"), { cause: null })
    expect(SqliteCode.codeOf(nullCause)).toBeUndefined()
    expect(SqliteCode.codeOf(null)).toBeUndefined()
    expect(SqliteCode.isFatal(nullCause)).toBe(false)
    expect(SqliteCode.isBusy(nullCause)).toBe(false)
  })

  it("isBusy is false for an error without a SQLite code, and for a code that only looks like BUSY", () => {
    expect(SqliteCode.isBusy(new Error("plain"))).toBe(false)
    expect(SqliteCode.isBusy(undefined)).toBe(false)
    expect(SqliteCode.isBusy({ code: "ENOENT" })).toBe(false)
    expect(SqliteCode.isBusy({ code: "SQLITE_BUSYNESS" })).toBe(false)
  })

  it("isBusy is true for BUSY and LOCKED and their extended codes", () => {
    expect(SqliteCode.isBusy({ code: "SQLITE_BUSY" })).toBe(true)
    expect(SqliteCode.isBusy({ code: "SQLITE_BUSY_SNAPSHOT" })).toBe(true)
    expect(SqliteCode.isBusy({ code: "SQLITE_LOCKED" })).toBe(true)
    expect(SqliteCode.isBusy({ code: "SQLITE_PROTOCOL" })).toBe(false)
    expect(SqliteCode.isBusy({ code: "SQLITE_CONSTRAINT" })).toBe(false)
  })

  // The codes above as the real driver reports them, through the connector's SqlError.
  it.scoped("classifies the errors SQLite really raises", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const filename = path.join(directory, "real.db")
      const live = yield* Connector.makeLive
      const connection = yield* live.connect({
        filename,
        readOnly: false,
        busyTimeout: Duration.zero,
        pageCacheKiB: 2000
      })
      const sql = yield* Connector.client(connection, filename)
      yield* sql`CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)`
      yield* sql`INSERT INTO item (name) VALUES ('a')`

      const failure = (statement: Effect.Effect<unknown, SqlError>) => Effect.flip(statement)
      const duplicate = yield* failure(sql`INSERT INTO item (name) VALUES ('a')`)
      expect(SqliteCode.codeOf(duplicate)).toBe("SQLITE_CONSTRAINT_UNIQUE")
      expect(SqliteCode.classify(SqliteCode.codeOf(duplicate)!)).toBe("caller")

      const syntax = yield* failure(sql.unsafe("SELEC 1"))
      expect(SqliteCode.codeOf(syntax)).toBe("SQLITE_ERROR")
      expect(SqliteCode.isFatal(syntax)).toBe(false)

      // A second connection that holds the write lock makes this one's write BUSY (busy_timeout is 0 here).
      const other = new Database(filename)
      yield* Effect.addFinalizer(() => Effect.sync(() => other.close()))
      other.exec("BEGIN IMMEDIATE")
      const busy = yield* failure(sql`INSERT INTO item (name) VALUES ('b')`)
      other.exec("ROLLBACK")
      expect(SqliteCode.primary(SqliteCode.codeOf(busy)!)).toBe("SQLITE_BUSY")
      expect(SqliteCode.isBusy(busy)).toBe(true)
      expect(SqliteCode.classify(SqliteCode.codeOf(busy)!)).toBe("transient")
    }))
})
