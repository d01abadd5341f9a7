// ESM entry: the same objects as the CommonJS entry.
import cjs from './index.js'

export const {
  RedisClient,
  RedisStore,
  Lease,
  Cache,
  IdempotencyKeys,
  Claim,
  idempotency,
  RedisGuardError,
  codes,
  getDefaultClient,
  closeDefaultClient,
  isRedisAvailable,
  healthCheck,
  healthHandler,
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
