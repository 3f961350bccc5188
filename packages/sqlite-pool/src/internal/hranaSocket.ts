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
 * @internal
 */
import WebSocket from "ws"

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

interface Pending {
  readonly resolve: (response: any) => void
  readonly reject: (error: Error) => void
}

/** How often an idle connection is pinged; a connection that misses a pong for this long is treated as lost. */
const keepAliveMs = 15_000

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
 * Rejects with `HranaTransportError` (network, upgrade refused, no answer within `timeoutMs`: the socket is then
 * closed) or `HranaServerError` (hello or statement refused).
 */
export const open = (
  url: string,
  jwt: string | undefined,
  timeoutMs: number,
  signal?: AbortSignal
): Promise<HranaConnection> =>
  new Promise<HranaConnection>((resolveOpen, rejectOpen) => {
    const socket = new WebSocket(url, ["hrana2"], { perMessageDeflate: false })
    const pending = new Map<number, Pending>()
    let nextRequestId = 1
    let closedReason: string | undefined
    let failure: Error | undefined
    let opened = false
    let openedAtIndex: bigint | undefined
    let awaitingPong = false

    const fail = (error: Error) => {
      if (failure === undefined) failure = error
      closedReason ??= error.message
      for (const waiter of pending.values()) waiter.reject(failure)
      pending.clear()
      clearInterval(keepAlive)
      clearTimeout(handshakeTimer)
      if (!opened) rejectOpen(failure)
    }

    const keepAlive = setInterval(() => {
      if (awaitingPong) {
        fail(new HranaTransportError("the server stopped answering pings", { code: "ETIMEDOUT" }))
        socket.terminate()
        return
      }
      awaitingPong = true
      socket.ping()
    }, keepAliveMs)
    keepAlive.unref()
    const handshakeTimer = setTimeout(() => {
      fail(new HranaTransportError(`no answer within ${timeoutMs} ms`, { code: "ETIMEDOUT" }))
      socket.terminate()
    }, timeoutMs)
    socket.on("pong", () => {
      awaitingPong = false
    })

    // Abandoned by the caller (an interrupted connect): close the socket, whatever stage the handshake is at.
    const abandon = () => {
      if (opened) return
      fail(new HranaTransportError("the connect was abandoned", { code: "ECANCELED" }))
      socket.terminate()
    }
    if (signal?.aborted) abandon()
    signal?.addEventListener("abort", abandon, { once: true })

    socket.on("unexpected-response", (_request, response) => {
      const status = response.statusCode ?? 0
      fail(new HranaTransportError(`the server refused the WebSocket upgrade: HTTP ${status}`, { status }))
      socket.terminate()
    })
    // A server that refuses the hello answers hello_error and closes; the requests sent behind the hello then meet a
    // closed socket, and the reset that follows can discard the answer before it is read. So a socket failure during
    // the handshake is kept until the close, which reports a hello_error if one was read, else the first failure,
    // marked `afterUpgrade` when the server had accepted the WebSocket (the caller can then ask it why).
    let upgraded = false
    let socketError: HranaTransportError | undefined
    const socketFailed = (error: Error & { code?: string | undefined }) => {
      const failed = new HranaTransportError(error.message, { code: error.code, afterUpgrade: upgraded, cause: error })
      if (opened) fail(failed)
      else socketError ??= failed
    }
    socket.on("error", socketFailed)
    socket.on("close", (code, reason) => {
      const why = reason.length > 0 ? `: ${reason.toString("utf8")}` : ""
      fail(
        socketError ??
          new HranaTransportError(`the server closed the connection (WebSocket ${code}${why})`, {
            code: "ECONNRESET",
            afterUpgrade: upgraded
          })
      )
    })
    socket.on("message", (data, isBinary) => {
      if (isBinary) return fail(new HranaTransportError("unexpected binary message", {}))
      let message: any
      try {
        message = JSON.parse(data.toString())
      } catch (cause) {
        return fail(new HranaTransportError("the server sent a message that is not JSON", { cause }))
      }
      switch (message?.type) {
        case "hello_ok":
          return
        case "hello_error":
          socket.close()
          return fail(new HranaServerError(message.error?.message ?? "hello refused", message.error?.code))
        case "response_ok":
        case "response_error": {
          const waiter = pending.get(message.request_id)
          if (waiter === undefined) return
          pending.delete(message.request_id)
          if (message.type === "response_ok") waiter.resolve(message.response)
          else waiter.reject(new HranaServerError(message.error?.message ?? "request failed", message.error?.code))
          return
        }
        default:
          return fail(new HranaTransportError(`unexpected message ${String(message?.type)}`, {}))
      }
    })

    const request = (body: Record<string, unknown>): Promise<any> => {
      if (failure !== undefined) return Promise.reject(failure)
      const requestId = nextRequestId++
      return new Promise((resolve, reject) => {
        pending.set(requestId, { resolve, reject })
        socket.send(JSON.stringify({ type: "request", request_id: requestId, request: body }), (error) => {
          if (error) socketFailed(error)
        })
      })
    }

    const execute = async (sql: string, args: ReadonlyArray<WireValue>) => {
      const stmt = { sql, args, named_args: [], want_rows: true }
      const response = await request({ type: "execute", stream_id: 1, stmt })
      const result = response.result
      return {
        columns: (result.cols as Array<{ name?: string | null }>).map((column) => column.name ?? null),
        rows: result.rows,
        affectedRowCount: result.affected_row_count,
        lastInsertRowid: optionalBigInt(result.last_insert_rowid),
        replicationIndex: optionalBigInt(result.replication_index)
      } satisfies StatementResult
    }

    const connection: HranaConnection = {
      closedReason: () => closedReason,
      execute,
      openedAtIndex: () => openedAtIndex,
      close: () => {
        closedReason ??= "the connection was closed"
        clearInterval(keepAlive)
        socket.terminate()
      }
    }

    socket.on("open", () => {
      upgraded = true
      socket.send(JSON.stringify({ type: "hello", jwt: jwt ?? null }))
      request({ type: "open_stream", stream_id: 1 }).catch(() => undefined)
      execute("SELECT 1", []).then(
        (result) => {
          opened = true
          openedAtIndex = result.replicationIndex
          clearTimeout(handshakeTimer)
          resolveOpen(connection)
        },
        (error) => {
          socket.terminate()
          fail(error)
        }
      )
    })
  })
