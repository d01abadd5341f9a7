'use strict'
// A store for @fastify/rate-limit (v11): `store: fastifyStore(options)`. The plugin constructs
// it with its global options (`new Store(globalParams)`), calls `incr(key, cb, timeWindow, max)`
// per request (`read` for `{ increment: false }`), and `child(routeOptions)` for a route with
// its own `config.rateLimit`: the child counts under `${prefix}${method}${url}-`, as the
// plugin's own Redis store does. No import of fastify: a plain class shaped to that contract.

const { STORE_HIT, STORE_LIMIT } = require('../native.js')
const { RedisGuardError, codes } = require('../errors.js')
const { rateLimitOptions, RATE_LIMIT_OPTIONS, clientOf } = require('../options.js')
const { storeBatcher, whole } = require('./common.js')
const { decision } = require('../store.js')

/**
 * @param {import('../../index').AdapterOptions} [options]
 * @returns {new (globalParams?: object) => FastifyRateLimitStore}
 */
function fastifyStore(options = {}) {
  const o = rateLimitOptions('fastifyStore', options, RATE_LIMIT_OPTIONS)
  let shared
  /** One client for the store and all its children, made when the plugin constructs the store. */
  const client = () => (shared ??= clientOf(o))
  class Store extends FastifyRateLimitStore {
    constructor(params) {
      super(o, client().client, o.prefix, params)
    }
  }
  return Store
}

class FastifyRateLimitStore {
  /**
   * @param {import('./common.js').RateLimitOptions} o
   * @param {import('../client.js').RedisClient} client
   * @param {string} prefix
   * @param {any} [params] the plugin's options (global, or the route's for a child)
   */
  constructor(o, client, prefix, params) {
    if (params && (params.continueExceeding || params.exponentialBackoff))
      throw new RedisGuardError(
        codes.CONFIG,
        'fastifyStore does not implement `continueExceeding` or `exponentialBackoff` (use the gcra algorithm for a smooth limit)',
      )
    this._o = o
    this.client = client
    this.prefix = prefix
    this.algorithm = o.algorithm
    // the client is the store's and its children's (fastifyStore makes it once): never closed here
    this._batch = storeBatcher({ client, own: false }, prefix, o)
  }

  /**
   * @param {number} op
   * @param {string} key
   * @param {(err: Error | null, res?: { current: number, ttl: number }) => void} cb
   * @param {number} timeWindow
   * @param {number} max
   */
  _run(op, key, cb, timeWindow, max) {
    if (typeof key !== 'string') {
      cb(new RedisGuardError(codes.INVALID_ARG, `the rate-limit key must be a string, got ${typeof key}`))
      return
    }
    const cost = op === STORE_LIMIT ? 0 : 1
    this._batch.push(op, key, cost, whole(max), undefined, whole(timeWindow)).then(
      (r) => {
        let d
        try {
          d = decision(r, 0, key, 'incr', cost > 0 ? this.client._meter : undefined)
        } catch (e) {
          cb(e)
          return
        }
        // A refused call of the sliding window or GCRA: its ttl is the wait until it would pass,
        // so the plugin's Retry-After is exact.
        const ttl =
          !d.allowed && cost > 0 && d.retryMs >= 0 && this.algorithm !== 'fixed-window' ? d.retryMs : d.resetMs
        cb(null, { current: d.hits, ttl })
      },
      (e) => cb(e),
    )
  }

  /** Count one hit of `key`: `cb(null, { current, ttl })`. */
  incr(key, cb, timeWindow, max) {
    this._run(STORE_HIT, key, cb, timeWindow, max)
  }

  /** The count of `key` without counting: `cb(null, { current, ttl })`. */
  read(key, cb, timeWindow, max) {
    this._run(STORE_LIMIT, key, cb, timeWindow, max)
  }

  /** The store of a route with its own limits: keys `${prefix}${method}${url}-`. */
  child(routeOptions) {
    const info = (routeOptions && routeOptions.routeInfo) || {}
    const prefix = `${this.prefix}${info.method}${info.url}-`
    return new FastifyRateLimitStore(this._o, this.client, prefix, routeOptions)
  }
}

module.exports = { fastifyStore, FastifyRateLimitStore }
