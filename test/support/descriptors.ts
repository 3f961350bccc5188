/**
 * Open file descriptors of this process, read from /proc/self/fd: how a test proves that no handle to a database (or
 * its -wal, -shm or -journal file) outlives the pool that opened it.
 */
import * as fs from "node:fs"
import * as path from "node:path"

/** Where each open descriptor of this process points (entries that vanish while being read are skipped). */
export const openDescriptorTargets = (): ReadonlyArray<string> => {
  const targets: Array<string> = []
  for (const entry of fs.readdirSync("/proc/self/fd")) {
    try {
      targets.push(fs.readlinkSync(path.join("/proc/self/fd", entry)))
    } catch {
      // the descriptor used to list the directory itself is closed by the time it is read
    }
  }
  return targets
}

/**
 * Descriptors pointing at `filename` or one of its companions. A deleted file still held open reads as
 * "<path> (deleted)": that counts too, since it is exactly the leak to catch.
 */
export const databaseDescriptors = (filename: string): ReadonlyArray<string> => {
  const resolved = path.resolve(filename)
  const names = new Set(["", "-wal", "-shm", "-journal"].map((suffix) => resolved + suffix))
  return openDescriptorTargets().filter((target) => names.has(target.replace(/ \(deleted\)$/, "")))
}

/** Descriptors pointing anywhere inside `directory` (for databases whose exact name the pool chose). */
export const descriptorsUnder = (directory: string): ReadonlyArray<string> => {
  const prefix = path.resolve(directory) + path.sep
  return openDescriptorTargets().filter((target) => target.startsWith(prefix))
}
