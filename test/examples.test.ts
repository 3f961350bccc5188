/**
 * Every example runs with the command on its first line (`// Run with: ...`) and prints what it promises.
 */
import { assert, describe, it } from "@effect/vitest"
import { tempDir } from "@sqlsim/test-kit/TempDir"
import { eventually } from "@sqlsim/test-kit/Wait"
import Database from "better-sqlite3"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = fileURLToPath(new URL("../", import.meta.url))
const examples = path.join(root, "examples")

/** The command of an example's `// Run with: ...` first line. */
const runLine = (file: string): string => {
  const first = fs.readFileSync(path.join(examples, file), "utf8").split("\n")[0] ?? ""
  const match = /^\/\/ Run with: (.+)$/.exec(first)
  if (match === null) throw new Error(`${file} does not start with a "// Run with: ..." line`)
  return match[1]!
}

/** Runs an example's own command from the repository root. */
const runExample = (file: string) =>
  Effect.async<{ code: number | null; stdout: string; stderr: string }>((resume) => {
    // Its own process group, so that an interrupted test kills the shell, pnpm and node together.
    const child = spawn(runLine(file), { cwd: root, shell: true, detached: true, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text))
    child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text))
    child.on("close", (code) => resume(Effect.succeed({ code, stdout, stderr })))
    return Effect.sync(() => {
      if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL")
    })
  })

// By absolute URL, as the command's tests load it.
const tsxLoader = pathToFileURL(path.join(root, "node_modules/tsx/dist/loader.mjs")).href

/**
 * An example that serves (http-api.ts, prometheus.ts), as a process manager runs it: `node --import tsx`, the
 * loader alone, with no launcher between the signal and the app (killed when the Scope closes). Not `pnpm tsx`: the
 * tsx launcher's child installs a SIGTERM handler of its own once it has reached the launcher, and when that happens
 * after the app installed its own (NodeRuntime.runMain's, which removes itself when called), it finds no other
 * listener left and ends the process with 128 + the signal before the app has closed: exit 143 instead of 0, as a
 * race of the two start-ups.
 */
const startApp = (file: string, env: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(process.execPath, ["--import", tsxLoader, path.join(examples, file)], {
        cwd: root,
        env: { ...process.env, ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      const app = {
        child,
        output: "",
        exited: new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)))
      }
      child.stdout.setEncoding("utf8").on("data", (text: string) => (app.output += text))
      child.stderr.setEncoding("utf8").on("data", (text: string) => (app.output += text))
      return app
    }),
    ({ child }) => Effect.sync(() => child.kill("SIGKILL"))
  )

const startHttpApi = (env: Record<string, string>) => startApp("http-api.ts", env)

/** A TCP port free right now on 127.0.0.1 (the system picks it; the listener is closed before it is handed out). */
const freePort = Effect.async<number>((resume) => {
  const server = net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** The app's exit code, within a generous bound. */
const exitCode = (app: { readonly exited: Promise<number | null>; readonly output: string }) =>
  Effect.promise(() => app.exited).pipe(
    Effect.timeoutFail({
      duration: "20 seconds",
      onTimeout: () => new Error(`the app did not exit within 20 s; its output:\n${app.output}`)
    }),
    Effect.orDie
  )

describe("examples", () => {
  it("every example in the folder is listed in examples/README.md with its command", () => {
    const readme = fs.readFileSync(path.join(examples, "README.md"), "utf8")
    const files = fs.readdirSync(examples).filter((file) => file.endsWith(".ts"))
    assert.deepStrictEqual(files.sort(), ["compose-layer.ts", "demo.ts", "http-api.ts", "prometheus.ts", "retry.ts"])
    for (const file of files) {
      assert.strictEqual(runLine(file), `pnpm tsx examples/${file}`)
      assert.include(readme, `\`${runLine(file)}\``)
    }
  })

  it.live("demo.ts: the walkthrough's summary shows created 1, reused 1 and the labels in id order", () =>
    Effect.gen(function*() {
      const run = yield* runExample("demo.ts")
      assert.strictEqual(run.code, 0, run.stderr)
      const json = run.stdout.slice(0, run.stdout.lastIndexOf("}") + 1)
      const summary = JSON.parse(json)
      const labels = fs.readFileSync(path.join(examples, "labels.txt"), "utf8").split("\n").map((line) => line.trim())
        .filter((line) => line !== "")
      assert.strictEqual(summary.rows_inserted, labels.length)
      assert.deepStrictEqual(summary.rows, labels.map((label, i) => ({ id: i + 1, label })))
      assert.strictEqual(summary.health.ok, true)
      assert.strictEqual(summary.pool_stats.created, 1)
      assert.strictEqual(summary.pool_stats.reused, 1)
      const written = /Summary written to (\S+)/.exec(run.stdout)?.[1]
      assert.isDefined(written)
      assert.deepStrictEqual(JSON.parse(fs.readFileSync(written!, "utf8")), summary)
    }))

  it.live("compose-layer.ts: the repository works through SqlitePool.layer and a failed batch rolls back", () =>
    Effect.gen(function*() {
      const run = yield* runExample("compose-layer.ts")
      assert.strictEqual(run.code, 0, run.stderr)
      assert.include(run.stdout, "second batch: rolled back (SQLITE_CONSTRAINT_CHECK)")
      const events = run.stdout.split("\n").filter((line) => line.startsWith("event "))
      assert.deepStrictEqual(events, ["event 1: user.signup", "event 2: user.login", "event 3: checkout"])
      assert.match(run.stdout, /healthy: true; writer connections created 1,/)
    }))

  it.live("retry.ts: transient connect failures, retried on the planned schedule, then a connection", () =>
    Effect.gen(function*() {
      const run = yield* runExample("retry.ts")
      assert.strictEqual(run.code, 0, run.stderr)
      assert.include(run.stdout, "Planned retry delays: 20ms, 40ms, 80ms, 160ms, 320ms, 640ms, 1s, 1s")
      const attempts = run.stdout.split("\n").filter((line) => line.startsWith("attempt "))
      const failures = attempts.filter((line) => line.includes("failed, SQLITE_CANTOPEN"))
      assert.isAtLeast(failures.length, 1)
      assert.isTrue(failures.every((line) => line.includes("transient: the pool will retry")))
      assert.match(attempts[attempts.length - 1]!, /connected$/)
      assert.strictEqual(attempts.length, failures.length + 1)
      const stats = /Connected after (\d+) attempts \(connectFailures (\d+), retries (\d+)\); SELECT 42 gave 42/
        .exec(run.stdout)
      assert.isNotNull(stats)
      assert.deepStrictEqual(stats!.slice(1).map(Number), [attempts.length, failures.length, failures.length])
    }))

  it.scoped(
    "http-api.ts: every endpoint over real HTTP; SIGTERM lets the write in flight commit, closes the pool, exits 0",
    () =>
      Effect.gen(function*() {
        const filename = path.join(yield* tempDir, "http-api.db")
        const app = yield* startHttpApi({ PORT: "0", DATABASE_FILE: filename, WRITE_WAIT: "300 millis" })
        const listening = /Listening on http:\/\/[^:]+:(\d+)/
        yield* eventually(Effect.sync(() => listening.test(app.output)), "the server listens", 30_000)
        const base = `http://127.0.0.1:${listening.exec(app.output)![1]}`
        const request = (path: string, init?: RequestInit) =>
          Effect.promise(async () => {
            const response = await fetch(base + path, init)
            return { status: response.status, body: await response.json() }
          })
        const post = (body: string) => request("/item", { method: "POST", body })

        assert.deepStrictEqual(yield* post(JSON.stringify({ name: "apple", value: 13 })), {
          status: 201,
          body: { id: 1, name: "apple", value: 13 }
        })
        assert.deepStrictEqual(yield* request("/item/1"), { status: 200, body: { id: 1, name: "apple", value: 13 } })
        assert.deepStrictEqual(yield* request("/item/2"), { status: 404, body: { error: "no item 2" } })
        assert.deepStrictEqual(yield* request("/item/one"), {
          status: 400,
          body: { error: "the id must be a positive integer" }
        })
        assert.deepStrictEqual((yield* post("{ not json")).status, 400)
        assert.deepStrictEqual((yield* post(JSON.stringify({ name: " ", value: 1 }))).status, 400)
        assert.deepStrictEqual((yield* post(JSON.stringify({ name: "pear", value: 1.5 }))).status, 400)
        assert.deepStrictEqual(yield* request("/report"), {
          status: 200,
          body: { buckets: [{ bucket: 3, items: 1, total: 13, average: 13 }] }
        })
        const health = yield* request("/health")
        assert.strictEqual(health.status, 200)
        assert.strictEqual(health.body.ok, true)
        assert.strictEqual(health.body.writer.journalMode, "wal")

        // A write whose transaction is open (its lock seen from another connection) when SIGTERM arrives.
        const inFlight = Effect.runPromise(post(JSON.stringify({ name: "plum", value: 7 })))
        const probe = new Database(filename, { timeout: 0 })
        yield* eventually(
          Effect.sync(() => {
            try {
              probe.exec("BEGIN IMMEDIATE; ROLLBACK")
              return false
            } catch (error) {
              return (error as { code?: string }).code === "SQLITE_BUSY"
            }
          }),
          "the write transaction is open"
        )
        probe.close()
        app.child.kill("SIGTERM")
        assert.deepStrictEqual(yield* Effect.promise(() => inFlight), {
          status: 201,
          body: { id: 2, name: "plum", value: 7 }
        })
        assert.strictEqual(yield* exitCode(app), 0, app.output)

        // Closed cleanly: the last connection checkpointed and removed the WAL; the totals match the items.
        assert.isFalse(fs.existsSync(filename + "-wal"))
        const db = new Database(filename, { readonly: true })
        try {
          assert.strictEqual(db.pragma("integrity_check", { simple: true }), "ok")
          assert.deepStrictEqual(db.prepare("SELECT items, value FROM totals").get(), { items: 2, value: 20 })
          assert.deepStrictEqual(db.prepare("SELECT id, name, value FROM items ORDER BY id").all(), [
            { id: 1, name: "apple", value: 13 },
            { id: 2, name: "plum", value: 7 }
          ])
        } finally {
          db.close()
        }
      }),
    60_000
  )

  it.scoped(
    "http-api.ts: a bad PORT stops it with the reason before the database is opened",
    () =>
      Effect.gen(function*() {
        const filename = path.join(yield* tempDir, "http-api.db")
        const app = yield* startHttpApi({ PORT: "70000", DATABASE_FILE: filename })
        assert.strictEqual(yield* exitCode(app), 1, app.output)
        assert.include(app.output, "PORT must be an integer from 0 to 65535")
        assert.isFalse(fs.existsSync(filename))
      }),
    60_000
  )
  it.scoped(
    "prometheus.ts: a scrape over real HTTP shows the pool's OpenTelemetry-convention series for both lanes",
    () =>
      Effect.gen(function*() {
        const filename = path.join(yield* tempDir, "prometheus.db")
        const port = yield* freePort
        const app = yield* startApp("prometheus.ts", { PORT: String(port), DATABASE_FILE: filename })
        const url = `http://127.0.0.1:${port}/metrics`
        yield* eventually(Effect.sync(() => app.output.includes(`metrics at ${url}`)), "the exporter serves", 30_000)
        const scrape = Effect.promise(async () => {
          const response = await fetch(url)
          return { status: response.status, type: response.headers.get("content-type"), text: await response.text() }
        })
        /** The value of the one sample of `name` whose labels include every label given. */
        const sample = (text: string, name: string, labels: Record<string, string>) => {
          const lines = text.split("\n").filter((line) =>
            line.startsWith(`${name}{`) &&
            Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`))
          )
          assert.lengthOf(lines, 1, `${name} ${JSON.stringify(labels)} in:\n${text}`)
          return Number(lines[0]!.slice(lines[0]!.lastIndexOf(" ") + 1))
        }
        const writer = { db_client_connection_pool_name: `${filename} (writer)`, sqlsim_lane: "writer" }
        const readers = { db_client_connection_pool_name: `${filename} (readers)`, sqlsim_lane: "reader" }
        // A few rounds of the workload (each round: 2 writer leases, 2 Reader leases).
        yield* eventually(
          Effect.map(scrape, ({ text }) =>
            text.includes("db_client_connection_use_time_count") &&
            sample(text, "db_client_connection_use_time_count", readers) >= 10),
          "ten Reader leases ended",
          30_000
        )
        const { status, text, type } = yield* scrape
        assert.strictEqual(status, 200)
        assert.include(type, "text/plain")
        for (
          const [name, kind] of [
            ["db_client_connection_count", "gauge"],
            ["db_client_connection_max", "gauge"],
            ["db_client_connection_idle_max", "gauge"],
            ["db_client_connection_idle_min", "gauge"],
            ["db_client_connection_pending_requests", "gauge"],
            ["db_client_connection_timeouts_total", "counter"],
            ["db_client_connection_create_time", "histogram"],
            ["db_client_connection_wait_time", "histogram"],
            ["db_client_connection_use_time", "histogram"],
            ["sqlsim_pool_connections_created_total", "counter"],
            ["sqlsim_wal_size", "gauge"]
          ]
        ) {
          assert.include(text, `# TYPE ${name} ${kind}\n`)
        }
        for (const name of ["create_time", "wait_time", "use_time"]) {
          assert.include(text, `# UNIT db_client_connection_${name} s\n`)
        }
        assert.strictEqual(sample(text, "db_client_connection_max", writer), 1)
        assert.strictEqual(sample(text, "db_client_connection_max", readers), 2)
        assert.strictEqual(sample(text, "db_client_connection_idle_max", readers), 2)
        assert.strictEqual(sample(text, "db_client_connection_idle_min", writer), 1)
        assert.strictEqual(sample(text, "db_client_connection_idle_min", readers), 0)
        for (const lane of [writer, readers]) {
          const idle = sample(text, "db_client_connection_count", { ...lane, db_client_connection_state: "idle" })
          const used = sample(text, "db_client_connection_count", { ...lane, db_client_connection_state: "used" })
          assert.isAtLeast(idle + used, 1)
          assert.isAtLeast(sample(text, "db_client_connection_pending_requests", lane), 0)
          assert.strictEqual(sample(text, "db_client_connection_timeouts_total", lane), 0)
          assert.strictEqual(sample(text, "db_client_connection_create_time_count", lane), 1)
          for (const name of ["wait_time", "use_time"]) {
            const count = sample(text, `db_client_connection_${name}_count`, lane)
            assert.isAtLeast(count, 10)
            // The histogram's last bucket holds every observation.
            assert.strictEqual(sample(text, `db_client_connection_${name}_bucket`, { ...lane, le: "+Inf" }), count)
            assert.isAtLeast(sample(text, `db_client_connection_${name}_sum`, lane), 0)
          }
        }
        assert.isAbove(sample(text, "sqlsim_wal_size", { db_namespace: filename }), 0)

        app.child.kill("SIGTERM")
        assert.strictEqual(yield* exitCode(app), 0, app.output)
      }),
    60_000
  )
  it.scoped(
    "prometheus.ts: a port in use stops it with one line that says so, and exit code 1",
    () =>
      Effect.gen(function*() {
        const taken = yield* Effect.acquireRelease(
          Effect.async<net.Server>((resume) => {
            const server = net.createServer()
            server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
          }),
          (server) =>
            Effect.async<void>((resume) => {
              server.close(() => resume(Effect.void))
            })
        )
        const port = (taken.address() as net.AddressInfo).port
        const filename = path.join(yield* tempDir, "prometheus.db")
        const app = yield* startApp("prometheus.ts", { PORT: String(port), DATABASE_FILE: filename })
        assert.strictEqual(yield* exitCode(app), 1, app.output)
        assert.include(app.output, `cannot serve the metrics on 127.0.0.1:${port}`)
        assert.include(app.output, "EADDRINUSE")
        assert.notMatch(app.output, /^\s+at /m, "no stack trace")
      }),
    60_000
  )
})
