/**
 * One pool connection on a libSQL server (`sqld`, the server behind Turso): one Hrana stream over one WebSocket.
 *
 * Why a Hrana stream, and not `@libsql/client` or `@effect/sql-libsql`: the pool runs transactions as statements
 * (`BEGIN IMMEDIATE` ... `COMMIT`, savepoints) on the connection it leased, so every statement of a lease must reach
 * the same server-side SQLite connection. A Hrana stream is exactly that (the protocol's "database connection").
 * `@libsql/client` opens a fresh stream for every `execute` and keeps one only inside its own `transaction()` object,
 * and `@effect/sql-libsql` (0.42, on `@libsql/client` 0.12) is a whole `SqlClient` with its own transactions and no
 * `executeStream`; neither can be driven by the pool's lanes. The protocol itself is in `hranaSocket.ts`.
 *
 * Why WebSocket and not Hrana over HTTP: over HTTP a stream is a baton passed between requests that the server
 * expires after a few idle seconds, and nothing tells the client that the server went away until the next request.
 * Over WebSocket the stream lives as long as the socket, and a lost socket is known at once, which is what makes
 * `check()` O(1).
 *
 * What sqld does not have that a file connection does: `PRAGMA query_only` and `PRAGMA busy_timeout` are rejected
 * ("unsupported statement"), and a replica forwards writes to its primary. So a read-only connection refuses writes
 * itself (`readOnly.ts`); and lock waits are the server's (sqld waits for a held write lock, then after about 5 s
 * rolls the holder's transaction back: TRANSACTION_TIMEOUT, mapped to SQLITE_ABORT_ROLLBACK).
 *
 * Replication: every result carries the server's replication index. A Reader statement of a fiber that has written
 * first waits for its replica to apply the fiber's position (`readYourWrites.ts`); which index that is in the
 * replica's numbering only the replica set can tell, and a connection asks it through `indexToAwait`.
 *
 * @internal
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { InvalidConnection } from "../../Connector.js"
import { ClosedConnection } from "../driverConnection.js"
import { connectAttemptFailed, type ConnectError } from "../errors.js"
import * as Hrana from "../hranaSocket.js"
import { isReadOnlyStatement } from "../readOnlyStatement.js"
import { classifyConnectFailure, LibsqlStatementError, messageChain, statementFailure } from "./errorCodes.js"
import * as HttpApi from "./httpApi.js"
import { minimumReplicationIndex, raiseTo, readAtLeast, replicaBehind, replicaNotFollowing } from "./readYourWrites.js"
import type { ReplicationPosition } from "./replication.js"
import * as Rows from "./rows.js"
import { displayUrl, webSocketUrl } from "./url.js"

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
  /**
   * how long the server may stay silent while a statement waits for its answer (default 30 seconds): then the
   * connection is lost (a Reader's read runs once more elsewhere; a write fails with `STATEMENT_TIMEOUT`)
   */
  readonly statementTimeout?: Duration.DurationInput | undefined
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
  /**
   * A Reader connection: a statement showed that the server cannot serve (it stopped answering, or stayed behind a
   * fiber's position past `replicationWaitTimeout`); the read runs once more on another connection.
   */
  readonly onCannotServe?: ((why: CannotServe) => void) | undefined
  /** why the connector no longer wants this connection although it works (the pool then replaces it), or undefined */
  readonly retired?: (() => string | undefined) | undefined
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

/** Why a statement showed that its server cannot serve: it stopped answering, or it stayed too far behind. */
export interface CannotServe {
  readonly cause: "stalled" | "behind"
  readonly reason: string
}

const defaultConnectTimeout = Duration.seconds(5)
const defaultStatementTimeout = Duration.seconds(30)
const defaultReplicationWaitTimeout = Duration.seconds(2)

const tokenOf = (token: LibsqlConnectOptions["authToken"]): string | undefined =>
  token === undefined ? undefined : Redacted.isRedacted(token) ? Redacted.value(token) : token

/**
 * An open connection: the state of one Hrana stream and the statements on it. Its lifecycle is in its fields: open
 * while the socket is (`Hrana.HranaConnection.closedReason`) and nothing made it untrustworthy (`#untrusted`),
 * replaced by the pool as soon as `check()` says otherwise. Every failure of a statement leaves through one path,
 * `#statementFailed`.
 */
class Connection implements LibsqlConnection {
  /** the Hrana stream every statement goes over: its socket closing is this connection's loss */
  readonly #hrana: Hrana.HranaConnection
  /** what the connection was opened as: read-only or not, and how it takes part in replication */
  readonly #options: LibsqlConnectOptions
  /** the token, kept for the HTTP requests of a replication wait */
  readonly #token: string | undefined
  /** the bound of a replication wait (the HTTP wait, then the runs of a stale read) */
  readonly #replicationWait: Duration.Duration
  /**
   * Why the connection cannot be trusted although its socket is open: a statement was interrupted before the
   * server answered, and what it did is unknown (a BEGIN may have opened a transaction).
   */
  #untrusted: string | undefined
  /** the replication index the server reported with the last result */
  #lastIndex: bigint | undefined
  /**
   * The index the server confirmed it has applied. Only the HTTP wait sets it: the index a replica reports with a
   * WebSocket result can count frames it has received but not yet made visible.
   */
  #confirmedIndex: bigint | undefined

  readonly url: string
  readonly connection: SqlConnection.Connection
  readonly validate: Effect.Effect<void, InvalidConnection>

  constructor(
    hrana: Hrana.HranaConnection,
    url: string,
    options: LibsqlConnectOptions,
    connectTimeout: Duration.Duration
  ) {
    this.#hrana = hrana
    this.#options = options
    this.#token = tokenOf(options.authToken)
    this.#replicationWait = Duration.decode(options.replicationWaitTimeout ?? defaultReplicationWaitTimeout)
    this.url = url
    this.#lastIndex = hrana.openedAtIndex()
    if (this.#lastIndex !== undefined) options.onReplicationIndex?.(this.#lastIndex, true)
    this.connection = this.#sqlConnection()
    this.validate = Effect.tryPromise({
      try: () => hrana.execute("SELECT 1", []),
      catch: (cause): InvalidConnection => ({ reason: messageChain(cause), cause })
    }).pipe(
      Effect.timeoutFail({
        duration: connectTimeout,
        onTimeout: (): InvalidConnection => ({
          reason: `validating timed out after ${Duration.format(connectTimeout)}`
        })
      }),
      Effect.asVoid
    )
  }

  readonly check = (): string | undefined => {
    const closed = this.#hrana.closedReason()
    if (closed !== undefined) return `the connection to the libSQL server was lost: ${closed}`
    return this.#untrusted ?? this.#options.retired?.()
  }

  readonly replicationIndex = (): bigint | undefined => this.#lastIndex

  // --- events ---

  /** A result arrived: note the server's index, and raise a writer fiber's position to it. */
  #onResult(result: Hrana.StatementResult): Effect.Effect<void> {
    const index = result.replicationIndex
    if (index === undefined) return Effect.void
    this.#lastIndex = index
    this.#options.onReplicationIndex?.(index, false)
    if (this.#options.raiseFiberIndex !== true) return Effect.void
    return raiseTo({ generation: this.#options.generation?.() ?? 0, index })
  }

  /** The server confirmed (over HTTP) that it has applied `index`. */
  #onConfirmed(index: bigint): void {
    if (this.#confirmedIndex === undefined || index > this.#confirmedIndex) this.#confirmedIndex = index
    this.#options.onReplicationIndex?.(index, false)
  }

  /** A statement was interrupted after it was sent and before the server answered. */
  #onInterruptedInFlight(): void {
    this.#untrusted ??= "a statement was interrupted before the server answered"
  }

  // --- the one failure path ---

  /**
   * Every statement failure as the `SqlError` the pool sees. A statement on a connection already lost never reached
   * the server; one whose connection is lost while it runs did, or did not, run. Either way a read on a Reader
   * connection changed nothing: both say `ClosedConnection`, which lets the Reader run it once more elsewhere
   * (outside a transaction), as does a read on a replica that stayed too far behind (the replica set then routes
   * reads elsewhere). Everything else carries a `LibsqlStatementError` with the SQLite code where one applies.
   */
  #statementFailed(cause: unknown): SqlError {
    const cannotServe = cannotServeBecause(cause)
    if (cannotServe !== undefined) this.#options.onCannotServe?.(cannotServe)
    const lost = cause instanceof ClosedConnection
      ? cause
      : this.#options.readOnly && (cause instanceof Hrana.HranaTransportError ||
          (cannotServe !== undefined && this.#options.onCannotServe !== undefined))
      ? new ClosedConnection(messageChain(cause))
      : undefined
    if (lost !== undefined) {
      const what = cannotServe?.cause === "behind"
        ? "the replica cannot serve this read"
        : "the connection to the libSQL server was lost"
      return new SqlError({ message: `${what}: ${lost.message}`, cause: lost })
    }
    const failure = statementFailure(cause)
    return new SqlError({ message: `Failed to execute statement: ${failure.message}`, cause: failure })
  }

  // --- statements ---

  /**
   * A request of a statement (on the stream, or the replication wait before it) as an Effect. Interrupted once the
   * request is out, it leaves the connection untrusted: what the server did with it is unknown. A request on a
   * connection already lost fails at once with `ClosedConnection`: it never reached the server.
   */
  #send<A>(run: () => Promise<A>): Effect.Effect<A, unknown> {
    return Effect.async<A, unknown>((resume) => {
      const closed = this.#hrana.closedReason()
      if (closed !== undefined) return resume(Effect.fail(new ClosedConnection(closed)))
      let settled = false
      run().then(
        (value) => {
          settled = true
          resume(Effect.succeed(value))
        },
        (cause) => {
          settled = true
          resume(Effect.fail(cause))
        }
      )
      return Effect.sync(() => {
        if (!settled) this.#onInterruptedInFlight()
      })
    })
  }

  /** Waits, on a Reader connection, until its server has applied `index` (one HTTP request; the server waits). */
  #awaitReplication(index: bigint | undefined): Effect.Effect<void, unknown> {
    if (index === undefined || (this.#confirmedIndex !== undefined && this.#confirmedIndex >= index)) return Effect.void
    const boundMs = Duration.toMillis(this.#replicationWait)
    return Effect.flatMap(
      this.#send(() => HttpApi.waitForIndex(this.url, this.#token, index, boundMs)),
      (reached) =>
        reached === undefined || reached < index
          ? Effect.fail(replicaBehind(index, reached, this.#replicationWait))
          : Effect.sync(() => this.#onConfirmed(reached))
    )
  }

  /** The index a statement of a fiber at `position` waits for; only a Reader connection waits (a writer is on the primary). */
  #indexToAwait(position: ReplicationPosition | undefined): bigint | undefined | "unknown" {
    if (!this.#options.readOnly || position === undefined) return undefined
    return this.#options.indexToAwait === undefined ? position.index : this.#options.indexToAwait(position)
  }

  /** Runs one statement: refused on a Reader if it writes, after the fiber's position is reached, then noted. */
  #run(sql: string, params: ReadonlyArray<unknown>): Effect.Effect<Rows.Result, SqlError> {
    return Effect.withFiberRuntime<Rows.Result, unknown>((fiber) => {
      const bigints = Context.get(fiber.currentContext, SqlClient.SafeIntegers)
      const position = fiber.getFiberRef(minimumReplicationIndex)
      const waitFor = this.#indexToAwait(position)
      if (waitFor === "unknown") return Effect.fail(replicaNotFollowing(position!))
      if (this.#options.readOnly && !isReadOnlyStatement(sql)) {
        return Effect.fail(
          new LibsqlStatementError(
            `attempt to write a readonly database: a Reader connection refuses ${sql.trim().slice(0, 60)}`,
            "SQLITE_READONLY",
            undefined,
            undefined
          )
        )
      }
      return Effect.try({ try: () => params.map(Hrana.encodeValue), catch: (cause) => cause }).pipe(
        Effect.tap(() => this.#awaitReplication(waitFor)),
        Effect.flatMap((args) =>
          readAtLeast(this.#send(() => this.#hrana.execute(sql, args)), waitFor, this.#replicationWait)
        ),
        Effect.tap((result) => this.#onResult(result)),
        Effect.map((result) => ({ result, bigints }))
      )
    }).pipe(Effect.mapError((cause) => this.#statementFailed(cause)))
  }

  /** Shapes a result; a value that cannot be given as asked fails the statement (a SqlError, not a defect). */
  #shaped<A>(sql: string, params: ReadonlyArray<unknown>, shape: (rows: Rows.Result) => A): Effect.Effect<A, SqlError> {
    return Effect.flatMap(
      this.#run(sql, params),
      (rows) => Effect.try({ try: () => shape(rows), catch: (cause) => this.#statementFailed(cause) })
    )
  }

  #sqlConnection(): SqlConnection.Connection {
    const execute: SqlConnection.Connection["execute"] = (sql, params, transformRows) =>
      this.#shaped(sql, params, (rows) => {
        const objects = Rows.toObjects(rows)
        return transformRows ? transformRows(objects) : objects
      })
    return {
      execute,
      // As @effect/sql-sqlite-node: rows for a statement that returns columns, else what the write did.
      executeRaw: (sql, params) =>
        this.#shaped(
          sql,
          params,
          (rows) => rows.result.columns.length > 0 ? Rows.toObjects(rows) : Rows.toChanges(rows)
        ),
      executeValues: (sql, params) => this.#shaped(sql, params, Rows.toArrays),
      // The server prepares and caches statements itself; there is no client-side preparation to skip.
      executeUnprepared: execute,
      // Hrana over WebSocket (protocol 2) has no cursors: the rows arrive in one response and are streamed from it.
      executeStream: (sql, params, transformRows) => Stream.fromIterableEffect(execute(sql, params, transformRows))
    }
  }
}

/** A failure that shows the server cannot serve: no answer within a bound, or a replication wait that ran out. */
const cannotServeBecause = (cause: unknown): CannotServe | undefined => {
  if (cause instanceof Hrana.HranaTransportError && cause.code === "ETIMEDOUT") {
    return { cause: "stalled", reason: cause.message }
  }
  if (cause instanceof LibsqlStatementError && cause.libsqlCode === "REPLICA_BEHIND") {
    return { cause: "behind", reason: cause.message }
  }
  return undefined
}

/**
 * Opens the socket and the stream, verified with `SELECT 1`, within `connectTimeout`. The handshake is
 * interruptible (acquireRelease alone would make it wait out the timeout): an interrupt aborts it and closes the
 * socket, and a connection that did open has its finalizer registered at once.
 */
const openStream = (url: string, token: string | undefined, timeouts: Hrana.Timeouts) => {
  const timeoutMs = timeouts.connectMs
  return Effect.acquireRelease(
    Effect.tryPromise({
      try: async (signal) => {
        try {
          return await Hrana.open(url, token, timeouts, signal)
        } catch (cause) {
          const refusedAfterUpgrade = cause instanceof Hrana.HranaTransportError && cause.afterUpgrade
          throw new OpenFailure(
            cause,
            refusedAfterUpgrade ? await HttpApi.authStatus(url, token, timeoutMs) : undefined
          )
        }
      },
      catch: (failure) => {
        const { cause, httpStatus } = failure instanceof OpenFailure ? failure : new OpenFailure(failure, undefined)
        return connectAttemptFailed({ filename: url, ...classifyConnectFailure(cause, httpStatus) })
      }
    }).pipe(Effect.interruptible),
    (hrana) => Effect.sync(() => hrana.close())
  )
}

/** Why the handshake failed, with what the HTTP API said about the token when it was asked. */
class OpenFailure {
  constructor(readonly cause: unknown, readonly httpStatus: number | undefined) {}
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
      return yield* connectAttemptFailed({
        filename: displayUrl(options.url),
        code: "SQLITE_CANTOPEN",
        transient: false,
        reason: target.error
      })
    }
    const timeout = Duration.decode(options.connectTimeout ?? defaultConnectTimeout)
    const statementTimeout = Duration.decode(options.statementTimeout ?? defaultStatementTimeout)
    const hrana = yield* openStream(target.url, tokenOf(options.authToken), {
      connectMs: Duration.toMillis(timeout),
      statementMs: Duration.toMillis(statementTimeout)
    })
    return new Connection(hrana, target.url, options, timeout)
  }).pipe(
    Effect.withSpan("sqlsim.connect", {
      attributes: {
        "db.system.name": "sqlite",
        "server.address": "error" in target ? displayUrl(options.url) : target.url
      }
    })
  )
}
