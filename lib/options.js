'use strict'
// The option checks every feature's constructor shares: the options are an object, no unknown
// option (the message lists the known ones), `client` a RedisClient, `prefix` a string,
// `serializer` an object with `stringify` and `parse`, `fallbackMaxKeys` a positive integer.
// Each failure is ERR_REDIS_GUARD_CONFIG, at construction.

const { RedisClient } = require('./client.js')
const { RedisGuardError, codes } = require('./errors.js')

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

module.exports = { optionsObject, checkCommon, config }
