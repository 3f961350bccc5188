/**
 * A loopback TCP relay in front of a real server, to break connections the way a network does: `cut` resets every
 * connection through it at once while the server keeps running (a dropped link, a restarted load balancer). The
 * bytes are passed through untouched; nothing is answered on the server's behalf.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as net from "node:net"

export interface TcpRelay {
  /** `127.0.0.1:P`, to put in a URL in place of the server's address */
  readonly address: string
  /** connections open through the relay now */
  readonly open: () => number
  /** resets every open connection (both sides see ECONNRESET or an abrupt close); new ones are still relayed */
  readonly cut: () => void
}

/** Starts a relay to `127.0.0.1:targetPort`; it stops (and resets what is left) when the Scope closes. */
export const start = (targetPort: number): Effect.Effect<TcpRelay, never, Scope.Scope> =>
  Effect.gen(function*() {
    const sockets = new Set<net.Socket>()
    const clients = new Set<net.Socket>()
    const track = (socket: net.Socket) => {
      sockets.add(socket)
      socket.once("close", () => sockets.delete(socket))
      // A reset is the point of the relay: its errors are expected and must not crash the test process.
      socket.on("error", () => undefined)
    }
    const server = net.createServer((incoming) => {
      const outgoing = net.connect(targetPort, "127.0.0.1")
      track(incoming)
      clients.add(incoming)
      incoming.once("close", () => clients.delete(incoming))
      track(outgoing)
      incoming.pipe(outgoing)
      outgoing.pipe(incoming)
      incoming.once("close", () => outgoing.destroy())
      outgoing.once("close", () => incoming.destroy())
    })
    const cut = () => {
      for (const socket of sockets) socket.resetAndDestroy()
    }
    const port = yield* Effect.acquireRelease(
      Effect.async<number>((resume) => {
        server.listen(0, "127.0.0.1", () => {
          const address = server.address()
          resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          cut()
          server.close(() => resume(Effect.void))
        })
    )
    return { address: `127.0.0.1:${port}`, open: () => clients.size, cut }
  })
