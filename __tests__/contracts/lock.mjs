/**
 * The lock contract, on whatever deployment `env` is (see ./index.mjs): leases
 * (`client.lock()`: token, fence, extend, release, a second holder refused), `withLock`, the
 * seed helpers (`acquireLock` / `extendLock` / `releaseLock`), and the keys in Redis:
 * `lock:KEY` holding the token, and the fence counter in the same cluster slot.
 *
 * @module __tests__/contracts/lock
 */

import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'

import { uniquePrefix } from '../helpers/utils.mjs'

/**
 * The fence counter of lock key `lk` (README, "Locks"): `lock:{lock:KEY}:fence`, in the slot of
 * `lock:KEY`; a key that carries its own hash tag keeps it: `lock:KEY:fence`.
 */
export function fenceKeyOf(lk) {
  return /\{[^}]+\}/.test(lk) ? `${lk}:fence` : `lock:{${lk}}:fence`
}

/** Lock keys of both kinds: a plain one, and one that carries its own cluster hash tag. */
const KEY_KINDS = [
  ['a plain key', 'job'],
  ['a key with its own hash tag', 'job{7}'],
]

/** GET through the deployment's redis-cli: the value, or null for no key. */
async function get(env, key) {
  const v = await env.cli('GET', key)
  return v === '' ? null : v
}

/** `n` connected clients of the deployment. */
async function clients(env, n) {
  const all = Array.from({ length: n }, () => env.makeClient())
  for (const c of all) assert.equal(await c.ready(5000), true, 'client connects')
  return all
}

/**
 * @param {{ test: typeof import('node:test').test, describe: typeof import('node:test').describe }} t
 * @param {import('./index.mjs').ContractEnv} env
 */
export default function lockContract({ test, describe }, env) {
  describe('locks', () => {
    for (const [what, suffix] of KEY_KINDS) {
      test(`lock() on ${what}: a lease from Redis; lock:KEY holds its token with the TTL; the fence counter next to it`, async () => {
        const [a] = await clients(env, 1)
        const key = `${uniquePrefix('lock-grant')}${suffix}`
        const lk = `lock:${key}`
        const t0 = Date.now()
        const lease = await a.lock(key, { ttlMs: 5000 })
        assert.ok(lease, `acquired ${key}`)
        assert.equal(lease.key, key)
        assert.equal(lease.source, 'redis')
        assert.ok(typeof lease.token === 'string' && lease.token.length > 0, 'a token')
        assert.ok(Number.isSafeInteger(lease.fence) && lease.fence >= 1, `fence ${lease.fence}`)
        assert.equal(lease.held, true)
        assert.equal(lease.signal.aborted, false)
        assert.ok(
          lease.expiresAt >= t0 + 5000 - 50 && lease.expiresAt <= Date.now() + 5000 + 50,
          `expiresAt ${lease.expiresAt - t0} ms ahead`,
        )

        assert.equal(await get(env, lk), lease.token, 'SET lock:KEY <token>')
        const pttl = Number(await env.cli('PTTL', lk))
        assert.ok(pttl > 0 && pttl <= 5000, `PTTL ${pttl}`)
        const fk = fenceKeyOf(lk)
        assert.equal(Number(await get(env, fk)), lease.fence, `fence counter ${fk}`)
        assert.ok(Number(await env.cli('PTTL', fk)) > 0, 'the fence counter has a TTL')
        if (env.topology === 'cluster') {
          assert.equal(await env.keyslot(fk), await env.keyslot(lk), `fence key ${fk} in the slot of ${lk}`)
        }
        assert.equal(await lease.release(), true)
      })

      test(`a second holder of ${what} is refused (another client, and the same one); after release the next grant has a larger fence`, async () => {
        const [a, b] = await clients(env, 2)
        const key = `${uniquePrefix('lock-excl')}${suffix}`
        const l1 = await a.lock(key, { ttlMs: 5000 })
        assert.ok(l1)
        assert.equal(await b.lock(key, { ttlMs: 5000, waitMs: 0 }), null, 'held elsewhere')
        assert.equal(await a.lock(key, { ttlMs: 5000, waitMs: 0 }), null, 'not re-entrant')
        assert.equal(await b.acquireLock(key, 5), false, 'the helpers see the lease too')
        assert.equal(await get(env, `lock:${key}`), l1.token, 'the refused attempts left the lock alone')
        assert.equal(await l1.release(), true)
        const l2 = await b.lock(key, { ttlMs: 5000, waitMs: 1000 })
        assert.ok(l2, 'granted once released')
        assert.ok(l2.fence > l1.fence, `the next grant has a larger fence (${l1.fence} -> ${l2.fence})`)
        assert.notEqual(l2.token, l1.token)
        assert.equal(await a.lock(key, { ttlMs: 5000, waitMs: 0 }), null)
        assert.equal(await l2.release(), true)
      })

      test(`extend() on ${what}: true, the TTL and expiresAt move; release(): true, lock:KEY gone; then release() false, extend() LOCK_NOT_HELD`, async () => {
        const [a] = await clients(env, 1)
        const key = `${uniquePrefix('lock-ext')}${suffix}`
        const lk = `lock:${key}`
        const lease = await a.lock(key, { ttlMs: 2000 })
        const firstExpiry = lease.expiresAt
        assert.equal(await lease.extend(8000), true)
        const pttl = Number(await env.cli('PTTL', lk))
        assert.ok(pttl > 2000 && pttl <= 8000, `extended PTTL ${pttl}`)
        assert.ok(lease.expiresAt > firstExpiry + 5000, 'expiresAt moved with the extension')
        assert.equal(await get(env, lk), lease.token, 'the same token')
        assert.equal(await lease.release(), true)
        assert.equal(await env.cli('EXISTS', lk), '0')
        assert.equal(lease.held, false)
        assert.equal(await lease.release(), false, 'a second release')
        await assert.rejects(lease.extend(1000), (e) => e.code === 'ERR_REDIS_GUARD_LOCK_NOT_HELD')
        assert.equal(await env.cli('EXISTS', lk), '0', 'the refused extension did not recreate the key')
      })
    }

    test('withLock(): holds lock:KEY while fn runs past the TTL (extended), returns its value, releases; a throw releases; a held key rejects LOCK_TIMEOUT', async () => {
      const [a, b] = await clients(env, 2)
      const p = uniquePrefix('lock-with')
      const lk = `lock:${p}with`
      let token
      const v = await a.withLock(`${p}with`, { ttlMs: 300 }, async (signal) => {
        token = await get(env, lk)
        assert.ok(token, 'lock:KEY is held while fn runs')
        await sleep(500)
        assert.equal(signal.aborted, false, 'the lease was extended past its TTL')
        assert.equal(await get(env, lk), token, 'still ours after the TTL')
        assert.equal(await b.lock(`${p}with`, { waitMs: 0 }), null, 'another client is refused meanwhile')
        return 42
      })
      assert.equal(v, 42)
      assert.equal(await env.cli('EXISTS', lk), '0', 'released')

      const boom = new Error('boom')
      await assert.rejects(
        a.withLock(`${p}throw`, { ttlMs: 2000 }, async () => {
          throw boom
        }),
        (e) => e === boom,
      )
      assert.equal(await env.cli('EXISTS', `lock:${p}throw`), '0', 'released after the throw')

      const held = await b.lock(`${p}held`, { ttlMs: 5000 })
      await assert.rejects(
        a.withLock(`${p}held`, { waitMs: 0 }, () => assert.fail('ran without the lock')),
        (e) => e.code === 'ERR_REDIS_GUARD_LOCK_TIMEOUT',
      )
      assert.equal(await get(env, `lock:${p}held`), held.token, 'the holder keeps it')
      assert.equal(await held.release(), true)
    })

    test('acquireLock / extendLock / releaseLock: lock:KEY with the TTL in seconds; another client refused and cannot release or extend it', async () => {
      const [a, b] = await clients(env, 2)
      const key = `${uniquePrefix('lock-seed')}seed`
      const lk = `lock:${key}`
      assert.equal(await a.acquireLock(key, 5), true)
      const token = await get(env, lk)
      assert.ok(token, 'SET lock:KEY <token> NX PX')
      const pttl = Number(await env.cli('PTTL', lk))
      assert.ok(pttl > 0 && pttl <= 5000, `PTTL ${pttl}`)
      assert.equal(await env.cli('EXISTS', fenceKeyOf(lk)), '0', 'a helper grant takes no fence')
      assert.equal(await b.acquireLock(key, 5), false, 'held elsewhere')
      assert.equal(await a.acquireLock(key, 5), false, 'not re-entrant')
      assert.equal(await b.releaseLock(key), false, 'b never held it')
      assert.equal(await b.extendLock(key, 20), false, 'nor can it extend it')
      assert.equal(await get(env, lk), token, 'untouched by b')
      assert.equal(await a.extendLock(key, 20), true)
      const extended = Number(await env.cli('PTTL', lk))
      assert.ok(extended > 5000 && extended <= 20_000, `extended PTTL ${extended}`)
      assert.equal(await a.releaseLock(key), true)
      assert.equal(await env.cli('EXISTS', lk), '0')
      assert.equal(await a.releaseLock(key), false, 'a second release')
      assert.equal(await a.extendLock(key, 5), false, 'nothing to extend')
      assert.equal(await env.cli('EXISTS', lk), '0', 'extendLock did not recreate the key')
    })
  })
}
