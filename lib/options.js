'use strict'
// The option checks every feature's constructor shares: the options are an object, no unknown
// option (the message lists the known ones), `client` a RedisClient, `prefix` a string,
// `serializer` an object with `stringify` and `parse`, `fallbackMaxKeys` a positive integer;
// and the options of every rate limiter (RedisStore, RateLimiter, the framework adapters) on
// top of them: `algorithm`, `onUnavailable`, `url`, with their defaults. Each failure is
// ERR_REDIS_GUARD_CONFIG, at construction.

const { RedisClient } = require('./client.js')
const { getDefaultClient } = require('./default-client.js')
const { RedisGuardError, codes } = require('./errors.js')

/** The algorithms of a rate limiter's `algorithm`. */
const ALGORITHMS = ['fixed-window', 'sliding-window', 'gcra']

/** The options every rate limiter takes (`rateLimitOptions`), in the order messages list them. */
const RATE_LIMIT_OPTIONS = ['prefix', 'client', 'url', 'algorithm', 'onUnavailable', 'fallbackMaxKeys']

/** @param {string} message */
const config = (message) => new RedisGuardError(codes.CONFIG, message)

/**
 * `options` when it is an object (or undefined: `{}`), else ERR_REDIS_GUARD_CONFIG.
 * @param {string} feature the class name, for the message
 * @param {unknown} options
 * @returns {Record<string, any>}
 */
function optionsObject(feature, options) {
  if (options === undefined) return {}
  if (options === null || typeof options !== 'object') throw config(`${feature} options must be an object`)
  return /** @type {Record<string, any>} */ (options)
}

/**
 * The checks every feature shares (see the module).
 * @param {string} feature the class name, for the message
 * @param {string[]} known the feature's option names
 * @param {Record<string, unknown>} unknown the options left after destructuring the known ones
 * @param {{ client?: unknown, prefix?: unknown, serializer?: any, fallbackMaxKeys?: unknown }} common
 */
function checkCommon(feature, known, unknown, common) {
  const extra = Object.keys(unknown)
  if (extra.length) throw config(`unknown ${feature} option \`${extra[0]}\` (known: ${known.join(', ')})`)
  const { client, prefix, serializer, fallbackMaxKeys } = common
  if (client !== undefined && !(client instanceof RedisClient))
    throw config('option `client` must be a RedisClient from redis-guard')
  if ('prefix' in common && typeof prefix !== 'string') throw config('option `prefix` must be a string')
  if (
    'serializer' in common &&
    (serializer === null ||
      typeof serializer !== 'object' ||
      typeof serializer.stringify !== 'function' ||
      typeof serializer.parse !== 'function')
  )
    throw config('option `serializer` must be an object with `stringify` and `parse`')
  if (
    fallbackMaxKeys !== undefined &&
    !(Number.isInteger(fallbackMaxKeys) && /** @type {number} */ (fallbackMaxKeys) > 0)
  )
    throw config('option `fallbackMaxKeys` must be a positive integer')
}

/**
 * The options every rate limiter takes, with their defaults, checked: checkCommon's checks (an
 * unknown option listed with `known`), then `algorithm` one of ALGORITHMS and `onUnavailable`
 * 'memory', 'allow' or 'deny'. The caller takes its own options out of `options` first.
 * @param {string} feature the class name, for the message
 * @param {unknown} options
 * @param {string[]} known every option the feature takes, for the message of an unknown one
 */
function rateLimitOptions(feature, options, known) {
  const {
    prefix = 'rl:',
    client,
    url,
    algorithm = 'fixed-window',
    onUnavailable = 'memory',
    fallbackMaxKeys,
    ...unknown
  } = optionsObject(feature, options)
  checkCommon(feature, known, unknown, { client, prefix, fallbackMaxKeys })
  if (!ALGORITHMS.includes(algorithm))
    throw config("option `algorithm` must be 'fixed-window', 'sliding-window' or 'gcra'")
  if (!['memory', 'allow', 'deny'].includes(onUnavailable))
    throw config("option `onUnavailable` must be 'memory', 'allow' or 'deny'")
  return { prefix, client, url, algorithm, onUnavailable, fallbackMaxKeys }
}

/**
 * The client of checked options: theirs, one of the feature's own (`url`), or the default.
 * @param {{ client?: RedisClient, url?: string }} o
 * @returns {{ client: RedisClient, own: boolean }}
 */
function clientOf(o) {
  if (o.client) return { client: o.client, own: false }
  if (o.url !== undefined) return { client: new RedisClient({ url: o.url }), own: true }
  return { client: getDefaultClient(), own: false }
}

module.exports = {
  optionsObject,
  checkCommon,
  config,
  RATE_LIMIT_OPTIONS,
  rateLimitOptions,
  clientOf,
}
