import { assert, describe, it } from "@effect/vitest"
import { FaultPlan, Simulation, Workload } from "@sqlsim/simulator"
import { Either, FastCheck } from "effect"

const parseError = (spec: string) => {
  const result = FaultPlan.parse(spec)
  assert.isTrue(Either.isLeft(result), `expected "${spec}" to be rejected`)
  return Either.isLeft(result) ? result.left : undefined!
}

describe("FaultPlan.parse", () => {
  it("reads every kind of fault, with the lock holder's defaults", () => {
    const plan = Either.getOrThrow(
      FaultPlan.parse(
        "open=0.1, open-permanent=0.02,slow=0.2,slow-ms=30,die=0.05,ping=.01,ioerr=0.02,stmt-busy=0.03," +
          "stmt-slow=0.04,stmt-slow-ms=7,busy=lock-holder"
      )
    )
    assert.deepStrictEqual(plan, {
      openTransient: 0.1,
      openPermanent: 0.02,
      slowOpen: 0.2,
      slowOpenMs: 30,
      die: 0.05,
      ping: 0.01,
      ioerr: 0.02,
      busyStatement: 0.03,
      slowStatement: 0.04,
      slowStatementMs: 7,
      lockHolder: { holdMs: 50, everyMs: 500 }
    })
    assert.deepStrictEqual(
      Either.getOrThrow(FaultPlan.parse("busy=lock-holder,lock-ms=80,lock-every=200")).lockHolder,
      { holdMs: 80, everyMs: 200 }
    )
  })

  it("reads \"none\" and an empty spec as no faults", () => {
    assert.deepStrictEqual(Either.getOrThrow(FaultPlan.parse("none")), FaultPlan.none)
    assert.deepStrictEqual(Either.getOrThrow(FaultPlan.parse("  ")), FaultPlan.none)
    assert.isTrue(FaultPlan.isNone(FaultPlan.none))
  })

  it("rejects mistakes with a typed error that names the problem and the way out", () => {
    const cases: ReadonlyArray<readonly [string, RegExp]> = [
      ["open=1.5", /open=1\.5: must be a probability between 0 and 1/],
      ["open=abc", /must be a probability/],
      ["open=0x1", /must be a probability/],
      ["open=", /must be a probability/],
      ["bogus=0.1", /unknown fault "bogus": the known ones are open, open-permanent, slow/],
      ["open", /"open" is not key=value/],
      ["open=0.1,open=0.2", /"open" is given twice/],
      ["open=0.7,open-permanent=0.5", /open \+ open-permanent must not exceed 1/],
      ["die=0.6,ping=0.6", /die \+ ping \+ ioerr \+ stmt-busy \+ stmt-slow must be below 1/],
      ["die=1", /must be below 1/],
      ["ioerr=0.5,stmt-busy=0.3,stmt-slow=0.2", /must be below 1 \(all are chances of one event of a connection/],
      ["stmt-slow=0.1,stmt-slow-ms=0", /between 1 and 60000/],
      ["busy=sometimes", /busy=lock-holder or busy=off/],
      ["lock-ms=10", /only apply with busy=lock-holder/],
      ["busy=lock-holder,lock-ms=500,lock-every=500", /must be shorter than lock-every/],
      ["slow=0.1,slow-ms=0", /between 1 and 60000/]
    ]
    for (const [spec, message] of cases) {
      const error = parseError(spec)
      assert.strictEqual(error._tag, "SimulationConfigError")
      assert.strictEqual(error.field, "faults")
      assert.match(error.message, message, spec)
    }
  })

  const probability = FastCheck.oneof(FastCheck.constant(0), FastCheck.double({ min: 0, max: 0.49, noNaN: true }))
  // Five of them share one draw per event of a connection: their sum stays below 1.
  const eventProbability = FastCheck.oneof(
    FastCheck.constant(0),
    FastCheck.double({ min: 0, max: 0.19, noNaN: true })
  )
  const plans = FastCheck.record({
    openTransient: probability,
    openPermanent: probability,
    slowOpen: probability,
    slowOpenMs: FastCheck.integer({ min: 1, max: 60_000 }),
    die: eventProbability,
    ping: eventProbability,
    ioerr: eventProbability,
    busyStatement: eventProbability,
    slowStatement: eventProbability,
    slowStatementMs: FastCheck.integer({ min: 1, max: 60_000 }),
    lockHolder: FastCheck.option(
      FastCheck.integer({ min: 1, max: 1000 }).chain((holdMs) =>
        FastCheck.integer({ min: holdMs + 1, max: 60_000 }).map((everyMs) => ({ holdMs, everyMs }))
      ),
      { nil: undefined }
    )
  })

  it.prop("format writes a spec that parse reads back to the same plan", [plans], ([plan]) => {
    assert.deepStrictEqual(Either.getOrThrow(FaultPlan.parse(FaultPlan.format(plan))), plan)
  })
})

describe("Workload.parseMix", () => {
  it("reads weights; kinds left out weigh 0", () => {
    assert.deepStrictEqual(Either.getOrThrow(Workload.parseMix("read=70,write=20,transaction=10")), {
      read: 70,
      write: 20,
      transaction: 10
    })
    assert.deepStrictEqual(Either.getOrThrow(Workload.parseMix("write=1")), { read: 0, write: 1, transaction: 0 })
  })

  it("rejects unknown kinds, bad weights and an all-zero mix", () => {
    for (
      const [spec, message] of [
        ["reads=1", /unknown operation "reads": the kinds are read, write, transaction/],
        ["read=-1", /is not kind=weight/],
        ["read=0", /at least one weight must be above 0/],
        ["read=1,read=2", /given twice/]
      ] as const
    ) {
      const result = Workload.parseMix(spec)
      assert.isTrue(Either.isLeft(result), spec)
      if (Either.isLeft(result)) assert.match(result.left.message, message)
    }
  })
})

describe("Simulation.resolve", () => {
  it("fills in the defaults: 8 workers, 5 seconds, the default mix, no faults, a temporary database", () => {
    const options = Either.getOrThrow(Simulation.resolve({ seed: 1 }))
    assert.strictEqual(options.workers, 8)
    assert.deepStrictEqual(options.stop, { _tag: "Duration", millis: 5000 })
    assert.deepStrictEqual(options.mix, Workload.defaultMix)
    assert.deepStrictEqual(options.faults, FaultPlan.none)
    assert.isUndefined(options.database)
    assert.strictEqual(options.clock, "real")
  })

  it("rejects options that do not go together, or are out of bounds, naming the field", () => {
    const cases: ReadonlyArray<readonly [Simulation.Input, string, RegExp]> = [
      [{ seed: 1, operations: 10, duration: "1 second" }, "operations", /give operations or duration, not both/],
      [{ seed: 1, workers: 0 }, "workers", /^workers must be a whole number from 1 to 512, got 0$/],
      [{ seed: 1, workers: 2.5 }, "workers", /whole number/],
      [{ seed: 1, operations: 2_000_000 }, "operations", /from 1 to 1,000,000/],
      [{ seed: 1, duration: "2 hours" }, "duration", /at most 1 hour/],
      [{ seed: 1, duration: "-5 seconds" }, "duration", /more than 0/],
      [{ seed: -1 }, "seed", /^seed must be a whole number/],
      [{ seed: 1, holdMs: -1 }, "holdMs", /^holdMs must be from 0 to 10000/],
      [{ seed: 1, database: ":memory:" }, "database", /^database must be a database file/],
      [
        { seed: 1, operations: 5, clock: "virtual", faults: "busy=lock-holder" },
        "clock",
        /lock holder is a real process/
      ],
      [{ seed: 1, clock: "virtual" }, "clock", /needs operations/],
      [{ seed: 1, faults: "open=2" }, "faults", /^faults open=2: must be a probability/],
      [{ seed: 1, mix: "read" }, "mix", /^mix: "read" is not kind=weight/]
    ]
    for (const [input, field, message] of cases) {
      const result = Simulation.resolve(input)
      assert.isTrue(Either.isLeft(result), JSON.stringify(input))
      if (Either.isLeft(result)) {
        assert.strictEqual(result.left.field, field, JSON.stringify(input))
        assert.match(result.left.message, message)
        // The command names its flags in the same message.
        assert.include(result.left.describe((name) => `<${name}>`), `<${field}>`)
      }
    }
  })
})
