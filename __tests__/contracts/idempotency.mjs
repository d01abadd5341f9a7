/**
 * The idempotency-key contract, on whatever deployment `env` is (see ./index.mjs): claim,
 * complete, replay and mismatch for keys spread over every slot (hash tags, braces) in one
 * batch, the record at `${prefix}${key}` with the lease's TTL while in progress and the
 * retention's once completed, and token fencing (a stale holder's complete is LOCK_LOST).
 *
 * @module __tests__/contracts/idempotency
 */

import assert from 'node:assert/strict'

import { IdempotencyKeys, codes } from '../../index.mjs'
import { uniquePrefix } from '../helpers/utils.mjs'

/**
 * @param {{ test: typeof import('node:test').test, describe: typeof import('node:test').describe }} t
 * @param {import('./index.mjs').ContractEnv} env
 */
export default function idempotencyContract({ test, describe }, env) {
  describe('idempotency keys', () => {
    test('claim / complete / replay / mismatch on keys of every slot, in one batch', async () => {
      const prefix = uniquePrefix('idem-c')
      const keys = new IdempotencyKeys({ client: env.makeClient(), prefix, lockTtlMs: 5000 })
      const names = [
        ...Array.from({ length: 40 }, (_, i) => `order-${i}`),
        '{tag}a',
        '{tag}b',
        '{}',
        '}{',
        '{',
        'x'.repeat(300),
      ]
      const claims = await Promise.all(names.map((k) => keys.claim(k, { fingerprint: `fp-${k}` })))
      assert.deepEqual(new Set(claims.map((c) => c.state)), new Set(['acquired']))
      const busy = await Promise.all(names.map((k) => keys.claim(k, { fingerprint: `fp-${k}` })))
      assert.deepEqual(new Set(busy.map((c) => c.state)), new Set(['in-progress']))
      const pttl = Number(await env.cli('PTTL', `${prefix}order-0`))
      assert.ok(pttl > 0 && pttl <= 5000, `lease PTTL ${pttl}`)
      await Promise.all(claims.map((c, i) => c.complete({ i })))
      const done = await Promise.all(names.map((k) => keys.claim(k, { fingerprint: `fp-${k}` })))
      done.forEach((c, i) => {
        assert.equal(c.state, 'completed', names[i])
        assert.deepEqual(c.result, { i })
      })
      const kept = Number(await env.cli('PTTL', `${prefix}order-0`))
      assert.ok(kept > 23 * 3600_000, `retention PTTL ${kept}`)
      const other = await Promise.all(names.map((k) => keys.claim(k, { fingerprint: 'another' })))
      assert.deepEqual(new Set(other.map((c) => c.state)), new Set(['mismatch']))
    })

    test('a holder whose lease expired and was taken over is fenced', async () => {
      const prefix = uniquePrefix('idem-f')
      const client = env.makeClient()
      const a = new IdempotencyKeys({ client, prefix, lockTtlMs: 200 })
      const stale = await a.claim('{pay}1')
      // Stop its sweep (as a paused process would), let the lease run out, take over.
      a._held.clear()
      await new Promise((r) => setTimeout(r, 400))
      const b = new IdempotencyKeys({ client, prefix, lockTtlMs: 5000 })
      const fresh = await b.claim('{pay}1')
      assert.equal(fresh.state, 'acquired')
      await fresh.complete('second')
      stale.expiresAt = Date.now() + 10_000 // it believes it still holds the key
      await assert.rejects(stale.complete('first'), { code: codes.LOCK_LOST })
      assert.equal((await b.claim('{pay}1')).result, 'second')
    })
  })
}
