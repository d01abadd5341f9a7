'use strict'
// redis-guard: rate limiting, distributed locks, a query cache, idempotency keys and health checks on Redis for Express.
// The work happens in Rust (src/); this file wires the thin JavaScript layer (lib/).

const { RedisClient } = require('./lib/client.js')
const { Lease } = require('./lib/lock.js')
const { RedisStore } = require('./lib/store.js')
const { RateLimiter } = require('./lib/limiter.js')
const { fastifyStore } = require('./lib/adapters/fastify.js')
const { ThrottlerStorageRedisGuard } = require('./lib/adapters/nest.js')
const { Cache, cacheGet, cacheSet, cacheDelete, cacheDeletePattern } = require('./lib/cache.js')
const { IdempotencyKeys, Claim } = require('./lib/idempotency/keys.js')
const { idempotency } = require('./lib/idempotency/middleware.js')
const { RedisGuardError, codes } = require('./lib/errors.js')
const { getDefaultClient, closeDefaultClient } = require('./lib/default-client.js')

module.exports = {
  RedisClient,
  RedisStore,
  /**
   * rate-limit-redis's default-export form, `require('rate-limit-redis').default` /
   * `import RedisStore from 'rate-limit-redis'`, works with redis-guard in its place.
   */
  default: RedisStore,
  Lease,
  /** A rate limiter without a framework: `limit(key, { cost })`, `get(key)`, `reset(key)`. */
  RateLimiter,
  /** A store class for @fastify/rate-limit 11: `store: fastifyStore(options)`. */
  fastifyStore,
  /** A storage for @nestjs/throttler 6: `storage: new ThrottlerStorageRedisGuard(options)`. */
  ThrottlerStorageRedisGuard,
  Cache,
  IdempotencyKeys,
  Claim,
  /** Express middleware for the `Idempotency-Key` header (see IdempotencyOptions). */
  idempotency,
  RedisGuardError,
  codes,
  getDefaultClient,
  closeDefaultClient,
  /** Whether the default client is connected (sync, no I/O). */
  isRedisAvailable: () => getDefaultClient().isAvailable(),
  /** Health of the default client: `{ status, connected, latencyMs, url, mode, topology, error? }`. */
  healthCheck: (options) => getDefaultClient().healthCheck(options),
  /** An Express handler reporting the default client's health (200, or 503 when unhealthy). */
  healthHandler: (options) => {
    return (req, res, next) => getDefaultClient().healthHandler(options)(req, res, next)
  },
  /** An Express handler serving the default client's metrics (Prometheus text, format 0.0.4). */
  metricsHandler: () => (req, res) => getDefaultClient().metricsHandler()(req, res),
  /** Take `lock:${key}` for `ttlSeconds` (default 30) on the default client. */
  acquireLock: (key, ttlSeconds, options) => getDefaultClient().acquireLock(key, ttlSeconds, options),
  /** Release `lock:${key}` if this process holds it. */
  releaseLock: (key) => getDefaultClient().releaseLock(key),
  /** Extend `lock:${key}` if this process holds it. */
  extendLock: (key, ttlSeconds) => getDefaultClient().extendLock(key, ttlSeconds),
  /** The value at `cache:${key}` on the default client, or undefined. */
  cacheGet,
  /** Store `value` at `cache:${key}` for `ttlSeconds` (default 3600) on the default client. */
  cacheSet,
  /** Delete `cache:${key}` on the default client. */
  cacheDelete,
  /** Delete every `cache:${pattern}` key on the default client (SCAN + UNLINK, never KEYS). */
  cacheDeletePattern,
}
// Marks `default` as the ES default export for TypeScript's and bundlers' CommonJS interop, so
// `import RedisStore from 'redis-guard'` compiled to CommonJS gets RedisStore, as in ESM.
Object.defineProperty(module.exports, '__esModule', { value: true })
