'use strict'
// What the framework adapters and RateLimiter share (their options are checked by
// rateLimitOptions, lib/options.js): a native store of the chosen algorithm on the batch core
// (src/store.rs), with its batcher, and the decision of one store op.

const { NativeStore } = require('../native.js')
const { toError, fromNumber } = require('../errors.js')
const { Batcher } = require('../batch.js')
const { SOURCES } = require('../store.js')

/** @typedef {ReturnType<typeof import('../options.js').rateLimitOptions>} RateLimitOptions */

/**
 * A native store of `prefix` with the options' algorithm and policy.
 * @param {import('../client.js').RedisClient} client
 * @param {string} prefix
 * @param {RateLimitOptions} o
 */
function nativeStore(client, prefix, o) {
  try {
    return new NativeStore(client._native, prefix, o.onUnavailable, o.fallbackMaxKeys, 'batch', o.algorithm)
  } catch (e) {
    throw toError(e)
  }
}

/**
 * A batcher on a native store of `prefix` (see `nativeStore`).
 * @param {import('../client.js').RedisClient} client
 * @param {string} prefix
 * @param {RateLimitOptions} o
 */
function storeBatcher(client, prefix, o) {
  return new Batcher(nativeStore(client, prefix, o).batcher())
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

module.exports = { nativeStore, storeBatcher, whole, decision }
