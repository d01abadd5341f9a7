// express-rate-limit Store conformance: every check that express-rate-limit makes of a store,
// run against RedisStore on a real redis-server, once per algorithm in ALGORITHMS (at the end
// of this file), through the real middleware (Express 5 and Express 4, as upstream's
// test/external/run-all-tests runs its store tests on both) over real HTTP, and on the Store
// methods directly. Windows are 500-2000 ms; the file runs in about 11 s.
// Run: node --test __tests__/conformance.test.mjs
//
// Mirrors express-rate-limit at commit 3828a5b61c90e3134451ab32e88e61072dbf19f5 (package 8.6.2,
// github.com/express-rate-limit/express-rate-limit), read from these files. The checks here are
// our own code; none of theirs is copied:
//  - test/external/stores/test/stores-test.ts (last changed in 0b5b5244ef07), the shared body
//    that every external store (rate-limit-redis, -mongo, -memcached) passes: an app with
//    `limit: 3` and a `message` answers 200, 200, 200, then 429. It is the only check in that
//    directory; test/external/stores/source/*.ts only build the apps it runs.
//  - test/library/memory-store-test.ts: the Store methods directly (increment from 1, get,
//    decrement, decrement never below 0, resetKey, resetAll, reset after windowMs, init called
//    again, shutdown, counts of a key across windows, no result object shared by two keys).
//  - test/library/middleware-test.ts: what the middleware needs from a store (init at creation,
//    429 at the limit, accepted again after the window, repeatedly, custom keys, limit as a
//    function, remaining hits, request.rateLimit, two limiters side by side, getKey/resetKey,
//    decrement for skipSuccessfulRequests / skipFailedRequests, including a closed and an
//    errored response and a 429, no decrement after resetTime, passOnStoreError).
//  - test/library/headers-test.ts: X-RateLimit-*, draft-6/7/8 RateLimit headers and
//    Retry-After computed from the store's resetTime.
//  - source/rate-limit.ts and source/validations.ts: the Store shape check of parseOptions and
//    the run-time validations that read a store (positiveHits, singleCount with `prefix`,
//    unsharedStore and creationStack with `localKeys`, headersResetTime).
//  - docs/guides/creating-a-store.mdx: the Store contract (get may return undefined, prefix,
//    localKeys, methods called before init completes).
// Checks of express-rate-limit alone (its message/handler/statusCode options, legacy `incr`
// stores, header setters called with headersSent, invalid draft names, MemoryStore's timers
// and its electron workaround) say nothing about a store and are not repeated here.

import assert from 'node:assert/strict'
import http from 'node:http'
import { after, before, describe, test as nodeTest } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'

import express5 from 'express'
import express4 from 'express4'
import { rateLimit } from 'express-rate-limit'

import { freePort, startRedis, waitFor } from './helpers/redis.mjs'
import { listen, uniquePrefix } from './helpers/utils.mjs'
import { RedisClient, RedisStore } from '../index.mjs'

const EXPRESSES = [
  ['Express 5', express5],
  ['Express 4', express4],
]
const MINUTE = 60_000
/** The short window of the tests that wait for a reset. */
const W = 500

const newClient = (url, opts = {}) => new RedisClient({ url, logger: false, ...opts })

/** No window of this file is longer than this: a reset time further ahead is a failure, not a wait. */
const MAX_WAIT_MS = 5000

/** Sleep until `date` (a Date or ms since the epoch) plus `slackMs` (at most MAX_WAIT_MS). */
async function sleepUntil(date, slackMs = 80) {
  const ms = (date instanceof Date ? date.getTime() : date) + slackMs - Date.now()
  assert.ok(ms <= MAX_WAIT_MS, `a reset time ${ms} ms ahead: longer than any window of these tests`)
  if (ms > 0) await sleep(ms)
}

/** A total hit count as express-rate-limit's positiveHits validation wants it, and a real Date. */
function assertIncrement(r, windowMs, what = 'increment') {
  assert.ok(
    Number.isInteger(r.totalHits) && r.totalHits >= 1,
    `${what}: totalHits ${r.totalHits} is a positive integer`,
  )
  assert.ok(r.resetTime instanceof Date && !Number.isNaN(r.resetTime.getTime()), `${what}: resetTime is a real Date`)
  // The sliding window's resetTime is the end of an aligned window, which can be 1 ms away when
  // the call is answered: allow for the ms that pass before this check, as above the window.
  const ahead = r.resetTime.getTime() - Date.now()
  assert.ok(ahead > -50 && ahead <= windowMs + 50, `${what}: resetTime ${ahead} ms ahead (window ${windowMs} ms)`)
}

/**
 * An express-rate-limit `logger` that records what it is given: validation errors and
 * warnings (ERR_ERL_* / WRN_ERL_*) and store errors all go there instead of the console.
 */
function makeLogger() {
  const entries = []
  const fmt = (a) =>
    a instanceof Error ? `${a.name} ${a.code ?? ''} ${a.message}` : typeof a === 'string' ? a : JSON.stringify(a)
  const push =
    (level) =>
    (...args) =>
      entries.push({ level, args, text: args.map(fmt).join(' ') })
  return {
    warn: push('warn'),
    error: push('error'),
    entries,
    codes: () =>
      entries.flatMap((e) => e.args.map((a) => a?.code).filter((c) => typeof c === 'string' && /_ERL_/.test(c))),
    assertQuiet(what = 'express-rate-limit logged nothing') {
      assert.deepEqual(
        entries.map((e) => `${e.level}: ${e.text}`),
        [],
        what,
      )
    },
  }
}

/**
 * The app of upstream's test/library/helpers/create-server.ts, plus the routes the checks
 * need: `/` (200 'Hi there!'), `/error` (400), `/crash` (the response is destroyed and emits
 * an error), `/slow?ms=N` (200 after N ms), `/hang` (never answers). `seen` holds every
 * request that reached the limiters (read `req.rateLimit` from it after the response).
 */
function makeApp(express, middleware, { onHang } = {}) {
  const app = express()
  const seen = []
  app.use((req, _res, next) => {
    seen.push(req)
    next()
  })
  app.use(middleware)
  app.all('/', (_req, res) => res.send('Hi there!'))
  app.get('/error', (_req, res) => res.sendStatus(400))
  app.get('/crash', (_req, res) => {
    const error = new Error('Oops!')
    res.destroy(error)
    res.emit('error', error)
  })
  app.get('/slow', (req, res) => setTimeout(() => res.send('slow'), Number(req.query.ms)))
  app.get('/hang', (req) => onHang?.(req))
  app.use((err, _req, res, _next) => res.status(500).send(String(err?.code ?? err?.message ?? err)))
  return { app, seen, last: () => seen[seen.length - 1] }
}

/** GET `path`; resolves `{ status, headers, body }` (body parsed as JSON when it is JSON). */
async function get(base, path = '/', headers = {}) {
  const res = await fetch(`${base}${path}`, { headers })
  const text = await res.text()
  let body = text
  try {
    body = JSON.parse(text)
  } catch {}
  return { status: res.status, headers: res.headers, body }
}

/** Statuses of `n` sequential GETs. */
async function statuses(base, path, n) {
  const out = []
  for (let i = 0; i < n; i++) out.push((await get(base, path)).status)
  return out
}

/** Record the keys `store.decrement` is called with (the call still reaches the store). */
function spyDecrement(store) {
  const calls = []
  const original = store.decrement
  store.decrement = async function (key) {
    calls.push(key)
    return original.call(this, key)
  }
  return calls
}

/** The count of `key` as the store reports it (a missing key counts 0). */
async function hitsOf(limiterOrStore, key) {
  const info = await (limiterOrStore.getKey ? limiterOrStore.getKey(key) : limiterOrStore.get(key))
  return info === undefined ? 0 : info.totalHits
}

/**
 * The conformance body: every check of a store, for one algorithm.
 * @param {string} name the algorithm's name (test titles)
 * @param {(opts: { client: RedisClient, prefix: string, [k: string]: unknown }) => object} makeStore
 */
/**
 * @param {string} name
 * @param {(opts: object) => RedisStore} makeStore
 * @param {Record<string, string>} [fixedOnly] checks (by the start of their title) whose premise
 *   is the fixed window, and why this algorithm differs: skipped with that reason
 */
function storeConformance(name, makeStore, fixedOnly = {}) {
  const test = (title, fn) => {
    const hit = Object.keys(fixedOnly).find((t) => title.startsWith(t))
    return nodeTest(title, { skip: hit ? `${name}: ${fixedOnly[hit]}` : false }, fn)
  }
  describe(`express-rate-limit Store conformance: ${name}`, () => {
    let server
    let client
    before(async () => {
      server = await startRedis()
      client = newClient(server.url)
      assert.equal(await client.ready(5000), true, 'client connects')
    })
    after(async () => {
      await client?.close()
      await server?.stop()
    })

    /** A store of this algorithm on the shared client, with a prefix of its own. */
    const newStore = (tag, extra = {}) => makeStore({ client, prefix: uniquePrefix(`${name}-${tag}`), ...extra })

    // -----------------------------------------------------------------------------------------
    // The Store methods, called directly (test/library/memory-store-test.ts,
    // docs/guides/creating-a-store.mdx, source/rate-limit.ts, source/validations.ts).
    // -----------------------------------------------------------------------------------------
    describe('Store methods, called directly', () => {
      test('the Store shape: required and optional methods, prefix, localKeys; rateLimit() accepts it (rate-limit.ts parseOptions; creating-a-store.mdx)', () => {
        const store = newStore('shape')
        for (const m of ['increment', 'decrement', 'resetKey'])
          assert.equal(typeof store[m], 'function', `required ${m}`)
        for (const m of ['init', 'get', 'resetAll', 'shutdown'])
          assert.equal(typeof store[m], 'function', `optional ${m}`)
        assert.equal(typeof store.prefix, 'string', 'prefix is a string (singleCount validation reads it)')
        assert.ok(store.prefix.length > 0)
        assert.equal(store.localKeys, false, 'localKeys is false: the counts are shared, keys are told apart by prefix')
        const log = makeLogger()
        const limiter = rateLimit({ store, logger: log })
        assert.equal(typeof limiter, 'function')
        assert.equal(typeof limiter.getKey, 'function')
        assert.equal(typeof limiter.resetKey, 'function')
        log.assertQuiet()
      })

      test('increment starts at 1 and adds 1 per call, resolving { totalHits: positive integer, resetTime: Date } (memory-store-test "sets the value to 1", "increments the key"; validations positiveHits)', async () => {
        const store = newStore('increment')
        store.init({ windowMs: MINUTE })
        const r1 = await store.increment('test-store')
        assert.equal(r1.totalHits, 1)
        assertIncrement(r1, MINUTE, 'first increment')
        const r2 = await store.increment('test-store')
        assert.equal(r2.totalHits, 2)
        assertIncrement(r2, MINUTE, 'second increment')
        // "adds 1 to the internal count" also holds for calls of one tick (a burst of requests).
        const burst = await Promise.all(Array.from({ length: 20 }, () => store.increment('burst')))
        for (const r of burst) assertIncrement(r, MINUTE, 'burst increment')
        assert.deepEqual(
          burst.map((r) => r.totalHits).sort((a, b) => a - b),
          Array.from({ length: 20 }, (_, i) => i + 1),
        )
      })

      test('get returns the hit count and reset time of a key, undefined for a key never seen (memory-store-test "returns the current hit count"; creating-a-store.mdx get)', async () => {
        const store = newStore('get')
        store.init({ windowMs: MINUTE })
        const inc = await store.increment('test-store')
        const info = await store.get('test-store')
        assert.equal(info.totalHits, 1)
        assert.ok(info.resetTime instanceof Date && !Number.isNaN(info.resetTime.getTime()))
        assert.ok(
          Math.abs(info.resetTime.getTime() - inc.resetTime.getTime()) <= 50,
          'get reports the reset time increment reported',
        )
        assert.equal(await store.get('never-seen'), undefined)
      })

      test('decrement undoes one hit (memory-store-test "decrements the key")', async () => {
        const store = newStore('decrement')
        store.init({ windowMs: MINUTE })
        await store.increment('test-store')
        await store.increment('test-store')
        await store.decrement('test-store')
        const r = await store.increment('test-store')
        assert.equal(r.totalHits, 2)
      })

      test('decrement never goes below 0: the key stays, at 0, and counts from 1 again (memory-store-test "does not decrement the key below 0")', async () => {
        const store = newStore('floor')
        store.init({ windowMs: MINUTE })
        await store.increment('test-store')
        await store.decrement('test-store')
        await store.decrement('test-store')
        const info = await store.get('test-store')
        assert.notEqual(info, undefined, 'the key is still there')
        assert.equal(info.totalHits, 0)
        const r = await store.increment('test-store')
        assert.equal(r.totalHits, 1)
        assertIncrement(r, MINUTE)
      })

      test('resetKey removes the key: get is undefined and the next hit counts 1 (memory-store-test "resetKey should remove the key", "resets the count for a key")', async () => {
        const store = newStore('resetkey')
        store.init({ windowMs: MINUTE })
        await store.increment('test-key')
        await store.increment('test-key')
        assert.notEqual(await store.get('test-key'), undefined)
        await store.resetKey('test-key')
        assert.equal(await store.get('test-key'), undefined)
        assert.equal((await store.increment('test-key')).totalHits, 1)
      })

      test('resetAll resets every key of the store and no key of another prefix (memory-store-test "resets the count for all keys"; creating-a-store.mdx prefix)', async () => {
        const store = newStore('resetall')
        const other = newStore('resetall-other')
        store.init({ windowMs: MINUTE })
        other.init({ windowMs: MINUTE })
        await store.increment('test-store-one')
        await store.increment('test-store-one')
        await store.increment('test-store-two')
        await other.increment('test-store-one')
        await store.resetAll()
        assert.equal((await store.increment('test-store-one')).totalHits, 1)
        assert.equal((await store.increment('test-store-two')).totalHits, 1)
        assert.equal((await other.increment('test-store-one')).totalHits, 2, 'the other prefix kept its count')
      })

      test('the counts of every key restart once windowMs has passed (memory-store-test "resets the count for all the keys ... when the timeout is reached")', async () => {
        const store = newStore('expiry')
        store.init({ windowMs: W })
        await store.increment('test-store-one')
        await store.increment('test-store-one')
        const last = await store.increment('test-store-two')
        assertIncrement(last, W)
        await sleepUntil(last.resetTime)
        const one = await store.increment('test-store-one')
        const two = await store.increment('test-store-two')
        assert.equal(one.totalHits, 1)
        assert.equal(two.totalHits, 1)
        assertIncrement(one, W, 'new window')
      })

      test('a key counts on correctly across windows and two keys never share a result (memory-store-test "should move clients from previous to current", "does not allow a Client object to be assigned to two keys")', async () => {
        const store = newStore('windows')
        store.init({ windowMs: W })
        let r = await store.increment('key1')
        await sleepUntil(r.resetTime)
        assert.equal((await store.increment('key1')).totalHits, 1, 'key1 in its second window')
        r = await store.increment('key2')
        await sleepUntil(r.resetTime)
        await store.increment('key1')
        await store.increment('key1')
        const r1 = await store.increment('key1')
        assert.equal(r1.totalHits, 3)
        const r3 = await store.increment('key3')
        assert.notEqual(r1, r3, 'separate objects')
        assert.equal(r3.totalHits, 1)
        assert.equal(r1.totalHits, 3, 'the result of key1 was not changed by key3')
        assert.equal((await store.increment('key1')).totalHits, 4)
      })

      test('init called again takes the new windowMs (memory-store-test "should automatically clear previously set intervals")', async () => {
        const store = newStore('reinit')
        store.init({ windowMs: MINUTE })
        store.init({ windowMs: W })
        const r = await store.increment('k')
        assertIncrement(r, W, 'after the second init')
      })

      test('calls made before init and before the connection is up work (creating-a-store.mdx: init is not awaited)', async () => {
        const c = newClient(server.url) // not awaited: the connection is not up yet
        try {
          const store = makeStore({ client: c, prefix: uniquePrefix(`${name}-early`) })
          const early = store.increment('k') // before init
          store.init({ windowMs: MINUTE })
          const rest = await Promise.all([store.increment('k'), store.increment('k')])
          const all = [await early, ...rest]
          assert.deepEqual(all.map((r) => r.totalHits).sort(), [1, 2, 3])
          for (const r of all) assert.ok(r.resetTime instanceof Date)
          assert.equal((await store.get('k')).totalHits, 3)
        } finally {
          await c.close()
        }
      })

      test('stores with the same prefix share one count (localKeys: false), other prefixes count apart (creating-a-store.mdx prefix, localKeys)', async () => {
        const c2 = newClient(server.url) // as a second process would
        try {
          const prefix = uniquePrefix(`${name}-shared`)
          const a = makeStore({ client, prefix })
          const b = makeStore({ client: c2, prefix })
          const apart = newStore('apart')
          for (const s of [a, b, apart]) s.init({ windowMs: MINUTE })
          assert.equal((await a.increment('ip')).totalHits, 1)
          assert.equal((await b.increment('ip')).totalHits, 2)
          assert.equal((await a.increment('ip')).totalHits, 3)
          assert.equal((await b.get('ip')).totalHits, 3)
          assert.equal((await apart.increment('ip')).totalHits, 1)
          await b.resetKey('ip')
          assert.equal(await a.get('ip'), undefined, 'a reset by one instance is seen by the other')
        } finally {
          await c2.close()
        }
      })

      test('shutdown resolves and leaves a client the store did not create usable (memory-store-test "clears the timer when shutdown is called")', async () => {
        const c = newClient(server.url)
        try {
          const store = makeStore({ client: c, prefix: uniquePrefix(`${name}-shutdown`) })
          store.init({ windowMs: MINUTE })
          await store.increment('k')
          await store.shutdown()
          const again = makeStore({ client: c, prefix: store.prefix })
          again.init({ windowMs: MINUTE })
          assert.equal((await again.increment('k')).totalHits, 2, 'the client still works after shutdown')
        } finally {
          await c.close()
        }
      })
    })

    // -----------------------------------------------------------------------------------------
    // Through express-rate-limit over HTTP (test/external/stores/test/stores-test.ts,
    // test/library/middleware-test.ts, test/library/headers-test.ts, source/validations.ts).
    // -----------------------------------------------------------------------------------------
    for (const [label, express] of EXPRESSES) {
      describe(`through express-rate-limit on ${label}`, () => {
        /** Run `fn(web, appInfo)` against the app with `middleware`; the server is closed after. */
        async function withApp(middleware, fn, appOpts) {
          const info = makeApp(express, middleware, appOpts)
          const web = await listen(info.app)
          try {
            return await fn(web, info)
          } finally {
            await web.close()
          }
        }

        test('200, 200, 200, then 429 with the message at limit 3 (stores-test.ts "should work for %s store")', async () => {
          const log = makeLogger()
          const message = 'Thou shalt not pass so often'
          const limiter = rateLimit({ limit: 3, message, store: newStore('external'), logger: log })
          await withApp(limiter, async (web) => {
            for (let i = 0; i < 3; i++) {
              const r = await get(web.url)
              assert.equal(r.status, 200)
              assert.equal(r.body, 'Hi there!')
            }
            const blocked = await get(web.url)
            assert.equal(blocked.status, 429)
            assert.equal(blocked.body, message)
          })
          log.assertQuiet()
        })

        test('the first request passes; at the limit the next is refused (middleware-test "should let the first request through", "should refuse additional connections")', async () => {
          const log = makeLogger()
          await withApp(rateLimit({ limit: 2, store: newStore('max'), logger: log }), async (web) => {
            const first = await get(web.url)
            assert.equal(first.status, 200)
            assert.equal(first.body, 'Hi there!')
            assert.deepEqual(await statuses(web.url, '/', 2), [200, 429])
          })
          log.assertQuiet()
        })

        test('a blocked client is accepted again after the window, repeatedly (middleware-test "should (eventually) accept new connections", "should work repeatedly")', async () => {
          const log = makeLogger()
          await withApp(
            rateLimit({ limit: 2, windowMs: W, store: newStore('windows'), logger: log }),
            async (web, app) => {
              assert.deepEqual(await statuses(web.url, '/', 3), [200, 200, 429])
              const blockedUntil = app.last().rateLimit.resetTime
              assert.ok(blockedUntil instanceof Date && blockedUntil.getTime() - Date.now() <= W + 50)
              await sleepUntil(blockedUntil)
              assert.deepEqual(await statuses(web.url, '/', 3), [200, 200, 429])
              assert.equal(app.last().rateLimit.used, 3)
              await sleepUntil(app.last().rateLimit.resetTime)
              const r = await get(web.url)
              assert.equal(r.status, 200)
              assert.equal(app.last().rateLimit.used, 1, 'a new window counts from 1')
            },
          )
          log.assertQuiet()
        })

        test('custom keyGenerator: each key has its own count (middleware-test "should allow custom key generators")', async () => {
          const log = makeLogger()
          const limiter = rateLimit({
            limit: 2,
            keyGenerator: (req) => String(req.query.key),
            store: newStore('keys'),
            logger: log,
          })
          await withApp(limiter, async (web) => {
            assert.equal((await get(web.url, '/?key=1')).status, 200)
            assert.equal((await get(web.url, '/?key=1')).status, 200)
            assert.equal((await get(web.url, '/?key=2')).status, 200)
            assert.equal((await get(web.url, '/?key=1')).status, 429)
            assert.equal((await get(web.url, '/?key=2')).status, 200)
            assert.equal((await get(web.url, '/?key=2')).status, 429)
          })
          log.assertQuiet()
        })

        test('limit as a function and as an async function (middleware-test "should allow max to be a function [that returns a promise]")', async () => {
          for (const limit of [() => 2, async () => 2]) {
            const log = makeLogger()
            await withApp(rateLimit({ limit, store: newStore('limitfn'), logger: log }), async (web) => {
              assert.deepEqual(await statuses(web.url, '/', 3), [200, 200, 429])
            })
            log.assertQuiet()
          }
        })

        test('remaining hits and X-RateLimit-* headers, no Retry-After while allowed (middleware-test "should calculate the remaining hits"; headers-test "x-ratelimit-*")', async () => {
          const log = makeLogger()
          await withApp(rateLimit({ limit: async () => 2, store: newStore('remaining'), logger: log }), async (web) => {
            const r = await get(web.url)
            assert.equal(r.status, 200)
            assert.equal(r.headers.get('x-ratelimit-limit'), '2')
            assert.equal(r.headers.get('x-ratelimit-remaining'), '1')
            assert.equal(r.headers.get('retry-after'), null)
          })
          await withApp(
            rateLimit({ windowMs: MINUTE, limit: 5, legacyHeaders: true, store: newStore('legacy'), logger: log }),
            async (web) => {
              const expectedReset = Math.ceil((Date.now() + MINUTE) / 1000)
              const r = await get(web.url)
              assert.equal(r.status, 200)
              assert.equal(r.headers.get('x-ratelimit-limit'), '5')
              assert.equal(r.headers.get('x-ratelimit-remaining'), '4')
              const reset = Number(r.headers.get('x-ratelimit-reset'))
              assert.ok(
                reset >= expectedReset - 1 && reset <= expectedReset + 1,
                `X-RateLimit-Reset ${reset}, expected ${expectedReset} ± 1`,
              )
            },
          )
          log.assertQuiet()
        })

        test('standard headers draft-6 and draft-7 (headers-test "draft 6", "draft 7")', async () => {
          const log = makeLogger()
          await withApp(
            rateLimit({ windowMs: MINUTE, limit: 5, standardHeaders: true, store: newStore('draft6'), logger: log }),
            async (web) => {
              const r = await get(web.url)
              assert.equal(r.status, 200)
              assert.equal(r.headers.get('ratelimit-policy'), '5;w=60')
              assert.equal(r.headers.get('ratelimit-limit'), '5')
              assert.equal(r.headers.get('ratelimit-remaining'), '4')
              assert.equal(r.headers.get('ratelimit-reset'), '60')
            },
          )
          await withApp(
            rateLimit({
              windowMs: MINUTE,
              limit: 5,
              standardHeaders: 'draft-7',
              store: newStore('draft7'),
              logger: log,
            }),
            async (web) => {
              const r = await get(web.url)
              assert.equal(r.status, 200)
              assert.equal(r.headers.get('ratelimit-policy'), '5;w=60')
              assert.equal(r.headers.get('ratelimit'), 'limit=5, remaining=4, reset=60')
            },
          )
          log.assertQuiet('no ERR_ERL_HEADERS_NO_RESET: the store gives a resetTime')
        })

        test('standard headers draft-8, with the quota name given and not (headers-test "draft 8", "override the quota name")', async () => {
          const log = makeLogger()
          const twoHours = 2 * 60 * MINUTE
          await withApp(
            rateLimit({
              windowMs: twoHours,
              limit: 5,
              standardHeaders: 'draft-8',
              keyGenerator: () => 'foo',
              store: newStore('draft8'),
              logger: log,
            }),
            async (web) => {
              const r = await get(web.url)
              assert.equal(r.status, 200)
              assert.equal(r.headers.get('ratelimit-policy'), '"5-in-2hrs"; q=5; w=7200; pk=:MmMyNmI0NmI2OGZm:')
              assert.equal(r.headers.get('ratelimit'), '"5-in-2hrs"; r=4; t=7200')
            },
          )
          await withApp(
            rateLimit({
              identifier: 'keep-kalm',
              windowMs: twoHours,
              limit: 5,
              standardHeaders: 'draft-8',
              keyGenerator: () => 'foo',
              store: newStore('draft8-named'),
              logger: log,
            }),
            async (web) => {
              const r = await get(web.url)
              assert.equal(r.headers.get('ratelimit-policy'), '"keep-kalm"; q=5; w=7200; pk=:MmMyNmI0NmI2OGZm:')
              assert.equal(r.headers.get('ratelimit'), '"keep-kalm"; r=4; t=7200')
            },
          )
          log.assertQuiet()
        })

        test('five limiters with five stores on one request: five draft-8 policies, no double count (headers-test "multiple headers ... draft 8"; validations singleCount with prefix)', async () => {
          const log = makeLogger()
          const day = 24 * 60 * MINUTE
          const common = { standardHeaders: 'draft-8', keyGenerator: () => 'foo', logger: log }
          const limiters = [
            [5_000, 1],
            [MINUTE, 5],
            [60 * MINUTE, 6],
            [day, 7],
            [2 * day, 8],
          ].map(([windowMs, limit], i) => rateLimit({ ...common, windowMs, limit, store: newStore(`multi${i}`) }))
          await withApp(limiters, async (web) => {
            const r = await get(web.url)
            assert.equal(r.status, 200)
            assert.equal(
              r.headers.get('ratelimit-policy'),
              [
                '"1-in-5sec"; q=1; w=5; pk=:MmMyNmI0NmI2OGZm:',
                '"5-in-1min"; q=5; w=60; pk=:MmMyNmI0NmI2OGZm:',
                '"6-in-1hr"; q=6; w=3600; pk=:MmMyNmI0NmI2OGZm:',
                '"7-in-1day"; q=7; w=86400; pk=:MmMyNmI0NmI2OGZm:',
                '"8-in-2days"; q=8; w=172800; pk=:MmMyNmI0NmI2OGZm:',
              ].join(', '),
            )
            assert.equal(
              r.headers.get('ratelimit'),
              [
                '"1-in-5sec"; r=0; t=5',
                '"5-in-1min"; r=4; t=60',
                '"6-in-1hr"; r=5; t=3600',
                '"7-in-1day"; r=6; t=86400',
                '"8-in-2days"; r=7; t=172800',
              ].join(', '),
            )
          })
          log.assertQuiet('no ERR_ERL_DOUBLE_COUNT: the stores have different prefixes')
        })

        test('Retry-After at the limit, and none when every header is off (headers-test "retry-after ... once IP has reached the max", "should not set the retry-after header")', async () => {
          const log = makeLogger()
          await withApp(
            rateLimit({ windowMs: MINUTE, limit: 1, store: newStore('retry'), logger: log }),
            async (web) => {
              assert.equal((await get(web.url)).status, 200)
              const r = await get(web.url)
              assert.equal(r.status, 429)
              assert.equal(r.headers.get('retry-after'), '60')
              const again = await get(web.url)
              assert.equal(again.status, 429)
              assert.equal(again.headers.get('retry-after'), '60', 'still counted from the same resetTime')
            },
          )
          await withApp(
            rateLimit({
              windowMs: MINUTE,
              limit: 1,
              legacyHeaders: false,
              standardHeaders: false,
              store: newStore('noretry'),
              logger: log,
            }),
            async (web) => {
              assert.equal((await get(web.url)).status, 200)
              const r = await get(web.url)
              assert.equal(r.status, 429)
              assert.equal(r.headers.get('retry-after'), null)
            },
          )
          log.assertQuiet()
        })

        test('Retry-After and RateLimit-Reset count down to the store\'s resetTime, not a fresh windowMs (headers-test "stores that do not provide reset time", the other way round)', async () => {
          const log = makeLogger()
          const windowMs = 2000
          await withApp(
            rateLimit({ windowMs, limit: 1, standardHeaders: 'draft-6', store: newStore('countdown'), logger: log }),
            async (web, app) => {
              const first = await get(web.url)
              assert.equal(first.status, 200)
              assert.equal(first.headers.get('ratelimit-reset'), '2')
              await sleepUntil(app.last().rateLimit.resetTime.getTime() - 900, 0) // ~0.9 s left
              const r = await get(web.url)
              assert.equal(r.status, 429)
              assert.equal(r.headers.get('retry-after'), '1')
              assert.equal(r.headers.get('ratelimit-reset'), '1')
            },
          )
          log.assertQuiet()
        })

        test('request.rateLimit and a custom requestPropertyName carry limit, used, remaining, resetTime and current (middleware-test "should pass the number of hits ...")', async () => {
          const log = makeLogger()
          await withApp(
            rateLimit({ legacyHeaders: false, limit: 6, store: newStore('reqprop'), logger: log }),
            async (web, app) => {
              for (const used of [1, 2]) {
                assert.equal((await get(web.url)).status, 200)
                const info = app.last().rateLimit
                assert.equal(info.limit, 6)
                assert.equal(info.used, used)
                assert.equal(info.remaining, 6 - used)
                assert.ok(info.resetTime instanceof Date)
                assert.equal(info.key, '127.0.0.1')
                assert.equal(info.current, used)
              }
            },
          )
          await withApp(
            rateLimit({
              legacyHeaders: false,
              requestPropertyName: 'rateLimitInfo',
              store: newStore('reqprop2'),
              logger: log,
            }),
            async (web, app) => {
              for (const used of [1, 2]) {
                await get(web.url)
                const info = app.last().rateLimitInfo
                assert.deepEqual([info.limit, info.used, info.remaining, info.current], [5, used, 5 - used, used])
                assert.ok(info.resetTime instanceof Date)
              }
            },
          )
          log.assertQuiet()
        })

        test('two limiters with different requestPropertyNames and stores operate independently (middleware-test "should handle two rate-limiters ...")', async () => {
          const log = makeLogger()
          const keyLimiter = rateLimit({
            limit: 2,
            requestPropertyName: 'rateLimitKey',
            keyGenerator: (req) => String(req.query.key),
            handler: (_req, res) => res.status(420).end('Enhance your calm'),
            store: newStore('perkey'),
            logger: log,
          })
          const globalLimiter = rateLimit({
            limit: 5,
            requestPropertyName: 'rateLimitGlobal',
            keyGenerator: () => 'global',
            handler: (_req, res) => res.status(429).end('Too many requests'),
            store: newStore('global'),
            logger: log,
          })
          await withApp([keyLimiter, globalLimiter], async (web, app) => {
            const step = async (key, status, keyRemaining, globalRemaining) => {
              const r = await get(web.url, `/?key=${key}`)
              assert.equal(r.status, status, `key ${key}`)
              const req = app.last()
              assert.equal(req.rateLimit, undefined)
              assert.equal(req.rateLimitKey.remaining, keyRemaining)
              if (globalRemaining !== undefined) assert.equal(req.rateLimitGlobal.remaining, globalRemaining)
              return r
            }
            await step(1, 200, 1, 4)
            assert.equal(app.last().rateLimitKey.limit, 2)
            assert.equal(app.last().rateLimitGlobal.limit, 5)
            await step(2, 200, 1, 3)
            await step(1, 200, 0, 2)
            await step(2, 200, 0, 1)
            const r = await step(1, 420, 0)
            assert.equal(r.body, 'Enhance your calm')
            await step(3, 200, 1, 0)
            const g = await step(3, 429, 0, 0)
            assert.equal(g.body, 'Too many requests')
          })
          log.assertQuiet()
        })

        test('limiter.getKey and limiter.resetKey reach the store; a reset unblocks the client (middleware-test "should call `get` / `resetKey` on the store")', async () => {
          const log = makeLogger()
          const limiter = rateLimit({ limit: 2, store: newStore('getreset'), logger: log })
          await withApp(limiter, async (web) => {
            assert.equal(await limiter.getKey('127.0.0.1'), undefined, 'no hit yet')
            assert.deepEqual(await statuses(web.url, '/', 3), [200, 200, 429])
            const info = await limiter.getKey('127.0.0.1')
            assert.equal(typeof info.totalHits, 'number')
            assert.equal(info.totalHits, 3)
            assert.ok(info.resetTime instanceof Date)
            await limiter.resetKey('127.0.0.1')
            assert.equal(await limiter.getKey('127.0.0.1'), undefined)
            const r = await get(web.url)
            assert.equal(r.status, 200, 'allowed again after resetKey')
            assert.equal(r.headers.get('x-ratelimit-remaining'), '1')
          })
          log.assertQuiet()
        })

        test('skipSuccessfulRequests: a success is decremented, a failure is not (middleware-test "should [not] decrement hits when requests succeed/fail and skipSuccessfulRequests")', async () => {
          const log = makeLogger()
          const store = newStore('skipsuccess')
          const calls = spyDecrement(store)
          const limiter = rateLimit({ limit: 2, skipSuccessfulRequests: true, store, logger: log })
          await withApp(limiter, async (web) => {
            for (let i = 1; i <= 4; i++) {
              assert.equal((await get(web.url)).status, 200, `success ${i} under limit 2 is never limited`)
              await waitFor(() => calls.length === i, { timeout: 2000, interval: 10, what: `decrement ${i}` })
            }
            await waitFor(async () => (await hitsOf(limiter, '127.0.0.1')) === 0, {
              timeout: 2000,
              interval: 10,
              what: 'count back at 0',
            })
            assert.equal((await get(web.url, '/error')).status, 400)
            await sleep(50)
            assert.equal(calls.length, 4, 'the 400 was not decremented')
            assert.equal(await hitsOf(limiter, '127.0.0.1'), 1)
          })
          log.assertQuiet()
        })

        test('skipSuccessfulRequests with a custom requestWasSuccessful (status, query) (middleware-test "... custom `requestWasSuccessful` method used")', async () => {
          const log = makeLogger()
          const variants = [
            { requestWasSuccessful: (_req, res) => res.statusCode === 200, ok: '/', fail: '/error' },
            { requestWasSuccessful: (req) => req.query.success === '1', ok: '/?success=1', fail: '/?success=0' },
          ]
          for (const { requestWasSuccessful, ok, fail } of variants) {
            const store = newStore('wassuccessful')
            const calls = spyDecrement(store)
            const limiter = rateLimit({ skipSuccessfulRequests: true, requestWasSuccessful, store, logger: log })
            await withApp(limiter, async (web) => {
              assert.equal((await get(web.url, ok)).status, 200)
              await waitFor(() => calls.length === 1, { timeout: 2000, interval: 10, what: 'decrement of the success' })
              await waitFor(async () => (await hitsOf(limiter, '127.0.0.1')) === 0, {
                timeout: 2000,
                interval: 10,
                what: 'count 0',
              })
              await get(web.url, fail)
              await sleep(50)
              assert.equal(calls.length, 1, 'the failure was not decremented')
              assert.equal(await hitsOf(limiter, '127.0.0.1'), 1)
            })
          }
          log.assertQuiet()
        })

        test('skipFailedRequests: a failure is decremented, a success is not; an async requestWasSuccessful returning false counts as a failure (middleware-test "... skipFailedRequests")', async () => {
          const log = makeLogger()
          const store = newStore('skipfailed')
          const calls = spyDecrement(store)
          const limiter = rateLimit({ limit: 2, skipFailedRequests: true, store, logger: log })
          await withApp(limiter, async (web) => {
            for (let i = 1; i <= 3; i++) {
              assert.equal((await get(web.url, '/error')).status, 400, `failure ${i} is never limited`)
              await waitFor(() => calls.length === i, { timeout: 2000, interval: 10, what: `decrement ${i}` })
            }
            await waitFor(async () => (await hitsOf(limiter, '127.0.0.1')) === 0, {
              timeout: 2000,
              interval: 10,
              what: 'count 0',
            })
            assert.equal((await get(web.url)).status, 200)
            await sleep(50)
            assert.equal(calls.length, 3, 'the success was not decremented')
            assert.equal(await hitsOf(limiter, '127.0.0.1'), 1)
          })
          const store2 = newStore('skipfailed-async')
          const calls2 = spyDecrement(store2)
          const limiter2 = rateLimit({
            skipFailedRequests: true,
            requestWasSuccessful: async () => false,
            store: store2,
            logger: log,
          })
          await withApp(limiter2, async (web) => {
            assert.equal((await get(web.url)).status, 200)
            await waitFor(() => calls2.length === 1, { timeout: 2000, interval: 10, what: 'decrement' })
            await waitFor(async () => (await hitsOf(limiter2, '127.0.0.1')) === 0, {
              timeout: 2000,
              interval: 10,
              what: 'count 0',
            })
          })
          log.assertQuiet()
        })

        test('skipFailedRequests: a response closed by the client before it ends is decremented (middleware-test "should decrement hits when response closes")', async () => {
          const log = makeLogger()
          const store = newStore('closed')
          const calls = spyDecrement(store)
          const limiter = rateLimit({ skipFailedRequests: true, store, logger: log })
          let received
          const arrived = new Promise((resolve) => {
            received = resolve
          })
          let closed
          const gone = new Promise((resolve) => {
            closed = resolve
          })
          const onHang = (req) => {
            req.on('close', closed)
            received()
          }
          await withApp(
            limiter,
            async (web) => {
              let answered = false
              let onAnswer
              const answer = new Promise((resolve) => {
                onAnswer = resolve
              })
              const req = http.get(`${web.url}/hang`, (res) => {
                answered = true
                res.resume()
                onAnswer(res.statusCode)
              })
              req.on('error', () => {}) // the abort below
              // If the limiter answers (a 429, an error) the route never runs: fail, do not hang.
              const first = await Promise.race([arrived.then(() => 'arrived'), answer])
              assert.equal(first, 'arrived', `/hang was answered with ${first} instead of reaching the route`)
              req.destroy()
              await Promise.race([gone, sleep(2000).then(() => assert.fail('the server never saw the request close'))])
              await waitFor(() => calls.length === 1, { timeout: 2000, interval: 10, what: 'decrement after close' })
              await waitFor(async () => (await hitsOf(limiter, '127.0.0.1')) === 0, {
                timeout: 2000,
                interval: 10,
                what: 'count 0',
              })
              assert.equal(answered, false, 'the server never answered /hang')
            },
            { onHang },
          )
          log.assertQuiet()
        })

        test('skipFailedRequests: a response that errors is decremented (middleware-test "should decrement hits when response emits an error")', async () => {
          const log = makeLogger()
          const store = newStore('crash')
          const calls = spyDecrement(store)
          const limiter = rateLimit({ skipFailedRequests: true, store, logger: log })
          await withApp(limiter, async (web) => {
            await assert.rejects(get(web.url, '/crash'), 'the connection is destroyed')
            await waitFor(() => calls.length === 1, { timeout: 2000, interval: 10, what: 'decrement after error' })
            await waitFor(async () => (await hitsOf(limiter, '127.0.0.1')) === 0, {
              timeout: 2000,
              interval: 10,
              what: 'count 0',
            })
          })
          log.assertQuiet()
        })

        test('skipFailedRequests: a 429 is a failed request, its hit is decremented (middleware-test "should decrement hits when rate limit is reached")', async () => {
          const log = makeLogger()
          const store = newStore('limited')
          const calls = spyDecrement(store)
          const limiter = rateLimit({ limit: 2, skipFailedRequests: true, store, logger: log })
          await withApp(limiter, async (web) => {
            assert.deepEqual(await statuses(web.url, '/', 3), [200, 200, 429])
            await waitFor(() => calls.length === 1, { timeout: 2000, interval: 10, what: 'decrement of the 429' })
            await waitFor(async () => (await hitsOf(limiter, '127.0.0.1')) === 2, {
              timeout: 2000,
              interval: 10,
              what: 'count back at 2',
            })
            const r = await get(web.url)
            assert.equal(r.status, 429, 'still limited')
            assert.equal(r.headers.get('x-ratelimit-remaining'), '0')
            await waitFor(() => calls.length === 2, {
              timeout: 2000,
              interval: 10,
              what: 'decrement of the second 429',
            })
            await waitFor(async () => (await hitsOf(limiter, '127.0.0.1')) === 2, {
              timeout: 2000,
              interval: 10,
              what: 'count stays at 2',
            })
          })
          log.assertQuiet()
        })

        test('a request that ends before resetTime is decremented, one that ends after it is not (middleware-test "should [not] decrement hits when request finishes before/after `resetTime`")', async () => {
          const log = makeLogger()
          const store = newStore('before-reset')
          const calls = spyDecrement(store)
          // A long window here, so that only a decrement (not the key expiring) brings the count to 0.
          const limiter = rateLimit({ skipSuccessfulRequests: true, windowMs: MINUTE, store, logger: log })
          await withApp(limiter, async (web) => {
            assert.equal((await get(web.url, '/slow?ms=25')).status, 200)
            await waitFor(() => calls.length === 1, { timeout: 2000, interval: 10, what: 'decrement' })
            await waitFor(async () => (await hitsOf(limiter, '127.0.0.1')) === 0, {
              timeout: 2000,
              interval: 10,
              what: 'count 0',
            })
          })
          const late = newStore('after-reset')
          const lateCalls = spyDecrement(late)
          const lateLimiter = rateLimit({ skipSuccessfulRequests: true, windowMs: W, store: late, logger: log })
          await withApp(lateLimiter, async (web, app) => {
            assert.equal((await get(web.url, `/slow?ms=${W + 200}`)).status, 200)
            const resetTime = app.last().rateLimit.resetTime
            assert.ok(resetTime.getTime() <= Date.now(), 'the request ended after its resetTime')
            await sleep(50)
            assert.deepEqual(lateCalls, [], 'no decrement after resetTime')
            assert.equal((await get(web.url)).status, 200)
            assert.equal(app.last().rateLimit.used, 1, 'the next request opens a new window at 1')
          })
          log.assertQuiet()
        })

        test('init is called once at creation with the options, not awaited, without error, and its windowMs is used (middleware-test "should call `init` even if no requests have come in", "async store init")', async () => {
          const log = makeLogger()
          const store = newStore('init')
          const seen = []
          const original = store.init
          store.init = function (options) {
            seen.push(options)
            return original.call(this, options)
          }
          const limiter = rateLimit({ windowMs: 700, limit: 4, store, logger: log })
          assert.equal(seen.length, 1, 'init was called at creation')
          assert.equal(seen[0].windowMs, 700)
          assert.equal(seen[0].limit, 4)
          assert.equal(typeof limiter, 'function')
          assert.ok(!(limiter instanceof Promise))
          await new Promise((resolve) => process.nextTick(resolve))
          log.assertQuiet('no "error during store initialization"')
          await withApp(limiter, async (web, app) => {
            assert.equal((await get(web.url)).status, 200)
            assertIncrement(
              { totalHits: app.last().rateLimit.used, resetTime: app.last().rateLimit.resetTime },
              700,
              'first request',
            )
          })
          assert.equal(seen.length, 1, 'init is not called per request')
          log.assertQuiet()
        })

        test('a failing store: 500 by default, passed with one logged error under passOnStoreError (middleware-test "should [not] pass if the store throws an error ...")', async () => {
          const dead = newClient(`redis://127.0.0.1:${await freePort()}`) // nothing listens there
          try {
            for (const passOnStoreError of [false, true]) {
              const log = makeLogger()
              const store = makeStore({ client: dead, prefix: uniquePrefix(`${name}-dead`), onUnavailable: 'deny' })
              await withApp(rateLimit({ limit: 1, passOnStoreError, store, logger: log }), async (web) => {
                const r = await get(web.url)
                if (!passOnStoreError) {
                  assert.equal(r.status, 500)
                  assert.match(r.body, /^ERR_REDIS_GUARD_(UNAVAILABLE|TIMEOUT)$/)
                  log.assertQuiet()
                } else {
                  assert.equal(r.status, 200)
                  assert.equal(r.body, 'Hi there!')
                  assert.equal(log.entries.length, 1, log.entries.map((e) => e.text).join('\n'))
                  assert.equal(log.entries[0].level, 'error')
                  assert.match(log.entries[0].text, /allowing/)
                  assert.ok(
                    log.entries[0].args.some((a) => a instanceof Error),
                    'the store error is passed to the logger',
                  )
                }
              })
            }
          } finally {
            await dead.close()
          }
        })

        test('validations that read prefix and localKeys: same prefix on one request is a double count, a shared instance and a limiter made in a handler are reported (validations singleCount, unsharedStore, creationStack)', async () => {
          // Two stores with the same prefix count the same Redis key: one request, two hits.
          const log = makeLogger()
          const prefix = uniquePrefix(`${name}-double`)
          const a = rateLimit({ limit: 10, store: makeStore({ client, prefix }), logger: log })
          const b = rateLimit({ limit: 10, store: makeStore({ client, prefix }), logger: log })
          await withApp([a, b], async (web) => {
            assert.equal((await get(web.url)).status, 200)
          })
          assert.deepEqual(log.codes(), ['ERR_ERL_DOUBLE_COUNT'])

          // One instance in two limiters: reported, with the prefix advice of a non-local store.
          const reuse = makeLogger()
          const shared = newStore('reuse')
          rateLimit({ store: shared, logger: reuse })
          rateLimit({ store: shared, logger: reuse })
          assert.deepEqual(reuse.codes(), ['ERR_ERL_STORE_REUSE'])
          assert.match(reuse.entries[0].text, /with a unique prefix/)

          // A limiter created while answering a request: the external-store ("usually") warning.
          const inHandler = makeLogger()
          const app = express()
          app.get('/', (_req, res) => {
            rateLimit({ store: newStore('inhandler'), logger: inHandler })
            res.send('made')
          })
          const web = await listen(app)
          try {
            assert.equal((await get(web.url)).body, 'made')
          } finally {
            await web.close()
          }
          assert.deepEqual(inHandler.codes(), ['ERR_ERL_CREATED_IN_REQUEST_HANDLER'])
          assert.match(inHandler.entries[0].text, /\*usually\*/)
        })
      })
    }
  })
}

// One line per algorithm: [name, (options) => a Store of that algorithm].
/**
 * What differs by design from the fixed window (README, "Limits"), for the sliding window and
 * GCRA: the window is not restarted by the first hit after a reset, so `resetTime` (and the
 * RateLimit-Reset / Retry-After headers built from it) is the end of the current aligned window
 * (sliding) or when the capacity is back (GCRA), and a client blocked until `resetTime` gets
 * back what the algorithm lets through then, not the whole limit at once.
 */
const NOT_FIXED = {
  'a blocked client is accepted again after the window':
    'after resetTime the previous window still weighs (sliding) / the rate refills one call at a time (gcra)',
  'remaining hits and X-RateLimit-*': 'X-RateLimit-Reset is the end of the aligned window / the refill time',
  'standard headers draft-6 and draft-7': 'RateLimit-Reset is the end of the aligned window / the refill time',
  'standard headers draft-8': 'the reset of the policy is the end of the aligned window / the refill time',
  'five limiters with five stores on one request':
    'the reset of each policy is the end of the aligned window / the refill time',
  'Retry-After at the limit':
    'Retry-After is when the next call passes, not the end of a window started by the first hit',
  'Retry-After and RateLimit-Reset count down': 'the reset is the end of the aligned window / the refill time',
}
const SLIDING_ONLY = {
  'the counts of every key restart once windowMs has passed': "the previous window's hits still weigh after windowMs",
  'a key counts on correctly across windows': "the previous window's hits still weigh in the next one",
}
const GCRA_ONLY = {
  'increment starts at 1':
    'the count goes on (1, 2, ... 20), but a hit over the limit pushes the TAT: its resetTime can be more than windowMs ahead',
  'the counts of every key restart once windowMs has passed':
    "each key's capacity comes back at its own pace (one call per windowMs / limit): another key's resetTime says nothing of it",
  'limit as a function':
    "GCRA's rate is `limit` per `windowMs`: it needs a numeric limit (init throws ERR_REDIS_GUARD_CONFIG)",
}

/**
 * A GCRA store whose `init` gets express-rate-limit's default `limit` (5) when a direct test
 * calls it without one, as `rateLimit()` always passes a limit.
 * @param {object} opts
 */
function gcraStore(opts) {
  const store = new RedisStore({ algorithm: 'gcra', ...opts })
  const init = store.init.bind(store)
  store.init = (o) => init({ limit: 5, ...o })
  return store
}

// One line per algorithm: [name, (options) => a Store of that algorithm, fixed-window checks it differs on].
const ALGORITHMS = [
  ['fixed-window', (opts) => new RedisStore(opts), {}],
  [
    'sliding-window',
    (opts) => new RedisStore({ algorithm: 'sliding-window', ...opts }),
    { ...NOT_FIXED, ...SLIDING_ONLY },
  ],
  ['gcra', gcraStore, { ...NOT_FIXED, ...GCRA_ONLY }],
]

for (const [name, makeStore, fixedOnly] of ALGORITHMS) storeConformance(name, makeStore, fixedOnly)
