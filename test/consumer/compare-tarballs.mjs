// Compares the tarballs scripts/stage-packages.mjs packed with npm against those `pnpm pack` made from the workspace
// manifests: the same files, and manifests that agree on everything an install reads. Also checks what every tarball
// must and must not hold. Usage: node compare-tarballs.mjs <npm tarballs dir> <pnpm tarballs dir>
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

const [npmDir, pnpmDir] = process.argv.slice(2)
const list = (tarball) =>
  execFileSync("tar", ["-tzf", tarball], { encoding: "utf8" }).split("\n").filter(Boolean).sort()
const manifest = (tarball) =>
  JSON.parse(execFileSync("tar", ["-xzOf", tarball, "package/package.json"], { encoding: "utf8" }))
const fields = [
  "name",
  "version",
  "type",
  "license",
  "engines",
  "exports",
  "bin",
  "files",
  "dependencies",
  "peerDependencies",
  "sideEffects",
  "repository",
  "homepage",
  "bugs"
]
// What a registry page and a bundler read: every published package has them.
const requiredFields = ["sideEffects", "repository", "homepage", "bugs"]
const errors = []

for (const name of fs.readdirSync(npmDir).filter((file) => file.endsWith(".tgz")).sort()) {
  const npmTarball = path.join(npmDir, name)
  const pnpmTarball = path.join(pnpmDir, name)
  if (!fs.existsSync(pnpmTarball)) {
    errors.push(`${name}: pnpm pack made no tarball of that name`)
    continue
  }
  const files = list(npmTarball)
  const pnpmFiles = list(pnpmTarball)
  if (JSON.stringify(files) !== JSON.stringify(pnpmFiles)) {
    const only = (a, b) => a.filter((file) => !b.includes(file))
    errors.push(`${name}: files differ; only npm: ${only(files, pnpmFiles)}; only pnpm: ${only(pnpmFiles, files)}`)
  }
  const fromNpm = manifest(npmTarball)
  const fromPnpm = manifest(pnpmTarball)
  for (const field of fields) {
    if (JSON.stringify(fromNpm[field]) !== JSON.stringify(fromPnpm[field])) {
      errors.push(
        `${name}: "${field}" differs: ${JSON.stringify(fromNpm[field])} vs ${JSON.stringify(fromPnpm[field])}`
      )
    }
  }
  for (const field of requiredFields.filter((field) => fromNpm[field] === undefined)) {
    errors.push(`${name}: package.json has no "${field}"`)
  }
  for (const required of ["package/package.json", "package/README.md", "package/LICENSE", "package/CHANGELOG.md"]) {
    if (!files.includes(required)) errors.push(`${name}: ${required} is missing`)
  }
  for (const file of files) {
    if (/\/test\/|\.test\.|tsbuildinfo/.test(file)) errors.push(`${name}: ships ${file}`)
  }
  if (JSON.stringify(fromNpm).includes("workspace:")) errors.push(`${name}: a workspace: range is left`)
  console.log(`${name}: ${files.length} files, manifests agree (${fields.join(", ")})`)
}

if (errors.length > 0) {
  console.error(errors.join("\n"))
  process.exit(1)
}
