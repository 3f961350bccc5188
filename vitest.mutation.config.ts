import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

const root = fileURLToPath(new URL(".", import.meta.url))

// The tests of the mutated modules and of the pool core's behaviour, in the order a mutant's tests run: the focused
// files first, so that a mutant dies in the first second, the model-based test last. The pool's other suites (the
// lanes, the reader threads, libSQL, the storms of bad input, retries and interruptions, handles, dead connections)
// reach the core only through these paths and would make every mutant several times slower: with them a run of the
// three mutated files took hours on two shared cores.
const testFiles = [
  "packages/sqlite-pool/test/PoolConfig.test.ts",
  "packages/cli/test/environment.test.ts",
  "packages/sqlite-pool/test/SqliteCode.test.ts",
  "packages/sqlite-pool/test/RetryPolicy.test.ts",
  "packages/sqlite-pool/test/poolCore.test.ts",
  "packages/sqlite-pool/test/ConnectionPool.test.ts",
  "packages/sqlite-pool/test/ConnectionPool.*.test.ts",
  "test/pool-model.test.ts",
  "test/lane-model.test.ts"
]

const rank = (file: string): number => {
  const index = testFiles.findIndex((pattern) =>
    new RegExp(`${pattern.replace(/[.]/g, "[.]").replace("*", ".*")}$`).test(file)
  )
  return index === -1 ? testFiles.length : index
}

/** Runs the files in the order of the list above (vitest's own order is the slowest first). */
class ListOrder {
  async shard<File>(files: Array<File>): Promise<Array<File>> {
    return files
  }
  async sort<File extends { readonly moduleId: string }>(files: Array<File>): Promise<Array<File>> {
    return [...files].sort((a, b) => rank(a.moduleId) - rank(b.moduleId))
  }
}

export default defineConfig({
  resolve: {
    // Stryker runs in a copy of the workspace whose node_modules links back to the original: the workspace packages
    // must resolve inside the copy, or the tests would import the unmutated sources.
    alias: [
      { find: /^@sqlsim\/([a-z-]+)$/, replacement: `${root}packages/$1/src/index.ts` },
      { find: /^@sqlsim\/([a-z-]+)\/(.+)$/, replacement: `${root}packages/$1/src/$2.ts` }
    ]
  },
  test: {
    include: testFiles,
    sequence: { sequencer: ListOrder },
    pool: "forks",
    // Stryker's runner sets `pool: "threads"` on the command line, which overrides `pool`; a glob match takes
    // precedence over both. Forks are needed because a test calls process.chdir, which worker threads forbid. The
    // glob is absolute: Stryker's copy lives under .stryker-tmp/, and `**` does not match a dot folder.
    poolMatchGlobs: [[`${root}**/*.test.ts`, "forks"]],
    // A mutant that makes a test hang fails it after 15 s (the slowest test here takes about 2 s on an idle machine)
    // rather than after the suite's 60 s.
    testTimeout: 15_000,
    hookTimeout: 15_000,
    // One fork runs every test file of a run without isolating them, so the modules load once per mutant rather than
    // once per file (most of a mutant's time otherwise). Stryker starts a new fork for each mutant.
    isolate: false,
    poolOptions: { forks: { execArgv: ["--expose-gc"], singleFork: true, isolate: false } },
    maxWorkers: 1,
    minWorkers: 1
  }
})
