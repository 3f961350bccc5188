/**
 * What the libSQL server's errors mean, alone: sqld's codes as SQLite codes the pool classifies, the cause a failed
 * statement carries, and which failed connects are worth retrying (by class and code, never by message text).
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { HranaServerError, HranaTransportError } from "../src/internal/hranaSocket.js"
import {
  classifyConnectFailure,
  LibsqlStatementError,
  sqliteCodeOf,
  statementFailure
} from "../src/internal/libsql/errorCodes.js"
import * as SqliteCode from "../src/SqliteCode.js"

describe("libSQL error codes", () => {
  it("name sqld's error codes as SQLite codes the pool classifies", () => {
    expect(sqliteCodeOf("SQLITE_CONSTRAINT", "SQLite error: UNIQUE constraint failed: t.v"))
      .toBe("SQLITE_CONSTRAINT_UNIQUE")
    expect(sqliteCodeOf("SQLITE_CONSTRAINT", "SQLite error: FOREIGN KEY constraint failed"))
      .toBe("SQLITE_CONSTRAINT_FOREIGNKEY")
    expect(sqliteCodeOf("SQLITE_CONSTRAINT", "cannot store TEXT value in INTEGER column t.i"))
      .toBe("SQLITE_CONSTRAINT_DATATYPE")
    expect(sqliteCodeOf("SQLITE_CONSTRAINT", "something new")).toBe("SQLITE_CONSTRAINT")
    expect(sqliteCodeOf("SQLITE_UNKNOWN", "no such table: x")).toBe("SQLITE_ERROR")
    expect(sqliteCodeOf("SQL_PARSE_ERROR", "syntax error")).toBe("SQLITE_ERROR")
    expect(sqliteCodeOf("ARGS_INVALID", "")).toBe("SQLITE_RANGE")
    expect(sqliteCodeOf("TRANSACTION_BUSY", "")).toBe("SQLITE_BUSY")
    expect(sqliteCodeOf("TRANSACTION_TIMEOUT", "")).toBe("SQLITE_ABORT_ROLLBACK")
    expect(sqliteCodeOf("SQLITE_IOERR", "")).toBe("SQLITE_IOERR")
    expect(sqliteCodeOf(undefined, "")).toBeUndefined()
    expect(SqliteCode.isBusy({ code: sqliteCodeOf("TRANSACTION_BUSY", "") })).toBe(true)
    expect(SqliteCode.classify(sqliteCodeOf("TRANSACTION_TIMEOUT", "")!)).toBe("caller")
  })

  it("a code that is neither SQLite's nor a known sqld one is no SQLite code, whatever it looks like", () => {
    for (const code of ["", "SQLITE_", "sqlite_busy", "SQLITE_BUSY; DROP", "__proto__", "constructor", "toString"]) {
      expect([code, sqliteCodeOf(code, "")]).toEqual([code, undefined])
    }
    FastCheck.assert(FastCheck.property(FastCheck.string(), FastCheck.string({ maxLength: 2_000 }), (code, text) => {
      const mapped = sqliteCodeOf(code, text)
      return mapped === undefined || /^SQLITE_[A-Z_]+$/.test(mapped)
    }))
    // A long hostile message costs one pass, not a backtracking search.
    const started = performance.now()
    sqliteCodeOf("SQLITE_CONSTRAINT", "cannot store ".repeat(20_000) + "value in ".repeat(20_000))
    expect(performance.now() - started).toBeLessThan(500)
  })

  it("a statement's failure carries the server's code and the SQLite one", () => {
    const refused = statementFailure(new HranaServerError("UNIQUE constraint failed: t.v", "SQLITE_CONSTRAINT"))
    expect(refused).toMatchObject({
      _tag: "LibsqlStatementError",
      code: "SQLITE_CONSTRAINT_UNIQUE",
      libsqlCode: "SQLITE_CONSTRAINT"
    })
    expect(SqliteCode.codeOf({ cause: refused })).toBe("SQLITE_CONSTRAINT_UNIQUE")
    const lost = statementFailure(new HranaTransportError("gone", { code: "ECONNRESET" }))
    expect(lost).toMatchObject({ code: undefined, libsqlCode: undefined, message: "gone" })
    const own = new LibsqlStatementError("behind", undefined, "REPLICA_BEHIND", undefined)
    expect(statementFailure(own)).toBe(own)
    expect(statementFailure("a string")).toMatchObject({ message: "a string", code: undefined })
  })

  it("classifies network failures as transient and rejections as permanent", () => {
    const transport = (message: string, options: { code?: string; status?: number } = {}) =>
      new HranaTransportError(message, options)
    const refused = classifyConnectFailure(transport("connect ECONNREFUSED", { code: "ECONNREFUSED" }), undefined)
    expect(refused).toMatchObject({ code: "SQLITE_CANTOPEN", transient: true, reason: "connect ECONNREFUSED" })
    const closed = transport("the server closed the connection (WebSocket 1006)", { code: "ECONNRESET" })
    expect(classifyConnectFailure(closed, undefined).transient).toBe(true)
    expect(classifyConnectFailure(closed, 401)).toMatchObject({ code: "SQLITE_AUTH", transient: false })
    const upgrade = classifyConnectFailure(transport("refused", { status: 403 }), undefined)
    expect(upgrade).toMatchObject({ code: "SQLITE_AUTH", transient: false })
    const hello = classifyConnectFailure(new HranaServerError("no token", "AUTH_HEADER_NOT_FOUND"), undefined)
    expect(hello).toMatchObject({ code: "SQLITE_AUTH", transient: false })
    const busy = classifyConnectFailure(new HranaServerError("busy", "TRANSACTION_BUSY"), undefined)
    expect(busy).toMatchObject({ code: "SQLITE_BUSY", transient: true })
    const notSqld = classifyConnectFailure(transport("refused", { status: 404 }), undefined)
    expect(notSqld).toMatchObject({ code: "SQLITE_CANTOPEN", transient: false })
    const restarting = classifyConnectFailure(transport("refused", { status: 503 }), undefined)
    expect(restarting).toMatchObject({ code: "SQLITE_CANTOPEN", transient: true })
    const timedOut = classifyConnectFailure(transport("no answer", { code: "ETIMEDOUT" }), undefined)
    expect(timedOut.transient).toBe(true)
    const strange = classifyConnectFailure(new Error("something else entirely"), undefined)
    expect(strange).toMatchObject({ code: "UNKNOWN", transient: false })
  })

  it("decides by class and code, never by what a message says", () => {
    // A message that reads like a network failure, from something that is not a transport error, or without a
    // network code, is not retried: retrying what is not understood would be a retry storm.
    const wordy = "connect ECONNREFUSED socket hang up ETIMEDOUT"
    expect(classifyConnectFailure(new Error(wordy), undefined)).toMatchObject({ code: "UNKNOWN", transient: false })
    expect(classifyConnectFailure(new HranaTransportError(wordy, {}), undefined).transient).toBe(false)
    expect(classifyConnectFailure(new HranaServerError(wordy, undefined), undefined)).toMatchObject({
      code: "UNKNOWN",
      transient: false
    })
    // and a network code is recognised whatever the message says
    expect(classifyConnectFailure(new HranaTransportError("", { code: "EHOSTUNREACH" }), undefined).transient)
      .toBe(true)
    for (const cause of [undefined, null, 42, { code: "ECONNREFUSED" }]) {
      expect(classifyConnectFailure(cause, undefined)).toMatchObject({ code: "UNKNOWN", transient: false })
    }
  })
})
