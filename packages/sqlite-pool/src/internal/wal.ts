/**
 * The write-ahead log kept in check. SQLite's automatic checkpoint (every 1000 pages, PASSIVE) stays; it copies
 * frames back into the database file but never shrinks the `-wal`, and it cannot copy the frames a reader's snapshot
 * still needs, so a long reader lets the file grow without bound. After the writer lane's leases end, at most once per
 * `checkIntervalMillis`, the watch reads the `-wal` file's size (one stat, published as the gauge `sqlsim.wal.size`);
 * when it is above `walCheckpointBytes`, it runs on the writer lane `PRAGMA wal_checkpoint(PASSIVE)` and, when that
 * copied every frame, `PRAGMA wal_checkpoint(TRUNCATE)` with no busy wait, which empties the file. A checkpoint that
 * cannot finish because a reader holds an old snapshot is counted (`sqlsim.wal.checkpoints_blocked`) and logged as
 * one warning per episode (until a checkpoint finishes), naming the Reader lane's oldest lease and its holder (span,
 * fiber, how long).
 *
 * @internal
 */
import type * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import * as fs from "node:fs"
import { describeHolder, type Holder } from "./errors.js"

/**
 * The WAL's metrics, with the attribute `db.namespace` (the database file).
 *
 * @internal
 */
export const walMetrics = {
  size: Metric.gauge("sqlsim.wal.size", { description: "size of the database's -wal file in bytes" }),
  checkpointsBlocked: Metric.counter("sqlsim.wal.checkpoints_blocked", {
    description: "checkpoints of a WAL above walCheckpointBytes that could not finish: a reader held an old snapshot",
    incremental: true
  }),
  truncations: Metric.counter("sqlsim.wal.truncations", {
    description: "checkpoints that emptied a WAL above walCheckpointBytes",
    incremental: true
  })
}

/** The writer lane looks at the -wal's size at most this often: one stat, never on every commit. */
export const checkIntervalMillis = 1000

/**
 * What `PRAGMA wal_checkpoint` answers, as values (column names would go through the user's `transformResultNames`):
 * busy (1 when a TRUNCATE could not get the locks it needs), frames in the WAL, frames copied into the database file.
 */
type CheckpointRow = readonly [busy: number, log: number, checkpointed: number]

/** The longest Reader lease, as the pool knows it: its connection and its holder (span, fiber, for how long). */
export interface ReaderLease {
  readonly connectionId: number
  readonly holder: Holder
}

/** A WAL watch's view, as `SqlitePool.stats` shows it. */
export interface WalStats {
  /** the -wal's size in bytes when the writer lane last looked (at most once a second, after a write) */
  readonly bytes: number
  /** checkpoints past walCheckpointBytes a reader's snapshot kept from finishing */
  readonly checkpointsBlocked: number
  /** checkpoints that emptied the -wal */
  readonly truncations: number
}

export interface Options {
  /** the database file (the WAL is this name with `-wal`) */
  readonly databaseFile: string
  /** the name users gave, for messages and the metrics' `db.namespace` */
  readonly filename: string
  /** checkpoint when the -wal passes this many bytes; null: only SQLite's automatic checkpoint */
  readonly checkpointBytes: number | null
  /** the writer connection's busy_timeout, in milliseconds, restored after the TRUNCATE */
  readonly busyTimeoutMillis: number
  /** runs statements on the writer lane, holding it as a transaction would */
  readonly onWriter: <A>(
    f: (sql: SqliteClient.SqliteClient) => Effect.Effect<A, SqlError>
  ) => Effect.Effect<A, SqlError>
  /** the Reader lane's oldest lease not ended, and the Reader pool's name */
  readonly oldestReader: () => ReaderLease | undefined
  readonly readerPoolName: string | undefined
  /** forks an Effect on a fiber of the layer */
  readonly run: (effect: Effect.Effect<void>) => void
  readonly now: () => number
}

export class WalWatch {
  /** when the -wal was last looked at (the clock's milliseconds) */
  private checkedAt = Number.NEGATIVE_INFINITY
  /** a checkpoint is running on the writer lane: no other starts */
  private checkpointing = false
  /** a checkpoint was blocked by a reader and none has finished since: the episode's warning was logged */
  private blocked = false
  /** this pool's view of the WAL, as its metrics count it (the metrics add up every pool on the same file) */
  private readonly counts = { bytes: 0, checkpointsBlocked: 0, truncations: 0 }
  private readonly labels: ReadonlyArray<MetricLabel.MetricLabel>
  private readonly bytes: ReadonlyArray<MetricLabel.MetricLabel>

  constructor(private readonly options: Options) {
    this.labels = [MetricLabel.make("db.namespace", options.filename)]
    this.bytes = [...this.labels, MetricLabel.make("unit", "By")]
    walMetrics.checkpointsBlocked.unsafeUpdate(0, this.labels)
    walMetrics.truncations.unsafeUpdate(0, this.labels)
    this.publishSize()
  }

  /** After a lease of the writer lane ended: looks at the WAL when it is time, and starts a checkpoint if needed. */
  afterWrite(): void {
    const now = this.options.now()
    if (now - this.checkedAt < checkIntervalMillis) return
    this.checkedAt = now
    const size = this.publishSize()
    const limit = this.options.checkpointBytes
    if (limit === null || size <= limit || this.checkpointing) return
    this.checkpointing = true
    this.options.run(
      this.checkpoint(size, limit).pipe(
        Effect.catchAll((error) =>
          Effect.logWarning(`sqlsim: the checkpoint of ${this.options.filename}-wal failed: ${error.message}`)
        ),
        Effect.ensuring(Effect.sync(() => this.checkpointing = false))
      )
    )
  }

  /** The -wal's size as last seen, and this pool's checkpoints blocked and truncations so far. */
  snapshot(): WalStats {
    return { ...this.counts }
  }

  /** The -wal's size now (0 when there is none), published as the gauge. */
  private publishSize(): number {
    const size = walBytes(this.options.databaseFile)
    this.counts.bytes = size
    walMetrics.size.unsafeUpdate(size, this.bytes)
    return size
  }

  private checkpoint(size: number, limit: number): Effect.Effect<void, SqlError> {
    const { busyTimeoutMillis, onWriter } = this.options
    return Effect.flatMap(
      onWriter((sql) =>
        Effect.gen(function*() {
          const [passive] = (yield* sql`PRAGMA wal_checkpoint(PASSIVE)`.values) as ReadonlyArray<CheckpointRow>
          if (passive === undefined || passive[2] < passive[1]) return false
          // TRUNCATE waits for readers in SQLite's busy handler, which would block the event loop: none here.
          yield* sql.unsafe("PRAGMA busy_timeout = 0")
          const [truncate] = (yield* sql`PRAGMA wal_checkpoint(TRUNCATE)`.values.pipe(
            Effect.ensuring(Effect.ignore(sql.unsafe(`PRAGMA busy_timeout = ${busyTimeoutMillis}`)))
          )) as ReadonlyArray<CheckpointRow>
          return truncate !== undefined && truncate[0] === 0
        })
      ),
      (finished) => finished ? this.finished() : this.blockedByReader(size, limit)
    )
  }

  private finished(): Effect.Effect<void> {
    return Effect.sync(() => {
      this.blocked = false
      this.counts.truncations++
      walMetrics.truncations.unsafeUpdate(1, this.labels)
      this.publishSize()
    })
  }

  private blockedByReader(size: number, limit: number): Effect.Effect<void> {
    this.counts.checkpointsBlocked++
    walMetrics.checkpointsBlocked.unsafeUpdate(1, this.labels)
    if (this.blocked) return Effect.void
    this.blocked = true
    return Effect.logWarning(
      `sqlsim: ${this.options.filename}-wal is ${mebibytes(size)}, above walCheckpointBytes (${mebibytes(limit)}), ` +
        `and a checkpoint cannot finish: a reader holds an old snapshot; ${this.readerNamed()}. The WAL is ` +
        `truncated once that reader ends.`
    )
  }

  private readerNamed(): string {
    const lease = this.options.oldestReader()
    if (lease === undefined || this.options.readerPoolName === undefined) {
      return "no Reader lease of this pool is open, so the reader is another connection to the file " +
        "(another process, or a ConnectionPool of this one)"
    }
    return `the longest Reader lease is connection ${lease.connectionId} of ${this.options.readerPoolName}, ` +
      `by ${describeHolder(lease.holder)} (a Reader transaction or stream still open)`
  }
}

const mebibytes = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`

/** The size of a database's -wal file in bytes; 0 when there is none. */
export const walBytes = (databaseFile: string): number => {
  try {
    return fs.statSync(`${databaseFile}-wal`, { throwIfNoEntry: false })?.size ?? 0
  } catch {
    // The directory went away or cannot be read: the pool's own file check reports that.
    return 0
  }
}
