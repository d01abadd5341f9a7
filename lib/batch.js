'use strict'
// The batch core's JS half: the calls of one event-loop turn cross to Rust together (src/batch/)
// — op bytes, the keys joined in one string with their lengths, a flat Float64Array of numbers
// and, for features that send bytes, one buffer — and come back through one persistent
// callback as a flat Float64Array (and one buffer of bytes), read here with `subarray`: no
// per-call copy, promise or crossing. Every feature (store, locks, ...) rides one Batcher of
// its own. See the README's performance notes.

const { toError } = require('./errors.js')
const { microtask, setImmediate } = require('./timers.js')

/** Most calls per crossing: several batches in flight keep JS, tokio and Redis busy together. */
const MAX_BATCH = 64

/** No bytes: the answer of a call whose feature returns bytes but gave none for it. */
const NO_BYTES = Buffer.alloc(0)

/** Entries per queued call in a batch's waiters: resolve, reject, read, key. */
const WAITER = 4

/**
 * @typedef {object} NativeBatcher the native side (`NativeBatcher` in binding.d.ts)
 * @property {number} widthIn numbers per call in (without the byte length)
 * @property {number} widthOut numbers per call out (offset and length last, when `bytesOut`)
 * @property {boolean} bytesIn whether calls send bytes
 * @property {boolean} bytesOut whether answers carry bytes
 * @property {(id: number, ops: Uint8Array, keys: string, lens: Uint32Array, nums?: Float64Array | null, bytes?: Uint8Array | null) => void} submit
 * @property {(fn: (id: number, nums: Float64Array, bytes?: Buffer | null) => void) => void} setDone
 * @property {(on: boolean) => void} keepAlive refs the callback while batches are in flight
 */

/**
 * @typedef {object} BytesAnswer the answer of a call whose feature returns bytes
 * @property {Float64Array} nums the call's numbers (status first)
 * @property {Buffer} bytes the call's bytes (a view into the batch's buffer; empty for none)
 */

/**
 * Reads one call's answer where it lies, on the hot path of a feature: no view or object per
 * call, and the call's promise resolves with what it returns (or rejects with what it throws).
 * `out[at]` is the call's status, its numbers follow; `blob` holds the batch's bytes (the
 * call's own at offset `out[at + widthOut - 2]`, -1 for none, and length `out[at + widthOut -
 * 1]`); `key` is the key it was queued with.
 * @callback Read
 * @param {Float64Array} out
 * @param {number} at
 * @param {Buffer} blob
 * @param {string} key
 * @returns {any}
 */

/**
 * Flush rule: a microtask when nothing is in flight (lowest latency for a lone call),
 * `setImmediate` otherwise (so calls that arrive in later turns, as HTTP requests do, join the
 * batch instead of each paying a crossing); at `max` at once. Both are out of reach of fake
 * timers (lib/timers.js).
 */
class Batcher {
  /**
   * @param {NativeBatcher} native a feature's `batcher()`
   * @param {number} [max] most calls per batch
   */
  constructor(native, max = MAX_BATCH) {
    this.native = native
    this.max = max
    this.widthIn = native.widthIn
    this.widthOut = native.widthOut
    this.bytesIn = native.bytesIn
    this.bytesOut = native.bytesOut
    this.inflight = 0
    this.scheduled = false
    // Reused for every batch: Rust copies them during submit().
    const stride = this.widthIn + (this.bytesIn ? 1 : 0)
    this.stride = stride
    this.opsBuf = new Uint8Array(max)
    this.lensBuf = new Uint32Array(max)
    this.numsBuf = stride ? new Float64Array(max * stride) : null
    this.nextId = 0
    // Batches in flight: waiters (WAITER entries per call) at `id & (size - 1)`, grown when full.
    // Not a Map: V8 keeps a deleted Map entry's value until the table is rehashed, so every
    // batch's promises would outlive it, get promoted, and make each young-GC cost ~8x more.
    this.ids = new Array(64).fill(0)
    /** @type {Array<any[] | undefined>} */
    this.slots = new Array(64).fill(undefined)
    this.reset()
    this.flush = this.flush.bind(this)
    native.setDone(this.done.bind(this))
  }

  reset() {
    /** Calls queued. */
    this.n = 0
    /** @type {string[]} */
    this.keys = []
    /** @type {any[]} resolve, reject, read and key of each queued call (WAITER entries) */
    this.waiters = []
    /** @type {Uint8Array[]} */
    this.chunks = []
    this.byteLength = 0
  }

  /**
   * Queue one call: `op` on `key`, with up to three numbers (the feature's `widthIn`: `n0`,
   * `n1`, then `n2`) and, for features that send bytes, `bytes`. Resolves the call's numbers (a
   * Float64Array view), or `{ nums, bytes }` for features whose answers carry bytes — or, with
   * `read`, what `read` makes of the answer where it lies, when the batch is done (see `Read`).
   * @param {number} op
   * @param {string} key
   * @param {number} [n0]
   * @param {number} [n1]
   * @param {Uint8Array} [bytes]
   * @param {number} [n2]
   * @param {Read} [read]
   * @returns {Promise<any>}
   */
  push(op, key, n0 = 0, n1 = 0, bytes = undefined, n2 = 0, read = undefined) {
    return new Promise((resolve, reject) => {
      const i = this.n++
      this.opsBuf[i] = op
      this.lensBuf[i] = key.length
      this.keys.push(key)
      const w = this.widthIn
      const nums = this.numsBuf
      let at = i * this.stride
      if (w > 0) nums[at++] = n0
      if (w > 1) nums[at++] = n1
      if (w > 2) nums[at++] = n2
      if (this.bytesIn) {
        const b = bytes || NO_BYTES
        nums[at] = b.length
        if (b.length) {
          this.chunks.push(b)
          this.byteLength += b.length
        }
      }
      this.waiters.push(resolve, reject, read, key)
      if (this.n >= this.max) this.flush()
      else if (!this.scheduled) {
        this.scheduled = true
        if (this.inflight === 0) microtask(this.flush)
        else setImmediate(this.flush)
      }
    })
  }

  flush() {
    this.scheduled = false
    const n = this.n
    if (n === 0) return
    const { keys, waiters } = this
    const ops = this.opsBuf.subarray(0, n)
    const lens = this.lensBuf.subarray(0, n)
    const nums = this.numsBuf ? this.numsBuf.subarray(0, n * this.stride) : null
    const bytes = this.byteLength ? Buffer.concat(this.chunks, this.byteLength) : null
    const id = (this.nextId = (this.nextId + 1) >>> 0)
    try {
      this.native.submit(id, ops, keys.join(''), lens, nums, bytes)
    } catch (e) {
      this.reset()
      const err = toError(e)
      for (let i = 1; i < waiters.length; i += WAITER) waiters[i](err)
      return
    }
    this.reset()
    if (this.inflight++ === 0) this.native.keepAlive(true)
    this.hold(id, waiters)
  }

  /**
   * Keep the waiters of batch `id` until it is done.
   * @param {number} id
   * @param {Function[]} waiters
   */
  hold(id, waiters) {
    if (this.slots[id & (this.slots.length - 1)] !== undefined) this.grow(id)
    const at = id & (this.slots.length - 1)
    this.ids[at] = id
    this.slots[at] = waiters
  }

  /**
   * A slot still taken by an older batch: the smallest doubling where every batch has its own.
   * @param {number} id
   */
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

  /**
   * Batch `id` is done: `out` holds `widthOut` numbers per call; `blob` the bytes of the calls
   * that return some (offset and length are each call's last two numbers).
   * @param {number} id
   * @param {Float64Array} out
   * @param {Buffer | null} [blob]
   */
  done(id, out, blob) {
    const at = id & (this.slots.length - 1)
    const waiters = this.slots[at]
    if (waiters === undefined || this.ids[at] !== id) return
    this.slots[at] = undefined
    if (--this.inflight === 0) this.native.keepAlive(false)
    const w = this.widthOut
    const bytesOut = this.bytesOut
    const data = blob || NO_BYTES
    for (let i = 0, j = 0; i < waiters.length; i += WAITER, j += w) {
      const read = waiters[i + 2]
      if (read !== undefined) {
        let v
        try {
          v = read(out, j, data, waiters[i + 3])
        } catch (e) {
          waiters[i + 1](e)
          continue
        }
        waiters[i](v)
      } else if (!bytesOut) waiters[i](out.subarray(j, j + w))
      else {
        const off = out[j + w - 2]
        const bytes = off >= 0 ? data.subarray(off, off + out[j + w - 1]) : NO_BYTES
        waiters[i]({ nums: out.subarray(j, j + w), bytes })
      }
    }
  }
}

module.exports = { Batcher, MAX_BATCH }
