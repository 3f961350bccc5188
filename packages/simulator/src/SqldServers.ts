/**
 * Real libSQL servers for a simulation (and for this project's tests): `sqld` processes started from a binary the
 * caller names, on loopback ports asked of the OS, each with its own data directory. A primary serves HTTP and Hrana
 * over WebSocket on one port and replication (gRPC) on another; a replica follows a primary's gRPC port and forwards
 * writes to it.
 *
 * Every process lives in the Scope it was started in: closing the Scope stops it (SIGTERM, then SIGKILL after a
 * bound) and removes its data directory. A process can be killed mid-run and restarted on the same ports with the
 * same data directory, as an operator restarting a crashed server would: that is the simulator's server fault.
 *
 * The servers also die with this process when it is killed outright (SIGKILL runs no finalizer and no exit hook):
 * each sqld has a watchdog, a shell that reads a pipe from this process and, at its end of file (this process is
 * gone, the kernel closed the pipe), kills the sqld and removes its data directory. Directories are named with this
 * process's id, and those of dead processes (a watchdog that was killed too) are removed at the next start.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as childProcess from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"

/**
 * A sqld process did not start (no such binary, not executable), did not become ready in time, or exited.
 *
 * @since 0.1.0
 * @category errors
 */
export class SqldError extends Data.TaggedError("SqldError")<{
  readonly name: string
  readonly message: string
}> {}

/** How long a process may take to answer its health endpoint after it was spawned. */
const readyDeadlineMs = 15_000
/** How long a SIGTERM may take before the process is killed outright. */
const stopGraceMs = 3_000
/** How much of a process's output is kept for error messages. */
const outputLimit = 16_384

/**
 * A free loopback port, asked of the OS (bind to port 0, read the port, release it).
 *
 * @since 0.1.0
 * @category utils
 */
export const freePort: Effect.Effect<number> = Effect.async<number>((resume) => {
  const server = net.createServer()
  server.unref()
  server.once("error", (cause) => resume(Effect.die(cause)))
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/**
 * @since 0.1.0
 * @category models
 */
export interface SqldProcess {
  readonly name: string
  /** `http://127.0.0.1:P`: HTTP API (and health endpoint) */
  readonly httpUrl: string
  /** `ws://127.0.0.1:P`: Hrana over WebSocket, on the same port */
  readonly wsUrl: string
  /** `http://127.0.0.1:G` on a primary (what replicas follow), undefined on a replica */
  readonly grpcUrl: string | undefined
  readonly dataDirectory: string
  readonly pid: () => number | undefined
  readonly running: () => boolean
  /** stdout and stderr of the current run (the last 16 KiB) */
  readonly output: () => string
  /** kills the process (SIGKILL by default: a crash, no clean shutdown) and waits until it has exited */
  readonly kill: (signal?: NodeJS.Signals) => Effect.Effect<void>
  /** starts it again on the same ports and data directory, and waits until it is ready */
  readonly restart: Effect.Effect<void, SqldError>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface StartOptions {
  /** the sqld binary to run */
  readonly binary: string
  /** a name for messages ("primary", "replica-1") */
  readonly name?: string
  /** PEM of an Ed25519 public key: clients must then present a JWT signed with its private key */
  readonly jwtPublicKeyPem?: string
  /** more command-line arguments for sqld */
  readonly args?: ReadonlyArray<string>
}

/** Every process started by this module and not stopped yet: killed if the test process exits without closing Scopes. */
const live = new Set<childProcess.ChildProcess>()
let exitHookInstalled = false
const installExitHook = () => {
  if (exitHookInstalled) return
  exitHookInstalled = true
  removeDeadRunsDirectories()
  process.once("exit", () => {
    for (const child of live) child.kill("SIGKILL")
  })
}

/** The prefix of this module's temporary directories: `sqlsim-sqld-<pid>-`, so that a later run knows the owner. */
const directoryPrefix = "sqlsim-sqld-"

/** Removes the temporary directories of processes that no longer exist (killed before they could remove them). */
const removeDeadRunsDirectories = () => {
  let names: Array<string>
  try {
    names = fs.readdirSync(os.tmpdir())
  } catch {
    return
  }
  for (const name of names) {
    const owner = /^sqlsim-sqld-(\d+)-/.exec(name)?.[1]
    if (owner !== undefined && !processExists(Number(owner))) {
      fs.rmSync(path.join(os.tmpdir(), name), { recursive: true, force: true })
    }
  }
}

/** Whether a process with this id exists (one owned by another user counts: it may be a run of theirs). */
const processExists = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (cause) {
    return (cause as { code?: unknown }).code === "EPERM"
  }
}

/**
 * The watchdog of one sqld run: `sh` waits for the end of its standard input, a pipe only this process writes to,
 * then kills the sqld and removes its data directory. It ignores the terminal's signals (a Ctrl-C reaches the whole
 * process group, and this process may then still be stopping its servers), and `cat` inherits that.
 */
const watchdogScript = `trap '' INT HUP TERM QUIT
cat >/dev/null
kill -KILL "$1" 2>/dev/null
sleep 0.2
rm -rf "$2"`

/**
 * Starts the watchdog of `child`, and ends it (SIGKILL: it kills nothing then) once the child has exited, before
 * its process id can be reused.
 */
const watch = (child: childProcess.ChildProcess, dataDirectory: string): void => {
  if (child.pid === undefined) return
  const args = ["-c", watchdogScript, "sqld-watchdog", String(child.pid), dataDirectory]
  const watchdog = childProcess.spawn("/bin/sh", args, { stdio: ["pipe", "ignore", "ignore"] })
  // Neither the pipe nor the watchdog keeps this process alive; the pipe is never written to.
  watchdog.on("error", () => {})
  watchdog.stdin?.on("error", () => {})
  watchdog.unref()
  ;(watchdog.stdin as net.Socket | null)?.unref()
  child.once("exit", () => {
    watchdog.kill("SIGKILL")
    watchdog.stdin?.destroy()
  })
}

const exited = (child: childProcess.ChildProcess): boolean => child.exitCode !== null || child.signalCode !== null

/** Resolves when the child has exited, or after `ms` (true: it exited). Plain timers: this runs in finalizers too. */
const waitForExit = (child: childProcess.ChildProcess, ms: number): Effect.Effect<boolean> =>
  Effect.async<boolean>((resume) => {
    if (exited(child)) return resume(Effect.succeed(true))
    const onExit = () => {
      clearTimeout(timer)
      resume(Effect.succeed(true))
    }
    const timer = setTimeout(() => {
      child.off("exit", onExit)
      resume(Effect.succeed(false))
    }, ms)
    child.once("exit", onExit)
    return Effect.sync(() => {
      clearTimeout(timer)
      child.off("exit", onExit)
    })
  })

const stopChild = (child: childProcess.ChildProcess, signal: NodeJS.Signals): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (!exited(child)) {
      child.kill(signal)
      if (!(yield* waitForExit(child, stopGraceMs)) && signal !== "SIGKILL") {
        child.kill("SIGKILL")
        yield* waitForExit(child, stopGraceMs)
      }
    }
    live.delete(child)
  })

const healthStatus = (httpUrl: string): Promise<number | undefined> =>
  fetch(`${httpUrl}/health`, { signal: AbortSignal.timeout(1_000) }).then(
    (response) => response.status,
    () => undefined
  )

/** A temporary directory removed with everything in it when the Scope closes; one that cannot be made is typed. */
const tempDir = (name: string): Effect.Effect<string, SqldError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.try({
      try: () => fs.mkdtempSync(path.join(os.tmpdir(), `${directoryPrefix}${process.pid}-`)),
      catch: (cause) =>
        new SqldError({
          name,
          message: `cannot create a data directory for sqld ${name} in ${os.tmpdir()} (${
            (cause as { code?: unknown }).code ?? String(cause)
          }); set TMPDIR to a directory you can write to`
        })
    }),
    // A directory that cannot be removed (its parent made read-only meanwhile) is left behind, as a temporary one.
    (directory) => Effect.ignore(Effect.try(() => fs.rmSync(directory, { recursive: true, force: true })))
  )

/** What to do about a binary that could not be run. */
const spawnHint = (error: Error): string => {
  const code = (error as { code?: unknown }).code
  return code === "ENOENT"
    ? " (no such file: give the path of a sqld binary)"
    : code === "EACCES"
    ? " (not executable: chmod +x it, or give the path of a sqld binary)"
    : ""
}

/**
 * Waits until a just-spawned sqld answers its health check. Fails with the process's last output if it could not be
 * started, exits first, or is not ready within `readyDeadlineMs` (then it is killed).
 */
const awaitReady = (
  spawned: childProcess.ChildProcess,
  name: string,
  httpUrl: string,
  output: () => string
): Effect.Effect<void, SqldError> =>
  Effect.gen(function*() {
    let spawnError: Error | undefined
    spawned.once("error", (error) => {
      spawnError = error
    })
    const deadline = Date.now() + readyDeadlineMs
    while (true) {
      if (spawnError !== undefined || exited(spawned)) {
        live.delete(spawned)
        const why = spawnError !== undefined
          ? `could not be started: ${spawnError.message}${spawnHint(spawnError)}`
          : `exited (${spawned.exitCode ?? spawned.signalCode}) before it was ready`
        return yield* new SqldError({ name, message: `sqld ${name} ${why}\n${output()}` })
      }
      if ((yield* Effect.promise(() => healthStatus(httpUrl))) === 200) return
      if (Date.now() > deadline) {
        yield* stopChild(spawned, "SIGKILL")
        return yield* new SqldError({
          name,
          message: `sqld ${name} did not answer ${httpUrl}/health within ${readyDeadlineMs} ms\n${output()}`
        })
      }
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 20)))
    }
  })

const start = (
  binary: string,
  name: string,
  args: ReadonlyArray<string>,
  httpPort: number,
  grpcPort: number | undefined
): Effect.Effect<SqldProcess, SqldError, Scope.Scope> =>
  Effect.gen(function*() {
    installExitHook()
    // The process runs in its data directory: a relative path is the caller's, resolved here (a bare name is
    // looked up on PATH).
    const command = binary.includes(path.sep) ? path.resolve(binary) : binary
    const dataDirectory = yield* tempDir(name)
    const httpUrl = `http://127.0.0.1:${httpPort}`
    const fullArgs = [
      "--db-path",
      path.join(dataDirectory, "data.sqld"),
      "--http-listen-addr",
      `127.0.0.1:${httpPort}`,
      "--no-welcome",
      ...args
    ]
    let child: childProcess.ChildProcess | undefined
    let output = ""

    const spawnAndWait: Effect.Effect<void, SqldError> = Effect.gen(function*() {
      output = ""
      const spawned = childProcess.spawn(command, fullArgs, {
        cwd: dataDirectory,
        stdio: ["ignore", "pipe", "pipe"],
        // sqld logs at info level by default; warnings and errors are what a failing test needs to show.
        env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" }
      })
      child = spawned
      live.add(spawned)
      watch(spawned, dataDirectory)
      const keep = (chunk: Buffer) => {
        output = (output + chunk.toString("utf8")).slice(-outputLimit)
      }
      spawned.stdout?.on("data", keep)
      spawned.stderr?.on("data", keep)
      yield* awaitReady(spawned, name, httpUrl, () => output)
    })

    const kill = (signal: NodeJS.Signals = "SIGKILL") => child === undefined ? Effect.void : stopChild(child, signal)

    yield* Effect.acquireRelease(spawnAndWait, () => kill("SIGTERM"))
    return {
      name,
      httpUrl,
      wsUrl: `ws://127.0.0.1:${httpPort}`,
      grpcUrl: grpcPort === undefined ? undefined : `http://127.0.0.1:${grpcPort}`,
      dataDirectory,
      pid: () => child?.pid,
      running: () => child !== undefined && !exited(child),
      output: () => output,
      kill,
      restart: Effect.zipRight(kill("SIGKILL"), spawnAndWait)
    }
  })

const jwtArgs = (options: StartOptions, name: string): Effect.Effect<Array<string>, SqldError, Scope.Scope> =>
  options.jwtPublicKeyPem === undefined
    ? Effect.succeed([])
    : Effect.flatMap(tempDir(name), (directory) =>
      Effect.try({
        try: () => {
          const file = path.join(directory, "jwt.pem")
          fs.writeFileSync(file, options.jwtPublicKeyPem!)
          return ["--auth-jwt-key-file", file]
        },
        catch: (cause) =>
          new SqldError({ name, message: `cannot write the JWT key for sqld ${name}: ${String(cause)}` })
      }))

/**
 * A port the OS called free can be taken by another process (a parallel test file) before sqld binds it: such a
 * start is tried again on fresh ports, a few times.
 */
const retryPortTaken = <A, R>(start: Effect.Effect<A, SqldError, R>): Effect.Effect<A, SqldError, R> =>
  Effect.retry(start, { times: 3, while: (error) => /address already in use|os error 98/i.test(error.message) })

/**
 * Starts a primary: HTTP and Hrana on one free port, replication on another.
 *
 * @since 0.1.0
 * @category constructors
 */
export const startPrimary = (options: StartOptions): Effect.Effect<SqldProcess, SqldError, Scope.Scope> =>
  retryPortTaken(Effect.gen(function*() {
    const name = options.name ?? "primary"
    const httpPort = yield* freePort
    const grpcPort = yield* freePort
    const auth = yield* jwtArgs(options, name)
    const args = ["--grpc-listen-addr", `127.0.0.1:${grpcPort}`, ...auth, ...(options.args ?? [])]
    return yield* start(options.binary, name, args, httpPort, grpcPort)
  }))

/**
 * Starts a replica of `primary`: reads are served locally, writes are forwarded to the primary.
 *
 * @since 0.1.0
 * @category constructors
 */
export const startReplica = (
  primary: SqldProcess,
  options: StartOptions
): Effect.Effect<SqldProcess, SqldError, Scope.Scope> =>
  retryPortTaken(Effect.gen(function*() {
    const name = options.name ?? "replica"
    if (primary.grpcUrl === undefined) {
      return yield* new SqldError({ name, message: `${primary.name} is not a primary: it has no replication port` })
    }
    const httpPort = yield* freePort
    const auth = yield* jwtArgs(options, name)
    const args = ["--primary-grpc-url", primary.grpcUrl, ...auth, ...(options.args ?? [])]
    return yield* start(options.binary, name, args, httpPort, undefined)
  }))

/**
 * A primary and `replicas` replicas of it (named "replica-1", "replica-2", ...).
 *
 * @since 0.1.0
 * @category constructors
 */
export const startCluster = (
  replicas: number,
  options: Omit<StartOptions, "name">
): Effect.Effect<
  { readonly primary: SqldProcess; readonly replicas: ReadonlyArray<SqldProcess> },
  SqldError,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const primary = yield* startPrimary(options)
    const started = yield* Effect.forEach(
      Array.from({ length: replicas }, (_, index) => index + 1),
      (n) => startReplica(primary, { ...options, name: `replica-${n}` })
    )
    return { primary, replicas: started }
  })
