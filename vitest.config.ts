import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The `sqlsim` command compiled once for the command's tests, which run it as a child process.
    globalSetup: ["packages/cli/test/globalSetup.ts"],
    // Memory tests measure what is retained after a collection, not what the collector has not got to yet.
    poolOptions: { forks: { execArgv: ["--expose-gc"] } },
    // Three files at a time on two cores: the command's tests mostly wait for the child processes they start.
    maxWorkers: 3,
    minWorkers: 3,
    // The JSON report lets .ci/run print a plain "N passed, N failed" closing line.
    reporters: ["default", "json"],
    outputFile: { json: "node_modules/.cache/vitest-report.json" }
  }
})
