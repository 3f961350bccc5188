/**
 * A statement's result as `@effect/sql-sqlite-node` gives it: rows as objects (or arrays), blobs as Uint8Array,
 * integers as numbers unless the fiber asked for bigints (`SqlClient.SafeIntegers`). Pure functions, no Effect.
 *
 * @internal
 */
import * as Hrana from "../hranaSocket.js"

/** A statement's result, and whether the fiber asked for integers as bigints. */
export interface Result {
  readonly result: Hrana.StatementResult
  readonly bigints: boolean
}

const maxSafe = BigInt(Number.MAX_SAFE_INTEGER)
const minSafe = BigInt(Number.MIN_SAFE_INTEGER)

/** One value; an integer beyond 2^53 throws (the statement fails) instead of losing precision, unless `bigints`. */
const valueOut = (wire: Hrana.WireValue, bigints: boolean): unknown => {
  const value = Hrana.decodeValue(wire)
  if (typeof value === "bigint" && !bigints) {
    if (value > maxSafe || value < minSafe) throw new RangeError(`integer ${value} is beyond 2^53: use SafeIntegers`)
    return Number(value)
  }
  return value
}

export const toObjects = ({ bigints, result }: Result): Array<Record<string, unknown>> => {
  const names = result.columns
  return result.rows.map((row) => {
    const object: Record<string, unknown> = {}
    for (let index = 0; index < names.length; index++) {
      object[names[index] ?? `${index}`] = valueOut(row[index]!, bigints)
    }
    return object
  })
}

export const toArrays = ({ bigints, result }: Result): Array<Array<unknown>> =>
  result.rows.map((row) => row.map((value) => valueOut(value, bigints)))

/** What a statement that returns no columns did, as better-sqlite3's `run()` says it. */
export const toChanges = ({ bigints, result }: Result) => ({
  changes: result.affectedRowCount,
  lastInsertRowid: result.lastInsertRowid === undefined || bigints
    ? result.lastInsertRowid
    : Number(result.lastInsertRowid)
})
