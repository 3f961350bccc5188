/**
 * The Hrana protocol (version 2, JSON) over one WebSocket: what a libSQL server (`sqld`) speaks to its clients.
 * Only what one pool connection needs: a hello with the auth token, one stream (a server-side SQLite connection),
 * `execute` on it, and closing.
 *
 * Why not `@libsql/hrana-client` (the protocol layer of `@libsql/client`): it drops the `replication_index` that sqld
 * sends with every result. That index is how a client knows whether a replica has applied a given write yet
 * (read-your-writes) and how far behind the primary a replica is (lag). It also reports a rejected WebSocket upgrade
 * (HTTP 401) as a bare "closed with code 1006". The protocol is small; `ws` carries it.
 *
 * Requests are pipelined: they are sent as they come and the server answers each stream's requests in order.
 *
 * Every wait ends: the handshake within `connectMs`; a request within `statementMs` of the server's last answer (the
 * server answers in order, so that is how long the oldest request has been the one it works on); an idle socket is
 * pinged every `keepAliveMs` and lost when a ping is still unanswered at the next one (a stalled server is found
 * within twice that). Each ends the connection with an `ETIMEDOUT` transport error.
 *
 * The socket is a state machine after hrana-client-ts's `ws/client.ts`: `HranaSocket`'s private fields each hold one
 * fact, each socket event has one handler, and one failure path (`#setClosed`) fails every pending request once,
 * stops the timers and closes the socket. Needs nothing from Effect.
 *
 * @internal
 */
import WebSocket from "ws"
import { RequestTable } from "./requestTable.js"

/** A value on the wire, as Hrana encodes it. */
export type WireValue =
  | { readonly type: "null" }
  | { readonly type: "integer"; readonly value: string }
  | { readonly type: "float"; readonly value: number }
  | { readonly type: "text"; readonly value: string }
  | { readonly type: "blob"; readonly base64: string }

export interface StatementResult {
  readonly columns: ReadonlyArray<string | null>
  readonly rows: ReadonlyArray<ReadonlyArray<WireValue>>
  readonly affectedRowCount: number
  readonly lastInsertRowid: bigint | undefined
  /** the server's replication position after the statement (a primary: its newest frame; a replica: what it applied) */
  readonly replicationIndex: bigint | undefined
}

/** The server answered with an error: `code` is sqld's ("SQLITE_CONSTRAINT", "SQL_PARSE_ERROR", "AUTH_..."). */
export class HranaServerError extends Error {
  readonly code: string | undefined
  constructor(message: string, code: string | undefined) {
    super(message)
    this.name = "HranaServerError"
    this.code = code
  }
}

/**
 * The connection failed or closed: `code` is the socket's error code where there is one ("ECONNREFUSED"), `status`
 * the HTTP status of a rejected WebSocket upgrade (401 for a bad token).
 */
export class HranaTransportError extends Error {
  readonly code: string | undefined
  readonly status: number | undefined
  /** the WebSocket upgrade had succeeded: the server was there, and may have refused the hello */
  readonly afterUpgrade: boolean
  constructor(
    message: string,
    options: { code?: string | undefined; status?: number | undefined; afterUpgrade?: boolean; cause?: unknown }
  ) {
    super(message, { cause: options.cause })
    this.name = "HranaTransportError"
    this.code = options.code
    this.status = options.status
    this.afterUpgrade = options.afterUpgrade ?? false
  }
}

/** Values as `@effect/sql` passes them, encoded the way better-sqlite3 binds them (numbers as REAL). */
export const encodeValue = (value: unknown): WireValue => {
  if (value === null || value === undefined) return { type: "null" }
  switch (typeof value) {
    case "string":
      return { type: "text", value }
    case "number":
      if (!Number.isFinite(value)) throw new TypeError(`cannot bind ${value}: SQLite has no such number`)
      return { type: "float", value }
    case "bigint":
      return { type: "integer", value: value.toString() }
    case "boolean":
      return { type: "integer", value: value ? "1" : "0" }
  }
  if (value instanceof Uint8Array || value instanceof Int8Array) {
    return { type: "blob", base64: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64") }
  }
  if (value instanceof ArrayBuffer) return { type: "blob", base64: Buffer.from(value).toString("base64") }
  throw new TypeError("SQLite can only bind numbers, strings, bigints, booleans, byte arrays and null")
}

/** Decodes a value: integers as bigint (the caller narrows them), blobs as Uint8Array. */
export const decodeValue = (value: WireValue): null | string | number | bigint | Uint8Array => {
  switch (value.type) {
    case "null":
      return null
    case "integer":
      return BigInt(value.value)
    case "float":
      return value.value
    case "text":
      return value.value
    case "blob": {
      const bytes = Buffer.from(value.base64, "base64")
      return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    }
  }
}

const optionalBigInt = (value: unknown): bigint | undefined =>
  typeof value === "string" || typeof value === "number" ? BigInt(value) : undefined

/**
 * How often a connection is pinged; one whose ping is unanswered at the next is lost, so a stalled server is found
 * within twice this.
 */
export const keepAliveMs = 5_000

/** How long a handshake and a request may take. */
export interface Timeouts {
  /** the handshake: TCP, WebSocket upgrade, hello and a first `SELECT 1` */
  readonly connectMs: number
  /** the server's silence while a request waits for its answer */
  readonly statementMs: number
}

/** One Hrana connection: one WebSocket, one stream on it. */
export interface HranaConnection {
  /** why the connection can no longer be used (socket closed or failed), or undefined */
  readonly closedReason: () => string | undefined
  readonly execute: (sql: string, args: ReadonlyArray<WireValue>) => Promise<StatementResult>
  /** the replication index the server reported with the handshake's `SELECT 1` */
  readonly openedAtIndex: () => bigint | undefined
  /** closes the socket at once; the server drops the stream and rolls back an open transaction */
  readonly close: () => void
}

/**
 * Opens a WebSocket to `url`, says hello (with `jwt`), opens stream 1 and resolves once the server has answered a
 * first statement (`SELECT 1`), so that a resolved connection has proved the network, the token and the database.
 * Rejects with `HranaTransportError` (network, upgrade refused, no answer within `timeouts.connectMs`: the socket
 * is then closed) or `HranaServerError` (hello or statement refused).
 */
export const open = (
  url: string,
  jwt: string | undefined,
  timeouts: Timeouts,
  signal?: AbortSignal
): Promise<HranaConnection> => new HranaSocket(url, jwt, timeouts, signal).opened

/** The socket's state machine; `open` is its only constructor. */
export class HranaSocket implements HranaConnection {
  /** resolves with this connection once the handshake's `SELECT 1` is answered; rejects with its first failure */
  readonly opened: Promise<HranaConnection>
  readonly #socket: WebSocket
  readonly #jwt: string | undefined
  /** how long the server may stay silent while a request waits (`Timeouts.statementMs`) */
  readonly #statementMs: number
  /** requests sent and not answered (the hello has none: the server answers it with hello_ok or hello_error) */
  readonly #requests = new RequestTable<any, Error>()
  /** the first failure: set once, and from then on every request fails with it at once */
  #closed: Error | undefined
  /** why the connection can no longer be used: the failure's message, or the caller's `close` */
  #closedReason: string | undefined
  /** the handshake is over: failures are now the requests', no longer `opened`'s */
  #handshakeDone = false
  /** the server accepted the WebSocket upgrade (so a failure after it may be a refused hello) */
  #upgraded = false
  /**
   * A socket failure during the handshake, kept until the close: a server that refuses the hello answers
   * hello_error and closes, and the reset that follows the requests sent behind the hello can discard that answer
   * before it is read. The close reports the hello_error if one was read, else this.
   */
  #handshakeSocketError: HranaTransportError | undefined
  /** a ping is unanswered */
  #awaitingPong = false
  /** the replication index of the handshake's `SELECT 1` */
  #openedAtIndex: bigint | undefined
  readonly #keepAlive: ReturnType<typeof setInterval>
  readonly #handshakeTimer: ReturnType<typeof setTimeout>
  /** after the handshake, while requests wait: ends the connection when no answer comes within `#statementMs` */
  #answerTimer: ReturnType<typeof setTimeout> | undefined
  #resolveOpen: (connection: HranaConnection) => void = () => {}
  #rejectOpen: (error: Error) => void = () => {}

  constructor(url: string, jwt: string | undefined, timeouts: Timeouts, signal: AbortSignal | undefined) {
    this.#jwt = jwt
    this.#statementMs = timeouts.statementMs
    this.opened = new Promise((resolve, reject) => {
      this.#resolveOpen = resolve
      this.#rejectOpen = reject
    })
    this.#socket = new WebSocket(url, ["hrana2"], { perMessageDeflate: false })
    this.#keepAlive = setInterval(() => this.#onKeepAlive(), keepAliveMs)
    this.#keepAlive.unref()
    this.#handshakeTimer = setTimeout(
      () =>
        this.#setClosed(new HranaTransportError(`no answer within ${timeouts.connectMs} ms`, { code: "ETIMEDOUT" })),
      timeouts.connectMs
    )
    this.#socket.on("open", () => this.#onSocketOpen())
    this.#socket.on("message", (data, isBinary) => this.#onSocketMessage(data, isBinary))
    this.#socket.on("error", (error) => this.#onSocketError(error))
    this.#socket.on("close", (code, reason) => this.#onSocketClose(code, reason))
    this.#socket.on("unexpected-response", (_request, response) => this.#onUnexpectedResponse(response.statusCode))
    this.#socket.on("pong", () => (this.#awaitingPong = false))
    // Abandoned by the caller (an interrupted connect): close the socket, whatever stage the handshake is at.
    if (signal?.aborted === true) this.#onAbort()
    signal?.addEventListener("abort", () => this.#onAbort(), { once: true })
  }

  closedReason(): string | undefined {
    return this.#closedReason
  }

  openedAtIndex(): bigint | undefined {
    return this.#openedAtIndex
  }

  close(): void {
    this.#closedReason ??= "the connection was closed"
    this.#setClosed(new HranaTransportError("the connection was closed", { code: "ECONNRESET" }))
  }

  async execute(sql: string, args: ReadonlyArray<WireValue>): Promise<StatementResult> {
    const stmt = { sql, args, named_args: [], want_rows: true }
    const response = await this.#request({ type: "execute", stream_id: 1, stmt })
    const result = response.result
    return {
      columns: (result.cols as Array<{ name?: string | null }>).map((column) => column.name ?? null),
      rows: result.rows,
      affectedRowCount: result.affected_row_count,
      lastInsertRowid: optionalBigInt(result.last_insert_rowid),
      replicationIndex: optionalBigInt(result.replication_index)
    }
  }

  #request(body: Record<string, unknown>): Promise<any> {
    if (this.#closed !== undefined) return Promise.reject(this.#closed)
    return new Promise((resolve, reject) => {
      const requestId = this.#requests.add({ resolve, reject })
      if (this.#answerTimer === undefined) this.#awaitAnswer()
      this.#socket.send(JSON.stringify({ type: "request", request_id: requestId, request: body }), (error) => {
        if (error) this.#onSocketError(error)
      })
    })
  }

  #onSocketOpen(): void {
    this.#upgraded = true
    this.#socket.send(JSON.stringify({ type: "hello", jwt: this.#jwt ?? null }))
    // Pipelined: a refused hello fails these too, and `#setClosed` reports the refusal.
    this.#request({ type: "open_stream", stream_id: 1 }).catch(() => undefined)
    this.execute("SELECT 1", []).then(
      (result) => {
        this.#handshakeDone = true
        this.#openedAtIndex = result.replicationIndex
        clearTimeout(this.#handshakeTimer)
        this.#resolveOpen(this)
      },
      (error) => this.#setClosed(error)
    )
  }

  #onSocketMessage(data: WebSocket.RawData, isBinary: boolean): void {
    if (isBinary) return this.#setClosed(new HranaTransportError("unexpected binary message", {}))
    let message: any
    try {
      message = JSON.parse(data.toString())
    } catch (cause) {
      return this.#setClosed(new HranaTransportError("the server sent a message that is not JSON", { cause }))
    }
    switch (message?.type) {
      case "hello_ok":
        return
      case "hello_error":
        return this.#setClosed(new HranaServerError(message.error?.message ?? "hello refused", message.error?.code))
      case "response_ok":
        this.#requests.resolve(message.request_id, message.response)
        return this.#awaitAnswer()
      case "response_error":
        this.#requests.reject(
          message.request_id,
          new HranaServerError(message.error?.message ?? "request failed", message.error?.code)
        )
        return this.#awaitAnswer()
      default:
        return this.#setClosed(new HranaTransportError(`unexpected message ${String(message?.type)}`, {}))
    }
  }

  #onSocketError(error: Error & { code?: string | undefined }): void {
    const failed = new HranaTransportError(error.message, {
      code: error.code,
      afterUpgrade: this.#upgraded,
      cause: error
    })
    if (this.#handshakeDone) this.#setClosed(failed)
    else this.#handshakeSocketError ??= failed
  }

  #onSocketClose(code: number, reason: Buffer): void {
    const why = reason.length > 0 ? `: ${reason.toString("utf8")}` : ""
    this.#setClosed(
      this.#handshakeSocketError ??
        new HranaTransportError(`the server closed the connection (WebSocket ${code}${why})`, {
          code: "ECONNRESET",
          afterUpgrade: this.#upgraded
        })
    )
  }

  #onUnexpectedResponse(statusCode: number | undefined): void {
    const status = statusCode ?? 0
    this.#setClosed(new HranaTransportError(`the server refused the WebSocket upgrade: HTTP ${status}`, { status }))
  }

  #onKeepAlive(): void {
    if (this.#awaitingPong) {
      return this.#setClosed(new HranaTransportError("the server stopped answering pings", { code: "ETIMEDOUT" }))
    }
    this.#awaitingPong = true
    this.#socket.ping()
  }

  /**
   * (Re)starts the wait for the next answer while requests are pending after the handshake (the handshake has its
   * own timer): the server answers in order, so each answer starts the next request's `#statementMs`.
   */
  #awaitAnswer(): void {
    clearTimeout(this.#answerTimer)
    this.#answerTimer = undefined
    if (!this.#handshakeDone || this.#requests.size === 0 || this.#closed !== undefined) return
    this.#answerTimer = setTimeout(() => {
      const error = `the server sent no answer within ${this.#statementMs} ms (statementTimeout): it is stalled`
      this.#setClosed(new HranaTransportError(error, { code: "ETIMEDOUT" }))
    }, this.#statementMs)
    this.#answerTimer.unref()
  }

  #onAbort(): void {
    if (!this.#handshakeDone) {
      this.#setClosed(new HranaTransportError("the connect was abandoned", { code: "ECANCELED" }))
    }
  }

  /**
   * The one failure path, taken once: the first error becomes the connection's, every pending request fails with
   * it, the timers stop, an unfinished handshake rejects, and the socket is closed.
   */
  #setClosed(error: Error): void {
    if (this.#closed !== undefined) return
    this.#closed = error
    this.#closedReason ??= error.message
    this.#requests.failAll(() => error)
    clearInterval(this.#keepAlive)
    clearTimeout(this.#handshakeTimer)
    clearTimeout(this.#answerTimer)
    if (!this.#handshakeDone) this.#rejectOpen(error)
    this.#socket.terminate()
  }
}
