/**
 * Server faults of a simulation on libSQL servers the simulator started itself (`SqldServers`): a server killed with
 * SIGKILL at a moment of the run (a crash: no clean shutdown) and started again, on the same ports and data
 * directory, after a while. The text form is `primary@2s+1s` (the primary, killed 2 s into the run, down for 1 s;
 * `+1s` is the default) or `replica-1@3s`; several are separated by commas.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { SimulationConfigError } from "./SimulationError.js"
import type { SqldProcess } from "./SqldServers.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Kill {
  /** "primary", or "replica-N" (1-based) */
  readonly server: string
  /** when, from the start of the run's workload */
  readonly atMs: number
  /** how long the server stays down before it is started again */
  readonly downMs: number
}

/**
 * What happened to a server in a run: when it was killed and when it answered again, from the start of the run.
 *
 * @since 0.1.0
 * @category models
 */
export interface Event {
  readonly server: string
  readonly killedAtMs: number
  /** null: it was not started again (the run ended first, or it did not come back: see `error`) */
  readonly backAtMs: number | null
  readonly error: string | null
}

const defaultDownMs = 1_000
const serverName = /^(primary|replica-[1-9][0-9]*)$/

const millisOf = (text: string): number | undefined => {
  const withUnit = /^[0-9.]+$/.test(text) ?
    `${text} millis` :
    text.replace(
      /^([0-9.]+)(ms|s|m)$/,
      (_, n, unit) => `${n} ${unit === "ms" ? "millis" : unit === "s" ? "seconds" : "minutes"}`
    )
  const decoded = Duration.decodeUnknown(withUnit)
  if (decoded._tag === "None") return undefined
  const millis = Duration.toMillis(decoded.value)
  return Number.isFinite(millis) ? millis : undefined
}

/**
 * Parses `primary@2s+1s,replica-1@3s`: durations as `500ms`, `2s`, `1m` or plain milliseconds.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (text: string): Either.Either<ReadonlyArray<Kill>, SimulationConfigError> => {
  const kills: Array<Kill> = []
  for (const part of text.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    const match = /^([^@+]+)@([^+]+)(?:\+(.+))?$/.exec(part)
    const atMs = match === null ? undefined : millisOf(match[2]!.trim())
    const downMs = match === null ? undefined : match[3] === undefined ? defaultDownMs : millisOf(match[3].trim())
    const server = match?.[1]?.trim() ?? ""
    if (match === null || !serverName.test(server) || atMs === undefined || downMs === undefined || downMs <= 0) {
      return Either.left(
        new SimulationConfigError({
          field: "servers",
          describe: (name) =>
            `${name("kills")} takes SERVER@AT[+DOWN], such as primary@2s+1s or replica-1@3s (SERVER is primary or ` +
            `replica-N, AT when in the run, DOWN how long it stays down, default 1s), got ${JSON.stringify(part)}`
        })
      )
    }
    kills.push({ server, atMs, downMs })
  }
  return Either.right(kills.sort((a, b) => a.atMs - b.atMs))
}

/**
 * `primary@2000ms+1000ms`: what `parse` reads back.
 *
 * @since 0.1.0
 * @category formatting
 */
export const format = (kills: ReadonlyArray<Kill>): string =>
  kills.map((kill) => `${kill.server}@${kill.atMs}ms+${kill.downMs}ms`).join(",")

/**
 * Runs the kills in order against `servers` (by name), from now, recording each in `events`. Interrupted (the run
 * ended) while a server is down, it starts that server again before it ends: the next run finds every server up.
 *
 * @since 0.1.0
 * @category running
 */
export const schedule = (
  kills: ReadonlyArray<Kill>,
  servers: ReadonlyMap<string, SqldProcess>,
  events: Array<Event>
): Effect.Effect<void> =>
  Effect.gen(function*() {
    const started = performance.now()
    const since = () => performance.now() - started
    for (const kill of kills) {
      const server = servers.get(kill.server)
      if (server === undefined) continue
      const wait = kill.atMs - since()
      if (wait > 0) yield* Effect.sleep(wait)
      yield* Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          yield* server.kill("SIGKILL")
          const event = { server: kill.server, killedAtMs: since(), backAtMs: null as number | null, error: null }
          events.push(event)
          const index = events.length - 1
          yield* restore(Effect.sleep(kill.downMs)).pipe(
            Effect.ensuring(
              Effect.matchEffect(server.restart, {
                onFailure: (error) => Effect.sync(() => (events[index] = { ...event, error: error.message })),
                onSuccess: () => Effect.sync(() => (events[index] = { ...event, backAtMs: since() }))
              })
            )
          )
        })
      )
    }
  })
