/**
 * A libSQL result shaped as `@effect/sql-sqlite-node` shapes one, alone (no server): objects, arrays, what a write
 * did, and integers beyond 2^53 refused unless the fiber asked for bigints.
 */
import { describe, expect, it } from "@effect/vitest"
import type { StatementResult, WireValue } from "../src/internal/hranaSocket.js"
import { toArrays, toChanges, toObjects } from "../src/internal/libsql/rows.js"

const result = (
  columns: ReadonlyArray<string | null>,
  rows: ReadonlyArray<ReadonlyArray<WireValue>>,
  extra: Partial<StatementResult> = {}
): StatementResult => ({
  columns,
  rows,
  affectedRowCount: 0,
  lastInsertRowid: undefined,
  replicationIndex: undefined,
  ...extra
})

describe("libSQL rows", () => {
  it("values come out as better-sqlite3 gives them", () => {
    const row: ReadonlyArray<WireValue> = [
      { type: "integer", value: "-42" },
      { type: "float", value: 1.5 },
      { type: "text", value: "héllo" },
      { type: "blob", base64: Buffer.from([0, 255]).toString("base64") },
      { type: "null" }
    ]
    const shaped = result(["i", "r", "s", "b", null], [row])
    expect(toObjects({ result: shaped, bigints: false })).toEqual([
      { i: -42, r: 1.5, s: "héllo", b: new Uint8Array([0, 255]), 4: null }
    ])
    expect(toArrays({ result: shaped, bigints: true })).toEqual([[-42n, 1.5, "héllo", new Uint8Array([0, 255]), null]])
  })

  it("an integer beyond 2^53 is refused unless bigints were asked for, never rounded", () => {
    const big = result(["i"], [[{ type: "integer", value: (2n ** 62n).toString() }]])
    expect(() => toObjects({ result: big, bigints: false })).toThrow(/beyond 2\^53: use SafeIntegers/)
    expect(toObjects({ result: big, bigints: true })).toEqual([{ i: 2n ** 62n }])
    const edge = result(["i"], [[{ type: "integer", value: String(Number.MIN_SAFE_INTEGER) }]])
    expect(toArrays({ result: edge, bigints: false })).toEqual([[Number.MIN_SAFE_INTEGER]])
  })

  it("what a write did: changes, and the last rowid as a number unless bigints were asked for", () => {
    const write = result([], [], { affectedRowCount: 2, lastInsertRowid: 7n })
    expect(toChanges({ result: write, bigints: false })).toEqual({ changes: 2, lastInsertRowid: 7 })
    expect(toChanges({ result: write, bigints: true })).toEqual({ changes: 2, lastInsertRowid: 7n })
  })
})
