/**
 * The URLs of a libSQL server: what a configured URL means (the WebSocket endpoint the connector opens), the HTTP
 * endpoint beside it, and a form of any URL fit for messages. Pure functions, no Effect.
 *
 * @internal
 */

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
  // Before any rebuilding: "libsql:///db" would otherwise become "wss://db/", a host nobody named.
  if (parsed.host === "") return { error: "the URL names no host" }
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

/** The server's HTTP API (Hrana over HTTP, `/v2/pipeline`) on the port of a WebSocket URL from `webSocketUrl`. */
export const pipelineUrl = (wsUrl: string): URL => {
  const url = new URL(wsUrl)
  url.protocol = url.protocol === "wss:" ? "https:" : "http:"
  url.pathname = "/v2/pipeline"
  url.search = ""
  return url
}

/** A URL fit for messages: without credentials or query (where a token could hide). */
export const displayUrl = (url: string): string => {
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
