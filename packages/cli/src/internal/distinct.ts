/**
 * Keeping a command's files apart: its inputs, its database and each of its outputs must be different files, or an
 * output renamed over the database (or over its -wal) destroys it. Paths are compared by where they really lead: a
 * symbolic link counts as its target, a file that does not exist yet as its directory's real path and its name, and
 * two names of one file (a hard link) by device and inode.
 *
 * @internal
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as path from "node:path"

/**
 * Two options name the same file.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConflictError extends Data.TaggedError("ConflictError")<{
  readonly message: string
}> {}

/** One file a command uses: the option that names it ("--json"), and the path given (undefined: not given). */
export interface Role {
  readonly option: string
  readonly file: string | undefined
  /** a database also owns its -wal, -shm and -journal files */
  readonly database?: boolean
}

/** The real path of a file, or for one that does not exist yet, its directory's real path joined with its name. */
export const realPathOf = (file: string): string => {
  const absolute = path.resolve(file)
  try {
    return fs.realpathSync(absolute)
  } catch {
    try {
      return path.join(fs.realpathSync(path.dirname(absolute)), path.basename(absolute))
    } catch {
      return absolute
    }
  }
}

const identityOf = (file: string): string | undefined => {
  try {
    const stat = fs.statSync(file)
    return `${stat.dev}:${stat.ino}`
  } catch {
    return undefined
  }
}

const databaseCompanions = ["", "-wal", "-shm", "-journal"]

interface Resolved {
  readonly role: Role
  readonly name: string
  readonly real: string
  readonly identity: string | undefined
}

const resolveAll = (role: Role, file: string): Array<Resolved> =>
  (role.database === true ? databaseCompanions : [""]).map((suffix) => {
    const real = realPathOf(file) + suffix
    return { role, name: file + suffix, real, identity: identityOf(real) }
  })

const same = (a: Resolved, b: Resolved) => a.real === b.real || (a.identity !== undefined && a.identity === b.identity)

/**
 * Fails with a `ConflictError` naming the first two options that lead to the same file. Standard input ("-") and
 * ":memory:" name no file and are left out.
 */
export const checkDistinct = (roles: ReadonlyArray<Role>): Effect.Effect<void, ConflictError> =>
  Effect.suspend(() => {
    const resolved = roles.flatMap((role) =>
      role.file === undefined || role.file === "-" || role.file === ":memory:" ? [] : [resolveAll(role, role.file)]
    )
    for (let i = 0; i < resolved.length; i++) {
      for (let j = i + 1; j < resolved.length; j++) {
        for (const a of resolved[i]!) {
          for (const b of resolved[j]!) {
            if (!same(a, b)) continue
            const where = a.name === b.name ? a.name : `${a.name} and ${b.name}`
            return Effect.fail(
              new ConflictError({
                message: `${a.role.option} and ${b.role.option} name the same file (${where}); give each its own file`
              })
            )
          }
        }
      }
    }
    return Effect.void
  })
