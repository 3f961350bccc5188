/**
 * Whether a statement only reads, decided from its text: what a Reader connection on a libSQL server runs, and what
 * it refuses, and what the Reader refuses on a writer connection whose connector has no read-only view of its own
 * (`readConnections: 0` on libSQL). A pure function, no Effect.
 *
 * Why a libSQL connection decides itself: sqld has no `PRAGMA query_only`, a replica forwards writes to its primary, and
 * sqld's `describe` on a replica can answer from a stale schema ("no such table" for a table the replica has). The
 * rule errs on the side of refusing: a read it does not recognise is refused, a write is never let through.
 *
 * @internal
 */

/**
 * A string literal, a quoted identifier, or a comment. Each one left unterminated runs to the end of the text (the
 * server refuses such a statement anyway): so no alternative ever fails after scanning ahead, and hostile text
 * (100,000 unclosed brackets) costs one pass instead of a quadratic search.
 */
const literalOrComment =
  /'(?:[^']|'')*(?:'|$)|"(?:[^"]|"")*(?:"|$)|`[^`]*(?:`|$)|\[[^\]]*(?:\]|$)|--[^\n]*|\/\*[\s\S]*?(?:\*\/|$)/g

/** The statement's words: literals and identifiers emptied (`''`), comments as a space, so neither can hide a verb. */
const wordsOf = (sql: string): string =>
  sql.replace(literalOrComment, (token) => token.startsWith("--") || token.startsWith("/*") ? " " : "''").trim()

const readOnlyVerbs = new Set(["SELECT", "VALUES", "EXPLAIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"])
/** A pragma that only reads its value (`PRAGMA journal_mode`: no `=`, no argument), as health checks ask. */
const queryPragma = /^PRAGMA\s+[\w.]+$/i
/** BEGIN IMMEDIATE or EXCLUSIVE takes the write lock: on a replica, the primary's. */
const writeLockingBegin = /^BEGIN\s+(?:IMMEDIATE|EXCLUSIVE)\b/i
const writeVerb = /\b(?:INSERT|UPDATE|DELETE|REPLACE)\b/i

/**
 * Reads are SELECT, VALUES, EXPLAIN, a WITH whose statement has no INSERT, UPDATE, DELETE or REPLACE outside quotes,
 * a query pragma, and transaction control; a BEGIN must be deferred. Everything else is refused, and so is text
 * with a second statement after a `;` (whatever the server would make of it).
 */
export const isReadOnlyStatement = (sql: string): boolean => {
  const words = wordsOf(sql).replace(/;\s*$/, "")
  if (words.includes(";")) return false
  const verb = /^[A-Za-z]+/.exec(words)?.[0]?.toUpperCase() ?? ""
  if (readOnlyVerbs.has(verb)) return true
  if (verb === "BEGIN") return !writeLockingBegin.test(words)
  if (verb === "PRAGMA") return queryPragma.test(words)
  if (verb === "WITH") return !writeVerb.test(words)
  return false
}
