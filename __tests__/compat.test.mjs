// Wire compatibility with the real rate-limit-redis packages (v4 and v6) on ioredis: during a
// rollout, instances on rate-limit-redis and on redis-guard share one counter per client, with
// one expiry, under the same key bytes.
// Run: node --test __tests__/compat.test.mjs

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'

import express from 'express'
import { rateLimit } from 'express-rate-limit'
import Redis from 'ioredis'
import { RedisStore as RateLimitRedis6 } from 'rate-limit-redis'
import { RedisStore as RateLimitRedis4 } from 'rate-limit-redis-v4'

import { startRedis } from './helpers/redis.mjs'
import { listen, uniquePrefix } from './helpers/utils.mjs'
import { RedisClient, RedisStore } from '../index.mjs'

const PEERS = [
  ['rate-limit-redis v4', RateLimitRedis4],
  ['rate-limit-redis v6', RateLimitRedis6],
]

/** Every key of `prefix` in Redis, as Buffers (SCAN with MATCH on the raw bytes). */
async function keysOf(io, prefix) {
  const pattern = Buffer.from(`${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`)
  const out = []
  let cursor = '0'
  for (let i = 0; i < 10_000; i++) {
    const [next, keys] = await io.scanBuffer(cursor, 'MATCH', pattern, 'COUNT', 1000)
    out.push(...keys)
    cursor = String(next)
    if (cursor === '0') break
  }
  return out
}

describe('wire compatibility with rate-limit-redis on ioredis', () => {
  let server
  let client
  let io
  before(async () => {
    server = await startRedis()
    client = new RedisClient({ url: server.url, logger: false })
    io = new Redis({ host: '127.0.0.1', port: server.port, maxRetriesPerRequest: 1, lazyConnect: true })
    await io.connect()
    assert.equal(await client.ready(5000), true)
  })
  after(async () => {
    io?.disconnect()
    await client?.close()
    await server?.stop()
  })

  const peerStore = (Peer, prefix, extra = {}) =>
    new Peer({ sendCommand: (...args) => io.call(...args), prefix, ...extra })

  for (const [name, Peer] of PEERS) {
    test(`${name}: two Express apps on one Redis and prefix count one client once, with one expiry`, async () => {
      const warnings = []
      const orig = { warn: console.warn, error: console.error }
      console.warn = (...a) => warnings.push(a)
      console.error = (...a) => warnings.push(a)
      const webs = []
      try {
        const prefix = uniquePrefix('apps')
        const mk = async (store) => {
          const app = express()
          app.use(
            rateLimit({
              windowMs: 60_000,
              limit: 100,
              standardHeaders: 'draft-7',
              legacyHeaders: false,
              keyGenerator: (req) => req.get('x-user'),
              store,
            }),
          )
          app.get('/', (req, res) => res.json({ used: req.rateLimit.used, resetAt: req.rateLimit.resetTime.getTime() }))
          const web = await listen(app)
          webs.push(web)
          return web.url
        }
        const peerApp = await mk(peerStore(Peer, prefix))
        const guardApp = await mk(new RedisStore({ client, prefix }))
        const hit = async (url, user) => (await fetch(`${url}/`, { headers: { 'x-user': user } })).json()
        await sleep(100) // rate-limit-redis loads its scripts in init(), which nobody awaits

        for (const [first, user] of [
          [peerApp, 'ann'],
          [guardApp, 'ben'],
        ]) {
          const other = first === peerApp ? guardApp : peerApp
          const seen = [await hit(first, user)]
          const pttl0 = Number(await server.cli('PTTL', `${prefix}${user}`))
          await sleep(300)
          for (let i = 0; i < 7; i++) seen.push(await hit(i % 2 === 0 ? other : first, user))
          assert.deepEqual(
            seen.map((s) => s.used),
            [1, 2, 3, 4, 5, 6, 7, 8],
            `one counter (${user})`,
          )
          assert.equal(await server.cli('GET', `${prefix}${user}`), '8')
          const pttl = Number(await server.cli('PTTL', `${prefix}${user}`))
          assert.ok(pttl > 0 && pttl <= pttl0 - 250, `one expiry, never pushed back (PTTL ${pttl0} -> ${pttl})`)
          const resets = seen.map((s) => s.resetAt)
          assert.ok(
            Math.max(...resets) - Math.min(...resets) < 500,
            `both report the same window end (${resets.join(', ')})`,
          )
        }
        assert.equal((await keysOf(io, prefix)).length, 2, 'one Redis key per client')
        assert.deepEqual(
          warnings.filter((a) => /_ERL_/.test(a.map(String).join(' ') + a.map((x) => x?.code ?? '').join(' '))),
          [],
        )
      } finally {
        console.warn = orig.warn
        console.error = orig.error
        await Promise.all(webs.map((w) => w.close()))
      }
    })

    test(`${name}: the same key bytes for ordinary and odd keys; get/decrement/resetKey interoperate`, async () => {
      const prefix = uniquePrefix('bytes')
      const peer = peerStore(Peer, prefix)
      await peer.init({ windowMs: 60_000 })
      const guard = new RedisStore({ client, prefix })
      guard.init({ windowMs: 60_000, limit: 1000 })
      const keys = [
        '203.0.113.7',
        '2001:db8::/56',
        'user:42',
        'a\u0000b',
        '\u0000',
        '😀 emoji',
        '\ud800',
        'x\udfffy',
        'spaces and\ttabs',
        '*?[glob]\\',
        'é'.repeat(512) /* 1024 bytes */,
        'k'.repeat(1024),
      ]
      for (const k of keys) {
        assert.equal((await peer.increment(k)).totalHits, 1, JSON.stringify(k))
        assert.equal((await guard.increment(k)).totalHits, 2, JSON.stringify(k))
        assert.equal((await peer.increment(k)).totalHits, 3)
        assert.equal((await guard.get(k)).totalHits, 3)
        assert.equal((await peer.get(k)).totalHits, 3)
        await guard.decrement(k)
        assert.equal((await peer.get(k)).totalHits, 2)
        await peer.decrement(k)
        assert.equal((await guard.get(k)).totalHits, 1)
        assert.equal(
          await io.get(Buffer.from(`${prefix}${k}`, 'utf8')),
          '1',
          `exact bytes of ${JSON.stringify(k.slice(0, 20))}`,
        )
      }
      const stored = await keysOf(io, prefix)
      assert.equal(stored.length, keys.length, 'one Redis key per logical key')
      const expected = new Set(keys.map((k) => Buffer.from(`${prefix}${k}`).toString('hex')))
      for (const k of stored)
        assert.ok(expected.has(k.toString('hex')), `unexpected key ${k.toString('hex').slice(0, 80)}`)
      // resetKey from either side deletes the shared key.
      await guard.resetKey(keys[0])
      assert.equal(await server.cli('EXISTS', `${prefix}${keys[0]}`), '0')
      assert.equal((await peer.increment(keys[0])).totalHits, 1, 'rate-limit-redis starts again')
      await peer.resetKey(keys[1])
      assert.equal(await guard.get(keys[1]), undefined)
    })

    test(`${name}: the same window rule (PTTL <= 0 starts a new window) on keys left without a TTL`, async () => {
      const prefix = uniquePrefix('rule')
      const peer = peerStore(Peer, prefix)
      await peer.init({ windowMs: 60_000 })
      const guard = new RedisStore({ client, prefix })
      guard.init({ windowMs: 60_000, limit: 1000 })
      // rate-limit-redis's decrement is a plain DECR: after the key expired it leaves "-1" with
      // no TTL (e.g. skipFailedRequests and a response that ends after the window).
      await peer.decrement('late')
      assert.equal(await server.cli('GET', `${prefix}late`), '-1')
      assert.equal(await server.cli('PTTL', `${prefix}late`), '-1')
      const r = await guard.increment('late')
      assert.equal(r.totalHits, 1, 'a new window, as rate-limit-redis starts one')
      assert.equal(await server.cli('GET', `${prefix}late`), '1')
      const pttl = Number(await server.cli('PTTL', `${prefix}late`))
      assert.ok(pttl > 0 && pttl <= 60_000)
      assert.equal((await peer.increment('late')).totalHits, 2)

      // Both packages treat any key without a TTL the same way.
      for (const v of ['7', '0', '-3']) {
        await server.cli('SET', `${prefix}p${v}`, v)
        await server.cli('SET', `${prefix}g${v}`, v)
        const p = await peer.increment(`p${v}`)
        const g = await guard.increment(`g${v}`)
        assert.equal(
          g.totalHits,
          p.totalHits,
          `from ${v} without TTL: rate-limit-redis ${p.totalHits}, redis-guard ${g.totalHits}`,
        )
        assert.equal(await server.cli('GET', `${prefix}g${v}`), await server.cli('GET', `${prefix}p${v}`))
        assert.ok(Number(await server.cli('PTTL', `${prefix}g${v}`)) > 0)
      }
    })
  }

  test('rate-limit-redis v4 resetExpiryOnChange and RedisStore resetExpiryOnChange agree', async () => {
    const prefix = uniquePrefix('rexp')
    const peer = peerStore(RateLimitRedis4, prefix, { resetExpiryOnChange: true })
    await peer.init({ windowMs: 10_000 })
    const guard = new RedisStore({ client, prefix, resetExpiryOnChange: true })
    guard.init({ windowMs: 10_000, limit: 1000 })
    assert.equal((await guard.increment('k')).totalHits, 1)
    await sleep(400)
    assert.equal((await peer.increment('k')).totalHits, 2)
    assert.ok(Number(await server.cli('PTTL', `${prefix}k`)) > 9_700, 'rate-limit-redis restarted the window')
    await sleep(400)
    assert.equal((await guard.increment('k')).totalHits, 3)
    assert.ok(Number(await server.cli('PTTL', `${prefix}k`)) > 9_700, 'redis-guard restarted the window')
  })

  test('rate-limit-redis recovers from NOSCRIPT after redis-guard ran (and vice versa): scripts do not clash', async () => {
    const prefix = uniquePrefix('scripts')
    const peer = peerStore(RateLimitRedis6, prefix)
    await peer.init({ windowMs: 60_000 })
    const guard = new RedisStore({ client, prefix })
    guard.init({ windowMs: 60_000, limit: 1000 })
    await server.cli('SCRIPT', 'FLUSH')
    assert.equal((await guard.increment('k')).totalHits, 1)
    assert.equal((await peer.increment('k')).totalHits, 2)
    await server.cli('SCRIPT', 'FLUSH')
    assert.equal((await peer.increment('k')).totalHits, 3)
    assert.equal((await guard.increment('k')).totalHits, 4)
    assert.equal(await server.cli('GET', `${prefix}k`), '4')
  })
})
