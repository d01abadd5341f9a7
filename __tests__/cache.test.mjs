// The query cache (issue 14, first part) against a REAL redis-server: round trips, TTLs in Redis,
// wire compatibility both ways with hand-written ioredis helpers (`SETEX cache:KEY ttl JSON`),
// batching (one script call for a turn's calls), bad input (typed errors, nothing sent), Redis
// going away in each onUnavailable mode, and clear() / deletePattern() with an ACL user that may
// not run KEYS.
// Run: node --test __tests__/cache.test.mjs
//
// Rules: no mocks; every test uses its own key prefix or server; every client and server is
// closed in `finally`; loopback only; every loop is bounded.

import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'

import guard from '../index.js'
import * as esm from '../index.mjs'
import { parseInfo, startRedis, waitFor } from './helpers/redis.mjs'
import { timed, uniquePrefix, rejectsCode } from './helpers/utils.mjs'

const { Cache, RedisClient, RedisGuardError, codes } = guard
const require = createRequire(import.meta.url)
const Redis = require('ioredis')

/** The command deadline (default) and the slack allowed on top of it for an answer. */
const DEADLINE_MS = 250
const SLACK_MS = 100

async function cmdCalls(server, cmd) {
  const v = parseInfo(await server.cli('INFO', 'commandstats'))[`cmdstat_${cmd}`]
  return v ? Number(/calls=(\d+)/.exec(v)[1]) : 0
}

/** Script calls that reached Redis (EVALSHA plus EVAL retries). */
const scriptCalls = async (server) => (await cmdCalls(server, 'evalsha')) + (await cmdCalls(server, 'eval'))

/** A server of its own, a connected client and a raw ioredis connection, all closed after `fn`. */
async function withServer(fn, opts = {}) {
  const server = await startRedis(opts.server)
  const client = new RedisClient({ url: opts.url ? opts.url(server) : server.url, logger: false })
  const io = new Redis(server.url, { maxRetriesPerRequest: 1, lazyConnect: true })
  try {
    assert.equal(await client.ready(5000), true, 'client connects')
    await io.connect()
    return await fn({ server, client, io })
  } finally {
    io.disconnect()
    await client.close()
    await server.stop()
  }
}

const VALUES = [
  ['an object', { id: 42, name: 'Ada', tags: ['a', 'b'], nested: { ok: true, n: null } }],
  ['an array', [1, 'two', { three: 3 }]],
  ['a string', 'hello'],
  ['a number', 123.5],
  ['a negative number', -2],
  ['zero', 0],
  ['false', false],
  ['null', null],
  ['an empty string', ''],
  ['unicode', 'héllo wörld € 𝄞 日本'],
]

describe('round trips', () => {
  test('set/get/has/delete of every JSON kind; misses are undefined; stats count them', async () => {
    await withServer(async ({ client, io }) => {
      const prefix = uniquePrefix('cache-rt')
      const cache = new Cache({ client, prefix })
      for (const [what, v] of VALUES) {
        assert.equal(await cache.set(what, v), true, `set ${what}`)
        assert.deepEqual(await cache.get(what), v, `get ${what}`)
        assert.equal(await cache.has(what), true, `has ${what}`)
        assert.equal(await io.get(`${prefix}${what}`), JSON.stringify(v), `${what}: the plain JSON text in Redis`)
      }
      assert.equal(await cache.get('never-set'), undefined)
      assert.equal(await cache.has('never-set'), false)
      assert.equal(await cache.delete('a string'), true)
      assert.equal(await cache.delete('a string'), false, 'a second delete finds nothing')
      assert.equal(await cache.get('a string'), undefined)
      assert.equal(await io.exists(`${prefix}a string`), 0)
      assert.equal(await cache.set('a number', { replaced: 1 }), true)
      assert.deepEqual(await cache.get('a number'), { replaced: 1 }, 'a set replaces')
      const n = VALUES.length
      assert.deepEqual(cache.stats(), {
        hits: n + 1,
        misses: 2,
        sets: n + 1,
        deletes: 2,
        errors: 0,
        fallbacks: 0,
        staleHits: 0,
        l1Hits: 0,
        factoryCalls: 0,
        timeouts: 0,
      })
    })
  })

  test('getMany / setMany / deleteMany: in order, per-entry TTLs, counts', async () => {
    await withServer(async ({ client, io }) => {
      const prefix = uniquePrefix('cache-many')
      const cache = new Cache({ client, prefix })
      assert.equal(
        await cache.setMany([
          ['a', 1],
          ['b', { two: 2 }, { ttlMs: 5000 }],
          ['c', 'three', undefined],
        ]),
        3,
      )
      assert.deepEqual(await cache.getMany(['c', 'missing', 'a', 'b']), ['three', undefined, 1, { two: 2 }])
      const pttlB = await io.pttl(`${prefix}b`)
      assert.ok(pttlB > 0 && pttlB <= 5000, `b: PTTL ${pttlB}`)
      assert.ok((await io.pttl(`${prefix}a`)) > 5000, 'a has the default TTL')
      assert.deepEqual(await cache.getMany([]), [])
      assert.equal(await cache.setMany([]), 0)
      assert.equal(await cache.deleteMany(['a', 'b', 'missing']), 2)
      assert.deepEqual(await cache.getMany(['a', 'b', 'c']), [undefined, undefined, 'three'])
    })
  })

  test('a custom serializer is used both ways', async () => {
    await withServer(async ({ client, io }) => {
      const prefix = uniquePrefix('cache-ser')
      const serializer = {
        stringify: (v) => `v1:${JSON.stringify(v)}`,
        parse: (s) => JSON.parse(s.slice(3)),
      }
      const cache = new Cache({ client, prefix, serializer })
      await cache.set('k', { a: [1, 2] })
      assert.equal(await io.get(`${prefix}k`), 'v1:{"a":[1,2]}')
      assert.deepEqual(await cache.get('k'), { a: [1, 2] })
    })
  })

  test('an entry that does not parse is a miss, counted as an error; a key of another type is a miss, as MGET answers', async () => {
    await withServer(async ({ client, io }) => {
      const prefix = uniquePrefix('cache-bad')
      const cache = new Cache({ client, prefix })
      await io.set(`${prefix}garbage`, 'not json {')
      await io.lpush(`${prefix}list`, 'x')
      await cache.set('good', 1)
      // All gets: one MGET. With a set in the turn: the script, which answers the same.
      for (const mixed of [false, true]) {
        const [garbage, list, good] = await Promise.all([
          cache.get('garbage'),
          cache.get('list'),
          cache.get('good'),
          mixed ? cache.set('other', 2) : undefined,
        ])
        assert.equal(garbage, undefined)
        assert.equal(list, undefined)
        assert.equal(good, 1, 'the other calls of the batch are answered')
      }
      assert.equal(cache.stats().errors, 2)
      assert.equal(await cache.has('list'), false)
      assert.equal(await io.type(`${prefix}list`), 'list', 'left as it was')
    })
  })
})

describe('TTL', () => {
  test('set writes SET PX: the TTL is in Redis; the default is one hour; the entry expires', async () => {
    await withServer(async ({ client, io }) => {
      const prefix = uniquePrefix('cache-ttl')
      const cache = new Cache({ client, prefix })
      await cache.set('default', 1)
      const d = await io.pttl(`${prefix}default`)
      assert.ok(d > 3_590_000 && d <= 3_600_000, `default PTTL ${d}`)
      await cache.set('short', 1, { ttlMs: 2000 })
      const s = await io.pttl(`${prefix}short`)
      assert.ok(s > 1000 && s <= 2000, `PTTL ${s}`)
      await cache.set('frac', 1, { ttlMs: 1500.2 })
      assert.ok((await io.pttl(`${prefix}frac`)) <= 1501, 'a fractional TTL is rounded up to whole ms')
      const custom = new Cache({ client, prefix, ttlMs: 10_000 })
      await custom.set('custom', 1)
      const c = await io.pttl(`${prefix}custom`)
      assert.ok(c > 9000 && c <= 10_000, `the cache's ttlMs: PTTL ${c}`)
      await cache.set('gone', 'soon', { ttlMs: 100 })
      assert.equal(await cache.get('gone'), 'soon')
      await sleep(250)
      assert.equal(await cache.get('gone'), undefined, 'expired in Redis')
      assert.equal(await cache.has('gone'), false)
    })
  })
})

describe('wire compatibility with hand-written helpers', () => {
  test('ioredis SETEX cache:k 60 \'{"a":1}\' is read by cache.get; cache.set is read by ioredis GET + JSON.parse', async () => {
    await withServer(async ({ client, io }) => {
      const cache = new Cache({ client }) // the default prefix, cache:
      assert.equal(cache.prefix, 'cache:')
      await io.setex('cache:k', 60, '{"a":1}')
      assert.deepEqual(await cache.get('k'), { a: 1 })
      assert.equal(await cache.has('k'), true)
      // What a hand-written helper writes for any value.
      for (const [what, v] of VALUES) {
        await io.setex(`cache:hand:${what}`, 60, JSON.stringify(v))
        assert.deepEqual(await cache.get(`hand:${what}`), v, `read ${what}`)
      }

      const user = { id: 7, name: 'Grace', roles: ['admin'], at: '2026-01-01T00:00:00.000Z' }
      await cache.set('user:7', user, { ttlMs: 60_000 })
      assert.equal(await io.type('cache:user:7'), 'string', 'a plain string, no hash or wrapper')
      assert.deepEqual(JSON.parse(await io.get('cache:user:7')), user)
      const ttl = await io.ttl('cache:user:7')
      assert.ok(ttl > 55 && ttl <= 60, `TTL ${ttl}`)
      // A hand-written delete is seen, and ours is seen by them.
      await io.del('cache:k')
      assert.equal(await cache.get('k'), undefined)
      await cache.delete('user:7')
      assert.equal(await io.get('cache:user:7'), null)
    })
  })

  test('seed helpers cacheGet / cacheSet / cacheDelete on the default client (REDIS_URL), prefix cache:', async () => {
    const server = await startRedis()
    const io = new Redis(server.url, { maxRetriesPerRequest: 1 })
    const savedUrl = process.env.REDIS_URL
    process.env.REDIS_URL = server.url
    try {
      await guard.closeDefaultClient()
      assert.equal(await guard.getDefaultClient().ready(5000), true)
      assert.equal(await guard.cacheSet('seed', { a: 1 }), true)
      assert.equal(await io.get('cache:seed'), '{"a":1}')
      const ttl = await io.ttl('cache:seed')
      assert.ok(ttl > 3590 && ttl <= 3600, `default ttlSeconds 3600: TTL ${ttl}`)
      await guard.cacheSet('seed2', [1], 60)
      const ttl2 = await io.ttl('cache:seed2')
      assert.ok(ttl2 > 55 && ttl2 <= 60, `ttlSeconds 60: TTL ${ttl2}`)
      await io.setex('cache:hand', 60, '{"b":2}')
      assert.deepEqual(await guard.cacheGet('hand'), { b: 2 })
      assert.equal(await guard.cacheGet('nothing'), undefined)
      assert.equal(await guard.cacheDelete('seed'), true)
      assert.equal(await io.exists('cache:seed'), 0)
      for (const bad of [0, -1, Number.NaN, '60'])
        await rejectsCode(guard.cacheSet('x', 1, /** @type {any} */ (bad)), codes.INVALID_ARG, `ttlSeconds ${bad}`)
      await rejectsCode(guard.cacheGet(''), codes.INVALID_ARG, 'empty key')
      // The ES module entry exports the same functions.
      assert.equal(esm.cacheGet, guard.cacheGet)
      assert.equal(esm.cacheSet, guard.cacheSet)
      assert.equal(esm.cacheDelete, guard.cacheDelete)
      assert.equal(esm.Cache, Cache)
    } finally {
      await guard.closeDefaultClient()
      if (savedUrl === undefined) delete process.env.REDIS_URL
      else process.env.REDIS_URL = savedUrl
      io.disconnect()
      await server.stop()
    }
  })
})

describe('batching', () => {
  test('the calls of one turn are one call: 50 sets (a script call), then 50 gets (an MGET), then a mix of every op (a script call)', async () => {
    await withServer(async ({ server, client }) => {
      const prefix = uniquePrefix('cache-batch')
      const cache = new Cache({ client, prefix })
      await cache.delete('warm-up') // loads the script
      await server.cli('CONFIG', 'RESETSTAT')
      const keys = Array.from({ length: 50 }, (_, i) => `k${i}`)
      await Promise.all(keys.map((k, i) => cache.set(k, { i })))
      assert.equal(await scriptCalls(server), 1, 'one script call for 50 sets')
      assert.deepEqual(
        await Promise.all(keys.map((k) => cache.get(k))),
        keys.map((_, i) => ({ i })),
      )
      assert.equal(await scriptCalls(server), 1, 'no script for 50 gets...')
      assert.equal(await cmdCalls(server, 'mget'), 1, '...but one MGET')
      const mixed = await Promise.all([
        cache.get('k1'),
        cache.has('k2'),
        cache.delete('k3'),
        cache.set('k4', 'new'),
        cache.get('k3'),
        cache.getMany(['k5', 'k6']),
      ])
      assert.deepEqual(mixed, [{ i: 1 }, true, true, true, undefined, [{ i: 5 }, { i: 6 }]], 'in call order')
      assert.equal(await scriptCalls(server), 2, 'one more for a mix of every op')
      assert.equal(await cmdCalls(server, 'keys'), 0)
    })
  })

  test('values of 1 KB to 900 KB round-trip byte for byte', async () => {
    await withServer(async ({ client, io }) => {
      const prefix = uniquePrefix('cache-big')
      const cache = new Cache({ client, prefix })
      const sizes = [1024, 64 * 1024, 900 * 1024]
      const values = sizes.map((n, i) => ({ i, s: 'é'.repeat(n / 2 - 20) }))
      await Promise.all(values.map((v, i) => cache.set(`big${i}`, v)))
      assert.deepEqual(await cache.getMany(sizes.map((_, i) => `big${i}`)), values)
      for (let i = 0; i < sizes.length; i++)
        assert.equal(await io.strlen(`${prefix}big${i}`), Buffer.byteLength(JSON.stringify(values[i])))
    })
  })
})

describe('bad input: a typed ERR_REDIS_GUARD_INVALID_ARG, never a crash, nothing sent', () => {
  test('keys, values, TTLs, batch arguments', async () => {
    await withServer(async ({ server, client }) => {
      const prefix = uniquePrefix('cache-input')
      const cache = new Cache({ client, prefix, maxValueBytes: 100 })
      await cache.get('warm-up')
      await server.cli('CONFIG', 'RESETSTAT')
      const I = codes.INVALID_ARG
      for (const key of [42, null, undefined, {}, ['a'], Symbol('s'), ''])
        for (const [name, call] of [
          ['get', () => cache.get(/** @type {any} */ (key))],
          ['set', () => cache.set(/** @type {any} */ (key), 1)],
          ['has', () => cache.has(/** @type {any} */ (key))],
          ['delete', () => cache.delete(/** @type {any} */ (key))],
          ['getMany', () => cache.getMany([/** @type {any} */ (key)])],
          ['deleteMany', () => cache.deleteMany(['ok', /** @type {any} */ (key)])],
        ])
          await rejectsCode(call(), I, `${name} with key ${String(key)}`)
      await rejectsCode(cache.get('x'.repeat(8193)), I, 'a key over 8192 bytes')
      await rejectsCode(cache.get('€'.repeat(2731)), I, 'a key over 8192 bytes in UTF-8')
      const circular = { a: 1 }
      circular.self = circular
      const badValues = [
        ['undefined', undefined],
        ['a function', () => 1],
        ['a circular structure', circular],
        ['a BigInt', 10n],
        ['a nested BigInt', { n: 10n }],
        ['a symbol', Symbol('x')],
        ['a value over maxValueBytes', 'x'.repeat(101)],
        ['a value over maxValueBytes in UTF-8 (40 chars, 122 bytes)', '€'.repeat(40)],
      ]
      for (const [what, v] of badValues) await rejectsCode(cache.set('k', v), I, what)
      assert.equal(await cache.set('k', 'x'.repeat(98)), true, 'exactly maxValueBytes (100 with the quotes) is fine')
      for (const ttlMs of [0, -1, Number.NaN, Infinity, '1000', 366 * 24 * 3600 * 1000])
        await rejectsCode(cache.set('k', 1, { ttlMs: /** @type {any} */ (ttlMs) }), I, `ttlMs ${String(ttlMs)}`)
      await rejectsCode(cache.set('k', 1, /** @type {any} */ (5)), I, 'options not an object')
      await rejectsCode(cache.getMany(/** @type {any} */ ('abc')), I, 'getMany of a string')
      await rejectsCode(cache.deleteMany(/** @type {any} */ (null)), I, 'deleteMany of null')
      await rejectsCode(cache.setMany(/** @type {any} */ ({})), I, 'setMany of an object')
      await rejectsCode(cache.setMany([['only-key']]), I, 'setMany entry without a value')
      await rejectsCode(
        cache.setMany([
          ['fine', 1],
          ['bad', undefined],
        ]),
        I,
        'setMany with one bad entry',
      )
      const weird = new Cache({ client, prefix, serializer: { stringify: () => 5, parse: JSON.parse } })
      await rejectsCode(weird.set('k', 1), I, 'a serializer that returns no string')
      assert.equal(await cache.get('fine'), undefined, 'setMany wrote nothing')
      assert.equal(await scriptCalls(server), 2, 'only the two good calls reached Redis')
      assert.equal(cache.stats().errors, 0, 'bad input is not a Redis error')
    })
  })

  test('bad options: ERR_REDIS_GUARD_CONFIG at construction', async () => {
    const client = new RedisClient({ url: 'redis://127.0.0.1:1', logger: false })
    try {
      for (const options of [
        { client, prefix: 5 },
        { client, ttlMs: 0 },
        { client, ttlMs: 'x' },
        { client, onUnavailable: 'allow' },
        { client, serializer: {} },
        { client, maxValueBytes: 0 },
        { client, maxValueBytes: 1.5 },
        { client, fallbackMaxKeys: -1 },
        { client, colour: 'red' },
        { client: {} },
      ])
        assert.throws(
          () => new Cache(/** @type {any} */ (options)),
          (e) => e instanceof RedisGuardError && e.code === codes.CONFIG,
          JSON.stringify(Object.keys(options)),
        )
      assert.throws(() => new Cache(/** @type {any} */ (5)), { code: codes.CONFIG })
    } finally {
      await client.close()
    }
  })
})

describe('Redis down', () => {
  /** A server, a client and a cache with `opts`; the server is killed after `before` ran. */
  async function outage(opts, fn) {
    const server = await startRedis()
    const client = new RedisClient({ url: server.url, logger: false })
    try {
      assert.equal(await client.ready(5000), true)
      const cache = new Cache({ client, prefix: uniquePrefix('cache-down'), ...opts })
      await cache.set('before', 'from redis')
      assert.equal(await cache.get('before'), 'from redis')
      await server.kill()
      return await fn({ server, client, cache })
    } finally {
      await client.close()
      await server.stop()
    }
  }

  /** Every call answers within the deadline (and slack); returns the results. */
  async function quick(calls) {
    const out = []
    for (const [what, f] of calls) {
      const r = await timed(f)
      assert.ok(r.ms <= DEADLINE_MS + SLACK_MS, `${what} took ${r.ms.toFixed(1)} ms`)
      out.push(r)
    }
    return out
  }

  test("onUnavailable 'memory' (default): the memory tier answers within the deadline, bounded; emptied after recovery", async () => {
    await outage({ fallbackMaxKeys: 10 }, async ({ server, client, cache }) => {
      const [first, set, get, has, del, after] = await quick([
        ['the first get (opens the circuit)', () => cache.get('before')],
        ['set', () => cache.set('k', { in: 'memory' })],
        ['get', () => cache.get('k')],
        ['has', () => cache.has('k')],
        ['delete', () => cache.delete('k')],
        ['get after delete', () => cache.get('k')],
      ])
      assert.equal(first.value, undefined, 'what only Redis held is a miss')
      assert.equal(set.value, true)
      assert.deepEqual(get.value, { in: 'memory' })
      assert.equal(has.value, true)
      assert.equal(del.value, true)
      assert.equal(after.value, undefined)
      const ttl = await quick([['set with a short TTL', () => cache.set('short', 1, { ttlMs: 50 })]])
      assert.equal(ttl[0].value, true)
      await sleep(100)
      assert.equal(await cache.get('short'), undefined, 'the memory tier expires entries')
      // Batches are answered by the memory tier too, and it stays within fallbackMaxKeys.
      const entries = Array.from({ length: 50 }, (_, i) => [`m${i}`, i])
      assert.equal(await cache.setMany(/** @type {any} */ (entries)), 50)
      assert.ok(cache.fallbackSize() <= 10, `fallbackSize ${cache.fallbackSize()}`)
      assert.deepEqual(await cache.getMany(['m0', 'm49']), [undefined, 49], 'the oldest were evicted')
      const s = cache.stats()
      assert.ok(s.fallbacks >= 50, `fallbacks ${s.fallbacks}`)
      assert.equal(s.errors, 0)
      assert.ok(client.stats().fallbacks >= 50)
      // Back: Redis answers again, and the memory tier is emptied (a later outage never serves it).
      await server.restart()
      await waitFor(() => client.isAvailable(), { timeout: 15_000, interval: 25, what: 'client to recover' })
      assert.equal(await cache.get('m49'), undefined, 'from Redis (a fresh server)')
      assert.equal(cache.fallbackSize(), 0, 'memory tier emptied')
      await cache.set('back', 1)
      assert.equal(await server.cli('GET', `${cache.prefix}back`), '1')
    })
  })

  test("onUnavailable 'bypass': misses, writes dropped, within the deadline", async () => {
    await outage({ onUnavailable: 'bypass' }, async ({ cache }) => {
      const r = await quick([
        ['get', () => cache.get('before')],
        ['set', () => cache.set('k', 1)],
        ['get', () => cache.get('k')],
        ['has', () => cache.has('k')],
        ['delete', () => cache.delete('before')],
        ['getMany', () => cache.getMany(['a', 'b'])],
        ['setMany', () => cache.setMany([['a', 1]])],
        ['deleteMany', () => cache.deleteMany(['a'])],
      ])
      assert.deepEqual(
        r.map((x) => x.value),
        [undefined, false, undefined, false, false, [undefined, undefined], 0, 0],
      )
      assert.equal(cache.fallbackSize(), 0, 'nothing kept')
      assert.equal(cache.stats().sets, 1, 'only the set before the outage')
      await rejectsCode(cache.clear(), codes.UNAVAILABLE, 'clear while Redis is down')
      await rejectsCode(cache.deletePattern('*'), codes.UNAVAILABLE, 'deletePattern while Redis is down')
    })
  })

  test("onUnavailable 'deny': ERR_REDIS_GUARD_UNAVAILABLE (or TIMEOUT for the call that met the deadline)", async () => {
    await outage({ onUnavailable: 'deny' }, async ({ cache }) => {
      const first = await timed(() => cache.get('before'))
      assert.ok(first.ms <= DEADLINE_MS + SLACK_MS, `first call took ${first.ms.toFixed(1)} ms`)
      assert.ok([codes.UNAVAILABLE, codes.TIMEOUT].includes(first.error?.code), `first: ${first.error}`)
      for (const [what, f] of [
        ['get', () => cache.get('k')],
        ['set', () => cache.set('k', 1)],
        ['has', () => cache.has('k')],
        ['delete', () => cache.delete('k')],
        ['getMany', () => cache.getMany(['k'])],
      ]) {
        const r = await timed(f)
        assert.ok(r.ms < 50, `${what} with the circuit open took ${r.ms.toFixed(1)} ms`)
        assert.equal(r.error?.code, codes.UNAVAILABLE, `${what}: ${r.error}`)
      }
      assert.ok(cache.stats().errors >= 6)
    })
  })

  test("onUnavailable 'deny' with the server paused: the hung call is ERR_REDIS_GUARD_TIMEOUT", async () => {
    const server = await startRedis()
    const client = new RedisClient({ url: server.url, logger: false })
    try {
      assert.equal(await client.ready(5000), true)
      const cache = new Cache({ client, prefix: uniquePrefix('cache-pause'), onUnavailable: 'deny' })
      await cache.set('k', 1)
      server.pause()
      const r = await timed(() => cache.get('k'))
      assert.ok(r.ms <= DEADLINE_MS + SLACK_MS, `took ${r.ms.toFixed(1)} ms`)
      assert.equal(r.error?.code, codes.TIMEOUT, String(r.error))
      server.resume()
      await waitFor(() => client.isAvailable(), { timeout: 15_000, interval: 25, what: 'client to recover' })
      assert.equal(await cache.get('k'), 1)
    } finally {
      server.resume()
      await client.close()
      await server.stop()
    }
  })
})

test('a closed client: ERR_REDIS_GUARD_CLOSED in every policy (the memory tier does not answer for it)', async () => {
  await withServer(async ({ client }) => {
    const caches = ['memory', 'bypass', 'deny'].map(
      (onUnavailable) => new Cache({ client, prefix: uniquePrefix('cache-closed'), onUnavailable }),
    )
    for (const c of caches) await c.set('k', 1)
    await client.close()
    for (const c of caches) {
      await rejectsCode(c.get('k'), codes.CLOSED, `${c.onUnavailable}: get`)
      await rejectsCode(c.set('k', 2), codes.CLOSED, `${c.onUnavailable}: set`)
    }
  })
})

describe('clear', () => {
  test('with an ACL user denied KEYS: SCAN + UNLINK, only the prefix, paged', async () => {
    const users = [{ name: 'cacher', password: 'pw', rules: 'on ~cache:* +@all -keys' }]
    await withServer(
      async ({ server, client, io }) => {
        const asUser = new Redis(`redis://cacher:pw@127.0.0.1:${server.port}`, { maxRetriesPerRequest: 1 })
        try {
          await assert.rejects(asUser.keys('cache:*'), /NOPERM/, 'the user may not run KEYS')
        } finally {
          asUser.disconnect()
        }
        const cache = new Cache({ client })
        const N = 2500
        const entries = Array.from({ length: N }, (_, i) => [`item:${i}`, { i }])
        assert.equal(await cache.setMany(/** @type {any} */ (entries)), N)
        await io.set('other:1', 'v') // outside the user's keys and the prefix
        await io.set('xcache:1', 'v') // contains the prefix, not at the start
        assert.equal(await io.dbsize(), N + 2)
        await server.cli('CONFIG', 'RESETSTAT')
        assert.equal(await cache.clear(), N)
        assert.equal(await io.dbsize(), 2, 'exactly the prefix keys are gone')
        assert.equal(await io.get('other:1'), 'v')
        assert.equal(await io.get('xcache:1'), 'v')
        assert.equal(await cmdCalls(server, 'keys'), 0, 'KEYS never called')
        assert.ok((await cmdCalls(server, 'scan')) >= 2, 'SCAN paged')
        assert.ok((await cmdCalls(server, 'unlink')) >= 1)
        assert.equal(await cache.clear(), 0, 'a second clear finds nothing')
        assert.equal(await cache.set('again', 1), true, 'the cache keeps working')
        assert.equal(await cache.get('again'), 1)
      },
      { server: { users }, url: (s) => `redis://cacher:pw@127.0.0.1:${s.port}` },
    )
  })

  test('deletePattern: SCAN + UNLINK of the matching keys only; the prefix matched literally; KEYS denied and never called', async () => {
    const users = [{ name: 'cacher', password: 'pw', rules: 'on ~* +@all -keys' }]
    await withServer(
      async ({ server, client, io }) => {
        const cache = new Cache({ client })
        const N = 1500
        await cache.setMany(/** @type {any} */ (Array.from({ length: N }, (_, i) => [`user:${i}`, i])))
        await cache.setMany([
          ['team:1', 1],
          ['user', 'no colon'],
          ['xuser:1', 1],
        ])
        await server.cli('CONFIG', 'RESETSTAT')
        assert.equal(await cache.deletePattern('user:*'), N)
        assert.equal(await cmdCalls(server, 'keys'), 0, 'KEYS never called')
        assert.ok((await cmdCalls(server, 'scan')) >= 2, 'SCAN paged')
        assert.deepEqual(await cache.getMany(['user:1', 'team:1', 'user', 'xuser:1']), [undefined, 1, 'no colon', 1])
        assert.equal(await cache.deletePattern('user:*'), 0, 'nothing left to match')
        assert.equal(await cache.deletePattern('?user:[0-9]'), 1, '? and [...] work as in SCAN MATCH')
        assert.equal(await io.exists('cache:xuser:1'), 0)
        // Glob characters of the prefix are literal: `c[x]*:` does not match `cx...`.
        const odd = new Cache({ client, prefix: 'c[x]*:' })
        await odd.set('a', 1)
        await io.set('cxyz:a', 'v')
        assert.equal(await odd.deletePattern('*'), 1)
        assert.equal(await io.get('cxyz:a'), 'v', 'a key the unescaped prefix would match is kept')
        // The seed helper, on the default client.
        const savedUrl = process.env.REDIS_URL
        process.env.REDIS_URL = `redis://cacher:pw@127.0.0.1:${server.port}`
        try {
          await guard.closeDefaultClient()
          await io.setex('cache:session:1', 60, '{}')
          await io.setex('cache:session:2', 60, '{}')
          assert.equal(await guard.cacheDeletePattern('session:*'), 2)
          assert.equal(esm.cacheDeletePattern, guard.cacheDeletePattern)
        } finally {
          await guard.closeDefaultClient()
          if (savedUrl === undefined) delete process.env.REDIS_URL
          else process.env.REDIS_URL = savedUrl
        }
        for (const bad of ['', 5, null, undefined])
          await rejectsCode(cache.deletePattern(/** @type {any} */ (bad)), codes.INVALID_ARG, `pattern ${String(bad)}`)
        await rejectsCode(new Cache({ client, prefix: '' }).deletePattern('*'), codes.INVALID_ARG, 'empty prefix')
        assert.equal(await io.get('cache:team:1'), '1', 'refused calls deleted nothing')
      },
      { server: { users }, url: (s) => `redis://cacher:pw@127.0.0.1:${s.port}` },
    )
  })

  test('an empty prefix is refused (it would clear the whole database)', async () => {
    await withServer(async ({ client, io }) => {
      await io.set('precious', 'v')
      const cache = new Cache({ client, prefix: '' })
      await cache.set('k', 1)
      assert.equal(await io.get('k'), '1', 'an empty prefix works for get/set')
      await rejectsCode(cache.clear(), codes.INVALID_ARG, 'clear with an empty prefix')
      assert.equal(await io.dbsize(), 2, 'nothing deleted')
    })
  })
})
