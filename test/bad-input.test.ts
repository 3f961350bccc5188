/**
 * Bad input fuzzing: random and hostile configuration values and random
 * and hostile labels files (binary, invalid UTF-8, huge, very long lines, every kind of line end and blank) give a
 * typed error or a clean result: never a defect, never a thrown exception, never a hang, never a silent coercion.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { describe, expect, it } from "@effect/vitest"
import { Demo } from "@sqlsim/cli"
import { ConnectionPool, PoolConfig } from "@sqlsim/sqlite-pool"
import { tempDir } from "@sqlsim/test-kit/TempDir"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"

// ---------------------------------------------------------------------------------------------------------------
// Configuration

/** ConnectionPool's fields: those with a value once resolved, and the functions, which have none by default. */
const fields = [
  ...Object.keys(Effect.runSync(PoolConfig.make())),
  "transformQueryNames",
  "transformResultNames",
  "onConnect"
] as ReadonlyArray<keyof PoolConfig.Input>

/** Values chosen to break validators: special numbers, look-alike strings, wrong types, exotic objects. */
const hostileValue: FastCheck.Arbitrary<unknown> = FastCheck.oneof(
  FastCheck.constantFrom(
    NaN,
    Infinity,
    -Infinity,
    -0,
    0,
    1,
    -1,
    0.5,
    1e-300,
    2 ** 31,
    2 ** 53,
    1e308,
    Number.MAX_VALUE,
    Number.MIN_VALUE,
    "",
    " ",
    "5",
    " 5 ",
    "0x10",
    "1e3",
    "5 seconds",
    "-5 seconds",
    "5 fortnights",
    "NaN millis",
    "Infinity millis",
    "1e3 millis",
    "\u0000",
    ":memory:",
    " :memory: ",
    "\ud800",
    "true",
    "null",
    true,
    false,
    null,
    5n,
    -5n,
    10n ** 40n,
    [],
    [1, 2],
    [-1, 0],
    [NaN, 0],
    [Infinity, 0],
    {},
    { millis: 5 },
    { valueOf: () => 5 },
    { toString: () => "5 seconds" },
    Duration.infinity,
    Duration.zero,
    Duration.seconds(1),
    new Date(0),
    /5/,
    () => 5,
    Symbol("5"),
    new Map([["maxConnections", 5]]),
    Object.create(null)
  ),
  FastCheck.double(),
  FastCheck.integer(),
  FastCheck.bigInt(),
  FastCheck.string(),
  FastCheck.fullUnicodeString({ maxLength: 20 }),
  FastCheck.anything()
)

/** Keys that are not fields, including the ones prototype pollution uses. */
const hostileKey = FastCheck.oneof(
  FastCheck.constantFrom(
    "__proto__",
    "constructor",
    "prototype",
    "toString",
    "valueOf",
    "hasOwnProperty",
    "MaxConnections",
    "max_connections",
    "maxConnections ",
    ""
  ),
  FastCheck.string({ maxLength: 12 })
)

const hostileInput = FastCheck.tuple(
  FastCheck.dictionary(FastCheck.constantFrom(...fields), hostileValue, { maxKeys: 5 }),
  FastCheck.option(FastCheck.tuple(hostileKey, hostileValue), { freq: 4 })
).map(([known, extra]) => {
  // Defined with defineProperty so that "__proto__" becomes an own key, as JSON.parse would make it.
  const input: Record<string, unknown> = { ...known }
  if (extra !== null) Object.defineProperty(input, extra[0], { value: extra[1], enumerable: true })
  return input
})

const isNonNegativeDuration = (value: unknown) =>
  Duration.isDuration(value) && !Number.isNaN(Duration.toMillis(value)) && Duration.toMillis(value) >= 0

/** What a clean (successful) configuration looks like: every field present, in range, of the right type. */
const cleanConfigProblems = (config: PoolConfig.PoolConfig): ReadonlyArray<string> => {
  const problems: Array<string> = []
  const integer = (key: keyof PoolConfig.PoolConfig, minimum: number) => {
    const value = config[key]
    if (typeof value !== "number" || !Number.isInteger(value) || value < minimum) {
      problems.push(`${key} = ${String(value)}`)
    }
  }
  integer("maxConnections", 1)
  integer("minConnections", 0)
  integer("retries", 0)
  integer("pageCacheKiB", 0)
  if (config.minConnections > config.maxConnections) problems.push("minConnections > maxConnections")
  if (typeof config.filename !== "string" || config.filename.length === 0) problems.push("filename")
  if (typeof config.retryJitter !== "boolean") problems.push("retryJitter")
  for (
    const key of [
      "retryBaseDelay",
      "retryMaxDelay",
      "acquireTimeout",
      "busyTimeout",
      "idleTimeToLive",
      "shutdownTimeout",
      "validationInterval"
    ] as const
  ) {
    if (!isNonNegativeDuration(config[key])) problems.push(`${key} = ${String(config[key])}`)
  }
  if (config.maxLifetime !== null && !isNonNegativeDuration(config.maxLifetime)) problems.push("maxLifetime")
  if (!Duration.isFinite(config.busyTimeout)) problems.push("busyTimeout is infinite")
  return problems
}

/**
 * Runs `make` synchronously: it must neither throw nor suspend (a hang would show as a thrown AsyncFiberException),
 * and it must succeed with a clean configuration or fail with a PoolConfigError naming a field.
 */
const checkConfigOutcome = (exit: Exit.Exit<PoolConfig.PoolConfig, unknown>, input: unknown): void => {
  if (Exit.isSuccess(exit)) {
    expect(cleanConfigProblems(exit.value), `accepted ${FastCheck.stringify(input)} into an unclean configuration`)
      .toEqual([])
    return
  }
  const failure = Cause.failureOption(exit.cause)
  expect(failure._tag, `a defect instead of a typed error: ${Cause.pretty(exit.cause)}`).toBe("Some")
  if (failure._tag !== "Some") return
  const error = failure.value as { _tag?: unknown; field?: unknown; message?: unknown }
  expect(error._tag).toBe("PoolConfigError")
  // `field` names the field, or the unknown key as given (which may be any string, "" included).
  expect(typeof error.field).toBe("string")
  expect(typeof error.message === "string" && error.message.length > 0).toBe(true)
}

const prototypeIsClean = () => {
  const probe: Record<string, unknown> = {}
  for (const field of fields) expect(probe[field], `Object.prototype.${field} was polluted`).toBeUndefined()
}

describe("bad configuration input", () => {
  it.prop("anything at all as the configuration gives a typed error or a clean configuration", [
    FastCheck.anything({ withNullPrototype: true, withBigInt: true, withBoxedValues: true, withMap: true })
  ], ([input]) => {
    checkConfigOutcome(Effect.runSyncExit(PoolConfig.make(input as PoolConfig.Input)), input)
    prototypeIsClean()
  }, { fastCheck: { numRuns: 500 } })

  it.prop("hostile values in known fields, and hostile extra keys, give a typed error or a clean configuration", [
    hostileInput
  ], ([input]) => {
    const exit = Effect.runSyncExit(PoolConfig.make(input as PoolConfig.Input))
    checkConfigOutcome(exit, input)
    // An extra key is never ignored.
    const known = new Set<string>(fields)
    const unknown = Object.keys(input).find((key) => !known.has(key) && input[key] !== undefined)
    if (unknown !== undefined) expect(Exit.isFailure(exit), `unknown key ${JSON.stringify(unknown)} ignored`).toBe(true)
    prototypeIsClean()
  }, { fastCheck: { numRuns: 1000 } })

  it("prototype-pollution shapes are rejected as unknown fields and leave Object.prototype alone", () => {
    const shapes: ReadonlyArray<unknown> = [
      JSON.parse(`{"__proto__": {"maxConnections": 0}}`),
      JSON.parse(`{"constructor": {"prototype": {"maxConnections": 0}}}`),
      JSON.parse(`{"maxConnections": 2, "__proto__": {"retries": -1}}`)
    ]
    for (const shape of shapes) {
      const exit = Effect.runSyncExit(PoolConfig.make(shape as PoolConfig.Input))
      checkConfigOutcome(exit, shape)
      expect(Exit.isFailure(exit)).toBe(true)
      prototypeIsClean()
    }
    // Inherited fields are not the caller's own: they neither apply nor pollute.
    const inherited = Effect.runSyncExit(PoolConfig.make(Object.create({ maxConnections: 0 })))
    expect(Exit.isSuccess(inherited) && inherited.value.maxConnections).toBe(PoolConfig.defaults.maxConnections)
  })

  it.effect("sizes no machine can open fail with a typed error, never a crash", () =>
    Effect.gen(function*() {
      // Accepted sizes must be buildable: 2^32 connections opened up front cannot be (and must not crash the process).
      const exit = yield* Effect.exit(Effect.scoped(ConnectionPool.make({
        maxConnections: 2 ** 32,
        minConnections: 2 ** 32
      })))
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) {
        expect([...Cause.defects(exit.cause)].map(String), "a defect instead of a typed error").toEqual([])
        expect(Cause.failureOption(exit.cause).pipe((failure) => failure._tag === "Some" && failure.value._tag))
          .toBe("PoolConfigError")
      }
    }))
})

// ---------------------------------------------------------------------------------------------------------------
// Labels files, through the demo workload (Demo.run: read, validate, insert, read back, summarise)

const MAX_LABEL_BYTES = 65_536
let labelRuns = 0
let labelErrors = 0
const encoder = new TextEncoder()

type Expected =
  | { readonly _tag: "labels"; readonly labels: ReadonlyArray<string> }
  | { readonly _tag: "error"; readonly problem: "notUtf8" | "lineTooLong"; readonly line: number }

/**
 * The reference reading of a labels file, straight from the contract: lines end at LF; a CR before the LF is part
 * of the line end; a line longer than the limit or not valid UTF-8 is an error at its line number; labels are
 * trimmed and blank ones skipped.
 */
const referenceLabels = (bytes: Uint8Array): Expected => {
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
  const labels: Array<string> = []
  let start = 0
  let line = 0
  while (start < bytes.length) {
    let end = bytes.indexOf(0x0a, start)
    const next = end === -1 ? bytes.length : end + 1
    if (end === -1) end = bytes.length
    line++
    let content = bytes.subarray(start, end)
    if (content.length > 0 && content[content.length - 1] === 0x0d) content = content.subarray(0, content.length - 1)
    if (content.length > MAX_LABEL_BYTES) return { _tag: "error", problem: "lineTooLong", line }
    let text: string
    try {
      text = decoder.decode(content)
    } catch {
      return { _tag: "error", problem: "notUtf8", line }
    }
    const label = text.trim()
    if (label.length > 0) labels.push(label)
    start = next
  }
  return { _tag: "labels", labels }
}

/**
 * One line of a generated labels file, described rather than given as bytes, so a shrunk counterexample reads as
 * what the file held ({ repeat: "a", times: 65537 }) instead of 65537 numbers.
 */
type Line =
  | { readonly text: string }
  | { readonly text: string; readonly invalid: ReadonlyArray<number> }
  | { readonly bytes: ReadonlyArray<number> }
  | { readonly repeat: string; readonly times: number; readonly then?: string }

interface LabelsFile {
  readonly bom: boolean
  readonly lines: ReadonlyArray<readonly [Line, "\n" | "\r\n" | "\n\n" | "\r\n\r\n"]>
  readonly trailingNewline: boolean
}

const lineToBytes = (line: Line): Uint8Array => {
  if ("invalid" in line) return Uint8Array.from([...encoder.encode(line.text), ...line.invalid])
  if ("text" in line) return encoder.encode(line.text)
  if ("bytes" in line) return Uint8Array.from(line.bytes)
  return encoder.encode(line.repeat.repeat(line.times) + (line.then ?? ""))
}

const fileToBytes = (file: LabelsFile): Uint8Array => {
  const parts: Array<Uint8Array> = file.bom ? [Uint8Array.from([0xef, 0xbb, 0xbf])] : []
  file.lines.forEach(([line, end], index) => {
    parts.push(lineToBytes(line))
    if (index < file.lines.length - 1 || file.trailingNewline) parts.push(encoder.encode(end))
  })
  return Buffer.concat(parts)
}

const invalidUtf8 = FastCheck.constantFrom(
  [0xff],
  [0xfe, 0xff],
  [0xc0, 0x80],
  [0xed, 0xa0, 0x80],
  [0xe2, 0x82],
  [0xf4, 0x90, 0x80, 0x80],
  [0x80],
  [0xc3]
)

const line: FastCheck.Arbitrary<Line> = FastCheck.oneof(
  { weight: 6, arbitrary: FastCheck.record({ text: FastCheck.fullUnicodeString({ maxLength: 40 }) }) },
  {
    weight: 3,
    arbitrary: FastCheck.constantFrom(
      "",
      " ",
      "\t",
      "\u00a0",
      "\u2028",
      "\ufeff",
      "\u0000",
      "it's \"quoted\"",
      "Robert'); DROP TABLE events; --",
      "party 🎉 👩‍💻",
      "\r",
      "a\rb"
    ).map((text) => ({ text }))
  },
  {
    weight: 1,
    arbitrary: FastCheck.record({ text: FastCheck.string({ maxLength: 5 }), invalid: invalidUtf8 })
  },
  { weight: 1, arbitrary: FastCheck.record({ bytes: FastCheck.array(FastCheck.nat(255), { maxLength: 64 }) }) },
  {
    weight: 1,
    arbitrary: FastCheck.constantFrom<Line>(
      { repeat: "a", times: MAX_LABEL_BYTES },
      { repeat: "a", times: MAX_LABEL_BYTES + 1 },
      { repeat: "é", times: MAX_LABEL_BYTES / 2 },
      { repeat: "é", times: MAX_LABEL_BYTES / 2, then: "a" },
      { repeat: "a", times: MAX_LABEL_BYTES - 1, then: "é" }
    )
  }
)

const labelsFile: FastCheck.Arbitrary<LabelsFile> = FastCheck.record({
  bom: FastCheck.boolean(),
  lines: FastCheck.array(
    FastCheck.tuple(line, FastCheck.constantFrom("\n" as const, "\r\n" as const, "\n\n" as const, "\r\n\r\n" as const)),
    { maxLength: 30 }
  ),
  trailingNewline: FastCheck.boolean()
})

interface DemoOutcome {
  readonly exit: Exit.Exit<Demo.Result, Demo.DemoError | Cause.TimeoutException>
  readonly output: string
  readonly database: string
  readonly directory: string
}

/** Runs the demo on `bytes` with a file database; bounded by a generous wall-clock limit, so a hang fails. */
const runDemo = (bytes: Uint8Array | undefined, input?: string) =>
  Effect.gen(function*() {
    const directory = yield* tempDir
    const labels = input ?? path.join(directory, "labels.txt")
    if (bytes !== undefined) fs.writeFileSync(labels, bytes)
    const output = path.join(directory, "summary.json")
    const database = path.join(directory, "events.db")
    // A hang shows as a TimeoutException, which no check below accepts.
    const exit = yield* Demo.run({ input: labels, output, pool: { filename: database } }).pipe(
      Effect.provide(NodeFileSystem.layer),
      Effect.timeout("60 seconds"),
      Effect.exit
    )
    return { exit, output, database, directory } satisfies DemoOutcome
  })

/** Checks a demo run against the reference reading of its input. */
const checkAgainstReference = (outcome: DemoOutcome, expected: Expected) => {
  const { database, directory, exit, output } = outcome
  if (expected._tag === "labels") {
    if (Exit.isFailure(exit)) return expect.fail(`the demo failed on valid input: ${Cause.pretty(exit.cause)}`)
    const summary = JSON.parse(fs.readFileSync(output, "utf8")) as Demo.Summary
    expect(summary.rows_inserted).toBe(expected.labels.length)
    expect(summary.rows.map((row) => row.label)).toEqual(expected.labels)
    expect(summary.rows.map((row) => row.id)).toEqual(expected.labels.map((_, index) => index + 1))
    return
  }
  if (Exit.isSuccess(exit)) return expect.fail(`the demo accepted input with ${expected.problem} at ${expected.line}`)
  const failure = Cause.failureOption(exit.cause)
  if (failure._tag === "None") return expect.fail(`a defect instead of a typed error: ${Cause.pretty(exit.cause)}`)
  expect(failure.value).toMatchObject({ _tag: "InputError", problem: expected.problem, line: expected.line })
  expect(failure.value.message.split("\n")).toHaveLength(1)
  // No partial output, no temporary file left behind, and the database was never created.
  expect(fs.existsSync(output)).toBe(false)
  expect(fs.existsSync(database)).toBe(false)
  expect(fs.readdirSync(directory).filter((name) => name !== "labels.txt")).toEqual([])
}

describe("bad labels files (demo workload)", () => {
  it.scopedLive.prop("random and hostile labels files give exactly the reference labels or a typed error", [
    labelsFile
  ], ([file]) =>
    Effect.gen(function*() {
      labelRuns++
      const bytes = fileToBytes(file)
      const outcome = yield* runDemo(bytes)
      checkAgainstReference(outcome, referenceLabels(bytes))
      if (Exit.isFailure(outcome.exit)) labelErrors++
    }), { fastCheck: { numRuns: 60 } })

  it.scopedLive("a huge file of many labels is streamed through", () =>
    Effect.gen(function*() {
      const lines = Array.from({ length: 100_000 }, (_, index) => `label number ${index} ${"x".repeat(index % 50)}`)
      const bytes = encoder.encode(lines.join("\n") + "\n")
      const outcome = yield* runDemo(bytes)
      if (Exit.isFailure(outcome.exit)) return expect.fail(Cause.pretty(outcome.exit.cause))
      expect(outcome.exit.value.rowsInserted).toBe(lines.length)
      const summary = JSON.parse(fs.readFileSync(outcome.output, "utf8")) as Demo.Summary
      expect(summary.rows.at(-1)).toEqual({ id: lines.length, label: lines.at(-1) })
      console.log(`labels: a ${(bytes.length / 1e6).toFixed(1)} MB file of ${lines.length} labels inserted`)
    }))

  it.scopedLive("binary files, a 16 MB line and invalid UTF-8 fail with one typed, line-numbered error", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [string, Uint8Array]> = [
        ["random bytes (2 MB)", crypto.randomBytes(2 * 1024 * 1024)],
        ["a 16 MB line without a newline", encoder.encode("a".repeat(16 * 1024 * 1024))],
        ["a UTF-16 file", Buffer.from("\ufefffirst\nsecond\n", "utf16le")],
        ["Latin-1 text", Buffer.from("caf\xe9\nna\xefve\n", "latin1")],
        ["a lone surrogate encoded as UTF-8 (CESU)", Uint8Array.from([0x6f, 0x6b, 0x0a, 0xed, 0xa0, 0xbd, 0x0a])],
        ["a truncated character at the end", Uint8Array.from([0x6f, 0x6b, 0x0a, 0xe2, 0x82])]
      ]
      for (const [name, bytes] of cases) {
        const expected = referenceLabels(bytes)
        expect(expected._tag, name).toBe("error")
        checkAgainstReference(yield* runDemo(bytes), expected)
      }
    }))

  it.scopedLive("empty, blank-only and BOM-only files insert nothing; paths that are not files are typed errors", () =>
    Effect.gen(function*() {
      for (const content of ["", "\n\n\n", "  \t \r\n \u00a0\n", "\ufeff", "\ufeff\r\n"]) {
        const outcome = yield* runDemo(encoder.encode(content))
        checkAgainstReference(outcome, { _tag: "labels", labels: [] })
      }
      const directory = yield* tempDir
      for (
        const [input, problem] of [
          [directory, "directory"],
          [path.join(directory, "missing.txt"), "missing"],
          [path.join(directory, "missing-dir", "labels.txt"), "missing"]
        ] as const
      ) {
        const { exit, output } = yield* runDemo(undefined, input)
        const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : undefined
        expect(failure?._tag === "Some" && failure.value).toMatchObject({ _tag: "InputError", problem })
        expect(fs.existsSync(output)).toBe(false)
      }
    }))

  it("reports how much it ran", () => {
    console.log(`labels fuzzing: ${labelRuns} random files, ${labelErrors} rejected with a typed error`)
    expect(labelRuns).toBeGreaterThan(0)
  })
})
