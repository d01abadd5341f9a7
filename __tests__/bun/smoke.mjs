// The package's smoke test, run under Bun by __tests__/bun.test.mjs (and runnable under Node):
// client, store, lock, cache, health and metrics against REDIS_URL. Prints one line `RESULT {json}`.
import { Cache, RedisClient, RedisStore } from '../../index.mjs'

const out = {}
const client = new RedisClient({ url: process.env.REDIS_URL, logger: false })
try {
  out.ready = await client.ready(5000)
  const store = new RedisStore({ client, prefix: `bun:${process.pid}:` })
  store.init({ windowMs: 60_000 })
  const hits = await Promise.all([store.increment('a'), store.increment('a'), store.increment('b')])
  out.store = hits.map((h) => [h.totalHits, h.source])
  const lease = await client.lock(`bun-job:${process.pid}`, { ttlMs: 5000 })
  out.lock = {
    fence: typeof lease.fence,
    second: await client.lock(`bun-job:${process.pid}`),
    released: await lease.release(),
  }
  const cache = new Cache({ client, prefix: `bun-cache:${process.pid}:` })
  let runs = 0
  const values = await Promise.all(
    Array.from({ length: 10 }, () => cache.getOrSet('k', async () => ({ runs: ++runs }))),
  )
  out.cache = { values: new Set(values.map((v) => v.runs)).size, runs, get: await cache.get('k') }
  const h = await client.healthCheck()
  out.health = h.status
  out.metrics = client.metrics().includes('redis_guard_calls_total{feature="cache"}')
  out.runtime = typeof Bun === 'undefined' ? `node ${process.version}` : `bun ${Bun.version}`
} catch (e) {
  out.error = `${e && e.code}: ${e && e.message}`
} finally {
  await client.close()
}
process.stdout.write(`RESULT ${JSON.stringify(out)}\n`)
