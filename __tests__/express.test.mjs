// RedisStore under the real middleware, over real HTTP: express-rate-limit 8 on Express 5 and
// Express 4, and express-slow-down. Headers (draft-6/7/8, Retry-After), limiter.resetKey /
// getKey, skipSuccessfulRequests / skipFailedRequests, passOnStoreError with onUnavailable
// 'deny' and a dead server, and no express-rate-limit validation warning (ERR_ERL_*) printed.
// Run: node --test __tests__/express.test.mjs

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import express5 from 'express'
import express4 from 'express4'
import { rateLimit } from 'express-rate-limit'
import { slowDown } from 'express-slow-down'

import { startRedis, waitFor } from './helpers/redis.mjs'
import { listen, uniquePrefix } from './helpers/utils.mjs'
import { RedisClient, RedisStore } from '../index.mjs'

const EXPRESSES = [
  ['Express 5', express5],
  ['Express 4', express4],
]

const newClient = (url, opts = {}) => new RedisClient({ url, logger: false, ...opts })

/** GET `path`; resolves `{ status, headers, body }` (body parsed as JSON when it is). */
async function get(base, path = '/', headers = {}) {
  const res = await fetch(`${base}${path}`, { headers })
  const text = await res.text()
  let body = text
  try {
    body = JSON.parse(text)
  } catch {}
  return { status: res.status, headers: res.headers, body }
}

/**
 * Capture console.warn / console.error (where express-rate-limit's default logger writes its
 * validation errors and warnings) for the duration of a test.
 */
function captureConsole() {
  const entries = []
  const orig = { warn: console.warn, error: console.error }
  const fmt = (a) =>
    a instanceof Error ? `${a.name} ${a.code ?? ''} ${a.message}` : typeof a === 'string' ? a : JSON.stringify(a)
  console.warn = (...args) => entries.push({ level: 'warn', args, text: args.map(fmt).join(' ') })
  console.error = (...args) => entries.push({ level: 'error', args, text: args.map(fmt).join(' ') })
  return {
    entries,
    text: () => entries.map((e) => `${e.level}: ${e.text}`).join('\n'),
    restore() {
      console.warn = orig.warn
      console.error = orig.error
    },
    assertNoErlWarnings() {
      const bad = entries.filter(
        (e) =>
          /\b(ERR|WRN)_ERL_/.test(e.text) ||
          e.args.some((a) => a && typeof a.code === 'string' && /_ERL_/.test(a.code)),
      )
      assert.deepEqual(
        bad.map((e) => e.text),
        [],
        'express-rate-limit printed a validation warning',
      )
    },
  }
}

describe('express-rate-limit 8 with RedisStore over HTTP', () => {
  let server
  let client
  let logs
  before(async () => {
    server = await startRedis()
    client = newClient(server.url)
    assert.equal(await client.ready(5000), true)
  })
  after(async () => {
    await client?.close()
    await server?.stop()
  })

  for (const [name, express] of EXPRESSES) {
    test(`${name}: 200s up to the limit, then 429 with Retry-After; the default keyGenerator; no ERL warning`, async () => {
      logs = captureConsole()
      let web
      try {
        const prefix = uniquePrefix('basic')
        const app = express()
        app.use(
          rateLimit({
            windowMs: 60_000,
            limit: 3,
            standardHeaders: 'draft-7',
            legacyHeaders: false,
            store: new RedisStore({ client, prefix }),
          }),
        )
        app.get('/', (req, res) => res.json({ used: req.rateLimit.used, key: req.rateLimit.key }))
        web = await listen(app)

        const statuses = []
        let key
        for (let i = 1; i <= 3; i++) {
          const r = await get(web.url)
          statuses.push(r.status)
          assert.equal(r.body.used, i)
          key = r.body.key
          assert.match(r.headers.get('ratelimit'), new RegExp(`^limit=3, remaining=${3 - i}, reset=(59|60)$`))
          assert.equal(r.headers.get('retry-after'), null)
        }
        assert.deepEqual(statuses, [200, 200, 200])
        assert.equal(key, '127.0.0.1')
        const blocked = await get(web.url)
        assert.equal(blocked.status, 429)
        assert.equal(blocked.body, 'Too many requests, please try again later.')
        const retryAfter = Number(blocked.headers.get('retry-after'))
        assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`)
        assert.match(blocked.headers.get('ratelimit'), /^limit=3, remaining=0, reset=(59|60)$/)
        // The counter is rate-limit-redis's: `${prefix}${key}`, an integer, with a PX expiry.
        assert.equal(await server.cli('GET', `${prefix}${key}`), '4')
        const pttl = Number(await server.cli('PTTL', `${prefix}${key}`))
        assert.ok(pttl > 0 && pttl <= 60_000)
        // Further hits stay blocked and are answered in-process (the key is over its static limit).
        for (let i = 0; i < 5; i++) assert.equal((await get(web.url)).status, 429)
        assert.equal(await server.cli('GET', `${prefix}${key}`), '4', 'blocked hits did not reach Redis')
        logs.assertNoErlWarnings()
        assert.deepEqual(
          logs.entries.map((e) => e.text),
          [],
          'nothing printed at all',
        )
      } finally {
        logs.restore()
        await web?.close()
      }
    })

    test(`${name}: RateLimit-* headers for standardHeaders draft-6, draft-7 and draft-8`, async () => {
      logs = captureConsole()
      const webs = []
      try {
        const base = {}
        for (const draft of ['draft-6', 'draft-7', 'draft-8']) {
          const app = express()
          app.use(
            rateLimit({
              windowMs: 60_000,
              limit: 2,
              standardHeaders: draft,
              legacyHeaders: false,
              keyGenerator: (req) => req.get('x-user') ?? 'anon',
              store: new RedisStore({ client, prefix: uniquePrefix(draft) }),
            }),
          )
          app.get('/', (req, res) => res.json({ used: req.rateLimit.used }))
          const web = await listen(app)
          webs.push(web)
          base[draft] = web.url
        }
        const h = { 'x-user': 'alice' }

        // draft-6: four separate headers.
        let r = await get(base['draft-6'], '/', h)
        assert.equal(r.status, 200)
        assert.equal(r.headers.get('ratelimit-policy'), '2;w=60')
        assert.equal(r.headers.get('ratelimit-limit'), '2')
        assert.equal(r.headers.get('ratelimit-remaining'), '1')
        assert.match(r.headers.get('ratelimit-reset'), /^(59|60)$/)
        await get(base['draft-6'], '/', h)
        r = await get(base['draft-6'], '/', h)
        assert.equal(r.status, 429)
        assert.equal(r.headers.get('ratelimit-remaining'), '0')
        assert.match(r.headers.get('retry-after'), /^(59|60)$/)

        // draft-7: one combined header.
        r = await get(base['draft-7'], '/', h)
        assert.equal(r.headers.get('ratelimit-policy'), '2;w=60')
        assert.match(r.headers.get('ratelimit'), /^limit=2, remaining=1, reset=(59|60)$/)
        assert.equal(r.headers.get('ratelimit-limit'), null)
        await get(base['draft-7'], '/', h)
        r = await get(base['draft-7'], '/', h)
        assert.equal(r.status, 429)
        assert.match(r.headers.get('ratelimit'), /^limit=2, remaining=0, reset=(59|60)$/)
        assert.match(r.headers.get('retry-after'), /^(59|60)$/)

        // draft-8: named policy with a partition key.
        r = await get(base['draft-8'], '/', h)
        assert.match(r.headers.get('ratelimit'), /^"2-in-1min"; r=1; t=(59|60)$/)
        assert.match(r.headers.get('ratelimit-policy'), /^"2-in-1min"; q=2; w=60; pk=:[A-Za-z0-9+/=]+:$/)
        await get(base['draft-8'], '/', h)
        r = await get(base['draft-8'], '/', h)
        assert.equal(r.status, 429)
        assert.match(r.headers.get('ratelimit'), /^"2-in-1min"; r=0; t=(59|60)$/)
        assert.match(r.headers.get('retry-after'), /^(59|60)$/)

        logs.assertNoErlWarnings()
      } finally {
        logs.restore()
        await Promise.all(webs.map((w) => w.close()))
      }
    })
  }

  test('limiter.getKey / limiter.resetKey read and clear the Redis counter (and the local block)', async () => {
    logs = captureConsole()
    let web
    try {
      const prefix = uniquePrefix('keys')
      const limiter = rateLimit({
        windowMs: 60_000,
        limit: 2,
        standardHeaders: 'draft-7',
        legacyHeaders: false,
        keyGenerator: (req) => req.get('x-user'),
        store: new RedisStore({ client, prefix }),
      })
      const app = express5()
      app.use(limiter)
      app.get('/', (req, res) => res.json({ used: req.rateLimit.used }))
      web = await listen(app)
      const h = { 'x-user': 'bob' }

      assert.equal(await limiter.getKey('bob'), undefined)
      await get(web.url, '/', h)
      await get(web.url, '/', h)
      const info = await limiter.getKey('bob')
      assert.equal(info.totalHits, 2)
      assert.ok(info.resetTime instanceof Date && info.resetTime.getTime() > Date.now())
      // Over the limit (answered locally from here on), then reset: the next request passes.
      assert.equal((await get(web.url, '/', h)).status, 429)
      assert.equal((await get(web.url, '/', h)).status, 429)
      assert.equal((await limiter.getKey('bob')).totalHits, 4)
      await limiter.resetKey('bob')
      assert.equal(await server.cli('EXISTS', `${prefix}bob`), '0')
      assert.equal(await limiter.getKey('bob'), undefined)
      const again = await get(web.url, '/', h)
      assert.equal(again.status, 200)
      assert.equal(again.body.used, 1)
      assert.equal(await server.cli('GET', `${prefix}bob`), '1')
      logs.assertNoErlWarnings()
    } finally {
      logs.restore()
      await web?.close()
    }
  })

  for (const [name, express] of EXPRESSES) {
    test(`${name}: skipSuccessfulRequests and skipFailedRequests decrement in Redis`, async () => {
      logs = captureConsole()
      const webs = []
      try {
        const decremented = []
        const mk = async (prefix, opts) => {
          const store = new RedisStore({ client, prefix })
          const decrement = store.decrement.bind(store)
          store.decrement = async (key) => {
            await decrement(key)
            decremented.push(key)
          }
          const app = express()
          app.use(
            rateLimit({
              windowMs: 60_000,
              limit: 100,
              standardHeaders: 'draft-7',
              legacyHeaders: false,
              keyGenerator: (req) => req.get('x-user'),
              store,
              ...opts,
            }),
          )
          app.get('/ok', (req, res) => res.json({ used: req.rateLimit.used }))
          app.get('/fail', (req, res) => res.status(500).json({ used: req.rateLimit.used }))
          app.get('/bad', (req, res) => res.status(404).end())
          // The counter disappears while the request runs (another instance's resetKey).
          app.get('/fail-after-reset', async (req, res) => {
            await server.cli('DEL', `${prefix}${req.get('x-user')}`)
            res.status(500).end()
          })
          const web = await listen(app)
          webs.push(web)
          return web.url
        }
        const pS = uniquePrefix('skipok')
        const pF = uniquePrefix('skipfail')
        const skipOk = await mk(pS, { skipSuccessfulRequests: true })
        const skipFail = await mk(pF, { skipFailedRequests: true })
        const h = { 'x-user': 'carol' }
        const redisCount = async (p) => (await server.cli('GET', `${p}carol`)) || '(none)'

        // skipSuccessfulRequests: successes are taken back, failures stay counted.
        for (let i = 0; i < 3; i++) assert.equal((await get(skipOk, '/ok', h)).status, 200)
        await waitFor(async () => (await redisCount(pS)) === '0', {
          timeout: 5000,
          interval: 20,
          what: 'successes decremented',
        })
        for (let i = 0; i < 2; i++) assert.equal((await get(skipOk, '/fail', h)).status, 500)
        assert.equal((await get(skipOk, '/bad', h)).status, 404)
        await waitFor(async () => (await redisCount(pS)) === '3', {
          timeout: 5000,
          interval: 20,
          what: 'failures counted',
        })
        const r = await get(skipOk, '/ok', h)
        assert.equal(r.body.used, 4, 'the counter ERL sees is the Redis one')
        await waitFor(async () => (await redisCount(pS)) === '3', {
          timeout: 5000,
          interval: 20,
          what: 'success decremented',
        })
        assert.ok(Number(await server.cli('PTTL', `${pS}carol`)) > 0, 'TTL kept through decrements')

        // skipFailedRequests: failures are taken back, successes stay counted.
        for (let i = 0; i < 3; i++) assert.equal((await get(skipFail, '/fail', h)).status, 500)
        assert.equal((await get(skipFail, '/bad', h)).status, 404)
        await waitFor(async () => (await redisCount(pF)) === '0', {
          timeout: 5000,
          interval: 20,
          what: 'failures decremented',
        })
        for (let i = 0; i < 2; i++) assert.equal((await get(skipFail, '/ok', h)).status, 200)
        await waitFor(async () => (await redisCount(pF)) === '2', {
          timeout: 5000,
          interval: 20,
          what: 'successes counted',
        })
        assert.ok(Number(await server.cli('PTTL', `${pF}carol`)) > 0, 'TTL kept through decrements')
        // The key was deleted between the increment and the decrement: the decrement does not
        // create a key (rate-limit-redis's plain DECR would leave "-1" without a TTL).
        const n = decremented.length
        assert.equal((await get(skipFail, '/fail-after-reset', h)).status, 500)
        await waitFor(() => decremented.length === n + 1, { timeout: 5000, interval: 10, what: 'the decrement' })
        assert.equal(await server.cli('EXISTS', `${pF}carol`), '0')

        logs.assertNoErlWarnings()
      } finally {
        logs.restore()
        await Promise.all(webs.map((w) => w.close()))
      }
    })
  }

  test('express-slow-down: delays from the Redis count; two instances share one counter', async () => {
    logs = captureConsole()
    const webs = []
    const clients = []
    try {
      const prefix = uniquePrefix('slow')
      // Two "instances": each its own client and store, same Redis and prefix.
      for (let i = 0; i < 2; i++) {
        const c = newClient(server.url)
        clients.push(c)
        const app = express5()
        app.use(
          slowDown({
            windowMs: 60_000,
            delayAfter: 2,
            delayMs: (used) => (used - 2) * 20,
            keyGenerator: (req) => req.get('x-user'),
            store: new RedisStore({ client: c, prefix }),
          }),
        )
        app.get('/', (req, res) =>
          res.json({ used: req.slowDown.used, delay: req.slowDown.delay, limit: req.slowDown.limit }),
        )
        webs.push(await listen(app))
      }
      const seen = []
      for (let i = 0; i < 6; i++) {
        const r = await get(webs[i % 2].url, '/', { 'x-user': 'dave' })
        assert.equal(r.status, 200)
        seen.push(r.body)
      }
      assert.deepEqual(
        seen.map((b) => b.used),
        [1, 2, 3, 4, 5, 6],
        'one shared counter across instances',
      )
      assert.deepEqual(
        seen.map((b) => b.delay),
        [0, 0, 20, 40, 60, 80],
      )
      assert.equal(await server.cli('GET', `${prefix}dave`), '6')
      logs.assertNoErlWarnings()
    } finally {
      logs.restore()
      await Promise.all(webs.map((w) => w.close()))
      await Promise.all(clients.map((c) => c.close()))
    }
  })
})

describe("passOnStoreError with onUnavailable 'deny' and a killed server", () => {
  for (const [name, express] of EXPRESSES) {
    test(`${name}: true lets requests through (logged); false gives the error to Express (500, or the app's error handler)`, async () => {
      const server = await startRedis()
      const client = newClient(server.url)
      const logs = captureConsole()
      const webs = []
      try {
        assert.equal(await client.ready(5000), true)
        const mk = async (passOnStoreError, errorHandler) => {
          const app = express()
          app.set('env', 'test') // Express's default handler: no stack trace on the console
          app.use(
            rateLimit({
              windowMs: 60_000,
              limit: 2,
              passOnStoreError,
              standardHeaders: 'draft-7',
              legacyHeaders: false,
              keyGenerator: (req) => req.get('x-user'),
              store: new RedisStore({
                client,
                prefix: uniquePrefix(`pose-${passOnStoreError}`),
                onUnavailable: 'deny',
              }),
            }),
          )
          app.get('/', (req, res) => res.json({ limited: req.rateLimit !== undefined }))
          if (errorHandler) {
            app.use((err, req, res, next) => res.status(503).json({ code: err.code, name: err.name }))
          }
          const web = await listen(app)
          webs.push(web)
          return web.url
        }
        const passing = await mk(true, false)
        const failing = await mk(false, false)
        const handled = await mk(false, true)
        const h = { 'x-user': 'erin' }
        // While Redis is up, all three limit normally.
        for (const url of [passing, failing, handled]) {
          assert.equal((await get(url, '/', h)).status, 200)
          assert.equal((await get(url, '/', h)).status, 200)
          assert.equal((await get(url, '/', h)).status, 429)
        }

        await server.kill()
        // 'erin' is over her limit: each instance keeps answering 429 for her from its local
        // block until the window ends, Redis or not. A fresh client key needs the store.
        assert.equal((await get(passing, '/', h)).status, 429)
        h['x-user'] = 'frank'
        for (let i = 0; i < 3; i++) {
          const t0 = performance.now()
          const p = await get(passing, '/', h)
          const ms = performance.now() - t0
          assert.equal(p.status, 200, 'passOnStoreError: true lets the request through')
          assert.deepEqual(p.body, { limited: false })
          assert.ok(ms < 1000, `answered in ${ms.toFixed(0)} ms, not hung`)
          assert.equal(p.headers.get('ratelimit'), null, 'no rate-limit headers without a count')
        }
        const storeErrors = logs.entries.filter((e) =>
          e.args.some((a) => typeof a === 'string' && a.includes('error from store, allowing request')),
        )
        assert.equal(storeErrors.length, 3, logs.text())
        for (const e of storeErrors) {
          const err = e.args.find((a) => a instanceof Error)
          assert.ok(
            err && ['ERR_REDIS_GUARD_UNAVAILABLE', 'ERR_REDIS_GUARD_TIMEOUT'].includes(err.code),
            `logged error ${err && err.code}`,
          )
          assert.equal(err.name, 'RedisGuardError')
        }

        const f = await get(failing, '/', h)
        assert.equal(f.status, 500, "Express's default error handler")
        const e = await get(handled, '/', h)
        assert.equal(e.status, 503)
        assert.equal(e.body.name, 'RedisGuardError')
        assert.ok(['ERR_REDIS_GUARD_UNAVAILABLE', 'ERR_REDIS_GUARD_TIMEOUT'].includes(e.body.code), e.body.code)

        // Back up: limiting resumes by itself (counters started again: the server lost them).
        await server.restart()
        await waitFor(() => client.isAvailable(), { timeout: 15_000, interval: 25, what: 'recovery' })
        const back = await get(handled, '/', h)
        assert.equal(back.status, 200)
        assert.deepEqual(back.body, { limited: true })
        assert.match(back.headers.get('ratelimit'), /^limit=2, remaining=1, /)
        logs.assertNoErlWarnings()
      } finally {
        logs.restore()
        await Promise.all(webs.map((w) => w.close()))
        await client.close()
        await server.stop()
      }
    })
  }
})
