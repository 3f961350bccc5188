/**
 * Types of `sqliteSetup.mjs`: the set-up and statement cache shared by the main thread and the worker threads.
 *
 * @internal
 */
import type Database from "better-sqlite3"

export declare const isFile: (filename: string) => boolean

export declare class ExtensionLoadError extends Error {
  readonly _tag: "ExtensionLoadError"
  readonly extension: string
  readonly code: string | undefined
  constructor(extension: string, cause: unknown)
}

export declare class ReadOnlyFallbackError extends Error {
  readonly _tag: "ReadOnlyFallbackError"
}

export interface SetUpOptions {
  readonly filename: string
  readonly readOnly: boolean
  readonly busyTimeoutMs: number
  readonly pageCacheKiB: number
  readonly extensions?: ReadonlyArray<string> | undefined
}

export declare const setUp: (db: Database.Database, options: SetUpOptions) => void

export interface StatementCacheOptions {
  /** statements kept at most (0: none) */
  readonly size: number
  /** a statement unused for this long is prepared afresh at its next lookup */
  readonly timeToLiveMillis: number
}

export declare class StatementCache {
  constructor(db: Database.Database, options: StatementCacheOptions)
  prepare(sql: string): Database.Statement
  clear(): void
}
