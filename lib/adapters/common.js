'use strict'
// What the framework adapters share: their options, checked once, and a native store of the
// chosen algorithm on the batch core (src/store.rs), with its batcher.

const { NativeStore } = require('../native.js')
const { RedisClient } = require('../client.js')
const { getDefaultClient } = require('../default-client.js')
const { RedisGuardError, codes, toError, fromNumber } = require('../errors.js')
const { Batcher } = require('../batch.js')
const { ALGORITHMS, SOURCES } = require('../store.js')

const KNOWN = ['prefix', 'client', 'url', 'algorithm', 'onUnavailable', 'fallbackMaxKeys']

/**
 * Validate an adapter's options (`what`: its name, for messages).
 * @param {any} options
 * @param {string} what
 * @param {string} defaultPrefix
 * @param {string[]} [more] options the caller takes itself (for the message)
 */
function adapterOptions(options, what, defaultPrefix, more = []) {
  if (options === null || typeof options !== 'object')
    throw new RedisGuardError(codes.CONFIG, `${what} options must be an object`)
  const {
    prefix = defaultPrefix,
    client,
    url,
    algorithm = 'fixed-window',
    onUnavailable = 'memory',
    fallbackMaxKeys,
    ...unknown
  } = options
  const extra = Object.keys(unknown)
  if (extra.length)
    throw new RedisGuardError(
      codes.CONFIG,
      `unknown ${what} option \`${extra[0]}\` (known: ${[...more, ...KNOWN].join(', ')})`,
    )
  if (typeof prefix !== 'string') throw new RedisGuardError(codes.CONFIG, 'option `prefix` must be a string')
  if (!ALGORITHMS.includes(algorithm))
    throw new RedisGuardError(codes.CONFIG, "option `algorithm` must be 'fixed-window', 'sliding-window' or 'gcra'")
  if (!['memory', 'allow', 'deny'].includes(onUnavailable))
    throw new RedisGuardError(codes.CONFIG, "option `onUnavailable` must be 'memory', 'allow' or 'deny'")
  if (fallbackMaxKeys !== undefined && !(Number.isInteger(fallbackMaxKeys) && fallbackMaxKeys > 0))
    throw new RedisGuardError(codes.CONFIG, 'option `fallbackMaxKeys` must be a positive integer')
  if (client !== undefined && !(client instanceof RedisClient))
    throw new RedisGuardError(codes.CONFIG, 'option `client` must be a RedisClient from redis-guard')
  return { prefix, client, url, algorithm, onUnavailable, fallbackMaxKeys }
}

/**
 * The client of validated options: theirs, one of the adapter's own (`url`), or the default.
 * @param {{ client?: RedisClient, url?: string }} o
 * @returns {{ client: RedisClient, own: boolean }}
 */
function clientOf(o) {
  if (o.client) return { client: o.client, own: false }
  if (o.url !== undefined) return { client: new RedisClient({ url: o.url }), own: true }
  return { client: getDefaultClient(), own: false }
}

/**
 * A native store of `prefix` with the options' algorithm and policy.
 * @param {RedisClient} client
 * @param {string} prefix
 * @param {ReturnType<typeof adapterOptions>} o
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
 * @param {RedisClient} client
 * @param {string} prefix
 * @param {ReturnType<typeof adapterOptions>} o
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

module.exports = { adapterOptions, clientOf, nativeStore, storeBatcher, whole, decision }
