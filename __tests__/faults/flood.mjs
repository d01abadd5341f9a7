// Child process of the fault suite: a flood of distinct keys through one RedisStore (default
// options) while Redis is down. argv[2] = JSON { clientOptions, keys, blocks }.
// IPC 'run' -> { fallbackMaxKeys, fallbackSize, rssBeforeMb, rssAfterMb, heapAfterMb, blocks: [{ p50, p99, max, ms }] }

import { createRequire } from 'node:module'
import { performance } from 'node:perf_hooks'
import { serve, unhandled } from './child.mjs'

const require = createRequire(import.meta.url)
const { RedisClient, RedisStore } = require('../../index.js')
const p = JSON.parse(process.argv[2])
const client = new RedisClient(p.clientOptions)
const store = new RedisStore({ client })
store.init({ windowMs: 600_000, limit: 100 })

const pct = (s, q) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]
const CONCURRENCY = 256

async function run() {
  await client.ready(500) // down: resolves false
  // Warm-up (the first calls wait up to one deadline for the first connection attempt).
  await Promise.all(Array.from({ length: 1000 }, (_, i) => store.increment(`warm:${i}`)))
  global.gc?.()
  const rssBefore = process.memoryUsage().rss
  const per = Math.floor(p.keys / p.blocks)
  const blocks = []
  let n = 0
  for (let b = 0; b < p.blocks; b++) {
    const lat = new Float64Array(per)
    const t0 = performance.now()
    for (let i = 0; i < per; i += CONCURRENCY) {
      const m = Math.min(CONCURRENCY, per - i)
      await Promise.all(
        Array.from({ length: m }, (_, j) => {
          const t = performance.now()
          return store.increment(`flood:${n++}`).then(() => {
            lat[i + j] = performance.now() - t
          })
        }),
      )
    }
    const ms = performance.now() - t0
    lat.sort()
    blocks.push({
      p50: pct(lat, 0.5),
      p99: pct(lat, 0.99),
      max: lat[lat.length - 1],
      ms,
      rssMb: process.memoryUsage().rss / 1048576,
    })
  }
  return {
    keys: n,
    fallbackMaxKeys: 100_000,
    fallbackSize: store.fallbackSize(),
    rssBeforeMb: rssBefore / 1048576,
    rssAfterMb: process.memoryUsage().rss / 1048576,
    heapAfterMb: process.memoryUsage().heapUsed / 1048576,
    blocks,
    available: client.isAvailable(),
    stats: client.stats(),
    unhandled: unhandled.count,
  }
}

serve({
  run,
  async close() {
    await client.close()
    return { unhandled: unhandled.count }
  },
})
