// Writes publish-ready copies of the workspace packages into .release/packages/<dir>, one per package, that any
// client (npm, pnpm, yarn) packs and publishes as they are:
//   - `publishConfig` applied the way pnpm applies it (its fields replace the top-level ones: `exports`, `bin`, ...),
//   - `workspace:` ranges replaced by the versions of the workspace packages (`workspace:^` -> `^0.1.0`),
//   - `scripts` and `devDependencies` dropped (nothing runs at install time; the guard against a raw `npm pack` goes),
//   - the `files` of the package plus README.md, LICENSE and CHANGELOG.md copied beside the manifest.
// It checks what it wrote: no `workspace:` range left, every `exports` / `bin` target present, bins start with a
// shebang, the manifest names its repository (with its directory), homepage, bugs and `sideEffects`, and every
// `sideEffects` file inside a shipped directory is there. Build first (`pnpm build`).
//
// Usage: node scripts/stage-packages.mjs [--pack <directory>] [--publish [npm publish flags...]]
//   --pack DIR   also `npm pack` every staged package into DIR (prints the tarball paths)
//   --publish    also `npm publish` every staged package, dependencies first (flags after it go to npm)
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath, URL } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const packagesDir = path.join(root, "packages")
const stageRoot = path.join(root, ".release", "packages")

const args = process.argv.slice(2)
const packIndex = args.indexOf("--pack")
const packDestination = packIndex === -1 ? undefined : path.resolve(args[packIndex + 1] ?? "")
const publishIndex = args.indexOf("--publish")
const publishFlags = publishIndex === -1 ? undefined : args.slice(publishIndex + 1)

const fail = (message) => {
  console.error(`stage-packages: ${message}`)
  process.exit(1)
}

const readJson = (file) => JSON.parse(fs.readFileSync(file, "utf8"))

const workspace = fs.readdirSync(packagesDir)
  .filter((dir) => fs.existsSync(path.join(packagesDir, dir, "package.json")))
  .map((dir) => ({ dir, manifest: readJson(path.join(packagesDir, dir, "package.json")) }))
  .filter(({ manifest }) => manifest.private !== true)
const versions = new Map(workspace.map(({ manifest }) => [manifest.name, manifest.version]))

const resolveRange = (name, range) => {
  if (!range.startsWith("workspace:")) return range
  const version = versions.get(name)
  if (version === undefined) fail(`${name} is a workspace: dependency but no workspace package has that name`)
  const spec = range.slice("workspace:".length)
  if (spec === "*") return version
  if (spec === "^" || spec === "~") return `${spec}${version}`
  return spec
}

const dependencyFields = ["dependencies", "peerDependencies", "optionalDependencies"]

const publishManifest = (manifest) => {
  const { publishConfig = {}, scripts: _scripts, devDependencies: _dev, ...rest } = manifest
  const { access: _access, registry: _registry, tag: _tag, directory: _directory, ...overrides } = publishConfig
  const result = { ...rest, ...overrides }
  for (const field of dependencyFields) {
    if (result[field] === undefined) continue
    result[field] = Object.fromEntries(
      Object.entries(result[field]).map(([name, range]) => [name, resolveRange(name, range)])
    )
  }
  if (publishConfig.access !== undefined) result.publishConfig = { access: publishConfig.access }
  return result
}

const targetsOf = (value) =>
  typeof value === "string"
    ? [value]
    : value !== null && typeof value === "object"
    ? Object.values(value).flatMap(targetsOf)
    : []

// Dependencies first, so that --publish never publishes a package before one it depends on.
const ordered = []
const visit = (entry, seen = new Set()) => {
  if (ordered.includes(entry)) return
  if (seen.has(entry)) fail(`dependency cycle at ${entry.manifest.name}`)
  seen.add(entry)
  for (const name of Object.keys(entry.manifest.dependencies ?? {})) {
    const dependency = workspace.find(({ manifest }) => manifest.name === name)
    if (dependency !== undefined) visit(dependency, seen)
  }
  ordered.push(entry)
}
workspace.forEach((entry) => visit(entry))

fs.rmSync(stageRoot, { recursive: true, force: true })
const staged = []
for (const { dir, manifest } of ordered) {
  const source = path.join(packagesDir, dir)
  const target = path.join(stageRoot, dir)
  fs.mkdirSync(target, { recursive: true })
  const published = publishManifest(manifest)
  const copied = [
    ...new Set([
      ...(published.files ?? []).filter((entry) => !entry.startsWith("!")),
      "README.md",
      "LICENSE",
      "CHANGELOG.md"
    ])
  ]
  for (const entry of copied) {
    const from = path.join(source, entry)
    if (!fs.existsSync(from)) fail(`${manifest.name}: ${entry} is missing (run pnpm build?)`)
    fs.cpSync(from, path.join(target, entry), { recursive: true })
  }
  fs.writeFileSync(path.join(target, "package.json"), JSON.stringify(published, null, 2) + "\n")

  const text = JSON.stringify(published)
  if (text.includes("workspace:")) fail(`${manifest.name}: a workspace: range is left`)
  // Patterns ("./dist/*.js") are checked through the entry points they share a directory with.
  for (const file of [...targetsOf(published.exports), ...targetsOf(published.bin)].filter((t) => !t.includes("*"))) {
    if (!fs.existsSync(path.join(target, file))) fail(`${manifest.name}: ${file} (exports or bin) does not exist`)
  }
  for (const field of ["repository", "homepage", "bugs", "sideEffects"]) {
    if (published[field] === undefined) fail(`${manifest.name}: package.json has no "${field}"`)
  }
  if (published.repository.directory !== `packages/${dir}`) {
    fail(`${manifest.name}: repository.directory is not packages/${dir}`)
  }
  // The modules run for their effects (a bin, a worker's script) that a bundler must keep; the sources of a package
  // that ships only dist are listed for the workspace's sake and are not checked here.
  const shipped = (file) => copied.includes(file.replace(/^\.\//, "").split("/")[0])
  for (const file of Array.isArray(published.sideEffects) ? published.sideEffects.filter(shipped) : []) {
    if (!fs.existsSync(path.join(target, file))) fail(`${manifest.name}: sideEffects names ${file}, which is missing`)
  }
  for (const file of targetsOf(published.bin)) {
    if (!fs.readFileSync(path.join(target, file), "utf8").startsWith("#!")) {
      fail(`${manifest.name}: bin ${file} has no shebang line`)
    }
  }
  staged.push({ name: manifest.name, version: manifest.version, target })
  console.log(`staged ${manifest.name}@${manifest.version} in ${path.relative(root, target)}`)
}

const npm = (cwd, npmArgs) =>
  execFileSync("npm", npmArgs, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] })

if (packDestination !== undefined) {
  fs.mkdirSync(packDestination, { recursive: true })
  for (const { target } of staged) {
    const [{ filename }] = JSON.parse(npm(target, ["pack", "--json", "--pack-destination", packDestination]))
    console.log(path.join(packDestination, filename))
  }
}

if (publishFlags !== undefined) {
  for (const { name, version, target } of staged) {
    console.log(`publishing ${name}@${version}`)
    npm(target, ["publish", ...publishFlags])
  }
}
