// A TypeScript consumer of the limits (RateLimiter, the algorithms, the framework adapters):
// type-checked only (tsconfig.json next to it); `@ts-expect-error` lines must stay errors.

import {
  RateLimiter,
  RedisStore,
  ThrottlerStorageRedisGuard,
  fastifyStore,
  type LimitAlgorithm,
  type LimitResult,
} from 'redis-guard'

const algorithm: LimitAlgorithm = 'gcra'
const limiter = new RateLimiter({ limit: 5, windowMs: 60_000, algorithm, burst: 2, prefix: 'rl:auth:' })
new RedisStore({ algorithm: 'sliding-window' })

async function useLimits(): Promise<void> {
  const r: LimitResult = await limiter.limit('user:1', { cost: 2 })
  const wait: number = r.allowed ? 0 : r.retryAfterMs
  const at: Date = (await limiter.get('user:1')).resetTime
  const source: 'redis' | 'memory' | 'allow' = r.source
  await limiter.reset('user:1')
  const Store = fastifyStore({ algorithm: 'sliding-window' })
  const store = new Store({})
  store.incr('k', (err, res) => void [err, res?.current, res?.ttl], 60_000, 10)
  const child = store.child({ routeInfo: { method: 'GET', url: '/x' } })
  const nest = new ThrottlerStorageRedisGuard({ prefix: 'rl:nest:' })
  const rec = await nest.increment('k', 60_000, 10, 60_000, 'default')
  const blocked: boolean = rec.isBlocked
  void [wait, at, source, child.prefix, blocked, rec.timeToBlockExpire]
}
// @ts-expect-error algorithm is 'fixed-window' | 'sliding-window' | 'gcra'
new RateLimiter({ limit: 5, windowMs: 1000, algorithm: 'token-bucket' })
// @ts-expect-error limit and windowMs are required
new RateLimiter({ algorithm: 'gcra' })
export { useLimits }
