// A clock and timer port whose time moves only when a test says so. `advanceTo` runs every timer
// due up to that instant in order, setting `now` to each timer's due time first, so code under
// test sees the time it would see with real timers, without sleeping.
export class FakeClock {
  #now: number
  #seq = 0
  #timers = new Map<number, { at: number, seq: number, fn: () => void }>()

  constructor (start: number | Date) {
    this.#now = typeof start === 'number' ? start : start.getTime()
  }

  now = (): number => this.#now

  setTimeout = (fn: () => void, ms: number): unknown => {
    const id = ++this.#seq
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), seq: id, fn })
    return id
  }

  clearTimeout = (handle: unknown): void => {
    this.#timers.delete(handle as number)
  }

  /** Timers waiting. */
  get pending (): number {
    return this.#timers.size
  }

  /**
   * The wall clock steps by `ms` (NTP, a suspended host) while timers keep their remaining
   * durations, as real timers (monotonic) do.
   */
  jump (ms: number): void {
    this.#now += ms
    for (const timer of this.#timers.values()) timer.at += ms
  }

  advance (ms: number): void {
    this.advanceTo(this.#now + ms)
  }

  advanceTo (target: number | Date): void {
    const end = typeof target === 'number' ? target : target.getTime()
    for (;;) {
      let next: { id: number, at: number, seq: number, fn: () => void } | null = null
      for (const [id, t] of this.#timers) {
        if (t.at <= end && (next === null || t.at < next.at || (t.at === next.at && t.seq < next.seq))) next = { id, ...t }
      }
      if (next === null) break
      this.#timers.delete(next.id)
      this.#now = Math.max(this.#now, next.at)
      next.fn()
    }
    this.#now = Math.max(this.#now, end)
  }

  /** Lets promise callbacks (and one macrotask turn) run without moving the clock. */
  async flush (): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve))
  }
}
