/**
 * The RateLimiter contract, for every algorithm, on whatever deployment `env` is (see
 * ./index.mjs): exact counts under concurrency from one client (40 keys spread over the slots
 * of a cluster, and one hot key) and from two clients on one key, costs, get/reset, one key per
 * client in Redis (so one slot), and every answer from Redis (`source: 'redis'`).
 *
 * @module __tests__/contracts/limiter
 */

import assert from 'node:assert/strict'

import { RateLimiter } from '../../index.mjs'
import { uniquePrefix } from '../helpers/utils.mjs'

const ALGORITHMS = ['fixed-window', 'sliding-window', 'gcra']
/** The Redis key of `key` per algorithm (README, "Limits"). */
const KEY_OF = { 'fixed-window': '', 'sliding-window': 'sw:', gcra: 'gcra:' }

/**
 * @param {{ test: typeof import('node:test').test, describe: typeof import('node:test').describe }} t
 * @param {import('./index.mjs').ContractEnv} env
 */
export default function limiterContract({ test, describe }, env) {
  describe('limiter', () => {
    for (const algorithm of ALGORITHMS) {
      // GCRA's rate is the limit per hour here, so nothing refills during a test.
      const make = (client, prefix, limit) =>
        new RateLimiter({ limit, windowMs: algorithm === 'gcra' ? 3_600_000 : 60_000, algorithm, client, prefix })

      test(`${algorithm}: 40 keys x 8 calls at limit 5 and a hot key x 300 at limit 200 in one turn: exactly the limit passes per key`, async () => {
        const client = env.makeClient()
        const prefix = uniquePrefix(`lim-${algorithm}`)
        const l = make(client, prefix, 5)
        const hot = make(client, prefix, 200)
        const keys = Array.from({ length: 40 }, (_, i) => `user:${i}`)
        const calls = []
        for (let round = 0; round < 8; round++) for (const k of keys) calls.push(l.limit(k).then((r) => ({ k, r })))
        for (let i = 0; i < 300; i++) calls.push(hot.limit('hot').then((r) => ({ k: 'hot', r })))
        const passed = new Map()
        for (const { k, r } of await Promise.all(calls)) {
          assert.equal(r.source, 'redis')
          if (r.allowed) passed.set(k, (passed.get(k) || 0) + 1)
          else assert.ok(r.retryAfterMs > 0, `a refused call has a wait: ${r.retryAfterMs}`)
        }
        for (const k of keys) assert.equal(passed.get(k), 5, `passed for ${k}`)
        assert.equal(passed.get('hot'), 200)
        const stored = await env.scan(`${prefix}*`)
        assert.equal(stored.length, 41, 'one Redis key per client')
        assert.ok(
          stored.every((s) => s.startsWith(prefix + KEY_OF[algorithm])),
          'the layout of the algorithm',
        )
        if (env.topology === 'cluster') {
          const slots = new Set(await Promise.all(stored.map((k) => env.keyslot(k))))
          assert.ok(slots.size > 10, `keys spread over the slots (${slots.size})`)
        }
      })

      test(`${algorithm}: two clients on one key (2 x 150 at limit 100): 100 pass; costs; get and reset`, async () => {
        const prefix = uniquePrefix(`lim2-${algorithm}`)
        const ls = [make(env.makeClient(), prefix, 100), make(env.makeClient(), prefix, 100)]
        const calls = []
        for (let i = 0; i < 150; i++) for (const l of ls) calls.push(l.limit('shared'))
        const rs = await Promise.all(calls)
        assert.equal(rs.filter((r) => r.allowed).length, 100)
        assert.ok(rs.every((r) => r.source === 'redis'))
        for (const l of ls) assert.equal((await l.get('shared')).remaining, 0)
        await ls[0].reset('shared')
        const c = await ls[1].limit('shared', { cost: 60 })
        assert.deepEqual([c.allowed, c.remaining], [true, 40])
        const no = await ls[0].limit('shared', { cost: 41 })
        assert.deepEqual([no.allowed, no.remaining], [false, 40], 'a refused cost takes nothing')
        assert.equal((await ls[0].limit('shared', { cost: 40 })).allowed, true)
        const over = await ls[1].limit('other', { cost: 101 })
        assert.deepEqual([over.allowed, over.retryAfterMs], [false, Infinity])
        assert.deepEqual(await env.scan(`${prefix}*other`), [], 'a cost over the limit writes nothing')
      })
    }
  })
}
