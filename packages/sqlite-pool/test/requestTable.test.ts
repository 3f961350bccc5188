/**
 * The request table the worker connection and the Hrana socket share: answers reach their own request, every
 * request is settled exactly once, and failing all of them tells the oldest apart.
 */
import { describe, expect, it } from "@effect/vitest"
import { RequestTable } from "../src/internal/requestTable.js"

/** A request whose every settlement is recorded. */
const recorder = () => {
  const settled: Array<{ readonly answer?: string; readonly error?: unknown }> = []
  return {
    settled,
    waiter: {
      resolve: (answer: string) => settled.push({ answer }),
      reject: (error: unknown) => settled.push({ error })
    }
  }
}

describe("RequestTable", () => {
  it("answers reach their request by id, in any order; a second answer to one id is ignored", () => {
    const table = new RequestTable<string, unknown>()
    const [first, second] = [recorder(), recorder()]
    const [firstId, secondId] = [table.add(first.waiter), table.add(second.waiter)]
    expect(firstId).not.toBe(secondId)
    expect(table.resolve(secondId, "two")).toBe(true)
    expect(table.resolve(firstId, "one")).toBe(true)
    expect(table.resolve(firstId, "again")).toBe(false)
    expect(table.reject(firstId, new Error("late"))).toBe(false)
    expect(first.settled).toEqual([{ answer: "one" }])
    expect(second.settled).toEqual([{ answer: "two" }])
    expect(table.size).toBe(0)
  })

  it("failAll fails every waiting request once, oldest first at position 0, and none of them again", () => {
    const table = new RequestTable<string, unknown>()
    const requests = [recorder(), recorder(), recorder()]
    const ids = requests.map((request) => table.add(request.waiter))
    table.withdraw(ids[1]!)
    expect(table.isOldest(ids[0]!)).toBe(true)
    table.failAll((position) => `failed at ${position}`)
    table.failAll(() => "twice")
    expect(table.resolve(ids[2]!, "too late")).toBe(false)
    expect(requests.map((request) => request.settled)).toEqual([
      [{ error: "failed at 0" }],
      [],
      [{ error: "failed at 1" }]
    ])
    // Ids are not reused after the table emptied.
    expect(table.add(recorder().waiter)).toBeGreaterThan(ids[2]!)
  })
})
