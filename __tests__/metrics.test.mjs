// Metrics (lib/metrics.js, src/metrics.rs) against a REAL redis-server: the Prometheus text
// counts what the features did (calls, batches, fallbacks, rate-limit sources, lock grants and
// contention, cache hits/misses/factories, round trips), availability follows the connection,
// the same metrics reach a real prom-client registry, and metricsHandler serves them in Express.
// Run: node --test __tests__/metrics.test.mjs

import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { test } from 'node:test'

import guard from '../index.js'
import { startRedis, waitFor } from './helpers/redis.mjs'
import { listen, uniquePrefix } from './helpers/utils.mjs'

const { RedisClient, RedisStore, RateLimiter, Cache } = guard
const require = createRequire(import.meta.url)

/** `name{labels} value` lines of Prometheus text as a map. */
function samples(text) {
  const m = new Map()
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue
    const i = line.lastIndexOf(' ')
    m.set(line.slice(0, i), Number(line.slice(i + 1)))
  }
  return m
}

test('the text counts every feature’s work, and follows Redis going away', async () => {
  const server = await startRedis()
  const client = new RedisClient({ url: server.url, logger: false })
  try {
    await client.ready(5000)
    const store = new RedisStore({ client, prefix: uniquePrefix('m') })
    store.init({ windowMs: 60_000 })
    await Promise.all(Array.from({ length: 10 }, (_, i) => store.increment(`k${i}`)))
    const limiter = new RateLimiter({ client, prefix: uniquePrefix('ml'), limit: 2, windowMs: 60_000 })
    for (let i = 0; i < 3; i++) await limiter.limit('u')
    await limiter.get('u')
    const lease = await client.lock('job')
    assert.equal(await client.lock('job'), null)
    await lease.release()
    const cache = new Cache({ client, prefix: uniquePrefix('mc') })
    await cache.getOrSet('a', () => 1)
    await cache.get('a')
    await cache.get('b')
    const text = client.metrics()
    for (const line of text.split('\n').filter(Boolean))
      assert.match(line, /^(# (HELP|TYPE) redis_guard_\w+ .+|redis_guard_\w+(\{[^}]*\})? [0-9.e+-]+)$/, line)
    let s = samples(text)
    assert.equal(s.get('redis_guard_up'), 1)
    assert.equal(s.get('redis_guard_calls_total{feature="rate_limit"}'), 14, 'ten increments, three limits, one get')
    assert.equal(s.get('redis_guard_batches_total{feature="rate_limit"}'), 5, 'ten increments of one turn: one batch')
    assert.equal(s.get('redis_guard_rate_limit_increments_total{source="redis"}'), 10)
    assert.equal(s.get('redis_guard_rate_limit_decisions_total{outcome="allowed"}'), 2)
    assert.equal(s.get('redis_guard_rate_limit_decisions_total{outcome="denied"}'), 1, 'get() is not a decision')
    assert.equal(s.get('redis_guard_lock_grants_total{source="redis"}'), 1)
    assert.equal(s.get('redis_guard_lock_contended_total'), 1)
    assert.equal(s.get('redis_guard_cache_reads_total{result="hit"}'), 1)
    assert.equal(s.get('redis_guard_cache_reads_total{result="miss"}'), 2)
    assert.equal(s.get('redis_guard_cache_factory_calls_total'), 1)
    assert.ok(s.get('redis_guard_round_trip_seconds_count') >= 6)
    assert.equal(
      s.get('redis_guard_round_trip_seconds_bucket{le="+Inf"}'),
      s.get('redis_guard_round_trip_seconds_count'),
    )

    await server.stop()
    await waitFor(() => !client.isAvailable(), { what: 'down' })
    await Promise.all(Array.from({ length: 5 }, (_, i) => store.increment(`d${i}`)))
    s = samples(client.metrics())
    assert.equal(s.get('redis_guard_up'), 0)
    assert.equal(s.get('redis_guard_fallbacks_total{feature="rate_limit"}'), 5)
    assert.equal(s.get('redis_guard_rate_limit_increments_total{source="memory"}'), 5)
  } finally {
    await client.close()
    await server.stop()
  }
})

test('prom-client: registerMetrics adds the same metrics to a registry; metricsHandler serves the text in Express', async () => {
  const promClient = require('prom-client')
  const express = require('express')
  const server = await startRedis()
  const client = new RedisClient({ url: server.url, logger: false })
  let http
  try {
    await client.ready(5000)
    const store = new RedisStore({ client })
    store.init({ windowMs: 60_000 })
    await store.increment('x')
    const registry = new promClient.Registry()
    promClient.collectDefaultMetrics({ register: registry })
    client.registerMetrics(registry)
    const fromProm = samples(await registry.metrics())
    const ours = samples(client.metrics())
    for (const [k, v] of ours) assert.equal(fromProm.get(k), v, k)
    assert.ok(fromProm.has('process_cpu_user_seconds_total'), 'beside the registry’s own')
    assert.throws(() => client.registerMetrics(registry), /already been registered/, 'once per registry')

    const app = express()
    app.get('/metrics', client.metricsHandler())
    http = await listen(app)
    const r = await fetch(`${http.url}/metrics`)
    assert.equal(r.status, 200)
    assert.match(r.headers.get('content-type'), /text\/plain; version=0.0.4/)
    assert.equal(samples(await r.text()).get('redis_guard_rate_limit_increments_total{source="redis"}'), 1)
  } finally {
    if (http) await http.close()
    await client.close()
    await server.stop()
  }
})
