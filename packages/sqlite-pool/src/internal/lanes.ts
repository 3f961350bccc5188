/**
 * SqlitePool's two lanes over their pools: the writer (a pool of one) and the Reader (read-only connections, in worker
 * threads with `readerThreads`), and the writer lane as `SqliteClient`. `SqlitePool` builds its service on them; the
 * model-based test drives them directly.
 *
 * @internal
 */
import type * as Reactivity from "@effect/experimental/Reactivity"
import type * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import type * as Client from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import { identity } from "effect/Function"
import type * as Scope from "effect/Scope"
import type * as Connector from "../Connector.js"
import type * as PoolConfig from "../PoolConfig.js"
import * as PooledClient from "./client.js"
import { connectAttemptFailed, type ConnectError } from "./errors.js"
import * as Interrupt from "./interrupt.js"
import * as Lane from "./lane.js"
import * as MemoryDatabase from "./memoryDatabase.js"
import * as Pool from "./pool.js"
import * as ReaderRoute from "./readerRoute.js"
import * as RetryPolicy from "./retryPolicy.js"
import * as Transaction from "./transaction.js"
import * as Wal from "./wal.js"

export interface Lanes {
  readonly writer: Lane.Lane
  /** the Reader's own pool; undefined with `readConnections: 0` */
  readonly reader: Lane.Lane | undefined
  /** with `readerThreads`: the Reader's main-thread connection and its statements' routes (readerRoute.ts) */
  readonly mainThread: Lane.MainThread | undefined
  /** `SqlitePool.Reader`: the reader lane, or with `readConnections: 0` a read-only lane on the writer's pool */
  readonly readerClient: Client.SqlClient
  /** the writer lane as `SqliteClient` */
  readonly writerClient: SqliteClient.SqliteClient
  /** statements, BEGINs and COMMITs retried because another connection held the lock */
  readonly busy: RetryPolicy.BusyCounter
  /** the WAL watch of a file database; undefined on a server (its WAL is the server's) */
  readonly wal: Wal.WalWatch | undefined
}

/** The configuration of one of the two pools: the shared fields, and the size. */
const forLane = (
  config: PoolConfig.SqliteConfig,
  size: { readonly maxConnections: number; readonly minConnections: number }
): PoolConfig.PoolConfig => {
  const {
    readConnections: _readConnections,
    readerThreads: _readerThreads,
    walCheckpointBytes: _walCheckpointBytes,
    ...common
  } = config
  return { ...common, ...size }
}

/** Both lanes in the current Scope; the writer connection is opened (and the file switched to WAL) first. */
export const make = (
  config: PoolConfig.SqliteConfig,
  connector: Connector.Service
): Effect.Effect<Lanes, ConnectError, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function*() {
    const databaseFile = yield* MemoryDatabase.resolve(config.filename)
    const busy: RetryPolicy.BusyCounter = { retries: 0 }
    // Extensions loaded through `loadExtension`: every connection of both pools opened later loads them too.
    const extensions: Array<string> = []
    // The writer's leases tell the WAL watch when they end; the watch runs on the writer lane, so it comes after.
    let wal: Wal.WalWatch | undefined
    const writer = yield* makeWriter(config, {
      connector,
      databaseFile,
      extensions,
      retryBusy: RetryPolicy.retryWhileBusy(config, busy),
      afterLease: () => wal?.afterWrite()
    })
    const options = { connector, databaseFile, extensions }
    const mainThread = config.readConnections > 0 && config.readerThreads
      ? yield* makeMainThread(config, options)
      : undefined
    const reader = config.readConnections === 0 ? undefined : yield* makeReader(config, options, mainThread)
    const readerClient = reader?.client ?? (yield* readerOnWriter(config, writer.core, databaseFile))
    const cores = [writer.core, reader?.core, mainThread?.core].filter((core) => core !== undefined)
    const writerClient = sqliteClient(writer, { ...config, filename: databaseFile }, cores, extensions)
    // A connector with replicas is a server's: its WAL is the server's own.
    if (connector.replication === undefined) wal = yield* walWatch(config, databaseFile, writer, reader)
    return { writer, reader, mainThread, readerClient, writerClient, busy, wal }
  })

interface LaneOptions {
  readonly connector: Connector.Service
  readonly databaseFile: string
  readonly extensions: ReadonlyArray<string>
}

/** The writer lane: a pool of one connection, opened (and the file switched to WAL) before the layer is ready. */
const makeWriter = (
  config: PoolConfig.SqliteConfig,
  options: LaneOptions & {
    readonly retryBusy: <A>(effect: Effect.Effect<A, SqlError>) => Effect.Effect<A, SqlError>
    readonly afterLease: () => void
  }
) =>
  Effect.flatMap(
    Pool.make(forLane(config, { maxConnections: 1, minConnections: 1 }), {
      connector: options.connector,
      databaseFile: options.databaseFile,
      label: config.poolName ?? writerPoolName(config),
      describedAs: writerPoolName(config),
      role: "writer",
      extensions: options.extensions
    }),
    (core) =>
      Lane.makeLane({
        core,
        kind: "writer",
        retryBusy: options.retryBusy,
        afterLease: options.afterLease,
        withTransaction: (lane) =>
          Transaction.makeWithTransaction({ ...lane, begin: "BEGIN IMMEDIATE", retryBusy: options.retryBusy }),
        client: { ...config, filename: options.databaseFile }
      })
  )

/** The Reader's lane: a pool of `readConnections` read-only connections (in worker threads with `readerThreads`). */
const makeReader = (config: PoolConfig.SqliteConfig, options: LaneOptions, mainThread: Lane.MainThread | undefined) =>
  Effect.flatMap(
    Pool.make(
      forLane(config, { maxConnections: config.readConnections, minConnections: config.minConnections }),
      {
        connector: options.connector,
        databaseFile: options.databaseFile,
        readOnly: true,
        label: config.poolName ?? readerPoolName(config),
        describedAs: readerPoolName(config),
        role: "reader",
        extensions: options.extensions,
        inWorkers: config.readerThreads
      }
    ),
    (core) =>
      Lane.makeLane({
        core,
        kind: "reader",
        retryBusy: identity,
        withTransaction: (lane) => Transaction.makeWithTransaction({ ...lane, begin: "BEGIN", retryBusy: identity }),
        client: { ...config, filename: options.databaseFile },
        inWorkers: config.readerThreads,
        mainThread
      })
  )

/**
 * The Reader's main-thread route with `readerThreads`: one read-only connection on this thread, whose statements
 * SQLite interrupts over `ReaderRoute.BUDGET_MILLIS` (the interrupt extension's `sqlsim_budget`). Without the
 * extension (no C compiler: interrupt.ts warns) nothing would bound a misjudged statement, so every statement runs
 * on the workers, as it did before the route existed.
 */
const makeMainThread = (config: PoolConfig.SqliteConfig, options: LaneOptions) =>
  Effect.gen(function*() {
    const interrupter = yield* Effect.promise(() => Interrupt.interrupter())
    if (interrupter === undefined) return undefined
    const book = new ReaderRoute.RouteBook(config.filename)
    const core = yield* Pool.make(forLane(config, { maxConnections: 1, minConnections: 1 }), {
      connector: options.connector,
      databaseFile: options.databaseFile,
      readOnly: true,
      label: `${config.filename} (main-thread reader)`,
      role: "reader",
      extensions: options.extensions,
      setUp: (connection) => withBudget(config.filename, connection, interrupter.extension, book)
    })
    return { core, book } satisfies Lane.MainThread
  })

/** Sets a main-thread connection's time budget, where the connection's handle lives on this thread. */
const withBudget = (
  filename: string,
  connection: Connector.Connection,
  extension: string,
  book: ReaderRoute.RouteBook
): Effect.Effect<void, ConnectError> =>
  Effect.try({
    try: () => {
      const database = connection.driver?.database
      if (database === undefined) return
      database.loadExtension(extension)
      database.prepare("SELECT sqlsim_budget(?, ?)").get(ReaderRoute.BUDGET_MILLIS, ReaderRoute.LONG_AFTER_MILLIS)
      const last = database.prepare<[], number>("SELECT sqlsim_last_millis()").pluck()
      book.markBudgeted(connection, () => last.get()!)
    },
    catch: (cause) =>
      connectAttemptFailed({
        filename,
        code: "UNKNOWN",
        transient: false,
        reason: "cannot set the time budget of the Reader's main-thread connection",
        cause
      })
  })

/** The WAL watch of a file database, on the writer lane; its checkpoints run on fibers of the layer's Scope. */
const walWatch = (
  config: PoolConfig.SqliteConfig,
  databaseFile: string,
  writer: Lane.Lane,
  reader: Lane.Lane | undefined
): Effect.Effect<Wal.WalWatch, never, Scope.Scope> =>
  Effect.gen(function*() {
    const run = yield* FiberSet.makeRuntime<never>()
    const clock = yield* Effect.clock
    return new Wal.WalWatch({
      databaseFile,
      filename: config.filename,
      checkpointBytes: config.walCheckpointBytes,
      busyTimeoutMillis: Duration.toMillis(config.busyTimeout),
      onWriter: (f) => Effect.scoped(Effect.flatMap(writer.lease, ([, entry]) => f(entry.client))),
      oldestReader: () => reader?.core.oldestLease(),
      readerPoolName: reader === undefined ? undefined : readerPoolName(config),
      run: (effect) => run(effect),
      now: () => clock.unsafeCurrentTimeMillis()
    })
  })

/**
 * How messages name the lanes' pools, and, without `poolName`, their metrics' `db.client.connection.pool.name` (with
 * `poolName` the metrics carry it as it is, and `sqlsim.lane` tells the lanes apart).
 */
const writerPoolName = (config: PoolConfig.SqliteConfig) => `${config.poolName ?? config.filename} (writer)`
const readerPoolName = (config: PoolConfig.SqliteConfig) => `${config.poolName ?? config.filename} (readers)`

/**
 * The Reader with no connections of its own: its statements and transactions wait for the writer's connection in
 * the same queue as the writer's, and run on its read-only view (a write is refused before it runs, as on a Reader
 * connection, so code tested with 0 readers behaves as it will with some).
 */
const readerOnWriter = (config: PoolConfig.SqliteConfig, core: Pool.Core, databaseFile: string) =>
  Effect.map(
    Lane.makeLane({
      core,
      kind: "reader",
      retryBusy: identity,
      withTransaction: (lane) => Transaction.makeWithTransaction({ ...lane, begin: "BEGIN", retryBusy: identity }),
      client: { ...config, filename: databaseFile },
      onWriterPool: true
    }),
    (lane) => lane.client
  )

/**
 * The writer lane as SqliteClient: `export` and `backup` hold the lane for their duration (as a transaction would);
 * an extension is loaded into every open connection of both pools and every later one.
 */
const sqliteClient = (
  writer: Lane.Lane,
  options: PooledClient.Options,
  cores: ReadonlyArray<Pool.Core>,
  extensions: Array<string>
): SqliteClient.SqliteClient => {
  const onWriter = <A>(f: (sql: SqliteClient.SqliteClient) => Effect.Effect<A, SqlError>) =>
    Effect.scoped(Effect.flatMap(writer.lease, ([, entry]) => f(entry.client)))
  const loadExtension = (path: string) =>
    Effect.suspend(() => {
      extensions.push(path)
      const open = cores.flatMap((core) => core.openEntries())
      return Effect.forEach(open, (entry) => entry.client.loadExtension(path), { discard: true }).pipe(
        Effect.tapError(() => Effect.sync(() => extensions.splice(extensions.indexOf(path), 1)))
      )
    })
  return PooledClient.asSqliteClient(writer.client, options, {
    export: onWriter((sql) => sql.export),
    backup: (destination) => onWriter((sql) => sql.backup(destination)),
    loadExtension
  })
}
