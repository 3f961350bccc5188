/**
 * packages/sqlite-pool/ARCHITECTURE.md is the map of the library: it must name every source file, and every path it
 * names must exist. A file added, moved or removed without the map changing fails here.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const library = fileURLToPath(new URL("../packages/sqlite-pool/", import.meta.url))
const map = fs.readFileSync(path.join(library, "ARCHITECTURE.md"), "utf8")

/** every file under `dir`, relative to the library's root */
const filesUnder = (dir: string): Array<string> =>
  fs.readdirSync(path.join(library, dir), { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? filesUnder(path.join(dir, entry.name)) : [path.join(dir, entry.name)]
  )

/** the paths the map names in backticks: anything with a directory and a file extension */
const namedPaths = [...map.matchAll(/`([\w./-]+\/[\w.-]+\.(?:ts|mts|mjs|c|md))`/g)].map((match) => match[1]!)

/** the first column of the file table, each cell split at its commas */
const tabled = map.split("\n").filter((line) => line.startsWith("| `")).flatMap((line) =>
  [...line.split("|")[1]!.matchAll(/`([^`]+)`/g)].map((match) => match[1]!)
)

describe("ARCHITECTURE.md", () => {
  it("names every source file of the library in its file table", () => {
    const sources = [...filesUnder("src"), ...filesUnder("native")].sort()
    expect(sources.length).toBeGreaterThan(20)
    expect(sources.filter((file) => !tabled.includes(file))).toEqual([])
  })

  it("names only paths that exist", () => {
    expect(namedPaths.length).toBeGreaterThan(20)
    const missing = namedPaths.filter((named) =>
      ![library, path.join(library, "../..")].some((root) => fs.existsSync(path.join(root, named)))
    )
    expect(missing).toEqual([])
  })
})
