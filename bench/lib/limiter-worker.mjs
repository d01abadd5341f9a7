// Child process of the limiter section: `limit(key)` calls with N in flight, on one hot key or
// spread over 10,000 keys; every call allowed (a limit no run reaches), so each one is a Redis
// decision. redis-guard's RateLimiter per algorithm, and rate-limiter-flexible's
// RateLimiterRedis `consume()` on ioredis.

import { createRequire } from 'node:module'
import { inFlight, latencySummary, measured, workerMain } from './common.mjs'

const require = createRequire(import.meta.url)
const LIMIT = 1_000_000_000
const ALGORITHM = { 'rg-fixed': 'fixed-window', 'rg-sliding': 'sliding-window', 'rg-gcra': 'gcra' }

async function makeLimiter(name, url) {
  if (ALGORITHM[name]) {
    const { RedisClient, RateLimiter } = require('../../index.js')
    const client = new RedisClient({ url, logger: false })
    await client.ready(5000)
    const l = new RateLimiter({ limit: LIMIT, windowMs: 60_000, algorithm: ALGORITHM[name], client, prefix: 'bench:' })
    return {
      call: async (key) => (await l.limit(key)).allowed,
      stats: () => client.stats(),
      close: () => client.close(),
    }
  }
  if (name === 'rlf') {
    const { Redis } = require('ioredis')
    const { RateLimiterRedis } = require('rate-limiter-flexible')
    const redis = new Redis(url, { enableOfflineQueue: false })
    redis.on('error', () => {})
    await new Promise((resolve) => redis.once('ready', resolve))
    const l = new RateLimiterRedis({ storeClient: redis, points: LIMIT, duration: 60, keyPrefix: 'rlf' })
    return {
      call: (key) =>
        l.consume(key).then(
          () => true,
          (e) => {
            if (e instanceof Error) throw e
            return false
          },
        ),
      stats: () => ({}),
      close: () => redis.quit().catch(() => {}),
    }
  }
  throw new Error(`unknown limiter contender ${name}`)
}

async function main({ contender, url, redisPid, calls, concurrency, keys, warmup }) {
  const l = await makeLimiter(contender, url)
  try {
    const names = Array.from({ length: keys }, (_, i) => `user:${i}`)
    const load = (n) => inFlight((i) => l.call(names[i % keys]), n, concurrency)
    await load(warmup)
    const m = await measured(() => load(calls), redisPid, l.stats)
    const { lat, refused } = m.result
    return {
      contender,
      calls,
      keys,
      concurrency,
      wallMs: m.wallMs,
      callsPerSec: (calls * 1000) / m.wallMs,
      ...latencySummary(lat),
      refused,
      cpuUsPerCall: m.cpuUs / calls,
      redisCpuUsPerCall: m.redisCpuUs / calls,
      fallbacks: m.fallbacks,
    }
  } finally {
    await l.close()
  }
}

workerMain(main)
