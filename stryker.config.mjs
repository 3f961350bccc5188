// Mutation testing of the pool core and its policies: `pnpm mutate` (not part of `pnpm test` nor of CI).
// The HTML and JSON reports go to reports/mutation/.

/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  // Named explicitly: the default glob looks for plugins beside @stryker-mutator/core, which pnpm keeps elsewhere.
  plugins: ["@stryker-mutator/vitest-runner"],
  vitest: { configFile: "vitest.mutation.config.ts", related: false },
  mutate: [
    "packages/sqlite-pool/src/internal/poolCore.ts",
    "packages/sqlite-pool/src/RetryPolicy.ts",
    "packages/sqlite-pool/src/SqliteCode.ts",
    "packages/sqlite-pool/src/PoolConfig.ts"
  ],
  // A mutant in code that runs when a module loads (PoolConfig's Schemas are built then) is "static": covered by every
  // test, so it would run the whole set, about a minute per mutant. They are left out of the run and the score.
  ignoreStatic: true,
  coverageAnalysis: "perTest",
  // One test process: the machine has two cores and the tests themselves are timing-sensitive.
  concurrency: 1,
  // Some tests run on the real clock (connect retries, shutdown): a mutant is a timeout only 5 s past one and a half
  // times what its tests took unmutated.
  timeoutMS: 5_000,
  timeoutFactor: 1.5,
  thresholds: { high: 90, low: 85, break: null },
  reporters: ["clear-text", "progress", "html", "json"],
  htmlReporter: { fileName: "reports/mutation/index.html" },
  jsonReporter: { fileName: "reports/mutation/mutation.json" },
  // A later run re-tests only the mutants whose code or covering tests changed (`pnpm mutate --force` for all).
  incremental: true,
  incrementalFile: "reports/stryker-incremental.json",
  tempDirName: ".stryker-tmp",
  cleanTempDir: "always"
}
