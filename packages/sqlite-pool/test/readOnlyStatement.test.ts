/**
 * The read-only classifier of a Reader connection on a libSQL server, alone: what it lets through, what it refuses,
 * and that no text (comments, quotes, a second statement, pathological input) gets a write past it.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { isReadOnlyStatement } from "../src/internal/readOnlyStatement.js"

const classified = (statements: ReadonlyArray<string>) =>
  statements.map((sql) => [sql, isReadOnlyStatement(sql)] as const)
const all = (statements: ReadonlyArray<string>, readOnly: boolean) => statements.map((sql) => [sql, readOnly])

describe("libSQL read-only classifier", () => {
  it("lets reads and transaction control through", () => {
    const reads = [
      "SELECT * FROM t",
      "  -- a comment\n/* another */ select 1",
      "VALUES (1)",
      "EXPLAIN QUERY PLAN SELECT 1",
      "WITH x AS (SELECT 'insert into t' AS s) SELECT s, updated_at FROM x",
      "WITH x AS (SELECT \"delete\" FROM t) SELECT * FROM x",
      "BEGIN",
      "BEGIN DEFERRED TRANSACTION",
      "COMMIT",
      "END",
      "ROLLBACK TO SAVEPOINT a",
      "SAVEPOINT a",
      "RELEASE a",
      "PRAGMA journal_mode",
      "PRAGMA main.journal_mode;",
      "SELECT 1;",
      "SELECT 'a;b' AS s",
      "SELECT 1 -- ; DELETE FROM t",
      // a write verb in a comment is no write
      "WITH x AS (SELECT 1 /* delete */) SELECT * FROM x"
    ]
    expect(classified(reads)).toEqual(all(reads, true))
  })

  it("refuses writes, schema changes and write-locking transactions", () => {
    const writes = [
      "INSERT INTO t VALUES (1)",
      "update t set v = 1",
      "DELETE FROM t",
      "REPLACE INTO t VALUES (1)",
      "CREATE TABLE u (x)",
      "DROP TABLE t",
      "ALTER TABLE t ADD c",
      "WITH x AS (SELECT 1) DELETE FROM t",
      "BEGIN IMMEDIATE",
      "begin exclusive",
      "PRAGMA journal_mode = DELETE",
      "PRAGMA user_version(3)",
      "ATTACH 'x.db' AS x",
      "VACUUM",
      "ANALYZE",
      "/* SELECT */ INSERT INTO t VALUES (1)",
      ""
    ]
    expect(classified(writes)).toEqual(all(writes, false))
  })

  it("a comment, a quote or a second statement hides no write", () => {
    const hostile = [
      // a comment between BEGIN and IMMEDIATE still takes the write lock
      "BEGIN /* deferred */ IMMEDIATE",
      "BEGIN -- x\n EXCLUSIVE",
      // a second statement after a read
      "SELECT 1; DELETE FROM t",
      "SELECT ';'; INSERT INTO t VALUES (1)",
      "PRAGMA journal_mode; PRAGMA journal_mode = DELETE",
      "WITH x AS (SELECT 1) /* select */ UPDATE t SET v = 1",
      // quotes that close where a naive reader would not think
      "WITH x AS (SELECT 'it''s' AS s) DELETE FROM t",
      "WITH [a]]b] AS (SELECT 1) DELETE FROM t",
      // only a comment, or only whitespace
      "-- SELECT 1",
      "/* SELECT 1 */",
      "   \n\t "
    ]
    expect(classified(hostile)).toEqual(all(hostile, false))
  })

  it("never throws, and pathological text costs one pass", () => {
    FastCheck.assert(FastCheck.property(FastCheck.string({ maxLength: 300 }), (sql) => {
      isReadOnlyStatement(sql)
      // Text that starts with a write verb is never a read, whatever follows.
      return !isReadOnlyStatement(`DELETE FROM t ${sql}`)
    }))
    const pathological = [
      "[".repeat(100_000),
      "[a".repeat(50_000),
      "'".repeat(100_001),
      "`".repeat(100_001),
      "/*".repeat(50_000),
      "-- ".repeat(30_000),
      "WITH " + "(".repeat(100_000),
      "SELECT " + " ".repeat(100_000) + "x"
    ]
    const started = performance.now()
    for (const sql of pathological) isReadOnlyStatement(sql)
    // Each took about a millisecond; the unterminated brackets took 13 s before they were matched to the end.
    expect(performance.now() - started).toBeLessThan(1_000)
  })
})
