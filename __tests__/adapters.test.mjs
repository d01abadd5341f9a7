// The framework adapters end to end, each with the real framework (devDependencies) over real
// HTTP on a real redis-server, for every algorithm: @fastify/rate-limit 11 with
// `fastifyStore()` (429s, headers, per-route limits through `child()`), hono-rate-limiter 0.5
// with `RedisStore` on @hono/node-server, and @nestjs/throttler 6 with
// `ThrottlerStorageRedisGuard` in a small Nest app (429s, headers, named throttlers, block
// duration). Each also with Redis down: the memory fallback keeps limiting, within ms.
// Run: node --test __tests__/adapters.test.mjs

import 'reflect-metadata'

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'

import rateLimit from '@fastify/rate-limit'
import { serve } from '@hono/node-server'
import { Controller, Get, Module } from '@nestjs/common'
import { APP_GUARD, NestFactory } from '@nestjs/core'
import { Throttle, ThrottlerGuard, ThrottlerModule } from '@nestjs/throttler'
import Fastify from 'fastify'
import { Hono } from 'hono'
import { rateLimiter } from 'hono-rate-limiter'

import { freePort, startRedis } from './helpers/redis.mjs'
import { uniquePrefix } from './helpers/utils.mjs'
import { RedisClient, RedisStore, ThrottlerStorageRedisGuard, fastifyStore } from '../index.mjs'

const ALGORITHMS = ['fixed-window', 'sliding-window', 'gcra']
const newClient = (url, opts = {}) => new RedisClient({ url, logger: false, ...opts })
/** Most seconds a refused hit waits (limits of 1 minute): the sliding window's hits still weigh in the next window. */
const maxWait = (algorithm) => (algorithm === 'sliding-window' ? 120 : 60)

/** GET `path` `n` times in sequence: the responses (status, headers). */
async function hits(base, path, n, headers = {}) {
  const out = []
  for (let i = 0; i < n; i++) {
    const r = await fetch(base + path, { headers })
    await r.text()
    out.push(r)
  }
  return out
}
const statuses = (rs) => rs.map((r) => r.status)

/** A Fastify app with a global limit of 3 and a route limited to 1. */
async function fastifyApp(store) {
  const app = Fastify()
  await app.register(rateLimit, { max: 3, timeWindow: 60_000, store })
  app.get('/', async () => 'ok')
  app.get('/strict', { config: { rateLimit: { max: 1, timeWindow: 60_000 } } }, async () => 'strict')
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { url: `http://127.0.0.1:${app.server.address().port}`, close: () => app.close() }
}

/** A Hono app on @hono/node-server with hono-rate-limiter, limit 3 per `x-user`. */
async function honoApp(store) {
  const app = new Hono()
  app.use(rateLimiter({ windowMs: 60_000, limit: 3, keyGenerator: (c) => c.req.header('x-user') ?? 'anon', store }))
  app.get('/', (c) => c.text('ok'))
  const server = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s))
  })
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

/** A Nest app: the default throttler (3 per minute) and a route with its own (1 per minute). */
async function nestApp(storage, throttlers = [{ ttl: 60_000, limit: 3 }]) {
  class AppController {
    hello() {
      return 'ok'
    }
    strict() {
      return 'strict'
    }
  }
  const proto = AppController.prototype
  Get('/')(proto, 'hello', Object.getOwnPropertyDescriptor(proto, 'hello'))
  const strict = Object.getOwnPropertyDescriptor(proto, 'strict')
  Get('/strict')(proto, 'strict', strict)
  Throttle({ default: { limit: 1, ttl: 60_000 } })(proto, 'strict', strict)
  Controller()(AppController)
  class AppModule {}
  Module({
    imports: [ThrottlerModule.forRoot({ throttlers, storage })],
    controllers: [AppController],
    providers: [{ provide: APP_GUARD, useClass: ThrottlerGuard }],
  })(AppModule)
  const app = await NestFactory.create(AppModule, { logger: false })
  await app.listen(0, '127.0.0.1')
  return { url: await app.getUrl(), close: () => app.close() }
}

/** The client's rate-limit decisions so far (its metrics): `{ allowed, denied }`. */
function decisions(client) {
  const n = (o) =>
    Number(
      (client.metrics().match(new RegExp(`^redis_guard_rate_limit_decisions_total\\{outcome="${o}"\\} (\\d+)`, 'm')) ||
        [])[1] || 0,
    )
  return { allowed: n('allowed'), denied: n('denied') }
}

describe('adapters on a running server', () => {
  let server
  let client
  before(async () => {
    server = await startRedis()
    client = newClient(server.url)
    assert.equal(await client.ready(5000), true)
  })
  after(async () => {
    await client?.close()
    await server?.stop()
  })

  for (const algorithm of ALGORITHMS) {
    test(`@fastify/rate-limit 11 with fastifyStore (${algorithm}): 200 x3 then 429 with headers; a per-route limit counts apart`, async () => {
      const prefix = uniquePrefix(`fastify-${algorithm}`)
      const app = await fastifyApp(fastifyStore({ client, prefix, algorithm }))
      try {
        const d0 = decisions(client)
        const rs = await hits(app.url, '/', 4)
        assert.deepEqual(statuses(rs), [200, 200, 200, 429])
        assert.equal(rs[0].headers.get('x-ratelimit-limit'), '3')
        assert.deepEqual(
          rs.slice(0, 3).map((r) => r.headers.get('x-ratelimit-remaining')),
          ['2', '1', '0'],
        )
        const retry = Number(rs[3].headers.get('retry-after'))
        assert.ok(retry >= 1 && retry <= maxWait(algorithm), `retry-after ${retry}`)
        assert.deepEqual(statuses(await hits(app.url, '/strict', 2)), [200, 429], 'the route limit (1)')
        const keys = (await server.cli('--scan', '--pattern', `${prefix}*`)).split('\n').filter(Boolean)
        assert.ok(
          keys.some((k) => k.includes('GET/strict-')),
          `the route counts under its own prefix: ${keys}`,
        )
        assert.equal(keys.length, 2)
        const d1 = decisions(client)
        assert.deepEqual(
          { allowed: d1.allowed - d0.allowed, denied: d1.denied - d0.denied },
          { allowed: 4, denied: 2 },
          'metrics',
        )
      } finally {
        await app.close()
      }
    })

    test(`hono-rate-limiter 0.5 with RedisStore (${algorithm}) on @hono/node-server: 200 x3 then 429, draft-6 headers, keys apart`, async () => {
      const prefix = uniquePrefix(`hono-${algorithm}`)
      const app = await honoApp(new RedisStore({ client, prefix, algorithm }))
      try {
        const rs = await hits(app.url, '/', 4, { 'x-user': 'alice' })
        assert.deepEqual(statuses(rs), [200, 200, 200, 429])
        assert.equal(rs[0].headers.get('ratelimit-limit'), '3')
        assert.deepEqual(
          rs.slice(0, 3).map((r) => r.headers.get('ratelimit-remaining')),
          ['2', '1', '0'],
        )
        const reset = Number(rs[3].headers.get('ratelimit-reset'))
        assert.ok(reset >= 1 && reset <= maxWait(algorithm), `ratelimit-reset ${reset}`)
        assert.deepEqual(statuses(await hits(app.url, '/', 1, { 'x-user': 'bob' })), [200], 'another key')
      } finally {
        await app.close()
      }
    })

    test(`@nestjs/throttler 6 with ThrottlerStorageRedisGuard (${algorithm}): 200 x3 then 429 with Retry-After; @Throttle per route`, async () => {
      const prefix = uniquePrefix(`nest-${algorithm}`)
      const app = await nestApp(new ThrottlerStorageRedisGuard({ client, prefix, algorithm }))
      try {
        const d0 = decisions(client)
        const rs = await hits(app.url, '/', 4)
        assert.deepEqual(statuses(rs), [200, 200, 200, 429])
        assert.equal(rs[0].headers.get('x-ratelimit-limit'), '3')
        assert.deepEqual(
          rs.slice(0, 3).map((r) => r.headers.get('x-ratelimit-remaining')),
          ['2', '1', '0'],
        )
        const retry = Number(rs[3].headers.get('retry-after'))
        assert.ok(retry >= 1 && retry <= maxWait(algorithm), `retry-after ${retry}`)
        assert.deepEqual(statuses(await hits(app.url, '/strict', 2)), [200, 429])
        const d1 = decisions(client)
        assert.deepEqual(
          { allowed: d1.allowed - d0.allowed, denied: d1.denied - d0.denied },
          { allowed: 4, denied: 2 },
          'metrics',
        )
      } finally {
        await app.close()
      }
    })
  }

  test("@nestjs/throttler's block: over the limit the key is blocked for blockDuration, hits not counted, then counts from 1", async () => {
    const prefix = uniquePrefix('nest-block')
    const storage = new ThrottlerStorageRedisGuard({ client, prefix })
    const r = []
    for (let i = 0; i < 4; i++) r.push(await storage.increment('k', 60_000, 2, 1000, 'default'))
    assert.deepEqual(
      r.map((x) => [x.totalHits, x.isBlocked]),
      [
        [1, false],
        [2, false],
        [3, true],
        [3, true],
      ],
    )
    assert.equal(r[2].timeToBlockExpire, 1)
    assert.ok(r[0].timeToExpire > 55 && r[0].timeToExpire <= 60)
    await sleep(1050)
    const again = await storage.increment('k', 60_000, 2, 1000, 'default')
    assert.deepEqual([again.totalHits, again.isBlocked], [1, false], 'the block is over: counting from 1')
    // blockDuration 0: refused at the limit, not counted.
    const z = []
    for (let i = 0; i < 3; i++) z.push(await storage.increment('z', 60_000, 2, 0, 'default'))
    assert.deepEqual(
      z.map((x) => [x.totalHits, x.isBlocked]),
      [
        [1, false],
        [2, false],
        [3, true],
      ],
    )
    await assert.rejects(storage.increment(42, 1000, 1, 0, 'x'), { code: 'ERR_REDIS_GUARD_INVALID_ARG' })
  })
})

describe('adapters while Redis is down', () => {
  test('Fastify, Hono and Nest keep limiting from the memory fallback, each request within ms', async () => {
    const client = newClient(`redis://127.0.0.1:${await freePort()}`, { connectTimeoutMs: 200 })
    const apps = []
    try {
      apps.push(await fastifyApp(fastifyStore({ client, algorithm: 'sliding-window' })))
      apps.push(await honoApp(new RedisStore({ client, algorithm: 'gcra' })))
      apps.push(await nestApp(new ThrottlerStorageRedisGuard({ client })))
      for (const app of apps) {
        const t0 = performance.now()
        assert.deepEqual(statuses(await hits(app.url, '/', 4)), [200, 200, 200, 429])
        const ms = (performance.now() - t0) / 4
        assert.ok(ms < 50, `${ms.toFixed(1)} ms per request while Redis is down`)
      }
    } finally {
      for (const app of apps) await app.close()
      await client.close()
    }
  })
})
