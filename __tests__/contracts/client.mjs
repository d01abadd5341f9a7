/**
 * The RedisClient contract, on whatever deployment `env` is (see ./index.mjs): connects and
 * says so, is healthy with the right topology, never shows a password, and settles every call
 * at once after close().
 *
 * @module __tests__/contracts/client
 */

import assert from 'node:assert/strict'
import util from 'node:util'

import { RedisStore } from '../../index.mjs'
import { timed, uniquePrefix } from '../helpers/utils.mjs'

/** `url` with its user info replaced by `user:password` (every redis-guard URL scheme). */
function withCredentials(url, user, password) {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)(?:[^@/?]*@)?/i, `$1${user}:${encodeURIComponent(password)}@`)
}

/** Call an Express-style handler with a minimal response; resolves `{ status, body }`. */
function callHandler(handler) {
  return new Promise((resolve, reject) => {
    const res = {
      statusCode: 200,
      headers: {},
      setHeader(k, v) {
        this.headers[k.toLowerCase()] = v
      },
      status(code) {
        this.statusCode = code
        return this
      },
      json(body) {
        resolve({ status: this.statusCode, body })
      },
      end(text) {
        resolve({ status: this.statusCode, body: JSON.parse(text) })
      },
    }
    handler({}, res, (err) => reject(err ?? new Error('the handler called next()')))
  })
}

/**
 * @param {{ test: typeof import('node:test').test, describe: typeof import('node:test').describe }} t
 * @param {import('./index.mjs').ContractEnv} env
 */
export default function clientContract({ test, describe }, env) {
  describe('client', () => {
    test('ready() resolves true and isAvailable() is true once connected; stats() are counters', async () => {
      const client = env.makeClient()
      assert.equal(await client.ready(5000), true, "connects with the deployment's options alone")
      assert.equal(client.isAvailable(), true)
      const again = await timed(() => client.ready(2000))
      assert.equal(again.value, true)
      assert.ok(again.ms < 100, `ready() once connected answers at once (${again.ms.toFixed(1)} ms)`)
      const stats = client.stats()
      assert.ok(Object.keys(stats).length > 0, 'stats() has counters')
      for (const [k, v] of Object.entries(stats)) assert.ok(Number.isFinite(v) && v >= 0, `stats().${k} = ${v}`)
    })

    test(`healthCheck(): healthy, connected, mode redis, topology ${env.topology}; deep too; healthHandler() answers 200`, async () => {
      const client = env.makeClient()
      assert.equal(await client.ready(5000), true)
      for (const deep of [false, true]) {
        const h = await client.healthCheck({ deep })
        const what = `healthCheck({ deep: ${deep} }): ${JSON.stringify(h)}`
        assert.equal(h.status, 'healthy', what)
        assert.equal(h.connected, true, what)
        assert.equal(h.mode, 'redis', what)
        assert.equal(h.topology, env.topology, what)
        assert.ok(typeof h.latencyMs === 'number' && h.latencyMs >= 0 && h.latencyMs < client.commandTimeoutMs, what)
        assert.equal(h.url, client.url, what)
        assert.equal(h.error, undefined, what)
      }
      const r = await callHandler(client.healthHandler())
      assert.equal(r.status, 200)
      assert.equal(r.body.status, 'healthy')
      assert.equal(r.body.topology, env.topology)
    })

    test('url: the password is masked in url, healthCheck().url and util.inspect; the scheme is kept', async () => {
      const scheme = env.url.slice(0, env.url.indexOf('://') + 3)
      const plain = env.makeClient()
      assert.ok(plain.url.startsWith(scheme), `${plain.url} keeps ${scheme}`)
      // Credentials the servers do not know: this client never connects; what it shows is the point.
      const secret = `pw-${process.pid}-S3cr3t`
      const client = env.makeClient({ url: withCredentials(env.url, 'someone', secret), connectTimeoutMs: 500 })
      assert.ok(client.url.startsWith(scheme), client.url)
      assert.ok(client.url.includes('someone:***@'), `user kept, password masked: ${client.url}`)
      const h = await client.healthCheck()
      assert.equal(h.url, client.url)
      const shown = [
        client.url,
        JSON.stringify(h),
        util.inspect(client, { depth: 6, showHidden: true }),
        String(client),
      ]
      for (const text of shown) {
        assert.ok(!text.includes(secret) && !text.includes(encodeURIComponent(secret)), `a password shown: ${text}`)
      }
    })

    test('close(): idempotent; then every call settles at once (store to the fallback, locks CLOSED, health unhealthy)', async () => {
      const client = env.makeClient()
      assert.equal(await client.ready(5000), true)
      const prefix = uniquePrefix('closed')
      const store = new RedisStore({ client, prefix })
      store.init({ windowMs: 60_000, limit: 1_000_000 })
      const before = await store.increment('k')
      assert.equal(before.totalHits, 1)
      assert.equal(before.source, 'redis')

      await client.close()
      assert.equal(client.isAvailable(), false)
      const inc = await timed(() => store.increment('k'))
      assert.ifError(inc.error)
      assert.equal(inc.value.totalHits, 1, 'counted by the memory fallback, not by Redis')
      assert.equal(inc.value.source, 'memory')
      assert.ok(inc.ms < 50, `increment after close() took ${inc.ms.toFixed(1)} ms`)
      for (const [what, call] of [
        ['lock', () => client.lock(`${prefix}job`)],
        ['acquireLock', () => client.acquireLock(`${prefix}job`)],
      ]) {
        const r = await timed(call)
        assert.equal(r.error?.code, 'ERR_REDIS_GUARD_CLOSED', `${what} after close(): ${r.error ?? 'no error'}`)
        assert.ok(r.ms < 50, `${what} after close() took ${r.ms.toFixed(1)} ms`)
      }
      const h = await timed(() => client.healthCheck())
      assert.equal(h.value.status, 'unhealthy')
      assert.equal(h.value.mode, 'fallback')
      assert.equal(h.value.connected, false)
      assert.ok(h.ms < 50, `healthCheck() after close() took ${h.ms.toFixed(1)} ms`)
      assert.equal(await env.cli('GET', `${prefix}k`), '1', 'Redis holds only the increment made before close()')
      await client.close() // idempotent
    })
  })
}
