// Finds runtime import cycles among the packages' sources (`packages/*/src/**/*.{ts,mjs}`) and prints each as a chain
// of files; exits 1 if there is one. Run by `pnpm lint`; `node scripts/circular.mjs [root]` checks another tree.
//
// Only imports that exist at run time count: `import type`, `export type` and imports whose every specifier is
// `type` bind nothing, so they cannot take part in the initialization-order bugs a cycle causes (the rule Effect's CI
// enforces with madge and `skipTypeImports`). A dynamic `import()` runs later, so it is not an edge either.
// Workspace package names (`@sqlsim/sqlite-pool/...`) resolve to that package's sources, so a cycle between packages
// is found too.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs"
import * as path from "node:path"
import ts from "typescript"

const root = path.resolve(process.argv[2] ?? ".")
const packagesDirectory = path.join(root, "packages")

/** Every file under `directory` whose name ends in .ts or .mjs (declaration files excepted), sorted. */
const sourceFiles = (directory) =>
  readdirSync(directory, { recursive: true })
    .map((name) => path.join(directory, name))
    .filter((file) => /\.(ts|mjs)$/.test(file) && !file.endsWith(".d.ts") && statSync(file).isFile())
    .sort()

/** Package name -> its `src` directory, for the workspace packages that have one. */
const workspaceSources = () => {
  const sources = new Map()
  for (const name of existsSync(packagesDirectory) ? readdirSync(packagesDirectory).sort() : []) {
    const manifest = path.join(packagesDirectory, name, "package.json")
    const src = path.join(packagesDirectory, name, "src")
    if (existsSync(manifest) && existsSync(src)) sources.set(JSON.parse(readFileSync(manifest, "utf8")).name, src)
  }
  return sources
}

/** The specifiers of the imports and re-exports of `file` that are still there once types are erased. */
const runtimeSpecifiers = (file) => {
  const kind = file.endsWith(".mjs") ? ts.ScriptKind.JS : ts.ScriptKind.TS
  const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, false, kind)
  const specifiers = []
  for (const statement of source.statements) {
    if (ts.isImportDeclaration(statement) && !isTypeOnlyImport(statement)) {
      specifiers.push(statement.moduleSpecifier.text)
    } else if (
      ts.isExportDeclaration(statement) && statement.moduleSpecifier !== undefined && !isTypeOnlyExport(statement)
    ) {
      specifiers.push(statement.moduleSpecifier.text)
    }
  }
  return specifiers
}

const isTypeOnlyImport = (declaration) => {
  const clause = declaration.importClause
  if (clause === undefined) return false // `import "./x.js"`: run for its effects
  if (clause.isTypeOnly) return true
  const bindings = clause.namedBindings
  return clause.name === undefined && bindings !== undefined && ts.isNamedImports(bindings) &&
    bindings.elements.length > 0 && bindings.elements.every((element) => element.isTypeOnly)
}

const isTypeOnlyExport = (declaration) =>
  declaration.isTypeOnly ||
  (declaration.exportClause !== undefined && ts.isNamedExports(declaration.exportClause) &&
    declaration.exportClause.elements.length > 0 &&
    declaration.exportClause.elements.every((element) => element.isTypeOnly))

/** The source file `specifier` means from `file`, or undefined for a module outside the packages' sources. */
const resolve = (file, specifier, sources) => {
  let base
  if (specifier.startsWith(".")) {
    base = path.resolve(path.dirname(file), specifier)
  } else {
    const packageName = [...sources.keys()].find((name) => specifier === name || specifier.startsWith(`${name}/`))
    if (packageName === undefined) return undefined
    const subpath = specifier.slice(packageName.length + 1)
    base = path.join(sources.get(packageName), subpath === "" ? "index" : subpath)
  }
  // Sources import each other by their emitted name (`./x.js`), and packages by extensionless subpaths.
  const stem = base.replace(/\.(js|ts|mjs)$/, "")
  return [`${stem}.ts`, `${stem}.mjs`, base].find((candidate) => existsSync(candidate) && statSync(candidate).isFile())
}

/** Rotates a cycle (its first file repeated at the end) to start at its first file in sorted order. */
const fromSmallest = (cycle) => {
  const files = cycle.slice(0, -1)
  const start = files.indexOf([...files].sort()[0])
  const rotated = [...files.slice(start), ...files.slice(0, start)]
  return [...rotated, rotated[0]]
}

/** One cycle per back edge of a depth-first walk, each as the list of files from the first back to it. */
const findCycles = (graph) => {
  const cycles = []
  const done = new Set()
  const onPath = []
  const visit = (file) => {
    onPath.push(file)
    for (const next of graph.get(file) ?? []) {
      const start = onPath.indexOf(next)
      if (start !== -1) cycles.push(fromSmallest([...onPath.slice(start), next]))
      else if (!done.has(next)) visit(next)
    }
    onPath.pop()
    done.add(file)
  }
  for (const file of graph.keys()) if (!done.has(file)) visit(file)
  return cycles
}

const sources = workspaceSources()
const graph = new Map()
for (const src of sources.values()) {
  for (const file of sourceFiles(src)) {
    const targets = runtimeSpecifiers(file).map((specifier) => resolve(file, specifier, sources))
    graph.set(file, [...new Set(targets.filter((target) => target !== undefined))].sort())
  }
}

const cycles = findCycles(graph)
const relative = (file) => path.relative(root, file)
if (cycles.length === 0) {
  console.log(`No import cycles among ${graph.size} source files (type-only imports ignored).`)
} else {
  console.error(`${cycles.length} runtime import cycle(s) among the packages' sources (type-only imports ignored):`)
  for (const cycle of cycles) console.error(`  ${cycle.map(relative).join(" -> ")}`)
  console.error("Break each one: import the other module as a type only, or move what both need into a third module.")
  process.exit(1)
}
