/**
 * The RedisStore (express-rate-limit store) contract, on whatever deployment `env` is (see
 * ./index.mjs): exact counts for increment / get / decrement / resetKey / resetAll, also under
 * concurrency from one and from two clients, keys in Redis in rate-limit-redis's format, and
 * every result from Redis (`source: 'redis'`).
 *
 * @module __tests__/contracts/store
 */

import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'

import { RedisStore } from '../../index.mjs'
import { keySlot } from '../helpers/topology.mjs'
import { uniquePrefix } from '../helpers/utils.mjs'

const WINDOW_MS = 60_000
/** What a resetTime may be off by (it is computed on this process's clock from the PTTL). */
const CLOCK_SLACK_MS = 1000

/**
 * The Redis key of rate-limit key `key` (README, "Migrating from rate-limit-redis"):
 * `${prefix}${key}`, except that a key with braces gets a tag of its own in front,
 * `${prefix}{<8 hex of sha1(key)>}${key}`. (Keys over 1024 bytes, stored hashed, are not used here.)
 */
export function storeKey(prefix, key) {
  if (!/[{}]/.test(key)) return prefix + key
  return `${prefix}{${createHash('sha1').update(key).digest('hex').slice(0, 8)}}${key}`
}

/** A store on `client`, initialised as express-rate-limit does. */
function makeStore(client, prefix) {
  const store = new RedisStore({ client, prefix })
  store.init({ windowMs: WINDOW_MS, limit: 1_000_000 })
  return store
}

/** `r` is an increment answered by Redis, in a window that started at or after `t0`. */
function assertFromRedis(r, t0, what) {
  assert.deepEqual(Object.keys(r).sort(), ['resetTime', 'source', 'totalHits'], `${what}: the result's fields`)
  assert.equal(r.source, 'redis', `${what}: counted by Redis`)
  assert.ok(Number.isInteger(r.totalHits) && r.totalHits >= 1, `${what}: totalHits ${r.totalHits}`)
  assertResetTime(r.resetTime, t0, what)
}

/** A Date in the window that started at or after `t0`. */
function assertResetTime(resetTime, t0, what) {
  assert.ok(resetTime instanceof Date && !Number.isNaN(resetTime.getTime()), `${what}: resetTime is a Date`)
  const at = resetTime.getTime()
  assert.ok(at > Date.now(), `${what}: resetTime in the future`)
  assert.ok(
    at >= t0 + WINDOW_MS - CLOCK_SLACK_MS && at <= Date.now() + WINDOW_MS + CLOCK_SLACK_MS,
    `${what}: resetTime ${at - t0} ms after the window started (window ${WINDOW_MS})`,
  )
}

/** The Redis value and PTTL of `key` of `prefix`, read behind the store's back. */
async function inRedis(env, prefix, key) {
  const k = storeKey(prefix, key)
  const raw = await env.cli('GET', k)
  return { value: raw === '' ? null : raw, pttl: Number(await env.cli('PTTL', k)) }
}

/**
 * @param {{ test: typeof import('node:test').test, describe: typeof import('node:test').describe }} t
 * @param {import('./index.mjs').ContractEnv} env
 */
export default function storeContract({ test, describe }, env) {
  describe('store', () => {
    test('increment: 1, 2, 3 from Redis with a resetTime in the window; get() agrees; an unknown key is undefined', async () => {
      const client = env.makeClient()
      const store = makeStore(client, uniquePrefix('store-inc'))
      const t0 = Date.now()
      for (let n = 1; n <= 3; n++) {
        const r = await store.increment('a')
        assertFromRedis(r, t0, `increment ${n}`)
        assert.equal(r.totalHits, n)
      }
      const g = await store.get('a')
      assert.equal(g.totalHits, 3)
      assertResetTime(g.resetTime, t0, 'get')
      assert.equal(await store.get('never-seen'), undefined)
    })

    test("keys in Redis in rate-limit-redis's format: ${prefix}${key} holds the count, PTTL within the window; braces get a tag", async () => {
      const client = env.makeClient()
      const prefix = uniquePrefix('store-keys')
      const store = makeStore(client, prefix)
      for (let i = 0; i < 3; i++) await store.increment('user:1')
      const plain = await inRedis(env, prefix, 'user:1')
      assert.equal(storeKey(prefix, 'user:1'), `${prefix}user:1`)
      assert.equal(plain.value, '3', `GET ${prefix}user:1`)
      assert.ok(plain.pttl > 0 && plain.pttl <= WINDOW_MS, `PTTL ${plain.pttl}`)
      assert.equal(await env.cli('TYPE', `${prefix}user:1`), 'string')

      // A key that brings its own hash tag gets a tag derived from the whole key.
      const braced = ['{x}a', '{x}b']
      for (const k of braced) assert.equal((await store.increment(k)).totalHits, 1)
      for (const k of braced)
        assert.equal((await inRedis(env, prefix, k)).value, '1', `stored as ${storeKey(prefix, k)}`)
      if (env.topology === 'cluster') {
        const [sa, sb] = await Promise.all(braced.map((k) => env.keyslot(storeKey(prefix, k))))
        assert.notEqual(sa, sb, 'two keys with the same user tag {x} land in different slots')
        assert.equal(sa, keySlot(storeKey(prefix, braced[0])), 'the JS slot function agrees with CLUSTER KEYSLOT')
        assert.equal(
          await env.keyslot(`${prefix}{x}a`),
          await env.keyslot(`${prefix}{x}b`),
          '(without the derived tag they would share one)',
        )
      }
    })

    test('decrement: one less in Redis and in get(); never below zero; the TTL kept; a missing key is not created', async () => {
      const client = env.makeClient()
      const prefix = uniquePrefix('store-decr')
      const store = makeStore(client, prefix)
      await store.increment('a')
      await store.increment('a')
      await store.decrement('a')
      assert.equal((await store.get('a')).totalHits, 1)
      assert.equal((await inRedis(env, prefix, 'a')).value, '1')
      for (let i = 0; i < 3; i++) await store.decrement('a')
      const zero = await inRedis(env, prefix, 'a')
      assert.equal(zero.value, '0', 'stops at zero')
      assert.ok(zero.pttl > 0 && zero.pttl <= WINDOW_MS, `TTL kept (${zero.pttl})`)
      assert.equal((await store.increment('a')).totalHits, 1, 'counts from zero again')
      await store.decrement('missing')
      assert.equal(await env.cli('EXISTS', `${prefix}missing`), '0')
    })

    test('resetKey: the key is gone from Redis, other keys untouched, the next hit starts at 1', async () => {
      const client = env.makeClient()
      const prefix = uniquePrefix('store-rk')
      const store = makeStore(client, prefix)
      await store.increment('a')
      await store.increment('a')
      await store.increment('b')
      await store.resetKey('a')
      assert.equal(await env.cli('EXISTS', `${prefix}a`), '0')
      assert.equal(await store.get('a'), undefined)
      assert.equal((await inRedis(env, prefix, 'b')).value, '1', 'other keys untouched')
      assert.equal((await store.increment('a')).totalHits, 1)
      await store.resetKey('never-existed') // no error
    })

    test('resetAll: every key of the prefix gone from every primary, another prefix untouched', async () => {
      const client = env.makeClient()
      const prefix = uniquePrefix('store-all')
      const store = makeStore(client, prefix)
      const other = makeStore(client, uniquePrefix('store-all-other'))
      const keys = Array.from({ length: 40 }, (_, i) => `user:${i}`)
      await Promise.all(keys.map((k) => store.increment(k)))
      await other.increment('keep')
      const primaries = await env.primaries()
      for (const p of primaries) {
        const held = (await p.cli('--scan', '--pattern', `${prefix}*`)).split('\n').filter(Boolean)
        assert.ok(held.length > 0, `primary ${p.port} holds keys of the prefix (40 keys spread over the slots)`)
      }
      assert.equal((await env.scan(`${prefix}*`)).length, keys.length)
      await store.resetAll()
      assert.deepEqual(await env.scan(`${prefix}*`), [], 'no key of the prefix left on any primary')
      assert.equal(await store.get('user:2'), undefined)
      assert.equal((await other.get('keep')).totalHits, 1, 'another prefix untouched')
      assert.equal((await store.increment('user:2')).totalHits, 1, 'counting starts again')
    })

    test('concurrent increments from one client: 40 keys x 5 and one key x 200 in one turn, every count handed out once', async () => {
      const client = env.makeClient()
      const prefix = uniquePrefix('store-conc')
      const store = makeStore(client, prefix)
      const t0 = Date.now()
      const keys = Array.from({ length: 40 }, (_, i) => `user:${i}`)
      const calls = []
      for (let round = 0; round < 5; round++)
        for (const k of keys) calls.push(store.increment(k).then((r) => ({ k, r })))
      for (let i = 0; i < 200; i++) calls.push(store.increment('hot').then((r) => ({ k: 'hot', r })))
      const byKey = new Map([...keys, 'hot'].map((k) => [k, []]))
      for (const { k, r } of await Promise.all(calls)) {
        assertFromRedis(r, t0, `increment of ${k}`)
        byKey.get(k).push(r.totalHits)
      }
      const upTo = (n) => Array.from({ length: n }, (_, i) => i + 1)
      for (const k of keys) {
        assert.deepEqual(
          byKey.get(k).sort((a, b) => a - b),
          upTo(5),
          `hits of ${k}`,
        )
        const { value, pttl } = await inRedis(env, prefix, k)
        assert.equal(value, '5', `Redis counter of ${k}`)
        assert.ok(pttl > 0 && pttl <= WINDOW_MS, `PTTL of ${k}: ${pttl}`)
      }
      assert.deepEqual(
        byKey.get('hot').sort((a, b) => a - b),
        upTo(200),
        'hits of the hot key: 1..200, each once',
      )
      assert.equal((await inRedis(env, prefix, 'hot')).value, '200')
    })

    test('concurrent increments from two clients on one key: 2 x 150 -> 1..300 each once, 300 in Redis', async () => {
      const prefix = uniquePrefix('store-two')
      const stores = [makeStore(env.makeClient(), prefix), makeStore(env.makeClient(), prefix)]
      const t0 = Date.now()
      const calls = []
      for (let i = 0; i < 150; i++) for (const s of stores) calls.push(s.increment('shared'))
      const results = await Promise.all(calls)
      for (const r of results) assertFromRedis(r, t0, 'increment')
      const hits = results.map((r) => r.totalHits).sort((a, b) => a - b)
      assert.deepEqual(
        hits,
        Array.from({ length: 300 }, (_, i) => i + 1),
        'every count handed out once across the two clients',
      )
      assert.equal((await inRedis(env, prefix, 'shared')).value, '300')
      for (const s of stores) assert.equal((await s.get('shared')).totalHits, 300)
    })
  })
}
