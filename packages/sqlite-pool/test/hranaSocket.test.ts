/**
 * The Hrana socket's lifecycle: against a real sqld (open, statements, close with requests pending, requests after
 * close), and against WebSocket servers of the test's own that misbehave on purpose (closing before the hello,
 * refusing it, closing in the middle of requests, answering late or not at all). Whatever ends the connection, every
 * pending request fails once, with the connection's one error; a silent server ends it within the stated bounds.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Sqld from "@sqlsim/test-kit/Sqld"
import { eventually } from "@sqlsim/test-kit/Wait"
import * as Effect from "effect/Effect"
import type * as net from "node:net"
import { WebSocketServer } from "ws"
import type WebSocket from "ws"
import * as Hrana from "../src/internal/hranaSocket.js"

/** Generous bounds: these tests are about the protocol, not about a slow server. */
const timeouts = { connectMs: 10_000, statementMs: 10_000 }

/** Every promise's outcome, without failing on the rejected ones. */
const outcomes = (promises: ReadonlyArray<Promise<unknown>>) => Promise.allSettled(promises)

/** A WebSocket server on loopback whose every connection is `onConnection`'s: its URL, for the scope's duration. */
const fakeServer = (
  onConnection: (socket: WebSocket) => void
) =>
  Effect.acquireRelease(
    Effect.async<WebSocketServer>((resume) => {
      const server: WebSocketServer = new WebSocketServer(
        { host: "127.0.0.1", port: 0 },
        (): void => resume(Effect.succeed(server))
      )
      server.on("connection", onConnection)
    }),
    (server) =>
      Effect.async<void>((resume) => {
        for (const client of server.clients) client.terminate()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map((server) => `ws://127.0.0.1:${(server.address() as net.AddressInfo).port}`))

/** Answers the hello, `open_stream` and the handshake's `SELECT 1`; later requests go to `onRequest`. */
const handshaking =
  (onRequest: (socket: WebSocket, request: { request_id: number }) => void) => (socket: WebSocket) => {
    let handshakeRequests = 2
    socket.on("message", (data) => {
      const message = JSON.parse(data.toString())
      if (message.type === "hello") return socket.send(JSON.stringify({ type: "hello_ok" }))
      if (handshakeRequests-- > 0) {
        const response = { type: "execute", result: { cols: [], rows: [], affected_row_count: 0 } }
        return socket.send(JSON.stringify({ type: "response_ok", request_id: message.request_id, response }))
      }
      onRequest(socket, message)
    })
  }

describe("hranaSocket", () => {
  it.scopedLive("against sqld: statements answer; close fails the pending requests once and every later one at once", () =>
    Effect.gen(function*() {
      const primary = yield* Sqld.startPrimary()
      const connection = yield* Effect.promise(() => Hrana.open(primary.wsUrl, undefined, timeouts))
      expect(connection.closedReason()).toBeUndefined()
      const result = yield* Effect.promise(() =>
        connection.execute("SELECT ? AS n, ? AS t", [Hrana.encodeValue(42n), Hrana.encodeValue("x")])
      )
      expect(result.columns).toEqual(["n", "t"])
      expect(result.rows[0]!.map(Hrana.decodeValue)).toEqual([42n, "x"])

      // Three in flight when the connection closes: each fails, with the one error of the connection.
      const pending = [1, 2, 3].map(() =>
        connection.execute(
          "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) SELECT count(*) FROM c",
          []
        )
      )
      connection.close()
      const settled = yield* Effect.promise(() => outcomes(pending))
      expect(settled.map((outcome) => outcome.status)).toEqual(["rejected", "rejected", "rejected"])
      const errors = settled.map((outcome) => (outcome as PromiseRejectedResult).reason)
      expect(errors[0]).toBeInstanceOf(Hrana.HranaTransportError)
      expect(new Set(errors).size).toBe(1)
      expect(connection.closedReason()).toBe("the connection was closed")

      // After the close: refused at once, with the same error.
      const after = yield* Effect.promise(() => outcomes([connection.execute("SELECT 1", [])]))
      expect((after[0] as PromiseRejectedResult).reason).toBe(errors[0])
    }))

  it.scopedLive("a server that closes before the hello: the open fails at once, typed, marked after the upgrade", () =>
    Effect.gen(function*() {
      const url = yield* fakeServer((socket) => socket.close(1011, "going away"))
      const started = performance.now()
      const error = yield* Effect.promise(() => outcomes([Hrana.open(url, undefined, timeouts)])).pipe(
        Effect.map(([outcome]) => (outcome as PromiseRejectedResult).reason)
      )
      expect(error).toBeInstanceOf(Hrana.HranaTransportError)
      expect(error).toMatchObject({ afterUpgrade: true, code: "ECONNRESET" })
      expect(error.message).toMatch(/closed the connection \(WebSocket 1011: going away\)/)
      // Not the 10 s handshake deadline: the close itself ended it (a generous bound).
      expect(performance.now() - started).toBeLessThan(5_000)
    }))

  it.scopedLive("a refused hello is a HranaServerError with the server's code", () =>
    Effect.gen(function*() {
      const url = yield* fakeServer((socket) =>
        socket.once("message", () =>
          socket.send(
            JSON.stringify({ type: "hello_error", error: { message: "bad token", code: "AUTH_JWT_INVALID" } })
          ))
      )
      const [outcome] = yield* Effect.promise(() => outcomes([Hrana.open(url, "token", timeouts)]))
      const error = (outcome as PromiseRejectedResult).reason
      expect(error).toBeInstanceOf(Hrana.HranaServerError)
      expect(error).toMatchObject({ code: "AUTH_JWT_INVALID", message: "bad token" })
    }))

  it.scopedLive("a server that closes in the middle of requests fails each pending one once; the reason stays", () =>
    Effect.gen(function*() {
      let received = 0
      const url = yield* fakeServer(handshaking((socket) => {
        // Three requests arrive; the server answers none and goes away.
        if (++received === 3) socket.close(1011, "crashed")
      }))
      const connection = yield* Effect.promise(() => Hrana.open(url, undefined, timeouts))
      const pending = [1, 2, 3].map((n) => connection.execute(`SELECT ${n}`, []))
      const settled = yield* Effect.promise(() => outcomes(pending))
      expect(settled.map((outcome) => outcome.status)).toEqual(["rejected", "rejected", "rejected"])
      const errors = new Set(settled.map((outcome) => (outcome as PromiseRejectedResult).reason))
      expect(errors.size).toBe(1)
      const [error] = errors
      expect(error).toBeInstanceOf(Hrana.HranaTransportError)
      expect(connection.closedReason()).toMatch(/closed the connection \(WebSocket 1011: crashed\)/)
      // A later close changes nothing.
      connection.close()
      expect(connection.closedReason()).toMatch(/WebSocket 1011/)
    }))

  it.scopedLive("each answer starts the next request's statementMs; a server silent that long ends the connection", () =>
    Effect.gen(function*() {
      let received = 0
      const url = yield* fakeServer(handshaking((socket, request) => {
        const sql = (request as { request?: { stmt?: { sql?: string } } }).request?.stmt?.sql
        if (sql === "SELECT 'never'") return
        // Answered in order, 400 ms apart: 1.6 s for the four, never more than 400 ms without an answer.
        const response = { type: "execute", result: { cols: [], rows: [], affected_row_count: 0 } }
        setTimeout(
          () => socket.send(JSON.stringify({ type: "response_ok", request_id: request.request_id, response })),
          400 * ++received
        )
      }))
      const connection = yield* Effect.promise(() =>
        Hrana.open(url, undefined, { connectMs: 10_000, statementMs: 1_000 })
      )
      const answered = yield* Effect.promise(() =>
        outcomes([1, 2, 3, 4].map((n) => connection.execute(`SELECT ${n}`, [])))
      )
      expect(answered.map((outcome) => outcome.status)).toEqual(["fulfilled", "fulfilled", "fulfilled", "fulfilled"])
      expect(connection.closedReason()).toBeUndefined()

      const started = performance.now()
      const [silence] = yield* Effect.promise(() => outcomes([connection.execute("SELECT 'never'", [])]))
      expect((silence as PromiseRejectedResult).reason).toMatchObject({
        name: "HranaTransportError",
        code: "ETIMEDOUT"
      })
      expect(connection.closedReason()).toMatch(/no answer within 1000 ms \(statementTimeout\)/)
      expect(performance.now() - started).toBeLessThan(5_000)
    }))

  it.scopedLive("an idle connection to a SIGSTOPped sqld is lost within 2 keep-alive intervals", () =>
    Effect.gen(function*() {
      const primary = yield* Sqld.startPrimary()
      const connection = yield* Effect.promise(() => Hrana.open(primary.wsUrl, undefined, timeouts))
      const pid = primary.pid()!
      yield* Effect.acquireRelease(
        Effect.sync(() => process.kill(pid, "SIGSTOP")),
        () => Effect.sync(() => process.kill(pid, "SIGCONT"))
      )
      const started = performance.now()
      yield* eventually(
        Effect.sync(() => connection.closedReason() !== undefined),
        "the connection lost",
        2 * Hrana.keepAliveMs + 5_000
      )
      console.log(
        `an idle connection to a SIGSTOPped sqld was lost after ${Math.round(performance.now() - started)} ms`
      )
      expect(connection.closedReason()).toMatch(/stopped answering pings/)
    }))

  it.scopedLive("an answer to an unknown request is ignored; an error answer fails its request only", () =>
    Effect.gen(function*() {
      const url = yield* fakeServer(handshaking((socket, request) => {
        socket.send(JSON.stringify({ type: "response_ok", request_id: 9_999, response: {} }))
        socket.send(
          JSON.stringify({
            type: "response_error",
            request_id: request.request_id,
            error: { message: "no such table: t", code: "SQLITE_ERROR" }
          })
        )
      }))
      const connection = yield* Effect.promise(() => Hrana.open(url, undefined, timeouts))
      const [outcome] = yield* Effect.promise(() => outcomes([connection.execute("SELECT * FROM t", [])]))
      expect((outcome as PromiseRejectedResult).reason).toMatchObject({ code: "SQLITE_ERROR" })
      expect(connection.closedReason()).toBeUndefined()
      connection.close()
    }))
})
