// Defects found by running the store and the locks the way their users do (issue 12), each
// against a real redis-server:
//  - leases longer than Node's timer limit (2^31 - 1 ms) stay held (they were lost ~1 ms after
//    `signal` was read), fractional TTLs are rounded up, and TTLs over one year are refused;
//  - a grant that Redis applies after the client gave up on it (SIGSTOP mid-flight, SIGCONT)
//    leaves no lock that nobody holds; the store's increments in the same situation are
//    counted by the fallback and later by Redis, and how many is measured here;
//  - rate-limit-redis's default-export form (`require(..).default`, `import RedisStore from`);
//  - `REDIS_USER` names the ACL user;
//  - the default logger writes to stderr, not through `console`.
// (Fake timers: __tests__/fake-timers.test.mjs. A one-node cluster: cluster-one-node.test.mjs.
// express-rate-limit's store checks: conformance.test.mjs.)
// Run: node --test __tests__/hardening.test.mjs

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createRequire } from 'node:module'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { promisify } from 'node:util'

import { startRedis, waitFor } from './helpers/redis.mjs'
import RedisStoreDefault, { RedisClient, RedisStore } from '../index.mjs'

const execFileP = promisify(execFile)
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const require = createRequire(import.meta.url)
const DAY = 24 * 3600 * 1000

let server
before(async () => {
  server = await startRedis()
})
after(async () => {
  await server?.stop()
})

const newClient = (opts = {}) => new RedisClient({ url: server.url, logger: false, ...opts })

/** Lock keys (not fence counters) under `prefix`, with their values. */
async function lockKeys(prefix) {
  const keys = (await server.cli('--scan', '--pattern', `${prefix}*`))
    .split('\n')
    .filter((k) => k && !k.endsWith(':fence'))
  return keys
}

describe('lease timers cover every TTL the API accepts', () => {
  test('a 30-day lease is still held after its signal is read (no TimeoutOverflowWarning)', async () => {
    const c = newClient()
    const warnings = []
    const onWarning = (w) => warnings.push(w.name)
    process.on('warning', onWarning)
    try {
      const lease = await c.lock(`long-${process.pid}`, { ttlMs: 30 * DAY })
      assert.ok(lease)
      const signal = lease.signal
      await sleep(100)
      assert.equal(signal.aborted, false, 'not lost')
      assert.equal(lease.held, true)
      const pttl = Number(await server.cli('PTTL', `lock:long-${process.pid}`))
      assert.ok(pttl > 29 * DAY, `PTTL ${pttl}`)
      assert.equal(await lease.extend(40 * DAY), true)
      await sleep(50)
      assert.equal(signal.aborted, false, 'not lost after an extension past the limit either')
      assert.equal(await lease.release(), true)
      // withLock reads the signal and extends every ttlMs/3 (itself over the limit).
      const r = await c.withLock(`long2-${process.pid}`, { ttlMs: 200 * DAY }, async (s) => {
        await sleep(100)
        return s.aborted
      })
      assert.equal(r, false)
      assert.deepEqual(
        warnings.filter((w) => w === 'TimeoutOverflowWarning'),
        [],
      )
    } finally {
      process.off('warning', onWarning)
      await c.close()
    }
  })

  test('fractional TTLs are rounded up to whole ms; more than one year is INVALID_ARG', async () => {
    const c = newClient()
    try {
      const lease = await c.lock(`frac-${process.pid}`, { ttlMs: 1500.2 })
      const pttl = Number(await server.cli('PTTL', `lock:frac-${process.pid}`))
      assert.ok(pttl > 1400 && pttl <= 1501, `PTTL ${pttl}`)
      await lease.release()
      assert.equal(await c.acquireLock(`frac-h-${process.pid}`, 0.0015), true) // 1.5 ms -> 2 ms
      await sleep(10)
      assert.equal(await c.acquireLock(`frac-h-${process.pid}`, 5), true, 'the 2 ms lock expired')
      await c.releaseLock(`frac-h-${process.pid}`)
      const year = 365 * DAY
      const l2 = await c.lock(`year-${process.pid}`, { ttlMs: year })
      assert.ok(l2, 'exactly one year is accepted')
      await l2.release()
      for (const ttlMs of [year + 1, 0, -5, Number.NaN, Infinity]) {
        await assert.rejects(
          c.lock(`bad-${process.pid}`, { ttlMs }),
          { code: 'ERR_REDIS_GUARD_INVALID_ARG' },
          String(ttlMs),
        )
      }
      await assert.rejects(c.acquireLock(`bad-${process.pid}`, 366 * 24 * 3600), {
        code: 'ERR_REDIS_GUARD_INVALID_ARG',
      })
    } finally {
      await c.close()
    }
  })
})

describe('writes applied after the deadline (SIGSTOP mid-flight, then SIGCONT)', () => {
  test('locks: grants Redis applies after the client gave up are removed; 0 locks left that nobody holds', async () => {
    const prefix = `orphan-${process.pid}:`
    const c = newClient({ lockPrefix: prefix })
    const other = newClient({ lockPrefix: prefix })
    try {
      assert.equal(await c.ready(3000), true)
      assert.equal(await other.ready(3000), true)
      // One cycle first: on a server that has not loaded the lock script yet, the stalled call
      // is an EVALSHA that Redis answers NOSCRIPT on resume (nothing applied).
      assert.equal(await c.acquireLock('warm', 5), true)
      assert.equal(await c.releaseLock('warm'), true)
      server.pause()
      let answers
      try {
        // Each kind of grant, sent while Redis is stalled: every one misses its deadline.
        answers = await Promise.all([
          ...Array.from({ length: 8 }, (_, i) => c.lock(`lease-${i}`, { ttlMs: 20_000 })),
          ...Array.from({ length: 8 }, (_, i) => c.acquireLock(`helper-${i}`, 20)),
          ...Array.from({ length: 4 }, (_, i) =>
            c.lock(`deny-${i}`, { ttlMs: 20_000, onUnavailable: 'deny' }).catch((e) => e.code),
          ),
        ])
      } finally {
        server.resume()
      }
      // The caller was answered from the fallback ('local' leases and helpers) or refused ('deny').
      assert.ok(
        answers.slice(0, 8).every((l) => l && l.source === 'local'),
        'local leases',
      )
      assert.deepEqual(answers.slice(8, 16), Array(8).fill(true))
      assert.ok(
        answers.slice(16).every((x) => x === 'ERR_REDIS_GUARD_UNAVAILABLE' || x === 'ERR_REDIS_GUARD_TIMEOUT'),
        String(answers.slice(16)),
      )
      // Redis applies them when it resumes; the client removes them once it answers again (a
      // first pass at once, a second one a second later).
      await waitFor(() => c.isAvailable(), { timeout: 5000, what: 'recovered' })
      await sleep(1500)
      assert.deepEqual(await lockKeys(prefix), [], 'no lock left that nobody holds')
      assert.ok(c.stats().orphansRemoved >= 1, `orphansRemoved ${c.stats().orphansRemoved}`)
      // Another instance gets the keys at once (`other` shares this process's local lock table,
      // which still holds the local grants: another process is Redis itself here).
      assert.equal(await other.acquireLock('deny-0', 5), true, 'deny-0 is free for another instance')
      for (const k of ['lease-0', 'helper-0']) {
        assert.equal(
          await server.cli('SET', `${prefix}${k}`, 'someone-else', 'NX', 'PX', '5000'),
          'OK',
          `${k} is free in Redis`,
        )
      }
      await server.cli('DEL', `${prefix}lease-0`, `${prefix}helper-0`)
      // The local leases are still the caller's, and release normally.
      assert.equal(await answers[0].release(), true)
      assert.equal(await c.releaseLock('helper-1'), true)
    } finally {
      server.resume()
      await c.close()
      await other.close()
    }
  })

  test("locks: a cleanup never deletes another holder's lock", async () => {
    const prefix = `orphan2-${process.pid}:`
    const c = newClient({ lockPrefix: prefix })
    const other = newClient({ lockPrefix: prefix })
    try {
      await c.ready(3000)
      await other.ready(3000)
      await (await c.lock('warm', { ttlMs: 5000 })).release() // the lock script is loaded
      server.pause()
      let lease
      try {
        lease = await c.lock('k', { ttlMs: 300 })
      } finally {
        server.resume()
      }
      assert.equal(lease.source, 'local')
      // The orphan expires by itself after 300 ms; another holder takes the key.
      const theirs = await other.lock('k', { ttlMs: 20_000, waitMs: 3000 })
      assert.ok(theirs && theirs.source === 'redis')
      await sleep(1500) // both cleanup passes are done by now
      assert.equal(await server.cli('GET', `${prefix}k`), theirs.token, "the other holder's lock is intact")
      assert.equal(await theirs.release(), true)
      await lease.release()
    } finally {
      server.resume()
      await c.close()
      await other.close()
    }
  })

  test('store: increments counted by the fallback during a stall are counted by Redis too when it resumes (measured)', async (t) => {
    const prefix = `stall-${process.pid}:`
    const c = newClient()
    const store = new RedisStore({ client: c, prefix })
    store.init({ windowMs: 60_000, limit: 1000 })
    try {
      await c.ready(3000)
      assert.equal((await store.increment('k')).totalHits, 1)
      server.pause()
      let during
      try {
        during = await Promise.all(Array.from({ length: 20 }, () => store.increment('k')))
        // Once the circuit is open, calls go to the fallback without touching Redis.
        during.push(...(await Promise.all(Array.from({ length: 20 }, () => store.increment('k')))))
      } finally {
        server.resume()
      }
      assert.equal(during.length, 40)
      await waitFor(() => c.isAvailable(), { timeout: 5000, what: 'recovered' })
      const inRedis = Number(await server.cli('GET', `${prefix}k`))
      // The 20 increments in flight when Redis stopped were applied when it resumed; the 20
      // made after the client knew were not.
      t.diagnostic(
        `Redis counter after resume: ${inRedis} (1 before the stall, 20 in flight, 20 after the circuit opened)`,
      )
      assert.equal(inRedis, 21)
      const next = await store.increment('k')
      assert.equal(next.totalHits, 22, 'counting continues in Redis')
    } finally {
      server.resume()
      await c.close()
    }
  })
})

describe("rate-limit-redis's default-export form", () => {
  test('ESM: import RedisStore from "redis-guard"; CJS: require("redis-guard").default', async () => {
    assert.equal(RedisStoreDefault, RedisStore)
    const cjs = require('../index.js')
    assert.equal(cjs.default, cjs.RedisStore)
    assert.equal(require('redis-guard').default, RedisStore)
    // TypeScript's and bundlers' CommonJS interop (`__importDefault`) takes `.default`.
    assert.equal(cjs.__esModule, true)
    const interop = (m) => (m && m.__esModule ? m : { default: m })
    assert.equal(interop(cjs).default, RedisStore)
    const byName = await import('redis-guard')
    assert.equal(byName.default, RedisStore)
    // The way express-rate-limit's docs write it, from a fresh CJS process.
    const { stdout } = await execFileP(
      process.execPath,
      [
        '-e',
        `
      const RedisStore = require(${JSON.stringify(path.join(ROOT, 'index.js'))}).default
      const { RedisClient } = require(${JSON.stringify(path.join(ROOT, 'index.js'))})
      const client = new RedisClient({ url: process.env.URL, logger: false })
      const store = new RedisStore({ client, prefix: 'dflt-${process.pid}:' })
      store.init({ windowMs: 60000, limit: 5 })
      store.increment('k').then((r) => { console.log(r.totalHits); return client.close() })`,
      ],
      { env: { ...process.env, URL: server.url }, timeout: 20_000 },
    )
    assert.equal(stdout.trim(), '1')
  })
})

describe('REDIS_USER', () => {
  test('names the ACL user (REDIS_USERNAME > REDIS_USER > REDISUSER)', async () => {
    const acl = await startRedis({
      users: [
        { name: 'app', password: 'pw-app', rules: 'on ~* +@all' },
        { name: 'other', password: 'pw-other', rules: 'on ~* +@all' },
      ],
    })
    const env = { REDIS_HOST: '127.0.0.1', REDIS_PORT: String(acl.port), REDIS_PASSWORD: 'pw-app' }
    const clients = []
    const make = (extra) => {
      const c = new RedisClient({ env: { ...env, ...extra }, logger: false, connectTimeoutMs: 2000 })
      clients.push(c)
      return c
    }
    try {
      const byUser = make({ REDIS_USER: 'app' })
      assert.equal(byUser.url, `redis://app:***@127.0.0.1:${acl.port}`)
      assert.equal(await byUser.ready(3000), true, 'REDIS_USER logs in')
      assert.equal((await byUser.healthCheck()).status, 'healthy')
      assert.equal(make({ REDIS_USERNAME: 'app', REDIS_USER: 'other' }).url, `redis://app:***@127.0.0.1:${acl.port}`)
      assert.equal(make({ REDIS_USER: 'app', REDISUSER: 'other' }).url, `redis://app:***@127.0.0.1:${acl.port}`)
      assert.equal(make({ REDISUSER: 'app' }).url, `redis://app:***@127.0.0.1:${acl.port}`)
    } finally {
      await Promise.all(clients.map((c) => c.close()))
      await acl.stop()
    }
  })
})

describe('the default logger', () => {
  test('writes its lines to stderr, not stdout, and not through console', async () => {
    const index = pathToFileURL(path.join(ROOT, 'index.mjs')).href
    const { stdout, stderr } = await execFileP(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `
      import { RedisClient } from ${JSON.stringify(index)}
      let viaConsole = 0
      for (const m of ['log', 'info', 'warn', 'error']) console[m] = () => { viaConsole++ }
      const c = new RedisClient({ url: process.env.URL })
      await c.ready(3000)
      await c.close()
      process.stdout.write('console calls: ' + viaConsole)`,
      ],
      { env: { ...process.env, URL: server.url }, timeout: 20_000 },
    )
    assert.equal(stdout, 'console calls: 0')
    assert.match(stderr, /\[redis-guard\] connected to Redis \(redis:\/\/127\.0\.0\.1:\d+\)/)
  })
})
