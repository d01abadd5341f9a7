'use strict'
// What the framework adapters share (their options are checked by rateLimitOptions,
// lib/options.js): a batcher on a native store of the chosen algorithm (lib/store.js's
// nativeStore, on the batch core of src/store.rs); lib/store.js's `decision` reads its answers.

const { Batcher } = require('../batch.js')
const { nativeStore } = require('../store.js')

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

module.exports = { storeBatcher, whole }
