'use strict'
// RedisStore: an express-rate-limit Store. Calls made in one event-loop turn go to Rust as one
// batch (lib/batch.js): one crossing, one script call.

const { inspect } = require('node:util')
const {
  NativeStore,
  STORE_INCREMENT,
  STORE_GET,
  STORE_DECREMENT,
  STORE_RESET,
  STORE_NONE,
  STORE_REDIS,
  STORE_MEMORY,
  STORE_ALLOW,
} = require('./native.js')
const { RedisGuardError, codes, toError, fromNumber } = require('./errors.js')
const { optionsObject, rateLimitOptions, clientOf, config } = require('./options.js')
const { Batcher } = require('./batch.js')
const timers = require('./timers.js')

/** RedisStore's options, in the order an unknown option's message lists them. */
const STORE_OPTIONS = [
  'prefix',
  'client',
  'url',
  'onUnavailable',
  'resetExpiryOnChange',
  'blockOverLimit',
  'fallbackMaxKeys',
  'scriptMode',
  'algorithm',
]

/** Most keys the over-limit cache holds. */
const MAX_BLOCKED = 10_000

const OP_INCREMENT = STORE_INCREMENT
const OP_GET = STORE_GET
const OP_DECREMENT = STORE_DECREMENT
const OP_RESET = STORE_RESET
const ST_NONE = STORE_NONE
/** `source` of a result, by status number (STORE_REDIS, STORE_MEMORY, STORE_ALLOW): who counted it. */
const SOURCES = []
SOURCES[STORE_REDIS] = 'redis'
SOURCES[STORE_MEMORY] = 'memory'
SOURCES[STORE_ALLOW] = 'allow'

/**
 * The native store of `prefix` on the client of `clientOf` (lib/options.js), with the options'
 * algorithm and policy. When it cannot be made (options only the native side checks, e.g.
 * `scriptMode`), a client made for these options (`own`) is closed before the error is thrown.
 * @param {{ client: import('./client.js').RedisClient, own: boolean }} c
 * @param {string} prefix
 * @param {ReturnType<typeof rateLimitOptions>} o
 * @param {string} [scriptMode] 'batch' (the default) or 'per-key'
 */
function nativeStore({ client, own }, prefix, o, scriptMode = 'batch') {
  try {
    return new NativeStore(client._native, prefix, o.onUnavailable, o.fallbackMaxKeys, scriptMode, o.algorithm)
  } catch (e) {
    if (own) client.close().catch(() => {})
    throw toError(e)
  }
}

/**
 * The answer of one limit op (`STORE_LIMIT`, `STORE_HIT`, `STORE_THROTTLE`) at `out[at]` as an
 * object, or throw its error; a decision (`meter` given) is counted in the client's metrics.
 * RateLimiter and the framework adapters read their answers with it.
 * @param {Float64Array} out
 * @param {number} at
 * @param {string} key
 * @param {string} what
 * @param {import('./metrics.js').Meter} [meter]
 */
function decision(out, at, key, what, meter) {
  const status = out[at]
  if (status < 0) throw fromNumber(status, `${what} ${JSON.stringify(key.slice(0, 64))}`)
  const allowed = out[at + 3] === 1
  if (meter) meter.rateLimitDecisions[allowed ? 'allowed' : 'denied']++
  return {
    hits: out[at + 1],
    resetMs: out[at + 2],
    allowed,
    remaining: out[at + 4],
    retryMs: out[at + 5],
    source: /** @type {'redis' | 'memory' | 'allow'} */ (SOURCES[status] || 'redis'),
  }
}

/** The `Date` `ms` from now, on the caller's clock (`Date.now()`, which a test may fake). */
function resetTime(ms) {
  return new Date(Date.now() + ms)
}

function checkKey(key) {
  if (typeof key !== 'string') {
    throw new RedisGuardError(codes.INVALID_ARG, `the rate-limit key must be a string, got ${typeof key}`)
  }
}

class RedisStore {
  /**
   * @param {import('../index').RedisStoreOptions & { sendCommand?: unknown }} [options]
   */
  constructor(options = {}) {
    const {
      resetExpiryOnChange = false,
      blockOverLimit = true,
      scriptMode = 'batch',
      sendCommand,
      ...rest
    } = optionsObject('RedisStore', options)
    if (sendCommand !== undefined)
      throw config(
        'RedisStore does not take `sendCommand`: pass `client` (a RedisClient) or `url`, or nothing to use REDIS_URL',
      )
    const o = rateLimitOptions('RedisStore', rest, STORE_OPTIONS)
    if (o.algorithm !== 'fixed-window' && resetExpiryOnChange)
      throw config("option `resetExpiryOnChange` is for the 'fixed-window' algorithm only")
    /** The key prefix. The default value is `rl:`. */
    this.prefix = o.prefix
    /** express-rate-limit: counts are shared between processes. */
    this.localKeys = false
    this.onUnavailable = o.onUnavailable
    /** `'fixed-window'`, `'sliding-window'` or `'gcra'`. The default value is `'fixed-window'`. */
    this.algorithm = o.algorithm
    this.resetExpiryOnChange = !!resetExpiryOnChange
    this.blockOverLimit = !!blockOverLimit
    const c = clientOf(o)
    this._ownClient = c.own
    /** @type {import('./client.js').RedisClient} the client (a RedisClient from this package: checked above) */
    this.client = c.client
    this._native = nativeStore(c, o.prefix, o, scriptMode)
    this._batch = new Batcher(this._native.batcher())
    this.windowMs = 60_000
    this.limit = undefined
    /** key -> { totalHits, resetAt, resetTime, local }: keys over a static limit, answered here until reset. */
    this._blocked = new Map()
    this._native.configure(this.windowMs, this.resetExpiryOnChange)
  }

  /** express-rate-limit calls this (without awaiting) with its options. */
  init(options) {
    if (options && typeof options.windowMs === 'number' && options.windowMs > 0) this.windowMs = options.windowMs
    const limit = options && (typeof options.limit === 'number' ? options.limit : options.max)
    // `limit: 0` is not a real limit: express-slow-down always passes it (its threshold is
    // `delayAfter`, which the store never sees), and it must keep sharing its counts in Redis.
    this.limit = typeof limit === 'number' && Number.isFinite(limit) && limit > 0 ? limit : undefined
    if (this.algorithm === 'gcra' && this.limit === undefined)
      throw new RedisGuardError(
        codes.CONFIG,
        "a 'gcra' RedisStore needs a numeric `limit` (a rate: limit per windowMs); use 'sliding-window' with a limit function",
      )
    this._native.configure(this.windowMs, this.resetExpiryOnChange, Math.floor(this.limit || 0))
  }

  _result(r, key, op) {
    const status = r[0]
    if (status < 0) throw fromNumber(status, `${op} ${JSON.stringify(key.slice(0, 64))}`)
    // For the sliding window and GCRA, a hit over the limit's reset time is when the next one
    // would pass (so Retry-After and the local block are exact).
    const resetMs = r[3] === 0 && r[5] >= 0 && this.algorithm !== 'fixed-window' ? r[5] : r[2]
    const source = SOURCES[status]
    if (op === 'increment') this.client._meter.rateLimit[source]++
    return { totalHits: r[1], resetMs, source }
  }

  /** Count a hit for `key`: `{ totalHits, resetTime }`. */
  async increment(key) {
    checkKey(key)
    const b = this._blocked.size ? this._blocked.get(key) : undefined
    if (b) {
      const left = b.resetAt - timers.now()
      if (left > 0) {
        b.totalHits++
        b.local++
        this.client._meter.rateLimit.blocked++
        return { totalHits: b.totalHits, resetTime: b.resetTime, source: 'blocked' }
      }
      this._blocked.delete(key)
    }
    const r = this._result(await this._batch.push(OP_INCREMENT, key), key, 'increment')
    const reset = resetTime(r.resetMs)
    if (
      this.blockOverLimit &&
      r.source === 'redis' &&
      this.limit !== undefined &&
      r.totalHits > this.limit &&
      !this.resetExpiryOnChange
    ) {
      if (this._blocked.size >= MAX_BLOCKED) this._blocked.delete(this._blocked.keys().next().value)
      // `resetAt` on the real clock (lib/timers.js), as Redis's window runs in real time.
      // (`resetTime`: the caller's clock, as returned.)
      this._blocked.set(key, { totalHits: r.totalHits, resetAt: timers.now() + r.resetMs, resetTime: reset, local: 0 })
    }
    return { totalHits: r.totalHits, resetTime: reset, source: r.source }
  }

  /** The current count of `key`, or undefined. */
  async get(key) {
    checkKey(key)
    const b = this._blocked.get(key)
    const left = b ? b.resetAt - timers.now() : 0
    if (left > 0) return { totalHits: b.totalHits, resetTime: b.resetTime, source: 'blocked' }
    const r = await this._batch.push(OP_GET, key)
    if (r[0] === ST_NONE) return undefined
    const { totalHits, resetMs, source } = this._result(r, key, 'get')
    return { totalHits, resetTime: resetTime(resetMs), source }
  }

  /** Undo one hit (never below zero; the key keeps its TTL). */
  async decrement(key) {
    checkKey(key)
    const b = this._blocked.get(key)
    if (b && b.local > 0) {
      b.local--
      b.totalHits--
      return
    }
    if (b) this._blocked.delete(key)
    this._result(await this._batch.push(OP_DECREMENT, key), key, 'decrement')
  }

  /** Forget `key`. */
  async resetKey(key) {
    checkKey(key)
    this._blocked.delete(key)
    this._result(await this._batch.push(OP_RESET, key), key, 'resetKey')
  }

  /** Delete every key of this store's prefix (SCAN, never KEYS) and clear the local state. */
  async resetAll() {
    this._blocked.clear()
    try {
      await this._native.resetAll()
    } catch (e) {
      throw toError(e)
    }
  }

  /** Close the client if this store created it (`url` option). */
  async shutdown() {
    if (this._ownClient) await this.client.close()
  }

  /** Keys the memory fallback holds now. */
  fallbackSize() {
    return this._native.fallbackSize()
  }

  [inspect.custom]() {
    return `RedisStore { prefix: ${JSON.stringify(this.prefix)}, algorithm: '${this.algorithm}', onUnavailable: '${this.onUnavailable}', client: ${inspect(this.client)} }`
  }
}

module.exports = { RedisStore, SOURCES, nativeStore, decision, resetTime }
