// Child process of the cache section: one contender, one op ('get' hits or 'getOrSet' hits),
// one issue mode — 'turns' (one call started per event-loop turn, at most `concurrency` in
// flight) or 'waves' (`concurrency` calls started in one turn, then the next wave) — over
// `keys` keys holding 1 KB JSON values that the contender itself wrote beforehand.

import { createRequire } from 'node:module'
import { performance } from 'node:perf_hooks'
import { latencySummary, measured, workerMain } from './common.mjs'

const require = createRequire(import.meta.url)
const TTL_MS = 3_600_000

/** A 1 KB JSON value (about 1,024 bytes serialized). */
function value(i) {
  return { id: i, name: `user ${i}`, email: `user${i}@example.com`, bio: 'x'.repeat(900), tags: ['a', 'b'] }
}

async function makeContender(name, url) {
  const u = new URL(url)
  const connection = { host: u.hostname, port: Number(u.port) }
  if (name === 'rg' || name === 'rg-l1') {
    const { Cache, RedisClient } = require('../../index.js')
    const client = new RedisClient({ url, logger: false })
    await client.ready(5000)
    const cache = new Cache({ client, prefix: 'rg:', l1: name === 'rg-l1' ? { maxKeys: 20_000 } : undefined })
    if (name === 'rg-l1') for (let i = 0; i < 100 && !cache.l1Ready(); i++) await new Promise((r) => setTimeout(r, 20))
    return {
      set: (k, v) => cache.set(k, v, { ttlMs: TTL_MS }),
      get: (k) => cache.get(k),
      getOrSet: (k, f) => cache.getOrSet(k, f, { ttlMs: TTL_MS }),
      close: async () => {
        cache.close()
        await client.close()
      },
    }
  }
  if (name === 'ioredis') {
    // The hand-written helpers: GET + JSON.parse, SETEX + JSON.stringify.
    const { Redis } = require('ioredis')
    const redis = new Redis(url)
    await redis.ping()
    const get = async (k) => {
      const s = await redis.get(`cache:${k}`)
      return s === null ? undefined : JSON.parse(s)
    }
    return {
      set: (k, v) => redis.setex(`cache:${k}`, TTL_MS / 1000, JSON.stringify(v)),
      get,
      getOrSet: async (k, f) => {
        const v = await get(k)
        if (v !== undefined) return v
        const nv = await f()
        await redis.setex(`cache:${k}`, TTL_MS / 1000, JSON.stringify(nv))
        return nv
      },
      close: () => redis.quit(),
    }
  }
  if (name === 'bento' || name === 'bento-l1') {
    const { BentoCache, bentostore } = await import('bentocache')
    const { redisDriver } = await import('bentocache/drivers/redis')
    const { memoryDriver } = await import('bentocache/drivers/memory')
    let store = bentostore()
    if (name === 'bento-l1') store = store.useL1Layer(memoryDriver({ maxSize: '200mb', maxItems: 20_000 }))
    store = store.useL2Layer(redisDriver({ connection }))
    const bento = new BentoCache({ default: 'c', stores: { c: store } })
    return {
      set: (k, v) => bento.set({ key: k, value: v, ttl: TTL_MS }),
      get: (k) => bento.get({ key: k }),
      getOrSet: (k, f) => bento.getOrSet({ key: k, factory: f, ttl: TTL_MS }),
      close: () => bento.disconnectAll(),
    }
  }
  if (name === 'cache-manager') {
    const { createCache } = await import('cache-manager')
    const { Keyv } = await import('keyv')
    const { default: KeyvRedis } = await import('@keyv/redis')
    const keyv = new Keyv({ store: new KeyvRedis(url), namespace: 'cm' })
    const cm = createCache({ stores: [keyv] })
    return {
      set: (k, v) => cm.set(k, v, TTL_MS),
      get: (k) => cm.get(k),
      getOrSet: (k, f) => cm.wrap(k, f, TTL_MS),
      close: () => cm.disconnect(),
    }
  }
  throw new Error(`unknown cache contender ${name}`)
}

async function main({ contender, url, redisPid, op, mode, n, concurrency, keys, warmup }) {
  const c = await makeContender(contender, url)
  try {
    const names = Array.from({ length: keys }, (_, i) => `user:${i}`)
    for (let i = 0; i < keys; i += 500) await Promise.all(names.slice(i, i + 500).map((k, j) => c.set(k, value(i + j))))
    const factory = () => value(-1)
    const call = op === 'get' ? (k) => c.get(k) : (k) => c.getOrSet(k, factory)
    let misses = 0
    const load = (count) =>
      new Promise((resolve, reject) => {
        const lat = new Float64Array(count)
        let issued = 0
        let done = 0
        const one = () => {
          // A turn scheduled while the last calls were being issued: nothing left to issue.
          if (issued >= count) return
          const i = issued++
          const t0 = performance.now()
          call(names[(i * 7919) % keys]).then((v) => {
            lat[i] = performance.now() - t0
            if (!v || v.id < 0) misses++
            if (++done === count) resolve(lat)
            else if (mode === 'turns') {
              if (issued < count) setImmediate(one)
            } else if (done % concurrency === 0 || done === count) wave()
          }, reject)
        }
        const wave = () => {
          for (let k = 0; k < concurrency && issued < count; k++) one()
        }
        if (mode === 'turns') {
          // Start `concurrency` calls, one per turn; each answer starts one more in a later turn.
          let started = 0
          const ramp = () => {
            if (started++ < Math.min(concurrency, count)) {
              one()
              setImmediate(ramp)
            }
          }
          ramp()
        } else wave()
      })
    await load(warmup)
    misses = 0
    const { result: lat, wallMs, cpuUs, threads, redisCpuUs } = await measured(() => load(n), redisPid)
    return {
      contender,
      op,
      mode,
      n,
      wallMs,
      opsPerSec: (n * 1000) / wallMs,
      ...latencySummary(lat),
      misses,
      cpuUsPerOp: cpuUs / n,
      threadsUsPerOp: { js: threads.js / n, tokio: threads.tokio / n, other: threads.other / n },
      redisCpuUsPerOp: redisCpuUs / n,
      rssMb: process.memoryUsage().rss / 2 ** 20,
    }
  } finally {
    await c.close()
  }
}

workerMain(main)
