// The per-VM action queue: every libvirt action on one VM, whoever asks for it (automatic
// revert, API revert, snapshot create, start/stop), runs through it, one at a time.

export class ActionQueue {
  #tail: Promise<unknown> = Promise.resolve()
  #label: string | null = null
  #generation = 0
  readonly #onIdle: () => void

  /** `onIdle` runs after each action ends (the runtime re-reads the VM state there if asked to). */
  constructor (onIdle: () => void) {
    this.#onIdle = onIdle
  }

  /** The label of the action running now, if any. */
  get current (): string | null {
    return this.#label
  }

  /** Bumped when an action starts or ends: a VM state read that straddles one is stale. */
  get generation (): number {
    return this.#generation
  }

  run<T> (label: string, fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(async () => {
      this.#label = label
      this.#generation++
      try {
        return await fn()
      } finally {
        this.#label = null
        this.#generation++
        this.#onIdle()
      }
    })
    this.#tail = run.catch(() => {})
    return run
  }

  /** Resolves once the queue is empty, including actions queued while it waited. */
  async drain (): Promise<void> {
    let tail: Promise<unknown>
    do {
      tail = this.#tail
      await tail
    } while (tail !== this.#tail)
  }
}
