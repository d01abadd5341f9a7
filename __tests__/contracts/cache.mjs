/**
 * The query-cache contract, on whatever deployment `env` is (see ./index.mjs): round trips of
 * get / set / has / delete and their batch forms (keys spread over every slot), entries in Redis
 * as the plain JSON text at `${prefix}${key}` with a TTL (read and written by hand, as
 * `SETEX cache:KEY ttl JSON` helpers do), and `clear()` / `deletePattern()` on every primary.
 *
 * @module __tests__/contracts/cache
 */

import assert from 'node:assert/strict'

import { Cache } from '../../index.mjs'
import { uniquePrefix } from '../helpers/utils.mjs'

/** GET through the deployment's redis-cli: the value, or null for no key. */
async function get(env, key) {
  const v = await env.cli('GET', key)
  return v === '' ? null : v
}

/**
 * @param {{ test: typeof import('node:test').test, describe: typeof import('node:test').describe }} t
 * @param {import('./index.mjs').ContractEnv} env
 */
export default function cacheContract({ test, describe }, env) {
  describe('cache', () => {
    test('set / get / has / delete: the plain JSON text at ${prefix}${key} with its TTL; misses are undefined', async () => {
      const prefix = uniquePrefix('cache-rt')
      const cache = new Cache({ client: env.makeClient(), prefix })
      const user = { id: 42, name: 'Ada', tags: ['a', 'b'], nested: { n: null, ok: true } }
      assert.equal(await cache.set('user:42', user, { ttlMs: 60_000 }), true)
      assert.deepEqual(await cache.get('user:42'), user)
      assert.equal(await cache.has('user:42'), true)
      assert.equal(await get(env, `${prefix}user:42`), JSON.stringify(user))
      assert.equal(await env.cli('TYPE', `${prefix}user:42`), 'string')
      const pttl = Number(await env.cli('PTTL', `${prefix}user:42`))
      assert.ok(pttl > 50_000 && pttl <= 60_000, `PTTL ${pttl}`)
      assert.equal(await cache.get('never'), undefined)
      assert.equal(await cache.has('never'), false)
      assert.equal(await cache.delete('user:42'), true)
      assert.equal(await cache.delete('user:42'), false)
      assert.equal(await env.cli('EXISTS', `${prefix}user:42`), '0')
      assert.deepEqual(cache.stats(), {
        ...{ hits: 1, misses: 1, sets: 1, deletes: 2, errors: 0, fallbacks: 0 },
        ...{ staleHits: 0, l1Hits: 0, factoryCalls: 0, timeouts: 0 },
      })
    })

    test('reads what a hand-written helper wrote (SETEX key 60 JSON), and they read ours', async () => {
      const prefix = uniquePrefix('cache-wire')
      const cache = new Cache({ client: env.makeClient(), prefix })
      await env.cli('SETEX', `${prefix}k`, '60', '{"a":1}')
      assert.deepEqual(await cache.get('k'), { a: 1 })
      await cache.set('mine', [1, 'two'])
      assert.deepEqual(JSON.parse(await get(env, `${prefix}mine`)), [1, 'two'])
      const ttl = Number(await env.cli('TTL', `${prefix}mine`))
      assert.ok(ttl > 3590 && ttl <= 3600, `the default TTL is one hour: ${ttl}`)
    })

    test('getMany / setMany / deleteMany over 60 keys (every slot group of a cluster), in order', async () => {
      const prefix = uniquePrefix('cache-many')
      const cache = new Cache({ client: env.makeClient(), prefix })
      const keys = Array.from({ length: 60 }, (_, i) => `item:${i}`)
      assert.equal(await cache.setMany(keys.map((k, i) => [k, { i }])), keys.length)
      const all = await cache.getMany([...keys, 'missing'])
      assert.deepEqual(all, [...keys.map((_, i) => ({ i })), undefined])
      assert.equal((await env.scan(`${prefix}*`)).length, keys.length)
      assert.equal(await cache.deleteMany(keys.slice(0, 30)), 30)
      const left = await cache.getMany(keys)
      assert.deepEqual(
        left.map((v) => v === undefined),
        keys.map((_, i) => i < 30),
      )
    })

    test('clear: every key of the prefix gone from every primary, another prefix untouched', async () => {
      const client = env.makeClient()
      const prefix = uniquePrefix('cache-clear')
      const cache = new Cache({ client, prefix })
      const other = new Cache({ client, prefix: uniquePrefix('cache-clear-other') })
      const keys = Array.from({ length: 40 }, (_, i) => `k:${i}`)
      await cache.setMany(keys.map((k) => [k, k]))
      await other.set('keep', 1)
      for (const p of await env.primaries()) {
        const held = (await p.cli('--scan', '--pattern', `${prefix}*`)).split('\n').filter(Boolean)
        assert.ok(held.length > 0, `primary ${p.port} holds keys of the prefix`)
      }
      assert.equal(await cache.clear(), keys.length)
      assert.deepEqual(await env.scan(`${prefix}*`), [], 'no key of the prefix left on any primary')
      assert.equal(await cache.get('k:1'), undefined)
      assert.equal(await other.get('keep'), 1, 'another prefix untouched')
    })

    test('deletePattern: the matching keys gone from every primary, the others kept', async () => {
      const prefix = uniquePrefix('cache-pattern')
      const cache = new Cache({ client: env.makeClient(), prefix })
      const users = Array.from({ length: 40 }, (_, i) => [`user:${i}`, i])
      await cache.setMany([...users, ['team:1', 't'], ['team:2', 't']])
      assert.equal(await cache.deletePattern('user:*'), users.length)
      assert.deepEqual(await env.scan(`${prefix}user:*`), [], 'no matching key left on any primary')
      assert.deepEqual(await cache.getMany(['team:1', 'team:2', 'user:3']), ['t', 't', undefined])
    })

    test('getOrSet: one factory for 200 concurrent calls per key over 20 keys (every slot group); then hits', async () => {
      const cache = new Cache({ client: env.makeClient(), prefix: uniquePrefix('cache-gos') })
      const runs = new Map()
      const keys = Array.from({ length: 20 }, (_, i) => `q:${i}`)
      const factory = (k) => async () => {
        runs.set(k, (runs.get(k) || 0) + 1)
        await new Promise((r) => setTimeout(r, 20))
        return { k }
      }
      const all = await Promise.all(
        keys.flatMap((k) => Array.from({ length: 10 }, () => cache.getOrSet(k, factory(k)))),
      )
      assert.ok(all.every((v, i) => v.k === keys[Math.floor(i / 10)]))
      assert.deepEqual(
        [...runs.values()],
        keys.map(() => 1),
      )
      assert.deepEqual(
        await cache.getMany(keys),
        keys.map((k) => ({ k })),
      )
      assert.equal(cache.stats().factoryCalls, keys.length)
    })

    test('tags over every slot group: invalidateTags hides exactly the tagged entries, at once', async () => {
      const prefix = uniquePrefix('cache-tags')
      const cache = new Cache({ client: env.makeClient(), prefix })
      const keys = Array.from({ length: 30 }, (_, i) => `e:${i}`)
      await Promise.all(keys.map((k, i) => cache.set(k, i, { tags: [i % 2 ? 'odd' : 'even', 'all'] })))
      assert.deepEqual(
        await cache.getMany(keys),
        keys.map((_, i) => i),
      )
      assert.equal(await cache.invalidateTags(['odd']), 1)
      assert.deepEqual(
        await cache.getMany(keys),
        keys.map((_, i) => (i % 2 ? undefined : i)),
      )
      await cache.invalidateTags(['all'])
      assert.deepEqual(
        await cache.getMany(keys),
        keys.map(() => undefined),
      )
    })

    test('grace: an expired entry is stale for getOrSet only, served when the factory fails', async () => {
      const cache = new Cache({ client: env.makeClient(), prefix: uniquePrefix('cache-grace') })
      await cache.set('k', 'old', { ttlMs: 50, graceMs: 60_000 })
      await new Promise((r) => setTimeout(r, 120))
      assert.equal(await cache.get('k'), undefined)
      assert.equal(await cache.getOrSet('k', () => Promise.reject(new Error('x'))), 'old')
    })

    test('L1 in two caches on two clients: a write in one reaches the other through the channel', async () => {
      const prefix = uniquePrefix('cache-l1')
      const a = new Cache({ client: env.makeClient(), prefix, l1: true })
      const b = new Cache({ client: env.makeClient(), prefix, l1: true })
      try {
        for (let i = 0; i < 100 && !(a.l1Ready() && b.l1Ready()); i++) await new Promise((r) => setTimeout(r, 50))
        assert.ok(a.l1Ready() && b.l1Ready(), 'both subscribed')
        await a.set('k', 1)
        // A read that overlaps the news of a change to its key does not fill the L1 (in a cluster
        // the news may come after the read began): read until one fills it.
        for (let i = 0; i < 50 && b.stats().l1Hits === 0; i++) assert.equal(await b.get('k'), 1)
        assert.equal(b.stats().l1Hits, 1)
        await a.set('k', 2)
        let seen
        for (let i = 0; i < 100 && (seen = await b.get('k')) !== 2; i++) await new Promise((r) => setTimeout(r, 20))
        assert.equal(seen, 2, 'the change reached the other L1')
      } finally {
        a.close()
        b.close()
      }
    })
  })
}
