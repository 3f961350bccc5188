// In the consumer project (the working directory): every package that must be a singleton is installed once, at
// the top, and better-sqlite3 was built once. Two copies of effect make Layers and Tags from one copy foreign to the
// other ("Property '[LayerTypeId]' is missing"); two better-sqlite3 copies mean two native builds.
// Usage: node check-tree.mjs <better-sqlite3 major the app must have>
import * as fs from "node:fs"
import * as path from "node:path"

const sqliteMajor = process.argv[2]
if (sqliteMajor === undefined) throw new Error("usage: node check-tree.mjs <better-sqlite3 major>")

const copies = new Map()
const walk = (directory) => {
  if (!fs.existsSync(directory)) return
  for (const entry of fs.readdirSync(directory)) {
    if (entry.startsWith(".")) continue
    const full = path.join(directory, entry)
    if (entry.startsWith("@")) {
      walk(full)
      continue
    }
    const manifestFile = path.join(full, "package.json")
    if (!fs.existsSync(manifestFile)) continue
    const { name, version } = JSON.parse(fs.readFileSync(manifestFile, "utf8"))
    copies.set(name, [...(copies.get(name) ?? []), `${version} at ${path.relative(".", full)}`])
    walk(path.join(full, "node_modules"))
  }
}
walk("node_modules")

const singletons = [...copies.keys()].filter((name) =>
  name === "effect" || name.startsWith("@effect/") ||
  name.startsWith("@sqlsim/") || name === "better-sqlite3"
)
const errors = singletons.filter((name) => copies.get(name).length > 1).map((name) =>
  `${name}: ${copies.get(name).join(", ")}`
)
const builds = []
const findBuilds = (directory) => {
  for (const entry of fs.readdirSync(directory, { withFileTypes: true })) {
    const full = path.join(directory, entry.name)
    if (entry.isDirectory() && entry.name !== "obj.target") findBuilds(full)
    else if (entry.name === "better_sqlite3.node") builds.push(full)
  }
}
findBuilds("node_modules")
// better-sqlite3 12 puts the binary it compiles (or downloads) at install in build/Release; 13 ships prebuilt N-API
// binaries, one per platform, and builds nothing.
const expectedBuilds = sqliteMajor === "12" ? 1 : 0
if (builds.length !== expectedBuilds) {
  errors.push(`better_sqlite3.node built ${builds.length} times, not ${expectedBuilds}: ${builds.join(", ")}`)
}
for (const name of ["effect", "@effect/sql", "@effect/sql-sqlite-node", "@effect/platform", "better-sqlite3"]) {
  if (!copies.has(name)) errors.push(`${name} is not installed`)
}
const sqliteVersion = copies.get("better-sqlite3")?.[0]?.split(" ")[0]
if (sqliteVersion !== undefined && sqliteVersion.split(".")[0] !== sqliteMajor) {
  errors.push(`better-sqlite3 ${sqliteVersion} is installed, not ${sqliteMajor}`)
}
if (errors.length > 0) {
  console.error(errors.join("\n"))
  process.exit(1)
}
console.log(singletons.sort().map((name) => `${name}@${copies.get(name)[0].split(" ")[0]}`).join(" "))
