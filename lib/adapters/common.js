'use strict'
// What the framework adapters share (their options are checked by rateLimitOptions,
// lib/options.js): a batcher on a native store of the chosen algorithm (lib/store.js's
// nativeStore, on the batch core of src/store.rs), and the decision of one store op.

const { fromNumber } = require('../errors.js')
const { Batcher } = require('../batch.js')
const { SOURCES, nativeStore } = require('../store.js')

/** @typedef {ReturnType<typeof import('../options.js').rateLimitOptions>} RateLimitOptions */

/**
 * A batcher on a native store of `prefix` (`nativeStore`, lib/store.js).
 * @param {{ client: import('../client.js').RedisClient, own: boolean }} c the client, and whether it is the adapter's own
 * @param {string} prefix
 * @param {RateLimitOptions} o
 */
function storeBatcher(c, prefix, o) {
  return new Batcher(nativeStore(c, prefix, o).batcher())
}

/** A whole number of at least 1 for a window or a limit a framework passed (rounded up). */
function whole(n) {
  return typeof n === 'number' && Number.isFinite(n) ? Math.max(1, Math.ceil(n)) : NaN
}

/**
 * The answer of one store op as an object, or throw its error; a decision (`meter` given) is
 * counted in the client's metrics.
 * @param {Float64Array} r
 * @param {string} key
 * @param {string} what
 * @param {import('../metrics.js').Meter} [meter]
 */
function decision(r, key, what, meter) {
  if (r[0] < 0) throw fromNumber(r[0], `${what} ${JSON.stringify(key.slice(0, 64))}`)
  const allowed = r[3] === 1
  if (meter) meter.rateLimitDecisions[allowed ? 'allowed' : 'denied']++
  return {
    hits: r[1],
    resetMs: r[2],
    allowed,
    remaining: r[4],
    retryMs: r[5],
    source: SOURCES[r[0]] || 'redis',
  }
}

module.exports = { storeBatcher, whole, decision }
