'use strict'
// RateLimiter: a rate limiter without a framework, on the store's batch core (src/store.rs):
// `limit(key, { cost })` decides, counts only what it lets through, and answers from Redis, or
// from the same algorithm in process under `onUnavailable`. Calls of one event-loop turn cross to
// Rust together and run as one script call (per cluster slot).

const { inspect } = require('node:util')
const { STORE_LIMIT, STORE_RESET, STORE_NONE } = require('./native.js')
const { RedisGuardError, codes, fromNumber } = require('./errors.js')
const { Batcher } = require('./batch.js')
const { decision, nativeStore, resetTime } = require('./store.js')
const { rateLimitOptions, RATE_LIMIT_OPTIONS, clientOf, config } = require('./options.js')

/** RateLimiter's options, in the order an unknown option's message lists them. */
const LIMITER_OPTIONS = ['limit', 'windowMs', 'burst', ...RATE_LIMIT_OPTIONS]

/** Largest limit, cost, window or burst: integers JS and Lua both hold exactly. */
const MAX_NUMBER = 9e15

/**
 * @param {unknown} v
 * @param {number} min
 */
function isWhole(v, min) {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= MAX_NUMBER
}

/** The error for a rate-limit key that is not a string. */
function badKey(key) {
  return new RedisGuardError(codes.INVALID_ARG, `the rate-limit key must be a string, got ${typeof key}`)
}

/** @param {unknown} key */
function checkKey(key) {
  if (typeof key !== 'string') throw badKey(key)
}

/**
 * @typedef {object} LimitResult
 * @property {boolean} allowed whether the call passed (and was counted)
 * @property {number} limit the limit
 * @property {number} remaining calls of cost 1 that would pass now, after this one
 * @property {Date} resetTime when the window ends (sliding, fixed) or the capacity is fully back (gcra)
 * @property {number} retryAfterMs 0 when allowed; else ms until this call would pass (Infinity when its cost is over the limit)
 * @property {'redis' | 'memory' | 'allow'} source who decided
 */

class RateLimiter {
  /**
   * @param {import('../index').RateLimiterOptions} options
   */
  constructor(options) {
    // No default options: `limit` and `windowMs` are required.
    if (options === null || typeof options !== 'object')
      throw config('RateLimiter options must be an object (at least `limit` and `windowMs`)')
    const { limit, windowMs, burst, ...rest } = options
    const o = rateLimitOptions('RateLimiter', rest, LIMITER_OPTIONS)
    if (!isWhole(limit, 1)) throw config('option `limit` must be a whole number >= 1')
    if (!isWhole(windowMs, 1)) throw config('option `windowMs` must be a whole number >= 1')
    if (burst !== undefined && !(o.algorithm === 'gcra' && isWhole(burst, 1)))
      throw config("option `burst` must be a whole number >= 1, with algorithm 'gcra'")
    this.limitPerWindow = limit
    this.windowMs = windowMs
    this.algorithm = o.algorithm
    this.prefix = o.prefix
    this.burst = burst
    this.onUnavailable = o.onUnavailable
    const c = clientOf(o)
    this._ownClient = c.own
    /** @type {import('./client.js').RedisClient} */
    this.client = c.client
    this._native = nativeStore(c, o.prefix, o)
    this._native.configure(windowMs, false, limit, burst || 0)
    this._batch = new Batcher(this._native.batcher())
    // The reads of lib/batch.js: a call's promise resolves with its result at once.
    /** @type {import('./batch.js').Read} */
    this._limitAt = (out, at, _blob, key) => this._result(out, at, key, 'limit')
    /** @type {import('./batch.js').Read} */
    this._getAt = (out, at, _blob, key) => this._result(out, at, key, 'get')
  }

  /**
   * The result of the call whose answer is at `out[at]`.
   * @param {Float64Array} out
   * @param {number} at
   * @param {string} key
   * @param {string} what
   * @returns {LimitResult}
   */
  _result(out, at, key, what) {
    const d = decision(out, at, key, what, what === 'limit' ? this.client._meter : undefined)
    return {
      allowed: d.allowed,
      limit: this.limitPerWindow,
      remaining: d.remaining,
      resetTime: resetTime(d.resetMs),
      retryAfterMs: d.allowed ? 0 : d.retryMs < 0 ? Infinity : d.retryMs,
      source: d.source,
    }
  }

  /**
   * Take `cost` (default 1) from `key`'s allowance: `{ allowed, limit, remaining, resetTime,
   * retryAfterMs, source }`. A refused call consumes nothing; a cost over the limit is always
   * refused (retryAfterMs Infinity). A bad key or cost rejects with ERR_REDIS_GUARD_INVALID_ARG.
   * @param {string} key
   * @param {{ cost?: number }} [options]
   * @returns {Promise<LimitResult>}
   */
  limit(key, options) {
    if (typeof key !== 'string') return Promise.reject(badKey(key))
    const cost = options == null ? 1 : options.cost === undefined ? 1 : options.cost
    if (!isWhole(cost, 1))
      return Promise.reject(
        new RedisGuardError(codes.INVALID_ARG, `the cost must be a whole number >= 1, got ${String(cost)}`),
      )
    return this._batch.push(STORE_LIMIT, key, cost, this.limitPerWindow, undefined, this.windowMs, this._limitAt)
  }

  /**
   * The state of `key` without taking anything: the same fields as `limit()`, `allowed` telling
   * whether a call of cost 1 would pass now.
   * @param {string} key
   * @returns {Promise<LimitResult>}
   */
  get(key) {
    if (typeof key !== 'string') return Promise.reject(badKey(key))
    return this._batch.push(STORE_LIMIT, key, 0, this.limitPerWindow, undefined, this.windowMs, this._getAt)
  }

  /**
   * Forget `key`: its full allowance is back.
   * @param {string} key
   * @returns {Promise<void>}
   */
  async reset(key) {
    checkKey(key)
    const r = await this._batch.push(STORE_RESET, key)
    if (r[0] < 0 && r[0] !== STORE_NONE) throw fromNumber(r[0], `reset ${JSON.stringify(key.slice(0, 64))}`)
  }

  /** Close the client if this limiter created it (`url` option). */
  async close() {
    if (this._ownClient) await this.client.close()
  }

  /** Keys the memory fallback holds now. */
  fallbackSize() {
    return this._native.fallbackSize()
  }

  [inspect.custom]() {
    return `RateLimiter { limit: ${this.limitPerWindow}, windowMs: ${this.windowMs}, algorithm: '${this.algorithm}', prefix: ${JSON.stringify(this.prefix)}, onUnavailable: '${this.onUnavailable}' }`
  }
}

module.exports = { RateLimiter }
