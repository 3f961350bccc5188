/**
 * Reading labels: a labels file is UTF-8 text with one label per line. The file is streamed, never read whole, so
 * its size is not limited; one line (one label) is limited to `maxLabelBytes`, which bounds the memory a line can
 * take. Blank lines are skipped; surrounding whitespace and the CR of a CRLF line end are trimmed; everything else
 * (quotes, NUL bytes, emoji, SQL) is kept exactly as written.
 *
 * @since 0.1.0
 */
import * as NodeStream from "@effect/platform-node/NodeStream"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as fs from "node:fs"
import * as net from "node:net"
import type { Readable } from "node:stream"

/**
 * The longest line accepted, in bytes of UTF-8 (line end excluded): 64 KiB.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxLabelBytes = 65_536

/**
 * Where labels come from: a file path, or "-" for standard input.
 *
 * @since 0.1.0
 * @category constants
 */
export const standardInput = "-"

/**
 * The labels input cannot be used. `reason` says why, in words a user can act on; `line` is the 1-based line number
 * when the problem is in the content.
 *
 * @since 0.1.0
 * @category errors
 */
export class InputError extends Data.TaggedError("InputError")<{
  readonly input: string
  readonly problem: "missing" | "directory" | "unreadable" | "notUtf8" | "lineTooLong"
  readonly reason: string
  readonly line?: number | undefined
  readonly cause?: unknown
}> {
  override get message(): string {
    const where = this.line === undefined ? "" : ` (line ${this.line})`
    return `input ${describeInput(this.input)}${where}: ${this.reason}`
  }
}

const describeInput = (input: string) => input === standardInput ? "from standard input" : input

/**
 * One label and the line it came from.
 *
 * @since 0.1.0
 * @category models
 */
export interface Label {
  readonly line: number
  readonly text: string
}

const NEWLINE = 0x0a
const CARRIAGE_RETURN = 0x0d
const BYTE_ORDER_MARK = "\uFEFF"

/**
 * Turns byte chunks into labels. Lines are split on bytes (0x0A never occurs inside a multi-byte UTF-8 sequence),
 * then each whole line is decoded strictly, so an invalid byte is reported with its line number and a character
 * split across two chunks is never a problem.
 */
class LineSplitter {
  private readonly decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
  private pending: Array<Uint8Array> = []
  private pendingBytes = 0
  private lineNumber = 0

  constructor(private readonly input: string) {}

  push(bytes: Uint8Array): Effect.Effect<Array<Label>, InputError> {
    return Effect.suspend(() => {
      const labels: Array<Label> = []
      let start = 0
      while (start <= bytes.length) {
        const newline = bytes.indexOf(NEWLINE, start)
        if (newline === -1) {
          const rest = bytes.subarray(start)
          // A trailing CR may still be followed by LF in the next chunk, hence the one byte of slack.
          if (this.pendingBytes + rest.length > maxLabelBytes + 1) return Effect.fail(this.tooLong(this.lineNumber + 1))
          if (rest.length > 0) {
            // Copied: the stream may reuse its buffer.
            this.pending.push(Uint8Array.from(rest))
            this.pendingBytes += rest.length
          }
          break
        }
        const failure = this.completeLine(bytes.subarray(start, newline), labels)
        if (failure !== undefined) return Effect.fail(failure)
        start = newline + 1
      }
      return Effect.succeed(labels)
    })
  }

  end(): Effect.Effect<Array<Label>, InputError> {
    return Effect.suspend(() => {
      const labels: Array<Label> = []
      if (this.pendingBytes === 0) return Effect.succeed(labels)
      const failure = this.completeLine(new Uint8Array(0), labels)
      return failure === undefined ? Effect.succeed(labels) : Effect.fail(failure)
    })
  }

  private completeLine(tail: Uint8Array, labels: Array<Label>): InputError | undefined {
    const lineNumber = ++this.lineNumber
    let line = tail
    if (this.pendingBytes > 0) {
      line = new Uint8Array(this.pendingBytes + tail.length)
      let offset = 0
      for (const part of this.pending) {
        line.set(part, offset)
        offset += part.length
      }
      line.set(tail, offset)
      this.pending = []
      this.pendingBytes = 0
    }
    const length = line.length > 0 && line[line.length - 1] === CARRIAGE_RETURN ? line.length - 1 : line.length
    if (length > maxLabelBytes) return this.tooLong(lineNumber)
    let text: string
    try {
      text = this.decoder.decode(line.subarray(0, length))
    } catch (cause) {
      return new InputError({
        input: this.input,
        problem: "notUtf8",
        reason: "is not valid UTF-8 text; save the file as UTF-8",
        line: lineNumber,
        cause
      })
    }
    if (lineNumber === 1 && text.startsWith(BYTE_ORDER_MARK)) text = text.slice(1)
    const label = text.trim()
    if (label.length > 0) labels.push({ line: lineNumber, text: label })
    return undefined
  }

  private tooLong(line: number) {
    return new InputError({
      input: this.input,
      problem: "lineTooLong",
      reason: `is longer than ${maxLabelBytes} bytes, the limit for one label; is this a labels file (one per line)?`,
      line
    })
  }
}

/**
 * Splits a stream of bytes into labels.
 *
 * @since 0.1.0
 * @category combinators
 */
export const fromBytes = <E, R>(input: string, bytes: Stream.Stream<Uint8Array, E, R>): Stream.Stream<
  Label,
  E | InputError,
  R
> =>
  Stream.suspend(() => {
    const splitter = new LineSplitter(input)
    return bytes.pipe(
      Stream.mapEffect((chunk) => splitter.push(chunk)),
      Stream.concat(Stream.fromEffect(splitter.end())),
      Stream.flattenIterables
    )
  })

/**
 * The labels of a file (or of standard input for "-"), streamed in 64 KiB chunks.
 *
 * @since 0.1.0
 * @category constructors
 */
export const read = (input: string): Stream.Stream<Label, InputError> =>
  fromBytes(
    input,
    Stream.unwrap(
      Effect.try({
        try: () => input === standardInput ? process.stdin : openReadable(input),
        catch: (cause) => readFailure(input, cause)
      }).pipe(Effect.map((readable) =>
        NodeStream.fromReadable<InputError, Uint8Array>(
          () => readable,
          (cause) => readFailure(input, cause),
          { chunkSize: 65_536 }
        )
      ))
    )
  )

/**
 * A FIFO or a socket is read without blocking: `createReadStream` would wait for its writer in a thread of libuv's
 * pool, which a signal cannot stop and which the process waits for on exit. Opened with O_NONBLOCK and read by a
 * `net.Socket`, it waits on the event loop instead (on Linux a FIFO reports no end before a writer has come).
 */
const openReadable = (input: string): Readable => {
  const stat = fs.statSync(input)
  if (!stat.isFIFO() && !stat.isSocket()) return fs.createReadStream(input, { highWaterMark: 65_536 })
  const fd = fs.openSync(input, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  return new net.Socket({ fd, readable: true, writable: false })
}

/**
 * The labels read ahead of the work: everything, or as many as fit in `maxBytes` of text, and a stream of the rest
 * (undefined when the input ended within the limit). The Scope keeps the input open for the rest. `ahead` is the
 * caller's to empty once it has taken them (a long run need not keep 4 MiB of labels).
 *
 * @since 0.1.0
 * @category constructors
 */
export const readAhead = (
  input: string,
  maxBytes: number
): Effect.Effect<
  { readonly ahead: Array<Label>; readonly rest: Stream.Stream<Label, InputError> | undefined },
  InputError,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const pull = yield* Stream.toPull(read(input))
    const ahead: Array<Label> = []
    let bytes = 0
    while (bytes < maxBytes) {
      const chunk = yield* Effect.catchAll(
        pull,
        Option.match({
          onNone: () => Effect.succeed(undefined),
          onSome: Effect.fail
        })
      )
      if (chunk === undefined) return { ahead, rest: undefined }
      for (const label of chunk) {
        ahead.push(label)
        bytes += label.text.length
      }
    }
    return { ahead, rest: Stream.repeatEffectChunkOption(pull) }
  })

/**
 * What kind of input a path is, checked before anything is opened: a regular file can be read twice (the demo
 * validates it completely before touching the database); standard input, a pipe or a device can be read once.
 *
 * @since 0.1.0
 * @category constructors
 */
export const inspect = (input: string): Effect.Effect<"file" | "stream", InputError> =>
  Effect.suspend(() => {
    if (input === standardInput) return Effect.succeed("stream" as const)
    let stat: fs.Stats
    try {
      stat = fs.statSync(input)
      if (stat.isDirectory()) {
        return Effect.fail(
          new InputError({
            input,
            problem: "directory",
            reason: "is a directory; give a labels file (one label per line)"
          })
        )
      }
      fs.accessSync(input, fs.constants.R_OK)
    } catch (cause) {
      return Effect.fail(readFailure(input, cause))
    }
    return Effect.succeed(stat.isFile() ? "file" as const : "stream" as const)
  })

const readFailure = (input: string, cause: unknown): InputError => {
  const code = (cause as { code?: unknown } | undefined)?.code
  switch (code) {
    case "ENOENT":
    case "ENOTDIR":
      return new InputError({ input, problem: "missing", reason: "no such file; check the path", cause })
    case "EISDIR":
      return new InputError({
        input,
        problem: "directory",
        reason: "is a directory; give a labels file (one label per line)",
        cause
      })
    case "EACCES":
    case "EPERM":
      return new InputError({ input, problem: "unreadable", reason: "permission denied; check its permissions", cause })
    default: {
      const detail = cause instanceof Error ? cause.message : String(cause)
      return new InputError({ input, problem: "unreadable", reason: `cannot be read: ${detail}`, cause })
    }
  }
}
