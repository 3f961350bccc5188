/**
 * The pool core's rarer paths, each pinned by what a caller sees: a waiter whose connection fails its checkout keeps
 * its place, a connection handed to a waiter interrupted meanwhile goes to the next one, a connection closed while
 * its probe ran is not handed out, the exact moments of validationInterval, maxLifetime and idleTimeToLive, and the
 * invariant checks the model-based test relies on.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConnectionPool, Connector, PoolConfig } from "@sqlsim/sqlite-pool"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as path from "node:path"
import * as Pool from "../src/internal/pool.js"
import * as PoolCore from "../src/internal/poolCore.js"
import { makeTestPool, tempDir, waitUntil, yieldEventLoop } from "./utils.js"

const waiting = (pool: ConnectionPool.Service, count: number) =>
  waitUntil(Effect.map(pool.stats, (s) => s.waiting === count), `${count} waiting`)

/** Joins a fiber that must end without the clock moving: a test fails at once (turns of the event loop) if it hangs. */
const joinSoon = <A, E>(fiber: Fiber.Fiber<A, E>, description: string) =>
  Effect.zipRight(waitUntil(Effect.map(Fiber.poll(fiber), Option.isSome), description, 20_000), Fiber.join(fiber))

/**
 * A pool in a Scope of its own whose probes (`validate`) can be held: while `hold` is set, a probe runs the real one,
 * says it started, and answers only once `answer` is completed (a probe that goes to a worker or a server).
 */
const poolWithSlowProbes = (input: PoolConfig.Input = {}) =>
  Effect.gen(function*() {
    const directory = yield* tempDir
    const live = yield* Connector.makeLive
    const probeStarted = yield* Deferred.make<void>()
    const answer = yield* Deferred.make<void>()
    const control = { hold: false, fail: false }
    const service = Connector.Connector.of({
      connect: (options) =>
        Effect.map(live.connect(options), (connection) => ({
          ...connection,
          validate: Effect.suspend(() =>
            control.fail
              ? Effect.fail({ reason: "the probe failed" })
              : control.hold
              ? connection.validate.pipe(
                Effect.zipLeft(Deferred.succeed(probeStarted, undefined)),
                Effect.zipLeft(Deferred.await(answer)),
                // The answer that comes back: what the probe found when it ran, or a failure set meanwhile.
                Effect.zipLeft(
                  Effect.suspend(() => control.fail ? Effect.fail({ reason: "the probe failed" }) : Effect.void)
                )
              )
              : connection.validate
          )
        }))
    })
    const poolScope = yield* Scope.make()
    const config = yield* PoolConfig.make({ filename: path.join(directory, "test.db"), ...input })
    const core = yield* Pool.make(config, { connector: service }).pipe(
      Scope.extend(poolScope)
    )
    const pool = Pool.service(core)
    const filename = path.join(directory, "test.db")
    return { pool, core, control, probeStarted, answer, filename, close: Scope.close(poolScope, Exit.void) }
  })

describe("pool core: the queue", () => {
  it.scoped("a waiter whose connection fails its checkout keeps its place at the head of the queue", () =>
    Effect.gen(function*() {
      const { connector, pool } = yield* makeTestPool({ maxConnections: 1 })
      const served: Array<string> = []
      const holder = yield* Scope.make()
      yield* Scope.extend(pool.acquire, holder)
      const use = (name: string) => Effect.fork(pool.use((c) => Effect.sync(() => served.push(`${name} on ${c.id}`))))
      const first = yield* use("first")
      yield* waiting(pool, 1)
      const second = yield* use("second")
      yield* waiting(pool, 2)
      // The connection dies under its holder; the holder's lease still ends well, so it goes back to the idle list,
      // is handed to the first waiter and fails that waiter's checkout: a new connection is opened for it.
      yield* connector.closeHandle(1)
      yield* Scope.close(holder, Exit.void)
      yield* joinSoon(first, "the first waiter is served")
      yield* joinSoon(second, "the second waiter is served")
      expect(served).toEqual(["first on 2", "second on 2"])
      expect(yield* pool.stats).toMatchObject({ created: 2, closed: 1, invalidated: 1, waiting: 0, inUse: 0 })
    }))

  it.scoped("a waiter whose connection fails its probe goes back to the front, ahead of those who came after it", () =>
    Effect.gen(function*() {
      const { close, control, pool } = yield* poolWithSlowProbes({ maxConnections: 1 })
      const served: Array<string> = []
      const holder = yield* Scope.make()
      yield* Scope.extend(pool.acquire, holder)
      // Only the first probe fails.
      const use = (name: string) =>
        Effect.fork(pool.use((c) =>
          Effect.sync(() => {
            control.fail = false
            served.push(`${name} on ${c.id}`)
          })
        ))
      const first = yield* use("first")
      yield* waiting(pool, 1)
      const second = yield* use("second")
      yield* waiting(pool, 2)
      // The connection goes back and is handed to the first waiter, whose probe fails: it is retired, and the first
      // waiter waits again, first in line, for the connection opened in its place (a fresh one is not probed).
      control.fail = true
      yield* Scope.close(holder, Exit.void)
      yield* joinSoon(first, "the first waiter is served")
      yield* joinSoon(second, "the second waiter is served")
      expect(served).toEqual(["first on 2", "second on 2"])
      expect(yield* pool.stats).toMatchObject({ created: 2, closed: 1, invalidated: 1, waiting: 0, inUse: 0 })
      yield* close
    }))

  it.scoped("a lone waiter whose connection fails its checkout is queued again and gets a new one", () =>
    Effect.gen(function*() {
      const { connector, pool } = yield* makeTestPool({ maxConnections: 1 })
      const holder = yield* Scope.make()
      yield* Scope.extend(pool.acquire, holder)
      const waiter = yield* Effect.fork(pool.use((c) => Effect.succeed(c.id)))
      yield* waiting(pool, 1)
      yield* connector.closeHandle(1)
      yield* Scope.close(holder, Exit.void)
      expect(yield* joinSoon(waiter, "the waiter is served")).toBe(2)
      expect(yield* pool.stats).toMatchObject({ created: 2, closed: 1, invalidated: 1, waiting: 0 })
    }))

  it.scoped("a waiter failed by a replacement connect inside the dispatch is not served too: the next connection stays free", () =>
    Effect.gen(function*() {
      const { connector, core, pool } = yield* makeTestPool({
        maxConnections: 2,
        minConnections: 2,
        validationInterval: "1 minute"
      })
      const [first, second] = [yield* Scope.make(), yield* Scope.make()]
      yield* Scope.extend(pool.acquire, first)
      const broken = yield* Scope.extend(pool.acquire, second)
      const waiter = yield* Effect.fork(Effect.exit(pool.use((c) => Effect.succeed(c.id))))
      yield* waiting(pool, 1)
      // The connection released last fails its checkout, and its replacement (minConnections) fails at once, for good.
      yield* connector.closeHandle(broken.id)
      connector.fault = "directory"
      // Both leases end before the dispatch runs, as leases ending during one do: it finds the broken connection on
      // top of the idle ones, retires it, and the replacement's failure fails the waiter right there.
      const internals = core as unknown as { dispatching: boolean }
      internals.dispatching = true
      yield* Scope.close(first, Exit.void)
      yield* Scope.close(second, Exit.void)
      internals.dispatching = false
      core.dispatch()
      const exit = yield* joinSoon(waiter, "the waiter ends")
      expect(Exit.isFailure(exit) && Cause.failureOption(exit.cause).pipe(Option.map((e) => e._tag))).toEqual(
        Option.some("ConnectError")
      )
      // Failed once, so counted once, and the other connection was not handed to it behind that failure.
      expect(yield* pool.stats).toMatchObject({ waiting: 0, inUse: 0, idle: 1, open: 1 })
      expect(core.violations()).toEqual([])
      connector.fault = undefined
      expect(yield* pool.use((c) => Effect.succeed(c.id))).not.toBe(broken.id)
    }))

  it.scoped("a connection handed to a waiter that was interrupted meanwhile goes to the next waiter", () =>
    Effect.gen(function*() {
      const { connector, core, pool } = yield* makeTestPool({ maxConnections: 1 })
      const served: Array<string> = []
      const holder = yield* Scope.make()
      yield* Scope.extend(pool.acquire, holder)
      const quitter = yield* Effect.fork(pool.use(() => Effect.sync(() => served.push("quitter"))))
      yield* waiting(pool, 1)
      const next = yield* Effect.fork(pool.use((c) => Effect.sync(() => served.push(`next on ${c.id}`))))
      yield* waiting(pool, 2)
      // The interruption is on its way when the connection is handed to the quitter, in the same step.
      yield* Fiber.interruptFork(quitter)
      yield* Scope.close(holder, Exit.void)
      yield* joinSoon(next, "the next waiter is served")
      expect(Exit.isInterrupted(yield* Fiber.await(quitter))).toBe(true)
      expect(served).toEqual(["next on 1"])
      expect(connector.openedCount()).toBe(1)
      expect(yield* pool.stats).toMatchObject({ created: 1, open: 1, idle: 1, inUse: 0, waiting: 0 })
      expect(core.violations()).toEqual([])
    }))
})

describe("pool core: probes", () => {
  it.scoped("a connection closed while its probe ran is not handed out: the acquire fails with PoolClosedError", () =>
    Effect.gen(function*() {
      const { answer, close, control, filename, pool, probeStarted } = yield* poolWithSlowProbes()
      yield* pool.use((c) => c.sql`CREATE TABLE t (x)`) // fresh: no probe
      control.hold = true
      const acquirer = yield* Effect.fork(Effect.flip(pool.use((c) => Effect.succeed(c.id))))
      yield* Deferred.await(probeStarted)
      // Closing retires the connection under the probe; the probe's answer comes back afterwards.
      yield* close
      yield* Deferred.succeed(answer, undefined)
      const refused = yield* joinSoon(acquirer, "the acquire is refused")
      expect(refused).toMatchObject({ _tag: "PoolClosedError", filename })
      const stats = yield* pool.stats
      expect(stats).toMatchObject({ acquired: 1, released: 1, open: 0, inUse: 0 })
    }))

  it.scoped("a connection invalidated while its probe runs serves that lease, then is closed", () =>
    Effect.gen(function*() {
      const { answer, control, core, pool, probeStarted } = yield* poolWithSlowProbes()
      yield* pool.use((c) => c.sql`SELECT 1`)
      const [connection] = core.openEntries().map((entry) => entry.handle)
      control.hold = true
      const user = yield* Effect.fork(pool.use((c) => Effect.as(c.sql`SELECT 1`, c.id)))
      yield* Deferred.await(probeStarted)
      yield* pool.invalidate(connection!)
      yield* Deferred.succeed(answer, undefined)
      expect(yield* joinSoon(user, "the lease is served")).toBe(1)
      expect(yield* pool.stats).toMatchObject({ created: 1, closed: 1, invalidated: 1, open: 0 })
    }))

  it.scoped("a connection whose probe fails is closed and counted as invalidated; the acquire gets a new one", () =>
    Effect.gen(function*() {
      const { control, pool } = yield* poolWithSlowProbes()
      yield* pool.use((c) => c.sql`SELECT 1`)
      control.fail = true
      expect(yield* pool.use((c) => Effect.as(c.sql`SELECT 1`, c.id))).toBe(2)
      expect(yield* pool.stats).toMatchObject({ created: 2, closed: 1, invalidated: 1, open: 1, acquired: 2 })
    }))

  it.scoped("a probe that fails after closing retired its connection does not count it twice", () =>
    Effect.gen(function*() {
      const { answer, close, control, pool, probeStarted } = yield* poolWithSlowProbes()
      yield* pool.use((c) => c.sql`SELECT 1`)
      control.hold = true
      const acquirer = yield* Effect.fork(Effect.flip(pool.use((c) => Effect.succeed(c.id))))
      yield* Deferred.await(probeStarted)
      yield* close
      control.fail = true
      yield* Deferred.succeed(answer, undefined)
      expect((yield* joinSoon(acquirer, "the acquire is refused"))._tag).toBe("PoolClosedError")
      expect(yield* pool.stats).toMatchObject({ created: 1, closed: 1, invalidated: 0, open: 0 })
    }))
})

/** A core on a real file, its client the connection itself, for tests that look inside it. */
const makeCore = (
  input: PoolConfig.Input = {},
  options: { readonly isFatal?: (error: unknown) => boolean; readonly connector?: Connector.Service } = {}
) =>
  Effect.gen(function*() {
    const directory = yield* tempDir
    const config = yield* PoolConfig.make({ filename: path.join(directory, "test.db"), ...input })
    const core = yield* PoolCore.make<Connector.Connection>({
      config,
      connector: options.connector ?? (yield* Connector.makeLive),
      connectOptions: {
        filename: config.filename,
        readOnly: false,
        busyTimeout: config.busyTimeout,
        pageCacheKiB: config.pageCacheKiB
      },
      makeClient: Effect.succeed,
      isFatal: options.isFatal ?? (() => false),
      label: config.filename
    })
    yield* core.fill
    return core
  })

/**
 * The live connector with each connection's O(1) check replaced: `makeCheck` is called once per connection opened
 * (and may count them); with `fileCheck: false` the connections have no file check, as a server's.
 */
const checkedBy = (makeCheck: () => () => string | undefined, options: { readonly fileCheck?: boolean } = {}) =>
  Effect.map(Connector.makeLive, (live) =>
    Connector.Connector.of({
      connect: (connectOptions) =>
        Effect.map(live.connect(connectOptions), ({ checkFile, ...connection }) => ({
          ...connection,
          ...(options.fileCheck === false ? {} : { checkFile }),
          check: makeCheck()
        }))
    }))

const take = <Client>(core: PoolCore.PoolCore<Client>, mode: PoolCore.Mode = "exclusive") =>
  Effect.uninterruptibleMask((restore) =>
    core.acquire(mode, mode === "shared" ? core.laneLease : core.callerLease, restore)
  )

const coreWaiting = <Client>(core: PoolCore.PoolCore<Client>, count: number) =>
  waitUntil(Effect.sync(() => core.snapshot().waiting === count), `${count} waiting`)

describe("pool core: shared and exclusive leases", () => {
  it.scoped("shared leases join one connection; the counters count it handed out once", () =>
    Effect.gen(function*() {
      const core = yield* makeCore({ maxConnections: 2 })
      const a = yield* take(core, "shared")
      const b = yield* take(core, "shared")
      const c = yield* take(core, "shared")
      expect([b.entry.id, c.entry.id]).toEqual([a.entry.id, a.entry.id])
      expect(core.snapshot()).toMatchObject({ created: 1, acquired: 1, inUse: 1, idle: 0 })
      expect(core.violations()).toEqual([])
      a.release(Exit.void)
      b.release(Exit.void)
      expect(core.snapshot()).toMatchObject({ inUse: 1, released: 0 })
      c.release(Exit.void)
      expect(core.snapshot()).toMatchObject({ acquired: 1, released: 1, inUse: 0, idle: 1 })
      expect(core.violations()).toEqual([])
    }))

  it.scoped("an exclusive lease never shares: beside a shared connection it gets another one", () =>
    Effect.gen(function*() {
      const core = yield* makeCore({ maxConnections: 2 })
      const shared = yield* take(core, "shared")
      const alone = yield* take(core, "exclusive")
      expect(alone.entry.id).not.toBe(shared.entry.id)
      // A shared lease does not join the exclusive connection either.
      const joined = yield* take(core, "shared")
      expect(joined.entry.id).toBe(shared.entry.id)
      expect(core.violations()).toEqual([])
      for (const lease of [shared, alone, joined]) lease.release(Exit.void)
    }))

  it.scoped("in a pool of one, an exclusive lease waits for the shared ones before it, and later shared ones wait for it", () =>
    Effect.gen(function*() {
      const core = yield* makeCore({ maxConnections: 1 })
      const order: Array<string> = []
      const first = yield* take(core, "shared")
      const transaction = yield* Effect.fork(
        Effect.tap(take(core, "exclusive"), (lease) => Effect.sync(() => order.push(`exclusive on ${lease.entry.id}`)))
      )
      yield* coreWaiting(core, 1)
      // Arrived after the exclusive waiter: it must not join the shared connection ahead of it.
      const later = yield* Effect.fork(
        Effect.tap(take(core, "shared"), (lease) => Effect.sync(() => order.push(`shared on ${lease.entry.id}`)))
      )
      yield* coreWaiting(core, 2)
      expect(order).toEqual([])
      first.release(Exit.void)
      const held = yield* joinSoon(transaction, "the exclusive lease is served")
      expect(order).toEqual(["exclusive on 1"])
      expect(core.snapshot().waiting).toBe(1)
      held.release(Exit.void)
      const statementLease = yield* joinSoon(later, "the later shared lease is served")
      expect(order).toEqual(["exclusive on 1", "shared on 1"])
      statementLease.release(Exit.void)
      expect(core.violations()).toEqual([])
    }))

  it.scoped("shared waiters queued behind an exclusive one all join one connection when it is free", () =>
    Effect.gen(function*() {
      const core = yield* makeCore({ maxConnections: 1 })
      const holder = yield* take(core, "exclusive")
      const statements = yield* Effect.forEach([1, 2, 3], () => Effect.fork(take(core, "shared")))
      yield* coreWaiting(core, 3)
      holder.release(Exit.void)
      const leases = yield* Effect.forEach(statements, (fiber) => joinSoon(fiber, "a statement is served"))
      expect(leases.map((lease) => lease.entry.id)).toEqual([1, 1, 1])
      expect(core.snapshot()).toMatchObject({ acquired: 2, inUse: 1, waiting: 0 })
      for (const lease of leases) lease.release(Exit.void)
      expect(core.violations()).toEqual([])
    }))

  it.scoped("a shared lease that ended broken stops others joining; the connection closes when its last lease ends", () =>
    Effect.gen(function*() {
      const lost = new Error("connection lost")
      const core = yield* makeCore({ maxConnections: 2 }, { isFatal: (error) => error === lost })
      const a = yield* take(core, "shared")
      const b = yield* take(core, "shared")
      a.release(Exit.fail(lost))
      const c = yield* take(core, "shared")
      expect(c.entry.id).toBe(2)
      expect(core.snapshot()).toMatchObject({ open: 2, closed: 0 })
      b.release(Exit.void)
      expect(core.snapshot()).toMatchObject({ open: 1, closed: 1, invalidated: 1 })
      c.release(Exit.void)
      expect(core.violations()).toEqual([])
    }))

  it.scoped("a statement finds the connection the last statement used (affinity), while anyone may take it meanwhile", () =>
    Effect.gen(function*() {
      const core = yield* makeCore({ minConnections: 2, maxConnections: 2 })
      const first = yield* take(core, "shared")
      const id = first.entry.id
      first.release(Exit.void)
      const again = yield* take(core, "shared")
      expect(again.entry.id).toBe(id)
      again.release(Exit.void)
      const caller = yield* take(core, "exclusive")
      expect(caller.entry.id).toBe(id)
      const meanwhile = yield* take(core, "shared")
      expect(meanwhile.entry.id).not.toBe(id)
      caller.release(Exit.void)
      meanwhile.release(Exit.void)
      expect(core.violations()).toEqual([])
    }))

  it.scoped("a shared connection past maxLifetime is not joined: new statements get another, the old one closes", () =>
    Effect.gen(function*() {
      const core = yield* makeCore({ maxConnections: 2, maxLifetime: "1 minute" })
      const old = yield* take(core, "shared")
      yield* TestClock.adjust("61 seconds")
      const fresh = yield* take(core, "shared")
      expect(fresh.entry.id).not.toBe(old.entry.id)
      old.release(Exit.void)
      expect(core.snapshot()).toMatchObject({ closed: 1, invalidated: 0, open: 1 })
      fresh.release(Exit.void)
      expect(core.violations()).toEqual([])
    }))

  it.scoped("closing the pool waits for shared leases to end, then closes their connection", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const core = yield* Scope.extend(makeCore({ maxConnections: 1, shutdownTimeout: "1 minute" }), scope)
      const a = yield* take(core, "shared")
      const b = yield* take(core, "shared")
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* yieldEventLoop
      a.release(Exit.void)
      yield* yieldEventLoop
      expect(Option.isNone(yield* Fiber.poll(closing))).toBe(true)
      b.release(Exit.void)
      yield* joinSoon(closing, "closing ends once both leases have")
      expect(core.snapshot()).toMatchObject({ open: 0, closed: 1, invalidated: 0 })
    }))
})

interface Inside {
  opening: number
  dispatching: boolean
  closing: boolean
  waiting: number
  idle: Array<PoolCore.Entry<Connector.Connection>>
}

describe("pool core: the invariant checks of the model-based test", () => {
  // violations() is the model-based test's oracle: each check must fire on the broken state it describes.
  it.scoped("a consistent core has none", () =>
    Effect.gen(function*() {
      const core = yield* makeCore({ minConnections: 2, maxConnections: 2 })
      expect(core.violations()).toEqual([])
      const lease = yield* take(core)
      expect(core.violations()).toEqual([])
      lease.release(Exit.void)
      expect(core.violations()).toEqual([])
    }))

  it.scoped("more connections open and opening than maxConnections", () =>
    Effect.gen(function*() {
      const core = yield* makeCore({ minConnections: 2, maxConnections: 2 })
      const inside = core as unknown as Inside
      inside.opening = 1
      expect(core.violations()).toEqual(["open + opening > maxConnections"])
      inside.opening = 0
    }))

  it.scoped("a connection counted as created that is not open", () =>
    Effect.gen(function*() {
      const core = yield* makeCore({ minConnections: 1 })
      core.stats.count("created")
      expect(core.violations()).toEqual(["created - closed (2) != open (1)", "stats.open (2) != open (1)"])
      core.stats.count("closed")
    }))

  it.scoped("a leased connection the statistics do not count", () =>
    Effect.gen(function*() {
      const core = yield* makeCore({ minConnections: 1 })
      const [entry] = core.openEntries()
      const inside = core as unknown as Inside
      inside.idle.splice(inside.idle.indexOf(entry!), 1)
      entry!.state = "leased"
      expect(core.violations()).toEqual([
        "inUse (0) != leased (1)",
        "a leased connection has no lease, or an exclusive one several"
      ])
      entry!.holders = 2
      expect(core.violations()).toContain("leases on connections (2) != leases (0)")
      entry!.holders = 0
      entry!.state = "idle"
      inside.idle.push(entry!)
    }))

  it.scoped("a lease counted as acquired and neither released nor in use", () =>
    Effect.gen(function*() {
      const core = yield* makeCore({ minConnections: 1 })
      core.stats.count("acquired")
      expect(core.violations()).toEqual(["acquired != released + inUse"])
      core.stats.count("released")
    }))

  it.scoped("an idle connection missing from the idle list, and one listed twice", () =>
    Effect.gen(function*() {
      const core = yield* makeCore({ minConnections: 1 })
      const inside = core as unknown as Inside
      const [entry] = inside.idle.splice(0, 1)
      expect(core.violations()).toEqual(["the idle list and the idle states disagree"])
      inside.idle.push(entry!, entry!)
      expect(core.violations()).toEqual(["the idle list and the idle states disagree"])
      inside.idle.pop()
    }))

  it.scoped("a waiting count the statistics do not show, and a waiter left waiting beside an idle connection", () =>
    Effect.gen(function*() {
      const core = yield* makeCore({ minConnections: 1 })
      const inside = core as unknown as Inside
      core.stats.setWaiting(1)
      expect(core.violations()).toEqual(["stats.waiting != waiting"])
      inside.waiting = 1
      expect(core.violations()).toEqual(["a waiter waits while a connection is idle"])
      // Not while a dispatch step runs (it is about to hand the connection over), nor while the pool closes.
      inside.dispatching = true
      expect(core.violations()).toEqual([])
      inside.dispatching = false
      inside.closing = true
      expect(core.violations()).toEqual([])
      inside.closing = false
      // Without an idle connection, waiting is what a pool does when every connection is out.
      const [entry] = inside.idle.splice(0, 1)
      entry!.state = "validating"
      expect(core.violations()).toEqual([])
      entry!.state = "idle"
      inside.idle.push(entry!)
      inside.waiting = 0
      core.stats.setWaiting(0)
    }))
})

describe("pool core: what ends a connection, and how it is counted", () => {
  it.scoped("a failure the pool's own isFatal recognises retires the connection as invalidated", () =>
    Effect.gen(function*() {
      const lost = new Error("lost write access")
      const core = yield* makeCore({}, { isFatal: (error) => error === lost })
      const lease = yield* take(core)
      lease.release(Exit.fail(new Error("the caller's own error")))
      expect(core.snapshot()).toMatchObject({ open: 1, idle: 1, invalidated: 0 })
      const again = yield* take(core)
      expect(again.entry).toBe(lease.entry)
      again.release(Exit.fail(lost))
      expect(core.snapshot()).toMatchObject({ open: 0, closed: 1, invalidated: 1 })
      expect(core.check(lease.entry)).toBe("it was closed")
      const replacement = yield* take(core)
      expect(replacement.entry.id).toBe(2)
      replacement.release(Exit.void)
    }))

  it.scoped("check: undefined for a usable connection, \"it was closed\" once the pool has retired it", () =>
    Effect.gen(function*() {
      const core = yield* makeCore({ minConnections: 1 })
      const [entry] = core.openEntries()
      expect(core.check(entry!)).toBeUndefined()
      core.invalidate(entry!)
      expect(core.check(entry!)).toBe("it was closed")
      yield* waitUntil(Effect.sync(() => entry!.state === "closed"), "the connection is closed")
      expect(core.check(entry!)).toBe("it was closed")
    }))

  it.scoped("a connection without a file check (a server's, a worker's without a file) is checked by check() alone", () =>
    Effect.gen(function*() {
      let closed = false
      const connector = yield* checkedBy(() => {
        let lost = false
        return () => {
          lost ||= closed
          return lost ? "the server went away" : undefined
        }
      }, { fileCheck: false })
      const core = yield* makeCore({}, { connector })
      const first = yield* take(core)
      first.release(Exit.void)
      expect(core.check(first.entry)).toBeUndefined()
      const again = yield* take(core)
      expect(again.entry).toBe(first.entry)
      again.release(Exit.void)
      closed = true
      expect(core.check(first.entry)).toBe("the server went away")
      closed = false // the next connection is a good one: only the first went away
      const replacement = yield* take(core)
      expect(replacement.entry.id).toBe(2)
      replacement.release(Exit.void)
    }))

  it.live("connections unusable as soon as they open: the connect fails typed after its retries, no reopening loop", () =>
    Effect.gen(function*() {
      let opened = 0
      const connector = yield* checkedBy(() => {
        opened++
        return () => "the socket closed right after the handshake"
      })
      const core = yield* makeCore({ retries: 3, retryBaseDelay: "1 millis", acquireTimeout: "20 seconds" }, {
        connector
      })
      const error = yield* Effect.flip(take(core))
      expect(error).toMatchObject({
        _tag: "ConnectError",
        code: "SQLITE_CANTOPEN",
        transient: true,
        attempts: 4,
        reason: "the connection was unusable as soon as it opened: the socket closed right after the handshake"
      })
      expect(opened).toBe(4)
      // Each attempt's connection was closed with its attempt, and none was counted as created.
      expect(core.snapshot()).toMatchObject({ created: 0, open: 0, connectFailures: 4, retries: 3 })
    }).pipe(Effect.scoped))

  it.live("connections that pass their first check and fail every checkout: the acquire ends at its deadline", () =>
    Effect.gen(function*() {
      const connector = yield* checkedBy(() => {
        let checks = 0
        return () => checks++ === 0 ? undefined : "it broke at once"
      })
      const core = yield* makeCore({ acquireTimeout: "300 millis" }, { connector })
      const started = performance.now()
      const error = yield* Effect.flip(take(core))
      expect(error._tag).toBe("AcquireTimeoutError")
      expect(core.snapshot().timeouts).toBe(1)
      expect(performance.now() - started).toBeLessThan(10_000)
    }).pipe(Effect.scoped))

  it.scoped("closing counts no connection as invalidated: idle, given back meanwhile, or outliving shutdownTimeout", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const core = yield* Scope.extend(makeCore({ maxConnections: 3, shutdownTimeout: "10 seconds" }), scope)
      const idle = yield* take(core)
      const givenBack = yield* take(core)
      const outliving = yield* take(core)
      idle.release(Exit.void)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* waitUntil(Effect.sync(() => core.snapshot().closed === 1), "the idle connection is closed")
      givenBack.release(Exit.void)
      expect(core.snapshot()).toMatchObject({ closed: 2, inUse: 1 })
      yield* TestClock.adjust("10 seconds")
      yield* joinSoon(closing, "the pool is closed")
      expect(core.snapshot()).toMatchObject({ created: 3, closed: 3, invalidated: 0, released: 3, inUse: 0, open: 0 })
      // The outliving lease ends later: it was counted as ended already.
      outliving.release(Exit.void)
      expect(core.snapshot()).toMatchObject({ released: 3, inUse: 0 })
    }))
})

describe("pool core: a connect that ends while the pool closes", () => {
  it.scoped("its connection is closed at once, not counted as invalidated, and handed to nobody", () =>
    Effect.gen(function*() {
      const live = yield* Connector.makeLive
      const gate = { hold: false }
      const opened = yield* Deferred.make<void>()
      const connector = Connector.Connector.of({
        connect: (options) => Effect.zipRight(gate.hold ? Deferred.await(opened) : Effect.void, live.connect(options))
      })
      const scope = yield* Scope.make()
      const core = yield* Scope.extend(makeCore({ maxConnections: 2 }, { connector }), scope)
      const lease = yield* take(core)
      gate.hold = true
      const waiter = yield* Effect.fork(take(core))
      yield* coreWaiting(core, 1)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      const refused = yield* Effect.flip(joinSoon(waiter, "the waiter is refused"))
      expect(refused._tag).toBe("PoolClosedError")
      yield* Deferred.succeed(opened, undefined)
      yield* waitUntil(Effect.sync(() => core.snapshot().created === 2), "the connect ends")
      // Closed at once, while the pool still waits for the lease out.
      expect(core.snapshot()).toMatchObject({ created: 2, closed: 1, invalidated: 0, inUse: 1, idle: 0 })
      lease.release(Exit.void)
      yield* joinSoon(closing, "the pool is closed")
      expect(core.snapshot()).toMatchObject({ created: 2, closed: 2, invalidated: 0, acquired: 1, released: 1 })
    }))
})

/** A live connector whose connects wait, while `gate.hold` is set, until `gate.open` is completed. */
const gatedConnector = Effect.gen(function*() {
  const live = yield* Connector.makeLive
  const open = yield* Deferred.make<void>()
  const gate = { hold: true, connects: 0, open }
  const service = Connector.Connector.of({
    connect: (options) =>
      Effect.suspend(() => {
        gate.connects++
        return Effect.zipRight(gate.hold ? Deferred.await(open) : Effect.void, live.connect(options))
      })
  })
  return { gate, service }
})

describe("pool core: connects in progress", () => {
  it.scoped("connects in progress count towards maxConnections: three waiters, two connects", () =>
    Effect.gen(function*() {
      const { gate, service } = yield* gatedConnector
      const core = yield* makeCore({ maxConnections: 2 }, { connector: service })
      const waiters = yield* Effect.forEach([1, 2, 3], () => Effect.fork(take(core)))
      yield* coreWaiting(core, 3)
      expect(gate.connects).toBe(2)
      expect(core.violations()).toEqual([])
      yield* Deferred.succeed(gate.open, undefined)
      const [first, second] = [yield* joinSoon(waiters[0]!, "first"), yield* joinSoon(waiters[1]!, "second")]
      first.release(Exit.void)
      second.release(Exit.void)
      ;(yield* joinSoon(waiters[2]!, "third")).release(Exit.void)
      expect(gate.connects).toBe(2)
      expect(core.snapshot()).toMatchObject({ created: 2, acquired: 3, waiting: 0 })
    }))

  it.scoped("a connection retired below minConnections while a connect is in progress is not replaced twice", () =>
    Effect.gen(function*() {
      const { gate, service } = yield* gatedConnector
      gate.hold = false
      const core = yield* makeCore({ minConnections: 1, maxConnections: 3 }, { connector: service })
      const [kept] = core.openEntries()
      const lease = yield* take(core) // the pool's one connection
      gate.hold = true
      const waiter = yield* Effect.fork(take(core))
      yield* coreWaiting(core, 1)
      expect(gate.connects).toBe(2) // the pool's one, and the waiter's
      // The pool's connection goes; the waiter's connect in progress keeps the pool at minConnections.
      expect(lease.entry).toBe(kept)
      core.invalidate(kept!)
      lease.release(Exit.void)
      expect(gate.connects).toBe(2)
      yield* Deferred.succeed(gate.open, undefined)
      const served = yield* joinSoon(waiter, "the waiter is served")
      served.release(Exit.void)
      expect(gate.connects).toBe(2)
      expect(core.snapshot()).toMatchObject({ created: 2, closed: 1, open: 1, idle: 1 })
    }))

  it.scoped("a connection opened for a waiter that gave up is idle, and closed after idleTimeToLive", () =>
    Effect.gen(function*() {
      const { gate, service } = yield* gatedConnector
      const core = yield* makeCore({ idleTimeToLive: "1 minute" }, { connector: service })
      const waiter = yield* Effect.fork(take(core))
      yield* coreWaiting(core, 1)
      yield* Fiber.interrupt(waiter)
      yield* Deferred.succeed(gate.open, undefined)
      yield* waitUntil(Effect.sync(() => core.snapshot().idle === 1), "the connection is idle")
      yield* TestClock.adjust("1 minute")
      yield* waitUntil(Effect.sync(() => core.snapshot().open === 0), "the idle connection is closed")
      expect(core.snapshot()).toMatchObject({ created: 1, closed: 1, acquired: 0 })
    }))
})

describe("pool core: leases", () => {
  it.scoped("a lease ended twice counts once", () =>
    Effect.gen(function*() {
      const core = yield* makeCore()
      const lease = yield* take(core)
      lease.release(Exit.void)
      lease.release(Exit.void)
      expect(core.snapshot()).toMatchObject({ acquired: 1, released: 1, inUse: 0, idle: 1 })
      const again = yield* take(core)
      lease.release(Exit.void) // the old lease: nothing happens to the new one
      expect(core.snapshot()).toMatchObject({ acquired: 2, released: 1, inUse: 1 })
      again.release(Exit.void)
    }))

  it.scoped("a waiter served just before the pool closes, but not yet running, is refused", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const core = yield* Scope.extend(makeCore({ maxConnections: 1 }), scope)
      const lease = yield* take(core)
      const waiter = yield* Effect.fork(Effect.flip(take(core)))
      yield* coreWaiting(core, 1)
      // In one step: the connection goes to the waiter, then the pool closes before the waiter runs.
      const closing = yield* Effect.fork(
        Effect.zipRight(Effect.sync(() => lease.release(Exit.void)), Scope.close(scope, Exit.void))
      )
      expect((yield* joinSoon(waiter, "the waiter is refused"))._tag).toBe("PoolClosedError")
      yield* joinSoon(closing, "the pool is closed")
      expect(core.snapshot()).toMatchObject({ acquired: 1, released: 1, created: 1, closed: 1, invalidated: 0 })
    }))
})

describe("pool core: the limits are measured from each connection's own moments", () => {
  // The clock is not at 0 when the pool starts: a difference computed the wrong way round shows.
  it.scoped("validationInterval, maxLifetime and idleTimeToLive on a clock that started long ago", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust("1 hour")
      const { connector, pool } = yield* makeTestPool({
        maxConnections: 2,
        validationInterval: "10 seconds",
        maxLifetime: "1 minute",
        idleTimeToLive: "30 seconds"
      })
      expect(yield* pool.use((c) => Effect.succeed(c.id))).toBe(1)
      expect(yield* pool.use((c) => Effect.succeed(c.id))).toBe(1)
      expect(connector.probes()).toBe(0) // released moments ago: no probe
      yield* TestClock.adjust("20 seconds")
      expect(yield* pool.use((c) => Effect.succeed(c.id))).toBe(1) // 20 s old, probed
      expect(connector.probes()).toBe(1)
      expect(yield* pool.stats).toMatchObject({ open: 1, closed: 0 })
      yield* TestClock.adjust("29 seconds")
      expect(yield* pool.stats).toMatchObject({ open: 1, closed: 0 })
      yield* TestClock.adjust("1 second")
      yield* waitUntil(Effect.map(pool.stats, (s) => s.open === 0), "closed after idleTimeToLive")
    }))

  it.scoped("idleTimeToLive counts from each connection's own release", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool({ maxConnections: 2, idleTimeToLive: "1 minute" })
      const early = yield* Scope.make()
      const late = yield* Scope.make()
      yield* Scope.extend(pool.acquire, early)
      yield* Scope.extend(pool.acquire, late)
      yield* Scope.close(early, Exit.void)
      yield* TestClock.adjust("30 seconds")
      yield* Scope.close(late, Exit.void)
      yield* TestClock.adjust("30 seconds")
      yield* waitUntil(Effect.map(pool.stats, (s) => s.open === 1), "the early one is closed")
      yield* TestClock.adjust("29 seconds")
      expect((yield* pool.stats).open).toBe(1)
      yield* TestClock.adjust("1 second")
      yield* waitUntil(Effect.map(pool.stats, (s) => s.open === 0), "the late one is closed")
    }))

  it.scoped("maxLifetime counts from each connection's own creation", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool({ maxConnections: 2, maxLifetime: "1 minute", idleTimeToLive: "1 hour" })
      const first = yield* Scope.make()
      yield* Scope.extend(pool.acquire, first)
      yield* TestClock.adjust("30 seconds")
      yield* Effect.scoped(pool.acquire) // the second connection, 30 s younger
      yield* Scope.close(first, Exit.void)
      yield* TestClock.adjust("30 seconds")
      yield* waitUntil(Effect.map(pool.stats, (s) => s.open === 1), "the first one is closed")
      yield* TestClock.adjust("29 seconds")
      expect((yield* pool.stats).open).toBe(1)
      yield* TestClock.adjust("1 second")
      yield* waitUntil(Effect.map(pool.stats, (s) => s.open === 0), "the second one is closed")
      expect(yield* pool.stats).toMatchObject({ created: 2, closed: 2, invalidated: 0 })
    }))

  it.scoped("a lease that ends exactly at maxLifetime: the next acquire gets a new connection, none counted invalidated", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTestPool({ maxLifetime: "1 minute" })
      const ids = yield* Effect.gen(function*() {
        const held = yield* Scope.make()
        const first = yield* Scope.extend(pool.acquire, held)
        yield* TestClock.adjust("1 minute")
        yield* Scope.close(held, Exit.void)
        // At once, before the pool's own fibers run.
        const second = yield* pool.use((c) => Effect.succeed(c.id))
        return [first.id, second]
      })
      expect(ids).toEqual([1, 2])
      expect(yield* pool.stats).toMatchObject({ created: 2, closed: 1, invalidated: 0 })
    }))
})
