/**
 * The URL rules of the libSQL connector, alone: which configured URLs name a server's WebSocket endpoint, which are
 * refused and why, and that nothing secret reaches a message.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { displayUrl, pipelineUrl, webSocketUrl } from "../src/internal/libsql/url.js"

describe("libSQL URLs", () => {
  it("map configured URLs to the server's WebSocket endpoint", () => {
    expect(webSocketUrl("http://127.0.0.1:8080")).toEqual({ url: "ws://127.0.0.1:8080/" })
    expect(webSocketUrl("https://db.example.com")).toEqual({ url: "wss://db.example.com/" })
    expect(webSocketUrl("libsql://db.example.com")).toEqual({ url: "wss://db.example.com/" })
    expect(webSocketUrl("libsql://127.0.0.1:8080?tls=0")).toEqual({ url: "ws://127.0.0.1:8080/" })
    expect(webSocketUrl("libsql://db.example.com?tls=1")).toEqual({ url: "wss://db.example.com/" })
    expect(webSocketUrl("ws://127.0.0.1:8080")).toEqual({ url: "ws://127.0.0.1:8080/" })
    expect(webSocketUrl("wss://db.example.com/base")).toEqual({ url: "wss://db.example.com/base" })
  })

  it("refuse what cannot be one, saying why", () => {
    expect(webSocketUrl("not a url")).toEqual({ error: "not a valid URL" })
    expect(webSocketUrl("")).toEqual({ error: "not a valid URL" })
    expect(webSocketUrl("ftp://127.0.0.1")).toMatchObject({ error: expect.stringMatching(/unsupported scheme ftp:/) })
    expect(webSocketUrl("file:///tmp/db")).toMatchObject({ error: expect.stringMatching(/no host/) })
    // Without the host check these became "wss://db/" (a host nobody named) or threw from inside `new URL`.
    expect(webSocketUrl("libsql:///db")).toMatchObject({ error: expect.stringMatching(/no host/) })
    expect(webSocketUrl("libsql://")).toMatchObject({ error: expect.stringMatching(/no host/) })
  })

  it("refuse credentials in the URL: they belong in authToken", () => {
    for (const url of ["http://user:secret@127.0.0.1", "http://user@127.0.0.1", "libsql://db?authToken=secret"]) {
      expect([url, webSocketUrl(url)]).toEqual([url, { error: expect.stringMatching(/authToken/) }])
    }
  })

  it("never throw, whatever the text (a Schema filter calls them)", () => {
    FastCheck.assert(FastCheck.property(FastCheck.string({ maxLength: 200 }), (text) => {
      const outcome = webSocketUrl(text)
      return "error" in outcome || /^wss?:\/\/[^/@]+\//.test(outcome.url)
    }))
    for (const scheme of ["http", "https", "ws", "wss", "libsql"]) {
      FastCheck.assert(FastCheck.property(FastCheck.webUrl({ withQueryParameters: true }), (url) => {
        const outcome = webSocketUrl(url.replace(/^https?/, scheme))
        return "error" in outcome || /^wss?:\/\//.test(outcome.url)
      }))
    }
  })

  it("the HTTP API is on the WebSocket's port, with the TLS of the WebSocket", () => {
    expect(pipelineUrl("ws://127.0.0.1:8080/").toString()).toBe("http://127.0.0.1:8080/v2/pipeline")
    expect(pipelineUrl("wss://db.example.com/?x=1").toString()).toBe("https://db.example.com/v2/pipeline")
  })

  it("a URL shown in a message has no credentials and no query", () => {
    expect(displayUrl("http://user:secret@127.0.0.1:1/x?authToken=t")).toBe("http://127.0.0.1:1/x")
    expect(displayUrl("not a url")).toBe("(not a valid URL)")
  })
})
