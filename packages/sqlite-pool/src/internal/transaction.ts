/**
 * The one transaction implementation, for the lanes and for the client of one connection (a pool lease's `sql`,
 * `Connector.client`), in place of `@effect/sql`'s own: the same context protocol (`TransactionConnection`
 * carries the connection and the nesting depth, so every `sql` statement inside runs on it), savepoints for nested
 * blocks, but a COMMIT that meets SQLITE_BUSY is retried and then fails as a typed `SqlError` instead of a defect,
 * and a connection whose ROLLBACK failed is invalidated rather than returned to the pool in an unknown state.
 *
 * @internal
 */
import * as Client from "@effect/sql/SqlClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Scope from "effect/Scope"
import * as Tracer from "effect/Tracer"
import { acquireSite, callSite } from "./poolCore.js"

/** `P` is what the lease says about its connection, for `invalidate`. */
export interface Options<P> {
  readonly lease: Effect.Effect<readonly [SqlConnection.Connection, P], SqlError, Scope.Scope>
  /** takes the connection out of use: its ROLLBACK failed, so its transaction state is unknown */
  readonly invalidate: (leased: P) => Effect.Effect<void>
  /** "BEGIN IMMEDIATE" on the writer: the write lock is taken up front, so nothing inside meets SQLITE_BUSY */
  readonly begin: string
  readonly retryBusy: <A>(effect: Effect.Effect<A, SqlError>) => Effect.Effect<A, SqlError>
  /** set on the transaction's span, as on every statement's */
  readonly spanAttributes: ReadonlyArray<readonly [string, unknown]>
  /** the pool warns about long holds (`holdWarningThreshold`): a transaction's call site is its lease's acquire site */
  readonly captureSite?: boolean | undefined
}

const run = (connection: SqlConnection.Connection, statement: string) =>
  Effect.asVoid(connection.executeUnprepared(statement, [], undefined))

// The span and its events are upstream's: "sql.transaction", with db.transaction.commit, .rollback and .savepoint.
export const makeWithTransaction =
  <P>(options: Options<P>) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> => {
    const site = options.captureSite === true ? callSite() : undefined
    const lease = site === undefined ? options.lease : Effect.locally(options.lease, acquireSite, site)
    return Effect.uninterruptibleMask((restore) =>
      Effect.useSpan(
        "sql.transaction",
        { kind: "client", captureStackTrace: false },
        (span) =>
          Effect.withFiberRuntime<A, E | SqlError, R>((fiber) => {
            for (const [key, value] of options.spanAttributes) span.attribute(key, value)
            const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
            const event = (name: string) => span.event(`db.transaction.${name}`, clock.unsafeCurrentTimeNanos())
            const context = fiber.currentContext
            const current = Context.getOption(context, Client.TransactionConnection)
            const inTransaction = (connection: SqlConnection.Connection, depth: number) =>
              Effect.exit(
                restore(Effect.locally(
                  effect,
                  FiberRef.currentContext,
                  Context.add(context, Client.TransactionConnection, [connection, depth]).pipe(
                    Context.add(Tracer.ParentSpan, span)
                  )
                ))
              )

            if (current._tag === "Some") {
              // Nested: a savepoint; a failed inner block rolls back only itself.
              const [connection, depth] = current.value
              const name = `effect_sql_${depth + 1}`
              return Effect.gen(function*() {
                yield* run(connection, `SAVEPOINT ${name}`)
                const exit = yield* inTransaction(connection, depth + 1)
                event(Exit.isFailure(exit) ? "rollback" : "savepoint")
                if (Exit.isFailure(exit)) yield* run(connection, `ROLLBACK TO SAVEPOINT ${name}`)
                yield* run(connection, `RELEASE SAVEPOINT ${name}`)
                return yield* exit
              })
            }

            return Effect.gen(function*() {
              const scope = yield* Scope.make()
              const leased = yield* Effect.exit(restore(Scope.extend(lease, scope)))
              if (Exit.isFailure(leased)) {
                yield* Scope.close(scope, leased)
                return yield* Effect.failCause(leased.cause)
              }
              const [connection, pooled] = leased.value
              const began = yield* Effect.exit(restore(options.retryBusy(run(connection, options.begin))))
              if (Exit.isFailure(began)) {
                yield* Scope.close(scope, began)
                return yield* Effect.failCause(began.cause)
              }
              let exit: Exit.Exit<A, E | SqlError> = yield* inTransaction(connection, 0)
              event(Exit.isSuccess(exit) ? "commit" : "rollback")
              if (Exit.isSuccess(exit)) {
                const committed = yield* Effect.exit(options.retryBusy(run(connection, "COMMIT")))
                if (Exit.isFailure(committed)) exit = Exit.failCause(committed.cause)
              }
              if (Exit.isFailure(exit)) {
                const rolledBack = yield* Effect.exit(run(connection, "ROLLBACK"))
                // An unknown transaction state must not reach the next user of this connection.
                if (Exit.isFailure(rolledBack)) yield* options.invalidate(pooled)
              }
              yield* Scope.close(scope, exit)
              return yield* exit
            })
          })
      )
    )
  }
