/**
 * The health check of a database file. It opens the file with SQLite's own read-only open (never through the pool,
 * whose connections may write: a read-write connection that closes last checkpoints the write-ahead log into the main
 * file and deletes the -wal and -shm), reads the header and the schema, and checks the pages (`quick_check` by
 * default). No byte of the main file or the -wal changes, and no file is created. The -shm is only read, except when a
 * live writer has the database open: the -shm is then that writer's shared memory, and this reader moves a read mark
 * in it like any other (SQLite's locking protocol, not data).
 *
 * How the file is opened depends on what is beside it, because SQLite's plain read-only open still writes the -shm
 * (it rebuilds the WAL index there) and creates a missing -wal:
 * - rollback-journal database: `mode=ro`;
 * - WAL database with a -wal and a -shm: `mode=ro&readonly_shm=1` (the -shm is only read; when no other connection
 *   is open, SQLite reads the log itself instead of trusting the -shm);
 * - WAL database without a -wal (or with an empty one): `immutable=1`, since the main file then holds every commit;
 *   if the files change during the check (a writer came), the check says so instead of answering;
 * - WAL database whose -wal holds frames but whose -shm is missing: SQLite cannot read it without creating a -shm,
 *   so the check refuses with a line that says what to do.
 *
 * The header and the schema are read here, without SQLite's busy wait (a locked file is retried on the pool's
 * schedule); the page check, one long native call, runs in a child process opened the same way
 * (`internal/pageCheck.ts`), so that Ctrl-C is acted on while it runs.
 *
 * @since 0.1.0
 */
import { PoolConfig, type PoolError, RetryPolicy, SqliteCode } from "@sqlsim/sqlite-pool"
import Database from "better-sqlite3"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import * as PageCheckProcess from "./internal/pageCheck.js"

/**
 * How much of the file the check reads:
 * - "quick": `PRAGMA quick_check`, every page of every table and index once (about the time it takes to read the
 *   file); finds damaged b-tree pages, bad free lists, out-of-order keys;
 * - "full": `PRAGMA integrity_check`, the same and also that every index matches its table (several times slower on
 *   indexed data);
 * - "none": the header and the schema only (instant at any size; damage elsewhere goes unnoticed).
 *
 * @since 0.1.0
 * @category models
 */
export type PageCheck = "quick" | "full" | "none"

/**
 * @since 0.1.0
 * @category constants
 */
export const pageChecks: ReadonlyArray<PageCheck> = ["quick", "full", "none"]

/**
 * The most problems a page check reports (SQLite stops looking after as many).
 *
 * @since 0.1.0
 * @category constants
 */
export const maxProblems = 10

/**
 * @since 0.1.0
 * @category models
 */
export interface Healthy {
  readonly database: string
  readonly ok: true
  /** time to open the file and get a first answer */
  readonly latency_ms: number
  readonly sqlite_version: string
  readonly journal_mode: string
  readonly page_check: PageCheck
  /** time the page check took (SQLite's own, in the process that ran it) */
  readonly page_check_ms: number
  readonly page_size: number
  readonly pages: number
  /** size of the -wal file in bytes (0 without one, or in a rollback-journal database) */
  readonly wal_bytes: number
  /**
   * frames of the -wal not yet copied into the main file by a checkpoint, as the -shm's WAL index says; null when the
   * index cannot be read consistently (a writer was changing it)
   */
  readonly wal_frames_not_checkpointed: number | null
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Unhealthy {
  readonly database: string
  readonly ok: false
  /** what is wrong, in one line */
  readonly error: string
  /** the first problems the page check found (up to `maxProblems`), when it ran */
  readonly problems?: ReadonlyArray<string>
}

/**
 * @since 0.1.0
 * @category models
 */
export type Report = Healthy | Unhealthy

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** default "quick" */
  readonly pageCheck?: PageCheck | undefined
}

/**
 * The database failed its health check (what the `health` command exits non-zero with).
 *
 * @since 0.1.0
 * @category errors
 */
export class UnhealthyError extends Data.TaggedError("UnhealthyError")<{
  readonly report: Unhealthy
}> {
  override get message(): string {
    return `unhealthy: ${this.report.error}`
  }
}

class CheckFailure extends Data.TaggedError("CheckFailure")<{
  readonly error: string
  readonly transient: boolean
  readonly problems?: ReadonlyArray<string>
}> {}

/**
 * Checks the database named by `pool.filename`. A file another connection has locked is tried again on the pool's
 * retry schedule (`retries`, `retryBaseDelay`, `retryMaxDelay`), never by waiting inside SQLite, so the event loop
 * (and Ctrl-C) keeps running; the page check runs in a child process, which interrupting the check kills at once.
 * Fails only for an invalid configuration; an unhealthy database is a report with `ok: false`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const check = (
  pool: PoolConfig.Input,
  options: Options = {}
): Effect.Effect<Report, PoolError.PoolConfigError> =>
  Effect.gen(function*() {
    const config = yield* PoolConfig.make({ ...pool, minConnections: 0 })
    const given = config.filename
    const database = given === ":memory:" ? given : path.resolve(given)
    const pageCheck = options.pageCheck ?? "quick"
    const startedAt = performance.now()
    let attempts = 0
    const counted = Effect.suspend(() => {
      attempts++
      return checkOnce(given, database, pageCheck)
    })
    return yield* counted.pipe(
      Effect.retry({ schedule: RetryPolicy.schedule(config), while: (failure) => failure.transient }),
      Effect.catchAll((failure): Effect.Effect<Report> => {
        const error = failure.transient && attempts > 1
          ? `${failure.error}; gave up after ${attempts} attempts over ${Math.round(performance.now() - startedAt)} ms`
          : failure.error
        return Effect.succeed(
          failure.problems === undefined
            ? { database, ok: false, error }
            : { database, ok: false, error, problems: failure.problems }
        )
      })
    )
  })

/** What the files beside the database say about how to open it, and their state to compare with afterwards. */
interface Plan {
  readonly uri: string
  readonly journalMode: string | undefined
  /** when the open does not take SQLite's locks: the files' state, which must be the same after the check */
  readonly unlockedState: string | undefined
}

/** What the check reads before the pages (through a connection of this thread: each read is quick). */
interface Header {
  readonly version: string
  readonly latencyMs: number
  readonly pageSize: number
  readonly pages: number
  readonly journalMode: string
}

const checkOnce = (given: string, database: string, pageCheck: PageCheck): Effect.Effect<Report, CheckFailure> =>
  Effect.gen(function*() {
    const plan = yield* attempt(() =>
      database === ":memory:" ? { uri: ":memory:", journalMode: undefined, unlockedState: undefined } : (
        planOpen(given, database)
      )
    )
    const header = yield* attempt(() => readHeaderAndSchema(given, database, plan))
    let checkMs = 0
    if (pageCheck !== "none") {
      const pragma = pageCheck === "quick" ? "quick_check" : "integrity_check"
      const checked = yield* pageProblems(given, plan.uri, pragma)
      checkMs = checked.millis
      const problems = checked.problems
      if (problems.length > 0) {
        return yield* new CheckFailure({
          error: `${given} is corrupt: ${pragma} found ${
            problems.length >= maxProblems ? `at least ${maxProblems}` : problems.length
          } problem${problems.length === 1 ? "" : "s"}, the first: ${problems[0]}`,
          transient: false,
          problems
        })
      }
    }
    if (plan.unlockedState !== undefined && fileState(database) !== plan.unlockedState) {
      return yield* new CheckFailure({
        error: `${given} changed while it was checked (another connection wrote to it); check again`,
        transient: true
      })
    }
    return {
      database,
      ok: true,
      latency_ms: rounded(header.latencyMs),
      sqlite_version: header.version,
      journal_mode: header.journalMode,
      page_check: pageCheck,
      page_check_ms: rounded(checkMs),
      page_size: header.pageSize,
      pages: header.pages,
      ...walState(database, header.journalMode)
    } satisfies Healthy
  })

/** A step that throws `CheckFailure` (or anything else: a failure that is not retried), as an Effect. */
const attempt = <A>(f: () => A): Effect.Effect<A, CheckFailure> =>
  Effect.try({
    try: f,
    catch: (cause) =>
      cause instanceof CheckFailure ? cause : new CheckFailure({ error: String(cause), transient: false })
  })

const readHeaderAndSchema = (given: string, database: string, plan: Plan): Header => {
  const startedAt = performance.now()
  const db = open(given, database, plan.uri)
  try {
    const version = run(given, () => db.prepare("SELECT sqlite_version() AS v").pluck().get() as string)
    // Reading the schema reads page 1 and the header: a file that is not a database fails here.
    run(given, () => db.prepare("SELECT count(*) FROM sqlite_schema").pluck().get())
    const latencyMs = performance.now() - startedAt
    const pageSize = run(given, () => db.pragma("page_size", { simple: true }) as number)
    const pages = run(given, () => db.pragma("page_count", { simple: true }) as number)
    const journalMode = plan.journalMode ?? run(given, () => db.pragma("journal_mode", { simple: true }) as string)
    return { version, latencyMs, pageSize, pages, journalMode }
  } finally {
    db.close()
  }
}

/**
 * The problems a page check reports. SQLite returns them as rows (one row may hold several lines) and, on some
 * damage, then fails the statement with SQLITE_CORRUPT: the rows already read are the report.
 */
const pageProblems = (
  given: string,
  uri: string,
  pragma: string
): Effect.Effect<{ readonly problems: Array<string>; readonly millis: number }, CheckFailure> =>
  PageCheckProcess.run(uri, pragma, maxProblems).pipe(
    Effect.mapError((reason) => new CheckFailure({ error: `cannot check ${given}: ${reason}`, transient: false })),
    Effect.flatMap(({ error, millis, rows }) => {
      const problems = rows.flatMap((row) => row.split("\n")).filter((line) =>
        line !== "ok" && !line.startsWith("*** in database")
      )
      if (error !== undefined) {
        if (problems.length === 0) return Effect.fail(failureOf(given, error, `${pragma} failed on`))
        problems.push(`${pragma} stopped: ${error.message}`)
      }
      return Effect.succeed({ problems: problems.slice(0, maxProblems), millis })
    })
  )

const rounded = (millis: number) => Math.round(millis * 1000) / 1000

const headerBytes = 100
const magic = "SQLite format 3\u0000"

const planOpen = (given: string, database: string): Plan => {
  const fail = (error: string): never => {
    throw new CheckFailure({ error, transient: false })
  }
  const stat = statOrUndefined(database)
  if (stat === undefined) {
    // Opening a missing file would create an empty database and call it healthy.
    const directory = path.dirname(database)
    return fail(
      statOrUndefined(directory) === undefined
        ? `${database} does not exist: its directory ${directory} does not exist either; check the path`
        : `${database} does not exist (a health check does not create it); check the path`
    )
  }
  if (stat.isDirectory()) return fail(`cannot open ${given}: the path is a directory, not a database file`)
  // SQLite would block opening a FIFO, and a device is not a database.
  if (!stat.isFile()) return fail(`cannot open ${given}: not a regular file, so not a database file`)
  const url = pathToFileURL(database).href
  if (stat.size === 0) return { uri: `${url}?mode=ro`, journalMode: "delete", unlockedState: undefined }
  const header = readHeader(given, database)
  if (header.length < headerBytes || header.toString("latin1", 0, magic.length) !== magic) {
    return fail(`cannot open ${given}: the file is not a SQLite database (SQLITE_NOTADB)`)
  }
  // Bytes 18 and 19 are the file format's write and read versions: 2 means WAL.
  const isWal = header[18] === 2 || header[19] === 2
  if (!isWal) return { uri: `${url}?mode=ro`, journalMode: undefined, unlockedState: undefined }
  const walBytes = statOrUndefined(`${database}-wal`)?.size ?? 0
  const hasShm = statOrUndefined(`${database}-shm`) !== undefined
  if (walBytes > 0 && hasShm) {
    return { uri: `${url}?mode=ro&readonly_shm=1`, journalMode: "wal", unlockedState: undefined }
  }
  if (walBytes > 0) {
    return fail(
      `cannot check ${given} read-only: its write-ahead log ${given}-wal holds commits not yet in the main file, ` +
        `and without ${given}-shm SQLite can only read them by creating that file; open the database once with ` +
        `a writer (which checkpoints the log), then check again`
    )
  }
  return { uri: `${url}?immutable=1`, journalMode: "wal", unlockedState: fileState(database) }
}

/** The first bytes of the -shm: its WAL-index header, twice, then the checkpoint information. */
const shmHeaderBytes = 136
/** The WAL-index format version SQLite writes in the -shm's first field. */
const walIndexVersion = 3007000

/**
 * The WAL's size and its frames not yet checkpointed, read from the files alone (`PRAGMA wal_checkpoint` would run a
 * checkpoint, a write). The -shm begins with the WAL-index header twice (48 bytes each, in the machine's byte order:
 * `mxFrame`, the frames in the log, at offset 16), then the checkpoint information (`nBackfill`, the frames a
 * checkpoint copied, at offset 96). A writer updates the two copies one after the other: when they differ, the
 * count is unknown (null) rather than a guess.
 */
const walState = (
  database: string,
  journalMode: string
): { readonly wal_bytes: number; readonly wal_frames_not_checkpointed: number | null } => {
  const walBytes = journalMode === "wal" ? statOrUndefined(`${database}-wal`)?.size ?? 0 : 0
  if (walBytes === 0) return { wal_bytes: 0, wal_frames_not_checkpointed: 0 }
  const shm = readStart(`${database}-shm`, shmHeaderBytes)
  if (shm === undefined || shm.length < shmHeaderBytes) {
    return { wal_bytes: walBytes, wal_frames_not_checkpointed: null }
  }
  const little = os.endianness() === "LE"
  const u32 = (offset: number) => little ? shm.readUInt32LE(offset) : shm.readUInt32BE(offset)
  const consistent = u32(0) === walIndexVersion && shm[12] === 1 && shm.subarray(0, 48).equals(shm.subarray(48, 96))
  return { wal_bytes: walBytes, wal_frames_not_checkpointed: consistent ? Math.max(0, u32(16) - u32(96)) : null }
}

/** The first `bytes` bytes of a file, read-only; undefined when it cannot be read. */
const readStart = (file: string, bytes: number): Buffer | undefined => {
  try {
    const handle = fs.openSync(file, "r")
    try {
      const buffer = Buffer.alloc(bytes)
      return buffer.subarray(0, fs.readSync(handle, buffer, 0, bytes, 0))
    } finally {
      fs.closeSync(handle)
    }
  } catch {
    return undefined
  }
}

/** Size and modification time of the main file, and whether the -wal exists with content. */
const fileState = (database: string) => {
  const main = statOrUndefined(database)
  const wal = statOrUndefined(`${database}-wal`)
  return `${main?.size}:${main?.mtimeMs}:${(wal?.size ?? 0) > 0}`
}

const statOrUndefined = (file: string): fs.Stats | undefined => {
  try {
    return fs.statSync(file)
  } catch {
    return undefined
  }
}

const readHeader = (given: string, database: string): Buffer => {
  try {
    const handle = fs.openSync(database, "r")
    try {
      const header = Buffer.alloc(headerBytes)
      const read = fs.readSync(handle, header, 0, headerBytes, 0)
      return header.subarray(0, read)
    } finally {
      fs.closeSync(handle)
    }
  } catch (cause) {
    throw failureOf(given, cause, "cannot open")
  }
}

const open = (given: string, database: string, uri: string): Database.Database => {
  // URI filenames (for mode=ro, readonly_shm, immutable) need SQLITE_USE_URI when better-sqlite3 loads its native
  // library, which happens at its first open: in the command, a health check opens the first database.
  process.env.SQLITE_USE_URI ??= "1"
  if (database === ":memory:") return new Database(database)
  try {
    // No busy wait inside SQLite (better-sqlite3 waits 5 s by default, with the event loop stopped): a locked file
    // fails at once and is tried again on the retry schedule.
    return new Database(uri, { readonly: true, fileMustExist: true, timeout: 0 })
  } catch (cause) {
    // Without URI support SQLite looks for a file literally named "file:///...": the plain name then opens (an
    // open alone reads nothing, so it changes nothing).
    if (database !== ":memory:" && SqliteCode.codeOf(cause) === "SQLITE_CANTOPEN" && opensByPlainName(database)) {
      throw new CheckFailure({
        error: `cannot open ${given} read-only: SQLite was loaded in this process without URI filenames, which ` +
          `the read-only open needs; set SQLITE_USE_URI=1 in the environment`,
        transient: false
      })
    }
    throw failureOf(given, cause, "cannot open")
  }
}

const opensByPlainName = (database: string) => {
  try {
    new Database(database, { readonly: true, fileMustExist: true }).close()
    return true
  } catch {
    return false
  }
}

const run = <A>(given: string, f: () => A, doing = "cannot read"): A => {
  try {
    return f()
  } catch (cause) {
    throw failureOf(given, cause, doing)
  }
}

const failureOf = (given: string, cause: unknown, doing = "cannot read"): CheckFailure => {
  if (cause instanceof CheckFailure) return cause
  const code = SqliteCode.codeOf(cause) ?? (cause as { code?: unknown } | undefined)?.code
  const message = cause instanceof Error ? cause.message : String(cause)
  const text = typeof code === "string" ? code : "UNKNOWN"
  const primary = typeof code === "string" && code.startsWith("SQLITE_") ? SqliteCode.primary(code) : text
  const reason = primary === "SQLITE_NOTADB"
    ? "the file is not a SQLite database"
    : primary === "SQLITE_CORRUPT"
    ? `the database file is corrupt (${message})`
    : primary === "SQLITE_BUSY" || primary === "SQLITE_LOCKED"
    ? "the database is locked by another connection; try again"
    : primary === "SQLITE_CANTOPEN"
    ? `${message}; a health check opens the file read-only and creates nothing`
    : text === "EACCES" || text === "EPERM"
    ? "permission denied; check the file's permissions"
    : message
  return new CheckFailure({
    error: `${doing} ${given}: ${reason} (${text})`,
    transient: primary === "SQLITE_BUSY" || primary === "SQLITE_LOCKED"
  })
}
