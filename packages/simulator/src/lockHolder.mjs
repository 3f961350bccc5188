// A second OS process that takes SQLite's write lock for real, in bursts: BEGIN EXCLUSIVE, hold it, COMMIT, rest.
// Usage: node lockHolder.mjs <database file> <hold milliseconds> <period milliseconds>
// Prints "ready" once connected, then "locked <n>" and "released <n>" for every burst, and "stopped" at the end.
// Stops on SIGTERM or SIGINT, or when its stdin closes (so it never outlives the simulator).
import Database from "better-sqlite3"

const [filename, holdArgument = "50", everyArgument = "500"] = process.argv.slice(2)
const holdMs = Number(holdArgument)
const everyMs = Number(everyArgument)
// Waiting for the simulator's writer to let go is fine here: this process does nothing else.
const db = new Database(filename, { timeout: 10_000 })
db.pragma("journal_mode = WAL")

let bursts = 0
let stopping = false
let timer

const burst = () => {
  if (stopping) return
  db.exec("BEGIN EXCLUSIVE")
  bursts++
  process.stdout.write(`locked ${bursts}\n`)
  timer = setTimeout(() => {
    db.exec("COMMIT")
    process.stdout.write(`released ${bursts}\n`)
    timer = setTimeout(burst, everyMs - holdMs)
  }, holdMs)
}

const stop = () => {
  if (stopping) return
  stopping = true
  clearTimeout(timer)
  if (db.inTransaction) db.exec("COMMIT")
  db.close()
  process.stdout.write("stopped\n", () => process.exit(0))
}

process.on("SIGTERM", stop)
process.on("SIGINT", stop)
process.stdin.on("end", stop)
process.stdin.resume()
process.stdout.write("ready\n")
burst()
