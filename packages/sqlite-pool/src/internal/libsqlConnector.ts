/**
 * One pool connection on a libSQL server (`sqld`, the server behind Turso): one Hrana stream over one WebSocket.
 *
 * Why a Hrana stream, and not `@libsql/client` or `@effect/sql-libsql`: the pool runs transactions as statements
 * (`BEGIN IMMEDIATE` ... `COMMIT`, savepoints) on the connection it leased, so every statement of a lease must reach
 * the same server-side SQLite connection. A Hrana stream is exactly that (the protocol's "database connection").
 * `@libsql/client` opens a fresh stream for every `execute` and keeps one only inside its own `transaction()` object,
 * and `@effect/sql-libsql` (0.42, on `@libsql/client` 0.12) is a whole `SqlClient` with its own transactions and no
 * `executeStream`; neither can be driven by the pool's lanes. The protocol itself is in `hranaSocket.ts` (why not
 * `@libsql/hrana-client`: see there).
 *
 * Why WebSocket and not Hrana over HTTP: over HTTP a stream is a baton passed between requests that the server
 * expires after a few idle seconds, and nothing tells the client that the server went away until the next request.
 * Over WebSocket the stream lives as long as the socket, and a lost socket is known at once, which is what makes
 * `check()` O(1).
 *
 * What sqld does not have that a file connection does: `PRAGMA query_only` and `PRAGMA busy_timeout` are rejected
 * ("unsupported statement"), and a replica forwards writes to its primary. So a read-only connection refuses writes
 * itself (`isReadOnlyStatement`); and lock waits are the server's (sqld waits for a held write lock, then after about 5 s rolls the
 * holder's transaction back: TRANSACTION_TIMEOUT, mapped to SQLITE_ABORT_ROLLBACK).
 *
 * Replication: every result carries the server's replication index. A statement run while
 * `minimumReplicationIndex` is set makes a replica wait until it has applied that position before it answers: that
 * is read-your-writes (the position is what the primary reported after the write). sqld numbers its log afresh when
 * it restarts, so a position carries the generation of the numbering it belongs to; which generations there were,
 * and which one each replica follows, only the connector of a whole cluster can tell (`LibsqlConnector`): a
 * connection asks it through `generation` and `indexToAwait`.
 *
 * @internal
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { InvalidConnection } from "../Connector.js"
import { ConnectError } from "../PoolError.js"
import { ClosedConnection } from "./driverConnection.js"
import * as Hrana from "./hranaSocket.js"

/**
 * How to open one connection to a libSQL server.
 */
export interface LibsqlConnectOptions {
  /** `ws://`, `wss://`, `http://`, `https://` (the same server, over WebSocket) or `libsql://` (TLS unless `?tls=0`) */
  readonly url: string
  /** a JWT for servers started with `--auth-jwt-key-file` (Turso's database token) */
  readonly authToken?: string | Redacted.Redacted<string> | undefined
  /** a Reader connection: statements that would write fail with a SqlError whose cause has code SQLITE_READONLY */
  readonly readOnly: boolean
  /** how long the handshake (TCP, WebSocket upgrade, authentication, a first `SELECT 1`) and a `validate` may take */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** how long a statement waits for the server to reach `minimumReplicationIndex` (default 2 seconds) */
  readonly replicationWaitTimeout?: Duration.DurationInput | undefined
  /**
   * A writer's connection: after each statement the fiber's `minimumReplicationIndex` is raised to the index the
   * primary reported, so that the fiber's later reads on a replica see what it wrote (and read) there.
   */
  readonly raiseFiberIndex?: boolean | undefined
  /** the generation of the primary's numbering the indexes this connection reports belong to (default 0) */
  readonly generation?: (() => number) | undefined
  /**
   * A Reader connection: the index, in its server's numbering, a statement must wait for to include `position`;
   * undefined when no wait is needed; "unknown" when the server's numbering cannot be compared with the position's
   * (a replica that has not followed a primary's restart yet). Default: the position's index.
   */
  readonly indexToAwait?: ((position: ReplicationPosition) => bigint | undefined | "unknown") | undefined
  /** called with the index reported by the handshake (`opening`) and by every result (lag tracking) */
  readonly onReplicationIndex?: ((index: bigint, opening: boolean) => void) | undefined
}

/**
 * A point in the primary's replication log: an index and the generation of the numbering it is in (sqld numbers
 * its log afresh, from 1, when it restarts; the connector counts the restarts it notices).
 */
export interface ReplicationPosition {
  readonly generation: number
  readonly index: bigint
}

/**
 * One open connection, in the shape of the Connector seam (`Connector.Connection`).
 */
export interface LibsqlConnection {
  readonly connection: SqlConnection.Connection
  readonly validate: Effect.Effect<void, InvalidConnection>
  readonly check: () => string | undefined
  /** the WebSocket URL connected to (no token) */
  readonly url: string
  /** the replication index the server reported with the last result on this connection */
  readonly replicationIndex: () => bigint | undefined
}

/**
 * While set, a statement runs only once the server has applied this replication index: on a replica, once it has
 * caught up with the write that produced the index (a primary has it already). A connection whose server has not
 * confirmed this index yet asks it to wait for it (one HTTP request, the server waits: sqld honours an index sent
 * over HTTP, not over WebSocket), or gives up after `replicationWaitTimeout` with a `LibsqlStatementError` whose
 * `libsqlCode` is "REPLICA_BEHIND".
 */
export const minimumReplicationIndex: FiberRef.FiberRef<ReplicationPosition | undefined> = FiberRef.unsafeMake<
  ReplicationPosition | undefined
>(undefined)

/**
 * A statement failure from the server, with the SQLite code where one applies (`SqliteCode.codeOf` finds it):
 * `code` is the SQLite name ("SQLITE_CONSTRAINT_UNIQUE"), `libsqlCode` what sqld said ("SQLITE_CONSTRAINT",
 * "SQL_PARSE_ERROR", "TRANSACTION_TIMEOUT"), undefined when the transport failed rather than the statement.
 */
export class LibsqlStatementError extends Error {
  readonly code: string | undefined
  readonly libsqlCode: string | undefined
  constructor(message: string, code: string | undefined, libsqlCode: string | undefined, cause: unknown) {
    super(message, { cause })
    this.name = "LibsqlStatementError"
    this.code = code
    this.libsqlCode = libsqlCode
  }
}

const defaultConnectTimeout = Duration.seconds(5)
const defaultReplicationWaitTimeout = Duration.seconds(2)

/** sqld's reports a constraint failure as plain SQLITE_CONSTRAINT; SQLite's message names which kind it was. */
const constraintKinds: ReadonlyArray<readonly [RegExp, string]> = [
  // SQLite reports a PRIMARY KEY violation with this message too (its extended code would be _PRIMARYKEY).
  [/UNIQUE constraint failed/, "SQLITE_CONSTRAINT_UNIQUE"],
  [/NOT NULL constraint failed/, "SQLITE_CONSTRAINT_NOTNULL"],
  [/FOREIGN KEY constraint failed/, "SQLITE_CONSTRAINT_FOREIGNKEY"],
  [/CHECK constraint failed/, "SQLITE_CONSTRAINT_CHECK"],
  [/datatype mismatch|cannot store .* value in .* column/, "SQLITE_CONSTRAINT_DATATYPE"]
]

/**
 * The SQLite code for a code sqld sent with a statement error. sqld names SQLite's primary codes ("SQLITE_BUSY"),
 * reports SQLITE_ERROR itself as "SQLITE_UNKNOWN" (rusqlite has no name for it) and adds codes of its own.
 */
export const sqliteCodeOf = (libsqlCode: string | undefined, message: string): string | undefined => {
  switch (libsqlCode) {
    case undefined:
      return undefined
    case "SQLITE_CONSTRAINT":
      return constraintKinds.find(([pattern]) => pattern.test(message))?.[1] ?? libsqlCode
    case "SQLITE_UNKNOWN":
    case "SQL_PARSE_ERROR":
    case "SQL_INPUT_ERROR":
    case "SQL_NO_STATEMENT":
    case "SQL_MANY_STATEMENTS":
    case "ARGS_BOTH_POSITIONAL_AND_NAMED":
    case "PROXY_ERROR":
      return "SQLITE_ERROR"
    case "ARGS_INVALID":
      return "SQLITE_RANGE"
    // another connection held the write lock for too long: sqld rolled this connection's transaction back
    case "TRANSACTION_TIMEOUT":
      return "SQLITE_ABORT_ROLLBACK"
    case "TRANSACTION_BUSY":
      return "SQLITE_BUSY"
    case "RESPONSE_TOO_LARGE":
      return "SQLITE_TOOBIG"
    case "BLOCKED":
      return "SQLITE_PERM"
    default:
      return libsqlCode.startsWith("SQLITE_") ? libsqlCode : undefined
  }
}

const statementError = (cause: unknown): SqlError => {
  if (cause instanceof LibsqlStatementError) {
    return new SqlError({ message: `Failed to execute statement: ${cause.message}`, cause })
  }
  if (cause instanceof Hrana.HranaServerError) {
    const code = sqliteCodeOf(cause.code, cause.message)
    return new SqlError({
      message: `Failed to execute statement: ${cause.message}`,
      cause: new LibsqlStatementError(cause.message, code, cause.code, cause)
    })
  }
  const message = cause instanceof Error ? cause.message : String(cause)
  return new SqlError({
    message: `Failed to execute statement: ${message}`,
    cause: new LibsqlStatementError(message, undefined, undefined, cause)
  })
}

const replicaBehind = (wanted: bigint, reached: bigint | undefined, waitedMs: number): LibsqlStatementError =>
  new LibsqlStatementError(
    `the server did not reach replication index ${wanted} within ${waitedMs} ms ` +
      `(it is at ${reached ?? "an unknown index"}): the replica is behind`,
    undefined,
    "REPLICA_BEHIND",
    undefined
  )

const replicaNotFollowing = (position: ReplicationPosition): LibsqlStatementError =>
  new LibsqlStatementError(
    `the replica has not followed the primary's restart yet, so it cannot tell whether it has replication index ` +
      `${position.index} of the restarted primary: the replica is behind`,
    undefined,
    "REPLICA_BEHIND",
    undefined
  )

const readOnlyError = (sql: string): SqlError => {
  const message = `attempt to write a readonly database: a Reader connection refuses ${sql.trim().slice(0, 60)}`
  return new SqlError({ message, cause: new LibsqlStatementError(message, "SQLITE_READONLY", undefined, undefined) })
}

/**
 * The WebSocket URL for a configured URL, or why it is not one. `http(s)` names the same sqld port (it serves Hrana
 * over WebSocket there); `libsql://` is Turso's scheme, TLS unless `?tls=0`.
 */
export const webSocketUrl = (url: string): { readonly url: string } | { readonly error: string } => {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return { error: "not a valid URL" }
  }
  const tls = parsed.searchParams.get("tls")
  parsed.searchParams.delete("tls")
  switch (parsed.protocol) {
    case "ws:":
    case "wss:":
      break
    case "http:":
      parsed.protocol = "ws:"
      break
    case "https:":
      parsed.protocol = "wss:"
      break
    case "libsql:":
      // A URL's scheme cannot be switched between "special" ones (ws, http) and others (libsql): rebuild it.
      parsed = new URL(`${tls === "0" ? "ws" : "wss"}://${parsed.host}${parsed.pathname}${parsed.search}`)
      break
    default:
      return { error: `unsupported scheme ${parsed.protocol} (use ws:, wss:, http:, https: or libsql:)` }
  }
  // Keeping secrets out of the URL keeps them out of error messages, spans and logs, which all show the URL.
  if (parsed.username !== "" || parsed.password !== "" || parsed.searchParams.has("authToken")) {
    return { error: "credentials belong in authToken, not in the URL" }
  }
  return { url: parsed.toString() }
}

/** A URL fit for messages: without credentials or query (where a token could hide). */
const displayUrl = (url: string): string => {
  try {
    const parsed = new URL(url)
    parsed.username = ""
    parsed.password = ""
    parsed.search = ""
    return parsed.toString()
  } catch {
    return "(not a valid URL)"
  }
}

const networkErrorPattern =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EPIPE|EAI_AGAIN|ENOTFOUND|socket hang up|closed the connection/i

/** The message of an error and of its causes, joined. */
const messageChain = (cause: unknown): string => {
  const parts: Array<string> = []
  let current: unknown = cause
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    parts.push(current instanceof Error ? current.message : String(current))
    current = current instanceof Error ? current.cause : undefined
  }
  return parts.join(": ")
}

/**
 * What an HTTP request with the same token says about it: sqld checks a token in the hello after the WebSocket
 * upgrade, and for one it cannot verify it closes the socket without a word (WebSocket 1006); a refusal it does
 * send can be lost to the reset that follows. One request to the HTTP API, made only after a connection failed
 * between the upgrade and the first answer, tells an authentication failure from a server going away.
 */
const httpAuthStatus = async (wsUrl: string, token: string | undefined, timeoutMs: number) => {
  const url = new URL(wsUrl)
  url.protocol = url.protocol === "wss:" ? "https:" : "http:"
  url.pathname = "/v2/pipeline"
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      body: JSON.stringify({ baton: null, requests: [{ type: "close" }] }),
      signal: AbortSignal.timeout(timeoutMs)
    })
    return response.status
  } catch {
    return undefined
  }
}

/**
 * Classifies a failed connect for one attempt. Network failures (refused, reset, unreachable, timed out, the socket
 * closed under the handshake) are transient; a rejected token and anything else the server answered are permanent:
 * retrying them would be a retry storm against a server that will say the same again.
 */
export const classifyConnectFailure = (
  url: string,
  cause: unknown,
  httpStatus: number | undefined
): ConnectError => {
  const error = (code: string, transient: boolean, reason: string) =>
    new ConnectError({ filename: url, attempts: 1, code, transient, reason, elapsedMs: 0, cause })
  if (httpStatus === 401 || httpStatus === 403) {
    return error("SQLITE_AUTH", false, `the server rejected the auth token (HTTP ${httpStatus})`)
  }
  if (cause instanceof Hrana.HranaServerError) {
    if (cause.code !== undefined && /^AUTH_/.test(cause.code)) {
      return error("SQLITE_AUTH", false, `authentication failed: ${cause.message} (${cause.code})`)
    }
    const code = sqliteCodeOf(cause.code, cause.message) ?? "UNKNOWN"
    return error(code, code === "SQLITE_BUSY", cause.message)
  }
  const status = cause instanceof Hrana.HranaTransportError ? cause.status : undefined
  if (status === 401 || status === 403) {
    return error("SQLITE_AUTH", false, `the server rejected the auth token (HTTP ${status})`)
  }
  if (status !== undefined) {
    return error("SQLITE_CANTOPEN", status >= 500, `the server answered HTTP ${status}: is it a libSQL server?`)
  }
  const message = messageChain(cause)
  const code = cause instanceof Hrana.HranaTransportError ? cause.code : undefined
  if (networkErrorPattern.test(`${code ?? ""} ${message}`)) return error("SQLITE_CANTOPEN", true, message)
  return error("UNKNOWN", false, message)
}

const tokenOf = (token: LibsqlConnectOptions["authToken"]): string | undefined =>
  token === undefined ? undefined : Redacted.isRedacted(token) ? Redacted.value(token) : token

/**
 * A value as `@effect/sql-sqlite-node` gives it: blobs as Uint8Array, integers as numbers unless the fiber asked for
 * bigints (`SqlClient.SafeIntegers`); an integer beyond 2^53 then fails the statement instead of losing precision.
 */
const valueOut = (wire: Hrana.WireValue, bigints: boolean): unknown => {
  const value = Hrana.decodeValue(wire)
  if (typeof value === "bigint" && !bigints) {
    if (value > maxSafe || value < minSafe) throw new RangeError(`integer ${value} is beyond 2^53: use SafeIntegers`)
    return Number(value)
  }
  return value
}
const maxSafe = BigInt(Number.MAX_SAFE_INTEGER)
const minSafe = BigInt(Number.MIN_SAFE_INTEGER)

interface Rows {
  readonly result: Hrana.StatementResult
  readonly bigints: boolean
}

const toObjects = ({ bigints, result }: Rows): Array<Record<string, unknown>> => {
  const names = result.columns
  return result.rows.map((row) => {
    const object: Record<string, unknown> = {}
    for (let index = 0; index < names.length; index++) {
      object[names[index] ?? `${index}`] = valueOut(row[index]!, bigints)
    }
    return object
  })
}

const toArrays = ({ bigints, result }: Rows): Array<Array<unknown>> =>
  result.rows.map((row) => row.map((value) => valueOut(value, bigints)))

/** Shapes rows; a value that cannot be given as asked fails the statement (a SqlError, not a defect). */
const shape = <A>(rows: Rows, f: (rows: Rows) => A): Effect.Effect<A, SqlError> =>
  Effect.try({ try: () => f(rows), catch: statementError })

/**
 * Asks the server, over its HTTP API, to answer once it has applied replication index `index`, and returns the index
 * it then reports (undefined when it did not answer within `ms`). sqld waits on its side for a statement that carries
 * an index (over HTTP; over WebSocket it ignores one): one round trip, no polling, and the answer means the frames
 * are applied, not only received. A primary answers at once with its own index.
 */
const waitForIndex = async (
  wsUrl: string,
  token: string | undefined,
  index: bigint,
  ms: number
): Promise<bigint | undefined> => {
  const url = new URL(wsUrl)
  url.protocol = url.protocol === "wss:" ? "https:" : "http:"
  url.pathname = "/v2/pipeline"
  const stmt = { sql: "SELECT 1", replication_index: index.toString() }
  const signal = AbortSignal.timeout(ms)
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      body: JSON.stringify({ baton: null, requests: [{ type: "execute", stmt }, { type: "close" }] }),
      signal
    })
    if (!response.ok) {
      throw new Hrana.HranaTransportError(`the replication wait failed: HTTP ${response.status}`, {
        status: response.status
      })
    }
    const body = (await response.json()) as {
      results?: Array<{ type?: string; response?: { result?: { replication_index?: string | null } } }>
    }
    const reported = body.results?.[0]?.response?.result?.replication_index
    return typeof reported === "string" ? BigInt(reported) : undefined
  } catch (cause) {
    // The bound passed (while connecting, sending or reading the answer): the server is not there yet.
    if (signal.aborted) return undefined
    // The server cannot be reached (it went down): a transport failure, as on the statement's own socket.
    if (cause instanceof Hrana.HranaTransportError) throw cause
    throw new Hrana.HranaTransportError(`the replication wait could not reach the server: ${messageChain(cause)}`, {
      cause
    })
  }
}

/** Rejects a promise that takes longer than `ms`. */
const withDeadline = <A>(promise: Promise<A>, ms: number, what: string): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms (ETIMEDOUT)`)), ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (cause) => {
        clearTimeout(timer)
        reject(cause)
      }
    )
  })

/** A pragma that only reads its value (`PRAGMA journal_mode`: no `=`, no argument), as health checks ask. */
const queryPragma = /^PRAGMA\s+[\w.]+\s*;?\s*$/i
const readOnlyVerbs = new Set(["SELECT", "VALUES", "EXPLAIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"])
const writeVerb = /\b(?:INSERT|UPDATE|DELETE|REPLACE)\b/i

/**
 * Whether a statement only reads, decided here from its text. sqld has no `query_only`, a replica forwards writes to
 * its primary, and sqld's `describe` on a replica can answer from a stale schema ("no such table" for a table the
 * replica has): so the Reader decides itself, without a round trip. Reads are SELECT, VALUES, EXPLAIN, a WITH whose
 * statement has no INSERT, UPDATE, DELETE or REPLACE outside quotes, a query pragma, and transaction control; a
 * BEGIN must be deferred (IMMEDIATE or EXCLUSIVE takes the write lock, on a replica: the primary's). Everything
 * else is refused.
 */
export const isReadOnlyStatement = (sql: string): boolean => {
  const text = sql.replace(/^(?:\s+|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)*/, "")
  const verb = /^[A-Za-z]+/.exec(text)?.[0]?.toUpperCase() ?? ""
  if (readOnlyVerbs.has(verb)) return true
  if (verb === "BEGIN") return !/^BEGIN\s+(?:IMMEDIATE|EXCLUSIVE)\b/i.test(text)
  if (verb === "PRAGMA") return queryPragma.test(text)
  if (verb === "WITH") return !writeVerb.test(text.replace(/'(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\]/g, "''"))
  return false
}

/**
 * Opens one connection: a WebSocket to the server, a Hrana stream on it, verified with `SELECT 1`, all within
 * `connectTimeout`. Closing the Scope closes the socket (the server then drops the stream and rolls back whatever
 * transaction was open on it). One attempt; failures are classified `ConnectError`s, never defects.
 */
export const connect = (options: LibsqlConnectOptions): Effect.Effect<LibsqlConnection, ConnectError, Scope.Scope> => {
  const target = webSocketUrl(options.url)
  return Effect.gen(function*() {
    if ("error" in target) {
      return yield* new ConnectError({
        filename: displayUrl(options.url),
        attempts: 1,
        code: "SQLITE_CANTOPEN",
        transient: false,
        reason: target.error,
        elapsedMs: 0,
        cause: undefined
      })
    }
    const url = target.url
    const token = tokenOf(options.authToken)
    const timeoutMs = Duration.toMillis(Duration.decode(options.connectTimeout ?? defaultConnectTimeout))
    const replicationWaitMs = Duration.toMillis(
      Duration.decode(options.replicationWaitTimeout ?? defaultReplicationWaitTimeout)
    )

    // The handshake is interruptible (acquireRelease alone would make it wait out connectTimeout); an interrupt
    // aborts it and closes the socket, and a connection that did open has its finalizer registered at once.
    const hrana = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async (signal) => {
          try {
            return await Hrana.open(url, token, timeoutMs, signal)
          } catch (cause) {
            const refusedAfterUpgrade = cause instanceof Hrana.HranaTransportError && cause.afterUpgrade
            throw { cause, httpStatus: refusedAfterUpgrade ? await httpAuthStatus(url, token, timeoutMs) : undefined }
          }
        },
        catch: (failure) => {
          const { cause, httpStatus } = failure as { cause: unknown; httpStatus: number | undefined }
          return classifyConnectFailure(url, cause, httpStatus)
        }
      }).pipe(Effect.interruptible),
      (hrana) => Effect.sync(() => hrana.close())
    )

    // Set when a statement was interrupted before the server answered: what it did is unknown (a BEGIN may have
    // opened a transaction), so the connection reports itself unusable and the pool replaces it.
    let interruptedInFlight = false
    let lastReplicationIndex = hrana.openedAtIndex()
    if (lastReplicationIndex !== undefined) options.onReplicationIndex?.(lastReplicationIndex, true)
    const check = (): string | undefined => {
      const closed = hrana.closedReason()
      if (closed !== undefined) return `the connection to the libSQL server was lost: ${closed}`
      if (interruptedInFlight) return "a statement was interrupted before the server answered"
      return undefined
    }

    // A statement on a connection already lost never reaches the server; one whose connection is lost while it runs
    // did, or did not, run. Either way a read on a Reader connection has changed nothing: both say ClosedConnection,
    // which lets the Reader run the statement once more on another connection (outside a transaction).
    const lost = (reason: string) =>
      new SqlError({
        message: `the connection to the libSQL server was lost: ${reason}`,
        cause: new ClosedConnection(reason)
      })
    const call = <A>(run: () => Promise<A>): Effect.Effect<A, SqlError> =>
      Effect.async<A, SqlError>((resume) => {
        const closed = hrana.closedReason()
        if (closed !== undefined) return resume(Effect.fail(lost(closed)))
        let settled = false
        run().then(
          (value) => {
            settled = true
            resume(Effect.succeed(value))
          },
          (cause) => {
            settled = true
            const transport = cause instanceof Hrana.HranaTransportError
            resume(Effect.fail(options.readOnly && transport ? lost(cause.message) : statementError(cause)))
          }
        )
        return Effect.sync(() => {
          if (!settled) interruptedInFlight = true
        })
      })

    const guard = (sql: string): Effect.Effect<void, SqlError> =>
      !options.readOnly || isReadOnlyStatement(sql) ? Effect.void : Effect.fail(readOnlyError(sql))

    const noteIndex = (result: Hrana.StatementResult) => {
      if (result.replicationIndex === undefined) return
      lastReplicationIndex = result.replicationIndex
      options.onReplicationIndex?.(result.replicationIndex, false)
    }
    // A later generation's position replaces an earlier one's: its numbering started again below it.
    const raise = (index: bigint | undefined): Effect.Effect<void> => {
      if (options.raiseFiberIndex !== true || index === undefined) return Effect.void
      const generation = options.generation?.() ?? 0
      return FiberRef.update(
        minimumReplicationIndex,
        (current) =>
          current === undefined || current.generation < generation ||
            (current.generation === generation && current.index < index)
            ? { generation, index }
            : current
      )
    }
    const indexToAwait = (position: ReplicationPosition | undefined): bigint | undefined | "unknown" =>
      !options.readOnly || position === undefined
        ? undefined
        : options.indexToAwait === undefined
        ? position.index
        : options.indexToAwait(position)
    // The index this connection's server has confirmed it applied (only the HTTP wait below sets it: the index a
    // replica reports with a WebSocket result can count frames it has received but not yet made visible).
    let confirmedIndex: bigint | undefined
    // A writer is on the primary, which has every write: only a Reader connection waits.
    const awaitReplication = (index: bigint | undefined): Effect.Effect<void, SqlError> =>
      index === undefined || (confirmedIndex !== undefined && confirmedIndex >= index) ?
        Effect.void :
        call(async () => {
          const reached = await waitForIndex(url, token, index, replicationWaitMs)
          if (reached === undefined || reached < index) throw replicaBehind(index, reached, replicationWaitMs)
          if (confirmedIndex === undefined || reached > confirmedIndex) confirmedIndex = reached
          options.onReplicationIndex?.(reached, false)
        })

    // The replica has applied the index (the wait above), yet a statement can still be answered from a moment before
    // it (seen in this project's tests: now and then, on a read right after a write); its result says so by its index. A read is run again
    // until its result is at the index, within the same bound; outside a transaction that is safe, and inside a read
    // transaction the snapshot was taken after the wait at its first statement.
    const executeAtLeast = async (sql: string, args: ReadonlyArray<Hrana.WireValue>, index: bigint | undefined) => {
      const deadline = Date.now() + replicationWaitMs
      let pause = 1
      while (true) {
        const result = await hrana.execute(sql, args)
        const reported = result.replicationIndex
        if (index === undefined || reported === undefined || reported >= index) return result
        if (Date.now() >= deadline) throw replicaBehind(index, reported, replicationWaitMs)
        await new Promise((resolve) => setTimeout(resolve, pause))
        pause = Math.min(pause * 2, 20)
      }
    }

    const query = (sql: string, params: ReadonlyArray<unknown>): Effect.Effect<Rows, SqlError> =>
      Effect.withFiberRuntime<Rows, SqlError>((fiber) => {
        const bigints = Context.get(fiber.currentContext, SqlClient.SafeIntegers)
        const position = fiber.getFiberRef(minimumReplicationIndex)
        const waitFor = indexToAwait(position)
        if (waitFor === "unknown") return Effect.fail(statementError(replicaNotFollowing(position!)))
        let args: Array<Hrana.WireValue>
        try {
          args = params.map(Hrana.encodeValue)
        } catch (cause) {
          return Effect.fail(statementError(cause))
        }
        return awaitReplication(waitFor).pipe(
          Effect.zipRight(guard(sql)),
          Effect.zipRight(call(() => executeAtLeast(sql, args, waitFor))),
          Effect.tap((result) => {
            noteIndex(result)
            return raise(result.replicationIndex)
          }),
          Effect.map((result) => ({ result, bigints }))
        )
      })

    const execute: SqlConnection.Connection["execute"] = (sql, params, transformRows) =>
      Effect.flatMap(
        query(sql, params),
        (rows) => shape(rows, transformRows ? (r) => transformRows(toObjects(r)) : toObjects)
      )

    const connection: SqlConnection.Connection = {
      execute,
      // As @effect/sql-sqlite-node: rows for a statement that returns columns, else what the write did.
      executeRaw: (sql, params) =>
        Effect.flatMap(
          query(sql, params),
          (rows): Effect.Effect<unknown, SqlError> =>
            rows.result.columns.length > 0
              ? shape(rows, toObjects)
              : Effect.succeed({
                changes: rows.result.affectedRowCount,
                lastInsertRowid: rows.result.lastInsertRowid === undefined || rows.bigints
                  ? rows.result.lastInsertRowid
                  : Number(rows.result.lastInsertRowid)
              })
        ),
      executeValues: (sql, params) => Effect.flatMap(query(sql, params), (rows) => shape(rows, toArrays)),
      // The server prepares and caches statements itself; there is no client-side preparation to skip.
      executeUnprepared: execute,
      // Hrana over WebSocket (protocol 2) has no cursors: the rows arrive in one response and are streamed from it.
      executeStream: (sql, params, transformRows) => Stream.fromIterableEffect(execute(sql, params, transformRows))
    }

    const validate: Effect.Effect<void, InvalidConnection> = Effect.tryPromise({
      try: () => withDeadline(hrana.execute("SELECT 1", []), timeoutMs, "validating"),
      catch: (cause) => ({ reason: messageChain(cause), cause })
    }).pipe(Effect.asVoid)

    return { connection, validate, check, url, replicationIndex: () => lastReplicationIndex }
  }).pipe(
    Effect.withSpan("sqlsim.connect", {
      attributes: {
        "db.system.name": "sqlite",
        "server.address": "error" in target ? displayUrl(options.url) : target.url
      }
    })
  )
}
