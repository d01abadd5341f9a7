// ESM entry: the same objects as the CommonJS entry. Loaded with require, not `import cjs from`:
// index.js sets `__esModule` (for TypeScript's interop), and runtimes that follow it (Bun,
// bundlers) would then give its `default` (RedisStore) instead of the module.
import { createRequire } from 'node:module'

const cjs = createRequire(import.meta.url)('./index.js')

export const {
  RedisClient,
  RedisStore,
  Lease,
  RateLimiter,
  fastifyStore,
  ThrottlerStorageRedisGuard,
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
