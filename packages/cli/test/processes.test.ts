/**
 * The command as a process among others: Ctrl-C during a long page check, a file another process has locked, and a
 * `simulate --sqld` run killed outright (its sqld servers, their ports and data directories, its temporary report
 * files). All on the real `sqlsim` command, real files and real sqld processes.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Sqld from "@sqlsim/test-kit/Sqld"
import Database from "better-sqlite3"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { filesIn, linesOf, type RunOptions, signalWhen, sqlsim, tempDir } from "./utils.js"

/**
 * A database whose `integrity_check` takes seconds: 800,000 rows under four indexes (about 170 MB), built by SQLite
 * itself in a few seconds.
 */
const makeSlowToCheckDatabase = (filename: string) => {
  const db = new Database(filename)
  db.exec(`
    PRAGMA journal_mode = OFF;
    PRAGMA synchronous = OFF;
    CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT, c INTEGER);
    WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 800000)
      INSERT INTO t SELECT x, hex(randomblob(16)), hex(randomblob(8)), random() FROM n;
    CREATE INDEX ta ON t(a);
    CREATE INDEX tb ON t(b);
    CREATE INDEX tc ON t(c);
    CREATE INDEX tab ON t(a, b);
    PRAGMA journal_mode = DELETE;
  `)
  db.close()
}

/** Another process that holds `filename`'s EXCLUSIVE lock (rollback journal) until its Scope closes. */
const lockHolder = (filename: string) =>
  Effect.acquireRelease(
    Effect.async<ReturnType<typeof spawn>>((resume) => {
      const program = `
        const Database = require(${JSON.stringify(createRequire(import.meta.url).resolve("better-sqlite3"))})
        const db = new Database(${JSON.stringify(filename)})
        db.exec("BEGIN EXCLUSIVE; INSERT INTO t (a) VALUES ('held')")
        process.stdout.write("holding\\n")
        process.stdin.resume()
        process.stdin.on("end", () => process.exit(0))
      `
      const child = spawn(process.execPath, ["-e", program], { stdio: ["pipe", "pipe", "inherit"] })
      child.stdout.once("data", () => resume(Effect.succeed(child)))
    }),
    (child) => Effect.sync(() => child.kill("SIGKILL"))
  )

/** The process ids of `pid`'s descendants, read from /proc. */
const descendantsOf = (pid: number): Array<number> => {
  const parents = new Map<number, number>()
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      // The command name is in parentheses and may hold spaces: the fields after its closing one are fixed.
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8")
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]))
    } catch {
      // exited meanwhile
    }
  }
  const found: Array<number> = []
  const visit = (parent: number) => {
    for (const [child, itsParent] of parents) {
      if (itsParent === parent) {
        found.push(child)
        visit(child)
      }
    }
  }
  visit(pid)
  return found
}

/** Sends `signal` to `pid` unless it has exited meanwhile: whether it was sent. */
const signalIfAlive = (pid: number, signal: NodeJS.Signals): boolean => {
  try {
    return process.kill(pid, signal)
  } catch {
    return false
  }
}

/** The arguments of a live process (not a zombie), or undefined when it has exited. */
const liveArguments = (pid: number): Array<string> | undefined => {
  try {
    if (/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, "utf8"))) return undefined
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")
  } catch {
    return undefined
  }
}

/** Whether `pid` or one of its descendants has `file` open. */
const holdsOpen = (pid: number, file: string): boolean =>
  [pid, ...descendantsOf(pid)].some((each) => {
    try {
      return fs.readdirSync(`/proc/${each}/fd`).some((fd) => {
        try {
          return fs.readlinkSync(`/proc/${each}/fd/${fd}`) === file
        } catch {
          return false
        }
      })
    } catch {
      return false
    }
  })

/**
 * Whether the process has loaded better-sqlite3's native library (at its first open of a database): 12's own build,
 * or 13's prebuilt binary.
 */
const loadedDriver = (pid: number): boolean => {
  try {
    return /better_sqlite3\.node|better-sqlite3\/prebuilds\//.test(fs.readFileSync(`/proc/${pid}/maps`, "utf8"))
  } catch {
    return false
  }
}

/** A process's state and parent, from /proc (for a failure's message). */
const statusOf = (pid: number): string => {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
    return [/^State:.*$/m, /^PPid:.*$/m].map((field) => field.exec(status)?.[0] ?? "").join(", ")
  } catch {
    return "gone"
  }
}

/** The live processes whose arguments name `text`. */
const processesNaming = (text: string): Array<number> =>
  fs.readdirSync("/proc").filter((entry) => /^\d+$/.test(entry)).map(Number).filter((pid) =>
    liveArguments(pid)?.some((arg) => arg.includes(text)) === true
  )

const sleep = (millis: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, millis)))

/** Polls `condition` every 100 ms until it holds or `millis` have passed; returns whether it held. */
const eventually = (condition: () => boolean, millis: number) =>
  Effect.gen(function*() {
    const deadline = Date.now() + millis
    while (Date.now() < deadline) {
      if (condition()) return true
      yield* sleep(100)
    }
    return condition()
  })

const portAnswers = (port: number) =>
  Effect.promise(() =>
    new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1")
      socket.once("connect", () => {
        socket.destroy()
        resolve(true)
      })
      socket.once("error", () => resolve(false))
    })
  )

const portAnswersWithin = (port: number, millis: number) =>
  Effect.gen(function*() {
    const deadline = Date.now() + millis
    while (!(yield* portAnswers(port))) {
      if (Date.now() >= deadline) return false
      yield* sleep(100)
    }
    return true
  })

describe("sqlsim as a process", () => {
  it.live(
    "health: Ctrl-C during a long page check ends the command within a second or so, without ok: true; "
      + "killed with SIGKILL, it leaves no check running",
    () =>
      Effect.gen(function*() {
        const db = path.join(yield* tempDir, "big.db")
        makeSlowToCheckDatabase(db)
        // The check runs for seconds (10 on this machine); the signal comes half a second after a process of the
        // command opened the file (the checks before the page check take milliseconds).
        // `toGroup`: to the command and every process it started at once, as a terminal's Ctrl-C reaches them.
        const checkInterrupted = (signalName: NodeJS.Signals, toGroup = false) =>
          Effect.gen(function*() {
            let child: Parameters<NonNullable<RunOptions["onSpawn"]>>[0] | undefined
            const signal = signalWhen(signalName, () => child?.pid !== undefined && holdsOpen(child.pid, db), 500)
            const run = yield* sqlsim(["health", "--db", db, "--check", "full"], {
              ...signal.options,
              onSpawn: (spawned) => {
                child = spawned
                const pid = spawned.pid!
                signal.options.onSpawn(
                  toGroup
                    ? { kill: (sent) => [pid, ...descendantsOf(pid)].map((each) => signalIfAlive(each, sent))[0]! }
                    : spawned
                )
              }
            })
            assert.isDefined(signal.state.sentAt)
            return { run, afterSignalMs: run.endedAt - signal.state.sentAt! }
          })

        const { afterSignalMs, run } = yield* checkInterrupted("SIGINT")
        assert.isBelow(afterSignalMs, 2_500, `exited ${Math.round(afterSignalMs)} ms after SIGINT (${run.stdout})`)
        assert.notInclude(run.stdout, "\"ok\": true")
        assert.strictEqual(run.code, 130, run.stderr)
        assert.deepStrictEqual(processesNaming(db), [], "nothing of the check is left running")

        // The page check's process gets the Ctrl-C too: it leaves the command's interruption to act, not "killed".
        const inGroup = yield* checkInterrupted("SIGINT", true)
        assert.isBelow(inGroup.afterSignalMs, 2_500, `exited ${Math.round(inGroup.afterSignalMs)} ms after SIGINT`)
        assert.strictEqual(inGroup.run.code, 130, inGroup.run.stderr)
        assert.strictEqual(inGroup.run.stdout, "", inGroup.run.stderr)
        assert.deepStrictEqual(processesNaming(db), [], "nothing of the check is left running")

        // SIGKILL runs nothing of the command: the check's process sees its pipe from the command end.
        yield* checkInterrupted("SIGKILL")
        assert.isTrue(yield* eventually(() => processesNaming(db).length === 0, 2_000), "the check ended with it")
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "health on a file another process holds EXCLUSIVE: a clear error after the retries, and Ctrl-C works",
    () =>
      Effect.gen(function*() {
        const db = path.join(yield* tempDir, "locked.db")
        const setUp = new Database(db)
        setUp.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)")
        setUp.close()
        yield* lockHolder(db)

        const startedAt = performance.now()
        const run = yield* sqlsim(["health", "--db", db])
        const tookMs = run.endedAt - startedAt
        assert.strictEqual(run.code, 1, run.stderr)
        // Four attempts without SQLite's busy wait (5 s each, 20 s in all, before): node's start-up (seconds when the
        // machine is busy) and delays of 10, 20 and 40 ms.
        assert.isBelow(tookMs, 10_000)
        const lines = linesOf(run.stderr)
        assert.strictEqual(lines.length, 1, run.stderr)
        const gaveUp = /locked by another connection.*\(SQLITE_BUSY\); gave up after 4 attempts over (\d+) ms/.exec(
          lines[0]!
        )
        assert.isNotNull(gaveUp, lines[0])
        assert.isBelow(Number(gaveUp![1]), 2_000)
        assert.include(run.stdout, "\"ok\": false")

        // Many retries, up to a second apart: the event loop runs meanwhile, so SIGINT ends the command at once. The
        // signal comes half a second after the first open (when the driver's native library was loaded).
        let child: Parameters<NonNullable<RunOptions["onSpawn"]>>[0] | undefined
        const signal = signalWhen("SIGINT", () => child?.pid !== undefined && loadedDriver(child.pid), 500)
        const interrupted = yield* sqlsim(["health", "--db", db, "--max-retries", "50"], {
          ...signal.options,
          onSpawn: (spawned) => {
            child = spawned
            signal.options.onSpawn(spawned)
          }
        })
        const afterSignalMs = interrupted.endedAt - signal.state.sentAt!
        assert.strictEqual(interrupted.code, 130, interrupted.stderr)
        assert.isBelow(afterSignalMs, 1_500)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "simulate --sqld SIGKILLed: its sqld servers die, their ports and directories are freed; the next run "
      + "removes the dead run's temporary report files",
    () =>
      Effect.gen(function*() {
        const directory = yield* tempDir
        const servers: Array<{ pid: number; port: number; dataDirectory: string }> = []
        let child: Parameters<NonNullable<RunOptions["onSpawn"]>>[0] | undefined
        const killed = yield* Effect.fork(sqlsim(
          ["simulate", "--sqld", Sqld.sqldBinary(), "--duration", "60s", "--json", path.join(directory, "run.json")],
          { onSpawn: (spawned) => (child = spawned) }
        ))
        // Both servers (a primary and one replica) are up: their command lines name their port and data directory.
        const started = yield* eventually(() => {
          if (child?.pid === undefined) return false
          servers.length = 0
          for (const pid of descendantsOf(child.pid)) {
            const args = liveArguments(pid)
            if (args === undefined || !path.basename(args[0]!).startsWith("sqld")) continue
            const port = Number(args[args.indexOf("--http-listen-addr") + 1]!.split(":")[1])
            servers.push({ pid, port, dataDirectory: path.dirname(args[args.indexOf("--db-path") + 1]!) })
          }
          return servers.length === 2
        }, 30_000)
        assert.isTrue(started, "sqld servers started")
        const leftover = filesIn(directory).filter((name) => /^\.sqlsim-.*\.tmp$/.test(name))
        assert.lengthOf(leftover, 1, "the report's temporary file, created at the start")
        // A sqld is in the process list before it listens: wait for each port to answer.
        for (const server of servers) {
          assert.isTrue(yield* portAnswersWithin(server.port, 30_000), `sqld on port ${server.port} answers`)
        }

        child!.kill("SIGKILL")
        yield* Effect.fromFiber(killed)
        // A generous real-time bound for the chain (the kernel closes the watchdogs' pipe, each watchdog's `cat` ends,
        // its shell kills the sqld): on a loaded machine each step can wait for a core. A failure shows what is left.
        const gone = yield* eventually(() => servers.every((server) => liveArguments(server.pid) === undefined), 10_000)
        const left = servers.filter((server) => liveArguments(server.pid) !== undefined).map((server) => ({
          ...server,
          status: statusOf(server.pid),
          watchdogs: processesNaming(server.dataDirectory).map((pid) => ({ pid, status: statusOf(pid) }))
        }))
        assert.isTrue(gone, `no sqld left: ${JSON.stringify(left)}`)
        for (const server of servers) {
          // Another test's server (the suites run side by side) may take the freed port at once: an answer is only
          // a failure if a sqld serving the dead run's data directory is alive (its watchdog, a shell that removes
          // the directory, names it too).
          const answered = yield* portAnswers(server.port)
          const serving = processesNaming(server.dataDirectory).filter((pid) =>
            path.basename(liveArguments(pid)?.[0] ?? "").startsWith("sqld")
          )
          assert.isFalse(
            answered && serving.length > 0,
            `port ${server.port} still served from ${server.dataDirectory}`
          )
        }
        const removed = yield* eventually(() => servers.every((server) => !fs.existsSync(server.dataDirectory)), 5_000)
        assert.isTrue(removed, "the data directories are removed")

        // A later run writing into the same directory removes the dead run's temporary file, not a live process's
        // (this one's); starting its servers, it removes data directories of dead runs that their watchdog did not.
        const live = `.sqlsim-${process.pid}-abcdefgh.tmp`
        fs.writeFileSync(path.join(directory, live), "")
        const orphan = path.join(os.tmpdir(), `sqlsim-sqld-${child!.pid}-leftover`)
        fs.mkdirSync(orphan)
        const next = yield* sqlsim([
          "simulate",
          "--sqld",
          Sqld.sqldBinary(),
          "--ops",
          "20",
          "--json",
          path.join(directory, "next.json")
        ])
        assert.strictEqual(next.code, 0, next.stderr)
        assert.deepStrictEqual(filesIn(directory), [live, "next.json"])
        assert.isFalse(fs.existsSync(orphan))
      }).pipe(Effect.scoped),
    120_000
  )
})
