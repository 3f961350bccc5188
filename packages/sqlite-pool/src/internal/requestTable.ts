/**
 * The requests a transport has sent and not yet seen answered, by id, oldest first: one table for the worker thread
 * connection and the Hrana socket. Each request is settled exactly once: by its answer, by `failAll` when the
 * transport closes, or by being withdrawn. Needs nothing from Effect.
 *
 * @internal
 */

/** How a request is settled. */
export interface Waiter<A, E> {
  readonly resolve: (answer: A) => void
  readonly reject: (error: E) => void
}

/** Requests answered with `A`, failed with `E`. */
export class RequestTable<A, E> {
  /** id -> waiter, in the order sent (a Map keeps insertion order): the first is the oldest */
  readonly #waiters = new Map<number, Waiter<A, E>>()
  /** the id of the next request; ids are never reused */
  #nextId = 1

  /** requests waiting for an answer */
  get size(): number {
    return this.#waiters.size
  }

  /** Registers a request and returns its id, to send with it. */
  add(waiter: Waiter<A, E>): number {
    const id = this.#nextId++
    this.#waiters.set(id, waiter)
    return id
  }

  /** Whether `id` is the oldest request still waiting (on a transport that runs one at a time: the one running). */
  isOldest(id: number): boolean {
    return this.#waiters.keys().next().value === id
  }

  /** Settles `id` with its answer; false when it is not waiting (answered, withdrawn or failed already). */
  resolve(id: number, answer: A): boolean {
    const waiter = this.#take(id)
    waiter?.resolve(answer)
    return waiter !== undefined
  }

  /** Settles `id` with an error; false when it is not waiting. */
  reject(id: number, error: E): boolean {
    const waiter = this.#take(id)
    waiter?.reject(error)
    return waiter !== undefined
  }

  /** Removes `id` without settling it (its caller gave up on it); false when it was not waiting. */
  withdraw(id: number): boolean {
    return this.#waiters.delete(id)
  }

  /** Fails every request waiting, each with `errorAt(position)` (0: the oldest), and empties the table. */
  failAll(errorAt: (position: number) => E): void {
    const waiting = [...this.#waiters.values()]
    this.#waiters.clear()
    waiting.forEach((waiter, position) => waiter.reject(errorAt(position)))
  }

  #take(id: number): Waiter<A, E> | undefined {
    const waiter = this.#waiters.get(id)
    this.#waiters.delete(id)
    return waiter
  }
}
