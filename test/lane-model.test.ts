/**
 * Model-based property test of SqlitePool's lanes, driven on the real lanes (`internal/lanes.ts`: the writer lane
 * and the Reader over their pools) on a real file: random sequences of writer statements, writer transactions held
 * open and then committed, failed or interrupted, Reader statements, Reader transactions held open (each reads twice),
 * and interrupted waiters, against a model of the one queue each lane's pool has. The model: a writer statement runs
 * at once unless a transaction holds or waits for the writer, then it waits its turn behind it; a transaction waits
 * for everything before it; the Reader's statements and transactions wait only when every Reader connection is held
 * by a Reader transaction (never for the writer, WAL); a Reader transaction reads one snapshot. After every step each
 * operation's state, what a read returned, the committed rows (read by a separate connection), the waiting counts and
 * both pool cores' own invariants must agree with the model.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlError } from "@effect/sql/SqlError"
import { describe, expect, it } from "@effect/vitest"
import { Connector, PoolConfig } from "@sqlsim/sqlite-pool"
import { tempDir } from "@sqlsim/test-kit/TempDir"
import { settle, yieldEventLoop } from "@sqlsim/test-kit/Wait"
import Database from "better-sqlite3"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as path from "node:path"
import * as Lanes from "../packages/sqlite-pool/src/internal/lanes.js"

type Kind = "write" | "writeTransaction" | "read" | "readTransaction"
type Status = "waiting" | "holding" | "done" | "failed" | "interrupted"
type Ending = "commit" | "fail" | "interrupt"

interface ModelOp {
  readonly label: number
  readonly kind: Kind
  status: Status
  /** what a read returned (the rows it counted), or a read transaction's first read */
  seen?: number
}

class Model {
  readonly ops = new Map<number, ModelOp>()
  /** the waiters of each lane's pool, oldest first */
  writerQueue: Array<number> = []
  readerQueue: Array<number> = []
  /** the writer transaction holding the writer, if one does */
  writerHolder: number | undefined = undefined
  /** the Reader transactions holding a Reader connection each */
  readonly readerHolders = new Set<number>()
  /** the rows committed, by the label of the operation that wrote them */
  readonly committed: Array<number> = []
  nextLabel = 1

  constructor(readonly readConnections: number) {}

  arrive(kind: Kind): number {
    const label = this.nextLabel++
    const op: ModelOp = { label, kind, status: "waiting" }
    this.ops.set(label, op)
    const writer = kind === "write" || kind === "writeTransaction"
    const queue = writer ? this.writerQueue : this.readerQueue
    queue.push(label)
    if (writer) this.pumpWriter()
    else this.pumpReader()
    return label
  }

  /** Serves the writer's waiters in order: statements run and are done, a transaction takes the writer and stops it. */
  private pumpWriter(): void {
    while (this.writerHolder === undefined && this.writerQueue.length > 0) {
      const op = this.ops.get(this.writerQueue.shift()!)!
      if (op.kind === "write") {
        op.status = "done"
        this.committed.push(op.label)
      } else {
        op.status = "holding"
        this.writerHolder = op.label
      }
    }
  }

  /** Serves the Reader's waiters in order while a connection is free of Reader transactions. */
  private pumpReader(): void {
    while (this.readerQueue.length > 0 && this.readerHolders.size < this.readConnections) {
      const op = this.ops.get(this.readerQueue.shift()!)!
      op.seen = this.committed.length
      if (op.kind === "read") {
        op.status = "done"
      } else {
        op.status = "holding"
        this.readerHolders.add(op.label)
      }
    }
  }

  end(label: number, how: Ending): void {
    const op = this.ops.get(label)!
    if (op.kind === "writeTransaction") {
      this.writerHolder = undefined
      if (how === "commit") this.committed.push(label)
      op.status = how === "commit" ? "done" : how === "fail" ? "failed" : "interrupted"
      this.pumpWriter()
    } else {
      // A Reader transaction reads again at its end, in its snapshot: an interrupted one does not get there.
      this.readerHolders.delete(label)
      op.status = how === "interrupt" ? "interrupted" : how === "commit" ? "done" : "failed"
      this.pumpReader()
    }
  }

  interruptWaiter(label: number): void {
    const op = this.ops.get(label)!
    op.status = "interrupted"
    this.writerQueue = this.writerQueue.filter((waiting) => waiting !== label)
    this.readerQueue = this.readerQueue.filter((waiting) => waiting !== label)
    this.pumpWriter()
    this.pumpReader()
  }

  holding(): Array<number> {
    return [...this.ops.values()].filter((op) => op.status === "holding").map((op) => op.label)
  }

  waiting(): Array<number> {
    return [...this.writerQueue, ...this.readerQueue]
  }
}

interface RealOp {
  readonly kind: Kind
  status: Status
  seen?: number
  /** a Reader transaction's second read, which must equal its first */
  seenAgain?: number
  fiber?: Fiber.RuntimeFiber<void, never>
  readonly ending: Deferred.Deferred<Ending>
}

class Harness {
  readonly ops = new Map<number, RealOp>()
  readonly trace: Array<string> = []

  constructor(readonly lanes: Lanes.Lanes, readonly file: string, readonly forkIn: Scope.Scope) {}

  /** The work of one operation on the real lanes; it records what it did. */
  private work(label: number, op: RealOp): Effect.Effect<void, unknown> {
    const writer = this.lanes.writer.client
    const reader = this.lanes.reader!.client
    const count = Effect.map(reader<{ n: number }>`SELECT count(*) AS n FROM t`, ([row]) => row!.n)
    switch (op.kind) {
      case "write":
        return Effect.asVoid(writer`INSERT INTO t (label) VALUES (${label})`)
      case "read":
        return Effect.map(count, (n) => void (op.seen = n))
      case "writeTransaction":
        return writer.withTransaction(Effect.gen(function*() {
          yield* writer`INSERT INTO t (label) VALUES (${label})`
          op.status = "holding"
          if ((yield* Deferred.await(op.ending)) === "fail") yield* new SqlError({ message: "the body failed" })
        }))
      case "readTransaction":
        return reader.withTransaction(Effect.gen(function*() {
          op.seen = yield* count
          op.status = "holding"
          if ((yield* Deferred.await(op.ending)) === "fail") yield* new SqlError({ message: "the body failed" })
          op.seenAgain = yield* count
        }))
    }
  }

  start(label: number, kind: Kind): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const op: RealOp = { kind, status: "waiting", ending: yield* Deferred.make<Ending>() }
      this.ops.set(label, op)
      const run = Effect.onExit(this.work(label, op), (exit) =>
        Effect.sync(() => {
          op.status = Exit.isSuccess(exit) ? "done" : Exit.isInterrupted(exit) ? "interrupted" : "failed"
        }))
      op.fiber = yield* Effect.forkIn(Effect.ignore(run), this.forkIn)
    })
  }

  /** Every difference between the model and the real lanes, as sentences (empty when they agree). */
  differences(model: Model): ReadonlyArray<string> {
    const problems: Array<string> = []
    for (const [label, expected] of model.ops) {
      const real = this.ops.get(label)!
      if (real.status !== expected.status) {
        problems.push(`${expected.kind} L${label} should be ${expected.status} but is ${real.status}`)
      } else if (expected.seen !== undefined && real.seen !== expected.seen) {
        problems.push(`${expected.kind} L${label} should have counted ${expected.seen} rows, not ${real.seen}`)
      } else if (real.seenAgain !== undefined && real.seenAgain !== real.seen) {
        problems.push(`read transaction L${label} saw ${real.seen} rows, then ${real.seenAgain}: not one snapshot`)
      }
    }
    const db = new Database(this.file, { readonly: true, fileMustExist: true })
    try {
      const rows = db.prepare("SELECT label FROM t ORDER BY label").all() as Array<{ label: number }>
      const committed = rows.map((row) => row.label)
      const expected = [...model.committed].sort((a, b) => a - b)
      if (JSON.stringify(committed) !== JSON.stringify(expected)) {
        problems.push(`committed rows ${JSON.stringify(committed)}, expected ${JSON.stringify(expected)}`)
      }
    } finally {
      db.close()
    }
    const { reader, writer } = this.lanes
    if (writer.core.snapshot().waiting !== model.writerQueue.length) {
      problems.push(
        `the writer's pool has ${writer.core.snapshot().waiting} waiting, expected ${model.writerQueue.length}`
      )
    }
    if (reader!.core.snapshot().waiting !== model.readerQueue.length) {
      problems.push(
        `the Reader's pool has ${reader!.core.snapshot().waiting} waiting, expected ${model.readerQueue.length}`
      )
    }
    problems.push(...writer.core.violations().map((rule) => `writer core: ${rule}`))
    problems.push(...reader!.core.violations().map((rule) => `reader core: ${rule}`))
    return problems
  }
}

/** Runs one step on the real lanes, then waits (turns of the event loop) until they agree with the model. */
const step = (model: Model, harness: Harness, description: string, real: Effect.Effect<void>) =>
  Effect.gen(function*() {
    harness.trace.push(description)
    yield* real
    let problems: ReadonlyArray<string> = []
    for (let turn = 0; turn < 500; turn++) {
      problems = harness.differences(model)
      if (problems.length === 0) break
      yield* yieldEventLoop
    }
    if (problems.length === 0) {
      // Agreement must last: give late work a chance to break it.
      yield* settle(5)
      problems = harness.differences(model)
    }
    if (problems.length > 0) {
      const trace = harness.trace.map((line, index) => `  ${index + 1}. ${line}`).join("\n")
      return yield* Effect.dieMessage(
        `the lanes disagree with the model after:\n${trace}\n` + problems.map((problem) => `  - ${problem}`).join("\n")
      )
    }
  })

interface LaneCommand extends FastCheck.ICommand<Model, Harness, Effect.Effect<void>> {}

const at = <A>(items: ReadonlyArray<A>, index: number): A => items[index % items.length]!

class Arrive implements LaneCommand {
  constructor(readonly kind: Kind) {}
  check = () => true
  run(model: Model, harness: Harness) {
    const label = model.arrive(this.kind)
    return step(
      model,
      harness,
      `${this.kind} L${label} -> ${model.ops.get(label)!.status}`,
      harness.start(label, this.kind)
    )
  }
  toString = () => this.kind
}

class End implements LaneCommand {
  constructor(readonly index: number, readonly how: Ending) {}
  check = (model: Readonly<Model>) => model.holding().length > 0
  run(model: Model, harness: Harness) {
    const label = at(model.holding(), this.index)
    model.end(label, this.how)
    const op = harness.ops.get(label)!
    const real: Effect.Effect<unknown> = this.how === "interrupt"
      ? Fiber.interrupt(op.fiber!)
      : Deferred.succeed(op.ending, this.how)
    return step(model, harness, `${this.how} L${label}`, Effect.asVoid(real))
  }
  toString = () => `${this.how}(holding[${this.index}])`
}

class InterruptWaiter implements LaneCommand {
  constructor(readonly index: number) {}
  check = (model: Readonly<Model>) => model.waiting().length > 0
  run(model: Model, harness: Harness) {
    const label = at(model.waiting(), this.index)
    model.interruptWaiter(label)
    return step(
      model,
      harness,
      `interrupt waiting L${label}`,
      Effect.asVoid(Fiber.interrupt(harness.ops.get(label)!.fiber!))
    )
  }
  toString = () => `interruptWaiter(waiting[${this.index}])`
}

const commands = FastCheck.commands<Model, Harness>([
  FastCheck.constant(new Arrive("write")),
  FastCheck.constant(new Arrive("write")),
  FastCheck.constant(new Arrive("writeTransaction")),
  FastCheck.constant(new Arrive("read")),
  FastCheck.constant(new Arrive("read")),
  FastCheck.constant(new Arrive("readTransaction")),
  FastCheck.nat(3).map((index) => new End(index, "commit")),
  FastCheck.nat(3).map((index) => new End(index, "fail")),
  FastCheck.nat(3).map((index) => new End(index, "interrupt")),
  FastCheck.nat(3).map((index) => new InterruptWaiter(index))
], { maxCommands: 40, size: "max" })

let runs = 0
let steps = 0

describe("SqlitePool's lanes against a reference model", () => {
  it.effect.prop(
    "agree with the model after every step of a random sequence",
    { readConnections: FastCheck.integer({ min: 1, max: 3 }), commands },
    ({ commands, readConnections }) =>
      Effect.scoped(Effect.gen(function*() {
        runs++
        const file = path.join(yield* tempDir, "lanes.db")
        const config = yield* PoolConfig.makeSqlite({ filename: file, readConnections, acquireTimeout: "1 hours" })
        const lanesScope = yield* Scope.make()
        const lanes = yield* Lanes.make(config, yield* Connector.makeLive).pipe(
          Scope.extend(lanesScope),
          Effect.provide(Reactivity.layer)
        )
        yield* lanes.writer.client`CREATE TABLE t (label INTEGER PRIMARY KEY)`
        // Operation fibers live in their own scope, closed before the lanes' (interrupting any left over).
        const fiberScope = yield* Scope.make()
        yield* Effect.addFinalizer(() =>
          Effect.zipRight(Scope.close(fiberScope, Exit.void), Scope.close(lanesScope, Exit.void))
        )
        const model = new Model(readConnections)
        const harness = new Harness(lanes, file, fiberScope)
        for (const command of commands as Iterable<LaneCommand>) {
          if (!command.check(model)) continue
          steps++
          yield* command.run(model, harness)
        }
        // Everything ends: every holder commits, oldest first, until nothing holds or waits.
        while (model.holding().length > 0) yield* new End(0, "commit").run(model, harness)
        expect(model.waiting()).toEqual([])
        for (const op of harness.ops.values()) yield* Fiber.await(op.fiber!)
        yield* Scope.close(fiberScope, Exit.void)
        yield* Scope.close(lanesScope, Exit.void)
        for (const core of [lanes.writer.core, lanes.reader!.core]) {
          expect(core.snapshot()).toMatchObject({ open: 0, inUse: 0, waiting: 0 })
          expect(core.violations()).toEqual([])
        }
      })),
    { fastCheck: { numRuns: 40 } }
  )

  it("reports how much it ran", () => {
    console.log(`lane model: ${runs} runs, ${steps} steps`)
    expect(runs).toBeGreaterThan(0)
  })
})
