// A CommonJS TypeScript consumer: express-rate-limit's own types must accept RedisStore as a
// Store, and redis-guard's types must describe what the runtime does. Never executed, only
// type-checked (see tsconfig.json next to it); `@ts-expect-error` lines must stay errors.

import express from 'express'
import { rateLimit, type Store, type ClientRateLimitInfo, type Options } from 'express-rate-limit'
import { slowDown } from 'express-slow-down'
import {
  RedisClient,
  RedisStore,
  RedisGuardError,
  codes,
  isRedisAvailable,
  Cache,
  cacheGet,
  cacheSet,
  cacheDelete,
  cacheDeletePattern,
  type CacheOptions,
  type CacheStats,
  type RedisStoreOptions,
  type RedisClientOptions,
  IdempotencyKeys,
  idempotency,
  type Claim,
  type IdempotencyOptions,
} from 'redis-guard'
// rate-limit-redis's default-import form (compiled to CommonJS: `require('redis-guard').default`).
import DefaultStore from 'redis-guard'

const clientOptions: RedisClientOptions = { url: 'redis://127.0.0.1:6380', commandTimeoutMs: 250, logger: false }
const client = new RedisClient(clientOptions)
const available: boolean = client.isAvailable()

const app = express()

// The one-line replacement of rate-limit-redis.
app.use(rateLimit({ windowMs: 15 * 60 * 1000, limit: 100, store: new RedisStore({ prefix: 'rl:' }) }))
app.use(
  rateLimit({
    windowMs: 60_000,
    limit: 10,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    passOnStoreError: true,
    store: new RedisStore({ client, prefix: 'login:', onUnavailable: 'deny', blockOverLimit: false }),
  }),
)
app.use(
  slowDown({
    windowMs: 60_000,
    delayAfter: 5,
    delayMs: (used: number) => (used - 5) * 100,
    store: new RedisStore({ url: 'redis://127.0.0.1:6380', prefix: 'sd:' }),
  }),
)

// Assignable to express-rate-limit's Store type as a value, too.
const options: RedisStoreOptions = {
  client,
  prefix: 'x:',
  onUnavailable: 'memory',
  resetExpiryOnChange: false,
  fallbackMaxKeys: 1000,
}
const store: Store = new RedisStore(options)
const plain = new RedisStore()

async function use(s: RedisStore): Promise<void> {
  const r = await s.increment('k')
  const hits: number = r.totalHits
  const info: ClientRateLimitInfo = r
  const got = await s.get('k')
  if (got !== undefined) {
    const n: number = got.totalHits
  }
  await s.decrement('k')
  await s.resetKey('k')
  await s.resetAll()
  await s.shutdown()
  const prefix: string = s.prefix
  const size: number = s.fallbackSize()
  s.init({ windowMs: 1000, limit: 5 } as Options)
}

async function errors(): Promise<void> {
  try {
    await plain.increment('k')
  } catch (e) {
    if (e instanceof RedisGuardError && (e.code === codes.UNAVAILABLE || e.code === 'ERR_REDIS_GUARD_TIMEOUT')) {
      const m: string = e.message
    }
  }
}

const up: boolean = isRedisAvailable()

// @ts-expect-error onUnavailable is 'memory' | 'allow' | 'deny'
new RedisStore({ onUnavailable: 'explode' })
// @ts-expect-error rate-limit-redis's sendCommand is not an option (pass `client` or `url`)
new RedisStore({ sendCommand: (...args: string[]) => args })
// @ts-expect-error client must be a RedisClient
new RedisStore({ client: {} })

export { app, store, use, errors, available, up }

const viaDefault: Store = new DefaultStore({ prefix: 'd:' })
export { viaDefault }

// The query cache.
const cacheOptions: CacheOptions = {
  prefix: 'c:',
  ttlMs: 60_000,
  graceMs: 30_000,
  timeoutMs: 2_000,
  l1: { maxKeys: 100, ttlMs: 5_000 },
  onUnavailable: 'bypass',
  maxValueBytes: 4096,
}
const cache = new Cache(cacheOptions)
async function useCache(): Promise<void> {
  const stored: boolean = await cache.set('user:1', { id: 1 }, { ttlMs: 1000 })
  const user = await cache.get<{ id: number }>('user:1')
  const id: number | undefined = user?.id
  const many: Array<number | undefined> = await cache.getMany<number>(['a', 'b'])
  const n: number = await cache.setMany([
    ['a', 1],
    ['b', 2, { ttlMs: 5 }],
  ])
  const gone: boolean = await cache.delete('a')
  const count: number = (await cache.deleteMany(['a', 'b'])) + (await cache.clear())
  const stats: CacheStats = cache.stats()
  const seeded: boolean = (await cacheSet('k', [1], 60)) && (await cacheDelete('k'))
  const v: unknown = await cacheGet('k')
  const patterned: number = (await cache.deletePattern('user:*')) + (await cacheDeletePattern('x:*'))
  const filled: { id: number } = await cache.getOrSet('user:2', async () => ({ id: 2 }), {
    ttlMs: 1000,
    graceMs: 500,
    tags: ['team:7'],
    timeoutMs: 100,
  })
  const tags: number = await cache.invalidateTags(['team:7'])
  const l1: [number, boolean] = [cache.l1Size(), cache.l1Ready()]
  cache.close()
  void [stored, id, many, n, gone, count, stats.hits, stats.staleHits, seeded, v, patterned, await cache.has('x')]
  void [filled.id, tags, l1]
}
// @ts-expect-error a factory is a function
void cache.getOrSet('k', 42)
// @ts-expect-error onUnavailable is 'memory' | 'bypass' | 'deny'
new Cache({ onUnavailable: 'allow' })
export { useCache }

// Idempotency keys: the function API and the middleware.
async function useIdempotency(client: RedisClient) {
  const keys = new IdempotencyKeys({ client, prefix: 'idem:', ttlMs: 86_400_000, lockTtlMs: 10_000 })
  const claim: Claim = await keys.claim('order-1', { fingerprint: 'f' })
  if (claim.state === 'acquired') {
    const signal: AbortSignal = claim.signal
    void signal
    await claim.complete({ id: 'ch_1' })
  } else if (claim.state === 'in-progress') {
    const wait: number = claim.retryAfterMs
    void wait
  } else if (claim.state === 'completed') {
    const r: unknown = claim.result
    void r
  }
  const released: boolean = await claim.release()
  const options: IdempotencyOptions = {
    client,
    required: true,
    methods: ['POST'],
    scope: (req) => req.user?.id,
    fingerprint: (req) => String(req.body),
    storeResponse: (status) => status < 500,
    maxBodyBytes: 1024,
    replayHeaders: ['content-type'],
    onUnavailable: 'deny',
  }
  const mw = idempotency(options)
  const same: IdempotencyKeys = mw.keys
  void [released, same]
}
// @ts-expect-error onUnavailable is 'deny' | 'memory' | 'allow'
new IdempotencyKeys({ onUnavailable: 'bypass' })
export { useIdempotency }
