// `prepack` of every workspace package. The manifests in the repository are for the workspace: their `exports` point
// at the TypeScript sources and their internal dependencies say `workspace:^`. `pnpm pack` / `pnpm publish` apply
// `publishConfig` and replace `workspace:` ranges; `npm pack` / `npm publish` do neither and would ship a package that
// cannot be installed. So anything but pnpm is stopped here, with the way out.
// (The staged copies written by scripts/stage-packages.mjs carry no scripts, so this never runs for them.)
import { readFileSync } from "node:fs"

const userAgent = process.env.npm_config_user_agent ?? ""
const manifest = JSON.parse(readFileSync("package.json", "utf8"))
const needsPnpm = JSON.stringify(manifest.dependencies ?? {}).includes("workspace:") ||
  manifest.publishConfig !== undefined

if (needsPnpm && !userAgent.startsWith("pnpm/")) {
  console.error(
    `${manifest.name}: this manifest is the workspace one (sources as exports, workspace: ranges); ` +
      `npm would pack it as is. Run \`pnpm stage\` at the repository root and pack or publish ` +
      `.release/packages/<name> with any client, or use \`pnpm pack\` here.`
  )
  process.exit(1)
}
