/**
 * The sqld test support itself: processes start on ports of their own, stop when their Scope closes (leaving no
 * process and no data directory behind), survive a kill and restart with their data, and a process that cannot
 * start fails with what it printed.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Sqld from "@sqlsim/test-kit/Sqld"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as fs from "node:fs"

const alive = (pid: number | undefined): boolean => {
  if (pid === undefined) return false
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** One statement through sqld's HTTP API (Hrana over HTTP, version 2). */
const pipeline = (url: string, sql: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${url}/v2/pipeline`, {
      method: "POST",
      body: JSON.stringify({ requests: [{ type: "execute", stmt: { sql } }, { type: "close" }] })
    })
    return (await response.json()) as { results: Array<{ type: string; response?: any }> }
  })

describe("sqld test support", () => {
  it.effect("a primary and a replica run on distinct loopback ports and stop with their Scope", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { primary, replicas } = yield* Scope.extend(Sqld.startCluster(1), scope)
      const replica = replicas[0]!
      const urls = new Set([primary.httpUrl, primary.grpcUrl, replica.httpUrl])
      expect(urls.size).toBe(3)
      expect([primary.running(), replica.running()]).toEqual([true, true])
      const pids = [primary.pid(), replica.pid()]
      const directories = [primary.dataDirectory, replica.dataDirectory]
      expect(directories.every((directory) => fs.existsSync(directory))).toBe(true)

      yield* Scope.close(scope, Exit.void)
      expect(pids.map(alive)).toEqual([false, false])
      expect(directories.some((directory) => fs.existsSync(directory))).toBe(false)
    }))

  it.scoped("a killed process restarts on the same port with its data", () =>
    Effect.gen(function*() {
      const primary = yield* Sqld.startPrimary()
      yield* pipeline(primary.httpUrl, "CREATE TABLE t (v TEXT)")
      yield* pipeline(primary.httpUrl, "INSERT INTO t VALUES ('kept')")
      const before = primary.pid()
      yield* primary.kill("SIGKILL")
      expect(primary.running()).toBe(false)
      expect(alive(before)).toBe(false)
      yield* primary.restart
      expect(primary.pid()).not.toBe(before)
      const answer = yield* pipeline(primary.httpUrl, "SELECT v FROM t")
      expect(answer.results[0]!.response.result.rows).toEqual([[{ type: "text", value: "kept" }]])
    }))

  it.scoped("a process that cannot start fails with its own output", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Sqld.startPrimary({ args: ["--no-such-option"] }))
      expect(error._tag).toBe("SqldError")
      expect(error.message).toMatch(/exited .* before it was ready/)
      expect(error.message).toMatch(/no-such-option/)
    }))
})
