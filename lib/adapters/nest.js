'use strict'
// A storage for @nestjs/throttler (v6): `ThrottlerModule.forRoot({ throttlers, storage: new
// ThrottlerStorageRedisGuard() })`. `increment(key, ttl, limit, blockDuration, throttlerName)`
// resolves `{ totalHits, timeToExpire, isBlocked, timeToBlockExpire }` (seconds) with the block
// semantics of the package's own storage: a key that goes over `limit` is blocked for
// `blockDuration` ms (the guard's default: `ttl`) and its hits are not counted meanwhile; with a
// block duration of 0, a call at the limit is refused and not counted. No import of Nest.

const { STORE_LIMIT, STORE_THROTTLE } = require('../native.js')
const { RedisGuardError, codes } = require('../errors.js')
const { rateLimitOptions, RATE_LIMIT_OPTIONS, clientOf } = require('../options.js')
const { storeBatcher, whole } = require('./common.js')
const { decision } = require('../store.js')

class ThrottlerStorageRedisGuard {
  /**
   * @param {import('../../index').AdapterOptions} [options]
   */
  constructor(options = {}) {
    const o = rateLimitOptions('ThrottlerStorageRedisGuard', options, RATE_LIMIT_OPTIONS)
    const c = clientOf(o)
    this.client = c.client
    this._own = c.own
    this.prefix = o.prefix
    this.algorithm = o.algorithm
    this._batch = storeBatcher(c, o.prefix, o)
  }

  /**
   * @param {string} key
   * @param {number} ttl ms
   * @param {number} limit
   * @param {number} blockDuration ms
   * @param {string} [_throttlerName] (already part of the key the guard generates)
   * @returns {Promise<{ totalHits: number, timeToExpire: number, isBlocked: boolean, timeToBlockExpire: number }>}
   */
  async increment(key, ttl, limit, blockDuration, _throttlerName) {
    if (typeof key !== 'string')
      throw new RedisGuardError(codes.INVALID_ARG, `the throttler key must be a string, got ${typeof key}`)
    const block = typeof blockDuration === 'number' && blockDuration > 0 ? Math.ceil(blockDuration) : 0
    const op = block > 0 ? STORE_THROTTLE : STORE_LIMIT
    const d = decision(
      await this._batch.push(op, key, block > 0 ? block : 1, whole(limit), undefined, whole(ttl)),
      0,
      key,
      'increment',
      this.client._meter,
    )
    const blocked = !d.allowed
    return {
      totalHits: d.hits,
      timeToExpire: Math.ceil(d.resetMs / 1000),
      isBlocked: blocked,
      timeToBlockExpire: blocked ? Math.ceil(Math.max(0, d.retryMs) / 1000) : 0,
    }
  }

  /** Nest calls this on shutdown: closes the client if this storage created it (`url`). */
  async onApplicationShutdown() {
    if (this._own) await this.client.close()
  }
}

module.exports = { ThrottlerStorageRedisGuard }
