'use strict'
// One JS→Rust crossing per batch: the calls of one event-loop turn are collected and sent
// together (a string array and a Uint8Array of op codes in, a flat Float64Array out, `width`
// numbers per call). See the README's performance notes and bench/.

const { toError } = require('./errors.js')

/** Most calls per crossing: several batches in flight keep JS, tokio and Redis busy together. */
const MAX_BATCH = 64

/**
 * Flush rule: a microtask when nothing is in flight (lowest latency for a lone call),
 * `setImmediate` otherwise (so calls that arrive in later turns, as HTTP requests do, join the
 * batch instead of each paying a crossing); at MAX_BATCH at once.
 */
class Batcher {
  /**
   * @param {(ops: Uint8Array, keys: string[], tokens?: string[], nums?: Float64Array) => Promise<Float64Array>} run
   * @param {number} width result numbers per call
   * @param {boolean} [extra] whether calls carry a token and a number (locks)
   * @param {number} [max] most calls per batch
   */
  constructor(run, width, extra = false, max = MAX_BATCH) {
    this.run = run
    this.max = max
    this.width = width
    this.extra = extra
    this.inflight = 0
    this.scheduled = false
    this.reset()
    this.flush = this.flush.bind(this)
  }

  reset() {
    this.ops = []
    this.keys = []
    this.waiters = []
    if (this.extra) {
      this.tokens = []
      this.nums = []
    }
  }

  /** Queue one call; resolves with its `width` result numbers. */
  push(op, key, token, num) {
    return new Promise((resolve, reject) => {
      this.ops.push(op)
      this.keys.push(key)
      if (this.extra) {
        this.tokens.push(token)
        this.nums.push(num)
      }
      this.waiters.push(resolve, reject)
      if (this.ops.length >= this.max) this.flush()
      else if (!this.scheduled) {
        this.scheduled = true
        if (this.inflight === 0) queueMicrotask(this.flush)
        else setImmediate(this.flush)
      }
    })
  }

  flush() {
    this.scheduled = false
    if (this.ops.length === 0) return
    const { keys, waiters, width } = this
    const ops = Uint8Array.from(this.ops)
    const p = this.extra ? this.run(ops, keys, this.tokens, Float64Array.from(this.nums)) : this.run(ops, keys)
    this.reset()
    this.inflight++
    p.then(
      (out) => {
        this.inflight--
        for (let i = 0, j = 0; i < keys.length; i++, j += width) waiters[2 * i](out.subarray(j, j + width))
      },
      (e) => {
        this.inflight--
        const err = toError(e)
        for (let i = 0; i < keys.length; i++) waiters[2 * i + 1](err)
      },
    )
  }
}

module.exports = { Batcher, MAX_BATCH }
