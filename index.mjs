// ESM entry: the same objects as the CommonJS entry.
import cjs from './index.js'

export const {
  RedisClient,
  RedisStore,
  Lease,
  RateLimiter,
  fastifyStore,
  ThrottlerStorageRedisGuard,
  Cache,
  RedisGuardError,
  codes,
  getDefaultClient,
  closeDefaultClient,
  isRedisAvailable,
  healthCheck,
  healthHandler,
  metricsHandler,
  acquireLock,
  releaseLock,
  extendLock,
  cacheGet,
  cacheSet,
  cacheDelete,
  cacheDeletePattern,
} = cjs
// The default export is RedisStore, as rate-limit-redis's is: `import RedisStore from 'redis-guard'`.
export default cjs.RedisStore
