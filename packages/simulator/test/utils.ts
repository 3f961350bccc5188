/**
 * Fixtures of the simulator's tests; temporary directories and the waits come from the test kit.
 */
export { tempDatabase, tempDir } from "@sqlsim/test-kit/TempDir"
export { advanceUntil, yieldEventLoop } from "@sqlsim/test-kit/Wait"

/** True while a process with this id exists. */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
