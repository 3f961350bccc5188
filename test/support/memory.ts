/**
 * Memory measurements for the soak: a full garbage collection on demand (made callable for this process only, by the
 * V8 flag Node exposes for it), the heap after it, and a check that objects let go of are really collected.
 */
import * as v8 from "node:v8"
import * as vm from "node:vm"

const collect: () => void = (() => {
  v8.setFlagsFromString("--expose-gc")
  return vm.runInNewContext("gc") as () => void
})()

/** Runs a full garbage collection and returns the heap in use after it, in bytes. */
export const heapAfterGc = (): number => {
  collect()
  return process.memoryUsage().heapUsed
}

/**
 * How many of `references` are still alive after a full collection. WeakRef targets stay alive until the current
 * job ends, so callers must let the event loop turn once before asking.
 */
export const stillAlive = (references: ReadonlyArray<WeakRef<object>>): number => {
  collect()
  return references.filter((reference) => reference.deref() !== undefined).length
}
