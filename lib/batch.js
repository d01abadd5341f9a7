'use strict'
// One JS→Rust crossing per batch: the calls of one event-loop turn are collected and sent
// together (a string array and a Uint8Array of op codes in, a flat Float64Array out, three
// numbers per call, back through one persistent callback rather than a promise per crossing).
// See the README's performance notes and bench/.

const { toError } = require('./errors.js')
const { microtask, setImmediate } = require('./timers.js')

/** Most calls per crossing: several batches in flight keep JS, tokio and Redis busy together. */
const MAX_BATCH = 64

/**
 * Flush rule: a microtask when nothing is in flight (lowest latency for a lone call),
 * `setImmediate` otherwise (so calls that arrive in later turns, as HTTP requests do, join the
 * batch instead of each paying a crossing); at MAX_BATCH at once. Both are out of reach of fake
 * timers (lib/timers.js).
 */
class Batcher {
  /**
   * @param {{ submit: (id: number, ops: Uint8Array, keys: string[], seqs?: Float64Array, nums?: Float64Array) => void,
   *   setDone: (fn: (id: number, out: Float64Array) => void) => void, keepAlive: (on: boolean) => void }} native
   *   the native side: `submit` starts batch `id`, whose results come back through the `setDone`
   *   callback (src/completion.rs); `keepAlive` refs that callback while batches are in flight
   * @param {boolean} [extra] whether calls carry a token number and a number (locks)
   * @param {number} [max] most calls per batch
   */
  constructor(native, extra = false, max = MAX_BATCH) {
    this.native = native
    this.max = max
    this.extra = extra
    this.inflight = 0
    this.scheduled = false
    this.nextId = 0
    // Batches in flight: waiters (resolve, reject pairs) at `id & (size - 1)`, grown when full.
    // Not a Map: V8 keeps a deleted Map entry's value until the table is rehashed, so every
    // batch's promises would outlive it, get promoted, and make each young-GC cost ~8x more.
    this.ids = new Array(64).fill(0)
    this.slots = new Array(64).fill(undefined)
    this.reset()
    this.flush = this.flush.bind(this)
    native.setDone(this.done.bind(this))
  }

  reset() {
    this.ops = []
    this.keys = []
    this.waiters = []
    if (this.extra) {
      this.seqs = []
      this.nums = []
    }
  }

  /** Queue one call; resolves with its three result numbers. */
  push(op, key, seq, num) {
    return new Promise((resolve, reject) => {
      this.ops.push(op)
      this.keys.push(key)
      if (this.extra) {
        this.seqs.push(seq)
        this.nums.push(num)
      }
      this.waiters.push(resolve, reject)
      if (this.ops.length >= this.max) this.flush()
      else if (!this.scheduled) {
        this.scheduled = true
        if (this.inflight === 0) microtask(this.flush)
        else setImmediate(this.flush)
      }
    })
  }

  flush() {
    this.scheduled = false
    if (this.ops.length === 0) return
    const { keys, waiters } = this
    const ops = Uint8Array.from(this.ops)
    const id = (this.nextId = (this.nextId + 1) >>> 0)
    try {
      if (this.extra) this.native.submit(id, ops, keys, Float64Array.from(this.seqs), Float64Array.from(this.nums))
      else this.native.submit(id, ops, keys)
    } catch (e) {
      this.reset()
      const err = toError(e)
      for (let i = 1; i < waiters.length; i += 2) waiters[i](err)
      return
    }
    this.reset()
    if (this.inflight++ === 0) this.native.keepAlive(true)
    this.hold(id, waiters)
  }

  /** Keep the waiters of batch `id` until it is done. */
  hold(id, waiters) {
    if (this.slots[id & (this.slots.length - 1)] !== undefined) this.grow(id)
    const at = id & (this.slots.length - 1)
    this.ids[at] = id
    this.slots[at] = waiters
  }

  /** A slot still taken by an older batch: the smallest doubling where every batch has its own. */
  grow(id) {
    const { ids, slots } = this
    const live = [id]
    for (let i = 0; i < slots.length; i++) if (slots[i] !== undefined) live.push(ids[i])
    let size = slots.length * 2
    while (new Set(live.map((x) => x & (size - 1))).size < live.length) size *= 2
    this.ids = new Array(size).fill(0)
    this.slots = new Array(size).fill(undefined)
    for (let i = 0; i < slots.length; i++) {
      if (slots[i] === undefined) continue
      this.ids[ids[i] & (size - 1)] = ids[i]
      this.slots[ids[i] & (size - 1)] = slots[i]
    }
  }

  /** Batch `id` is done: `out` holds three numbers per call. */
  done(id, out) {
    const at = id & (this.slots.length - 1)
    const waiters = this.slots[at]
    if (waiters === undefined || this.ids[at] !== id) return
    this.slots[at] = undefined
    if (--this.inflight === 0) this.native.keepAlive(false)
    for (let i = 0, j = 0; i < waiters.length; i += 2, j += 3) waiters[i](out.subarray(j, j + 3))
  }
}

module.exports = { Batcher }
