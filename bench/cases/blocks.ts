/**
 * The Effect building blocks a ConnectionPool lease is made of, each measured alone in the same run, so that the
 * pool's acquire + release overhead can be read as a sum of parts (see the closing note of run.ts).
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import type { Case, Result, Settings } from "../harness.js"
import { measureSuite, repeatEffect } from "../harness.js"

/**
 * @since 0.1.0
 * @category suites
 */
export const run = (settings: Settings): Effect.Effect<Array<Result>, unknown> =>
  Effect.gen(function*() {
    const outer = yield* Scope.make()
    const cases: Array<Case> = [
      {
        id: "block.scoped",
        name: "Effect.scoped(Effect.void)",
        setup: "1 fiber",
        run: repeatEffect(() => Effect.scoped(Effect.void))
      },
      {
        id: "block.scopeFork",
        name: "Scope.fork + Scope.close",
        setup: "1 fiber",
        run: repeatEffect(() =>
          Effect.flatMap(Scope.fork(outer, ExecutionStrategy.sequential), (scope) => Scope.close(scope, Exit.void))
        )
      },
      {
        id: "block.timeoutFail",
        name: "Effect.timeoutFail(Effect.void, 5 s)",
        setup: "1 fiber",
        run: repeatEffect(() => Effect.timeoutFail(Effect.void, { duration: "5 seconds", onTimeout: () => "timeout" }))
      },
      {
        id: "block.span",
        name: "Effect.withSpan(Effect.void)",
        setup: "1 fiber, stack trace captured",
        run: repeatEffect(() => Effect.withSpan(Effect.void, "bench"))
      },
      {
        id: "block.spanNoStack",
        name: "Effect.withSpan(Effect.void)",
        setup: "1 fiber, captureStackTrace: false",
        run: repeatEffect(() => Effect.withSpan(Effect.void, "bench", { captureStackTrace: false }))
      },
      {
        id: "block.gen",
        name: "Effect.gen with one Clock read",
        setup: "1 fiber",
        run: repeatEffect(() =>
          Effect.gen(function*() {
            return yield* Clock.currentTimeMillis
          })
        )
      }
    ]
    return yield* measureSuite("Effect building blocks", cases, settings).pipe(
      Effect.ensuring(Scope.close(outer, Exit.void))
    )
  })
