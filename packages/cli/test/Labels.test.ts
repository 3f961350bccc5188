import { assert, describe, it } from "@effect/vitest"
import { Labels } from "@sqlsim/cli"
import { Chunk, Effect, Either, FastCheck as fc, Stream } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { tempDir } from "./utils.js"

const encoder = new TextEncoder()

/** The labels of `bytes` fed to the splitter in the given chunks. */
const labelsOf = (chunks: ReadonlyArray<Uint8Array>) =>
  Labels.fromBytes("test", Stream.fromIterable(chunks)).pipe(
    Stream.runCollect,
    Effect.map((labels) => Chunk.toReadonlyArray(labels).map((label) => label.text))
  )

const failureOf = (chunks: ReadonlyArray<Uint8Array>) =>
  Labels.fromBytes("test", Stream.fromIterable(chunks)).pipe(Stream.runDrain, Effect.flip)

/** Cuts `bytes` at the given (sorted, deduplicated) offsets. */
const cut = (bytes: Uint8Array, offsets: ReadonlyArray<number>): Array<Uint8Array> => {
  const points = [...new Set(offsets.map((offset) => offset % (bytes.length + 1)))].sort((a, b) => a - b)
  const chunks: Array<Uint8Array> = []
  let start = 0
  for (const point of [...points, bytes.length]) {
    chunks.push(bytes.subarray(start, point))
    start = point
  }
  return chunks
}

describe("Labels", () => {
  it.effect("splits on LF and CRLF, trims surrounding whitespace, skips blank lines", () =>
    Effect.gen(function*() {
      const text = "alpha\r\n  beta  \n\n   \r\n\tgamma\t\r\nlast line without newline"
      assert.deepStrictEqual(yield* labelsOf([encoder.encode(text)]), [
        "alpha",
        "beta",
        "gamma",
        "last line without newline"
      ])
    }))

  it.effect("keeps quotes, NUL bytes, emoji, inner whitespace and SQL exactly as written", () =>
    Effect.gen(function*() {
      const labels = [
        `say "hi" and 'bye'`,
        "nul\0inside",
        "\0",
        "emoji 🎉👩‍👩‍👧",
        "a  b\tc",
        "'); DROP TABLE events; --"
      ]
      assert.deepStrictEqual(yield* labelsOf([encoder.encode(labels.join("\n"))]), labels)
    }))

  it.effect("drops a UTF-8 byte order mark at the start of the input only", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* labelsOf([encoder.encode("\uFEFFfirst\nsecond")]), ["first", "second"])
    }))

  it.effect.prop(
    "any chunking of the bytes gives the same labels (characters split across chunks included)",
    {
      labels: fc.array(
        fc.string({ unit: "grapheme", minLength: 1, maxLength: 12 }).map((s) => s.replace(/[\r\n]/g, "x").trim())
          .filter((s) => s.length > 0),
        { maxLength: 20 }
      ),
      crlf: fc.boolean(),
      cuts: fc.array(fc.nat(), { maxLength: 12 })
    },
    ({ crlf, cuts, labels }) =>
      Effect.gen(function*() {
        const bytes = encoder.encode(labels.join(crlf ? "\r\n" : "\n"))
        assert.deepStrictEqual(yield* labelsOf(cut(bytes, cuts)), labels)
      })
  )

  it.effect("invalid UTF-8 is an error naming the line, also when the bad sequence spans two chunks", () =>
    Effect.gen(function*() {
      const whole = yield* failureOf([encoder.encode("ok\nfine\n"), Uint8Array.of(0x61, 0xff, 0x0a)])
      assert.strictEqual(whole.problem, "notUtf8")
      assert.strictEqual(whole.line, 3)
      // "é" is C3 A9: a truncated sequence (C3 then a newline) is invalid even when the C3 ends a chunk.
      const truncated = yield* failureOf([encoder.encode("one\ntwo "), Uint8Array.of(0xc3), encoder.encode("\nthree")])
      assert.strictEqual(truncated.problem, "notUtf8")
      assert.strictEqual(truncated.line, 2)
    }))

  it.effect("a line longer than the limit fails without waiting for its end (memory stays bounded)", () =>
    Effect.gen(function*() {
      // An endless line: the splitter must give up after maxLabelBytes, not buffer forever.
      const endless = Stream.repeatValue(new Uint8Array(4096))
      const error = yield* Labels.fromBytes("endless", endless).pipe(Stream.runDrain, Effect.flip)
      assert.strictEqual(error.problem, "lineTooLong")
      assert.strictEqual(error.line, 1)
      assert.include(error.message, `${Labels.maxLabelBytes} bytes`)
      // Exactly at the limit (CRLF excluded) is accepted.
      const atLimit = "x".repeat(Labels.maxLabelBytes)
      assert.deepStrictEqual(yield* labelsOf([encoder.encode(`${atLimit}\r\nnext`)]), [atLimit, "next"])
      const overLimit = yield* failureOf([encoder.encode(`short\n${atLimit}y\nnext`)])
      assert.strictEqual(overLimit.line, 2)
    }))

  it.scoped("inspect and read report a missing file, a directory and a regular file", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir
      const missing = yield* Effect.either(Labels.inspect(path.join(directory, "nope.txt")))
      assert.isTrue(Either.isLeft(missing) && missing.left.problem === "missing")
      const asDirectory = yield* Effect.either(Labels.inspect(directory))
      assert.isTrue(Either.isLeft(asDirectory) && asDirectory.left.problem === "directory")
      const file = path.join(directory, "labels.txt")
      fs.writeFileSync(file, "one\ntwo\n")
      assert.strictEqual(yield* Labels.inspect(file), "file")
      const labels = yield* Stream.runCollect(Labels.read(file))
      assert.deepStrictEqual(Chunk.toReadonlyArray(labels), [{ line: 1, text: "one" }, { line: 2, text: "two" }])
      const vanished = yield* Effect.flip(Stream.runDrain(Labels.read(path.join(directory, "gone.txt"))))
      assert.strictEqual(vanished.problem, "missing")
    }))
})
