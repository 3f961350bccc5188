/**
 * The two questions the connector asks a libSQL server over its HTTP API (Hrana over HTTP, `/v2/pipeline`) rather
 * than over the connection's WebSocket. Plain promises, no Effect.
 *
 * @internal
 */
import * as Hrana from "../hranaSocket.js"
import { messageChain } from "./errorCodes.js"
import { pipelineUrl } from "./url.js"

const post = (wsUrl: string, token: string | undefined, requests: ReadonlyArray<unknown>, signal: AbortSignal) =>
  fetch(pipelineUrl(wsUrl), {
    method: "POST",
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
    body: JSON.stringify({ baton: null, requests }),
    signal
  })

/**
 * What an HTTP request with the same token says about it (its status, or undefined when none came): sqld checks a
 * token in the hello after the WebSocket upgrade, and for one it cannot verify it closes the socket without a word
 * (WebSocket 1006); a refusal it does send can be lost to the reset that follows. One request, made only after a
 * connection failed between the upgrade and the first answer, tells an authentication failure from a server going
 * away.
 */
export const authStatus = async (
  wsUrl: string,
  token: string | undefined,
  timeoutMs: number
): Promise<number | undefined> => {
  try {
    const response = await post(wsUrl, token, [{ type: "close" }], AbortSignal.timeout(timeoutMs))
    return response.status
  } catch {
    return undefined
  }
}

/**
 * Asks the server to answer once it has applied replication index `index`, and returns the index it then reports
 * (undefined when it did not answer within `ms`). sqld waits on its side for a statement that carries an index
 * (over HTTP; over WebSocket it ignores one): one round trip, no polling, and the answer means the frames are
 * applied, not only received. A primary answers at once with its own index. A server that cannot be reached fails
 * with `HranaTransportError`, as a statement on a lost socket does.
 */
export const waitForIndex = async (
  wsUrl: string,
  token: string | undefined,
  index: bigint,
  ms: number
): Promise<bigint | undefined> => {
  const stmt = { sql: "SELECT 1", replication_index: index.toString() }
  const signal = AbortSignal.timeout(ms)
  try {
    const response = await post(wsUrl, token, [{ type: "execute", stmt }, { type: "close" }], signal)
    if (!response.ok) {
      throw new Hrana.HranaTransportError(`the replication wait failed: HTTP ${response.status}`, {
        status: response.status
      })
    }
    const body = (await response.json()) as {
      results?: Array<{ type?: string; response?: { result?: { replication_index?: string | null } } }>
    }
    const reported = body.results?.[0]?.response?.result?.replication_index
    return typeof reported === "string" && /^\d+$/.test(reported) ? BigInt(reported) : undefined
  } catch (cause) {
    // The bound passed (while connecting, sending or reading the answer): the server is not there yet.
    if (signal.aborted) return undefined
    if (cause instanceof Hrana.HranaTransportError) throw cause
    throw new Hrana.HranaTransportError(`the replication wait could not reach the server: ${messageChain(cause)}`, {
      cause
    })
  }
}
