/**
 * Writing a file atomically: the content goes to a temporary file in the same directory, which is flushed to disk
 * and renamed over the target only when everything was written. A failure, an interruption or a crash never leaves
 * a half-written target, and an existing target stays as it was until the rename. A process killed outright (SIGKILL)
 * leaves its temporary file: the name holds the writer's process id, and the next `open` in that directory removes
 * the temporary files of writers that no longer exist.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as path from "node:path"

/**
 * The output cannot be written. `reason` says why, in words a user can act on.
 *
 * @since 0.1.0
 * @category errors
 */
export class OutputError extends Data.TaggedError("OutputError")<{
  readonly output: string
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return `cannot write ${this.output}: ${this.reason}`
  }
}

/**
 * A file being written. Nothing appears at `path` until `commit`.
 *
 * @since 0.1.0
 * @category models
 */
export interface AtomicFile {
  /** the absolute path of the target */
  readonly path: string
  /** the temporary file the content goes to */
  readonly temporaryPath: string
  readonly write: (text: string) => Effect.Effect<void, OutputError>
  /** flushes the content to disk and renames the temporary file over the target */
  readonly commit: Effect.Effect<void, OutputError>
}

/**
 * Creates the temporary file at once, so an output that cannot be written is reported before any work is done.
 * When the Scope closes without a commit, the temporary file is removed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const open = (
  output: string
): Effect.Effect<AtomicFile, OutputError, FileSystem.FileSystem | Scope.Scope> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const target = path.resolve(output)
    const directory = path.dirname(target)
    const fail = (reason: string, cause?: unknown) => new OutputError({ output, reason, cause })

    const directoryInfo = yield* Effect.either(fs.stat(directory))
    if (directoryInfo._tag === "Left") {
      return yield* Effect.fail(
        errorCode(directoryInfo.left) === "ENOENT"
          ? fail(`the directory ${directory} does not exist; create it first or choose another path`)
          : describe(output, directoryInfo.left)
      )
    }
    if (directoryInfo.right.type !== "Directory") {
      return yield* Effect.fail(fail(`${directory} is not a directory`))
    }
    const targetInfo = yield* Effect.either(fs.stat(target))
    if (targetInfo._tag === "Right" && targetInfo.right.type === "Directory") {
      return yield* Effect.fail(fail("it is a directory; give a file path"))
    }
    if (targetInfo._tag === "Left" && errorCode(targetInfo.left) === "ENAMETOOLONG") {
      return yield* Effect.fail(describe(output, targetInfo.left))
    }

    yield* removeDeadWritersFiles(fs, directory)
    // A short name of its own, not the target's name with a suffix: a target name as long as the file system
    // allows must still be writable.
    const temporaryPath = path.join(directory, temporaryName())
    let committed = false
    yield* Effect.addFinalizer(() => committed ? Effect.void : Effect.ignore(fs.remove(temporaryPath)))
    const file = yield* fs.open(temporaryPath, { flag: "wx" }).pipe(Effect.mapError((error) => describe(output, error)))

    const encoder = new TextEncoder()
    const write = (text: string) =>
      file.writeAll(encoder.encode(text)).pipe(Effect.mapError((error) => describe(output, error)))
    const commit = Effect.gen(function*() {
      yield* file.sync
      yield* fs.rename(temporaryPath, target)
      committed = true
      // Makes the rename itself durable; not every platform can open a directory, and the data is already safe.
      yield* Effect.ignore(Effect.scoped(Effect.flatMap(fs.open(directory, { flag: "r" }), (handle) => handle.sync)))
    }).pipe(Effect.mapError((error) => describe(output, error)))

    return { path: target, temporaryPath, write, commit } satisfies AtomicFile
  })

/** `.sqlsim-`, the writer's process id, `-`, 8 random characters, `.tmp`: at most 30 characters, whatever the target. */
const temporaryName = () => {
  let random = ""
  while (random.length < 8) random += Math.random().toString(36).slice(2)
  return `.sqlsim-${process.pid}-${random.slice(0, 8)}.tmp`
}

const temporaryPattern = /^\.sqlsim-(\d+)-[a-z0-9]{8}\.tmp$/

/**
 * Removes the temporary files in `directory` whose writer process no longer exists. A live process with the same id
 * keeps its files (it may be writing them), and so does one of another user (`kill` answers EPERM). Nothing here
 * fails the write: a file that cannot be removed stays.
 */
const removeDeadWritersFiles = (fs: FileSystem.FileSystem, directory: string): Effect.Effect<void> =>
  Effect.ignore(Effect.flatMap(fs.readDirectory(directory), (names) =>
    Effect.forEach(names, (name) => {
      const writer = temporaryPattern.exec(name)?.[1]
      return writer === undefined || processExists(Number(writer))
        ? Effect.void
        : Effect.ignore(fs.remove(path.join(directory, name)))
    }, { discard: true })))

const processExists = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (cause) {
    return (cause as { code?: unknown }).code === "EPERM"
  }
}

const errorCode = (error: unknown): string | undefined => {
  const cause = (error as { cause?: unknown }).cause
  const code = (cause as { code?: unknown } | undefined)?.code
  return typeof code === "string" ? code : undefined
}

const describe = (output: string, error: unknown): OutputError => {
  const code = errorCode(error)
  const reason = code === "EACCES" || code === "EPERM" || code === "EROFS"
    ? "permission denied; choose a directory you can write to"
    : code === "ENOSPC"
    ? "the disk is full"
    : code === "ENOTDIR"
    ? "a part of the path is not a directory"
    : code === "ENAMETOOLONG"
    ? "the name is longer than the file system allows; choose a shorter one"
    : (error as { message?: unknown }).message?.toString() ?? String(error)
  return new OutputError({ output, reason, cause: error })
}
