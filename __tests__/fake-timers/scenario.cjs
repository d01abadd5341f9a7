'use strict'
// The checks that __tests__/fake-timers.test.mjs runs under Jest, Vitest and @sinonjs/fake-timers
// with fake timers installed and fake time never advanced. Every call the library makes must
// settle in real time; each is raced against a real timer (`ctx.realSetTimeout`, captured by the
// caller before any fake was installed) so that a hang shows as a failure naming the call, not as
// a runner timeout.
//
// Each check writes one line `RG_FAKE_TIMERS {json}` to stdout ({ runner, check, ok, ... }), which
// the node:test file asserts on. The library is loaded lazily (`load()`), from
// REDIS_GUARD_ENTRY (default: this repository's index.js), so a runner may install its fakes
// before or after loading it, and the same bodies can run against another tree (the pre-fix one).

const assert = require('node:assert/strict')
const http = require('node:http')
const path = require('node:path')

const ENTRY = process.env.REDIS_GUARD_ENTRY || path.resolve(__dirname, '..', '..', 'index.js')
/** Real ms each library call gets before it counts as hung. */
const SETTLE_MS = Number(process.env.FT_SETTLE_MS || 3000)
const MARK = 'RG_FAKE_TIMERS'
// For the informational `realMs` fields only: taken when this file loads, which every runner
// does before installing its fakes except Jest's enableGlobally (whose fakes leave the
// `perf_hooks` module alone).
const perf = require('node:perf_hooks').performance
const perfNow = perf.now.bind(perf)
const nativePerfNow = perf.now
const since = (t0) => Math.round(perfNow() - t0)

function load() {
  return require(ENTRY)
}

function emit(obj) {
  process.stdout.write(`\n${MARK} ${JSON.stringify(obj)}\n`)
}

/**
 * The context of one runner.
 * @param {string} runner a name for the markers and the keys
 * @param {{ setTimeout: Function, clearTimeout: Function }} real timer functions that are NOT fake
 */
function context(runner, real) {
  const ns = `rgft:${runner}:${process.pid}:${Date.now().toString(36)}`
  const ctx = {
    runner,
    real,
    ns,
    key: (name) => `${ns}:${name}`,
    /** `promise`, or a rejection after SETTLE_MS real ms naming `what`. */
    within(promise, what, ms = SETTLE_MS) {
      let t
      const timeout = new Promise((_, reject) => {
        t = real.setTimeout(() => reject(new Error(`HANG: ${what} did not settle within ${ms} ms of real time`)), ms)
      })
      return Promise.race([Promise.resolve(promise), timeout]).finally(() => real.clearTimeout(t))
    },
    /** A sleep in real time. */
    sleep: (ms) => new Promise((resolve) => real.setTimeout(resolve, ms)),
  }
  return ctx
}

/** Which of the APIs a library could schedule or read time with are fake right now. */
function fakedApis() {
  const timersModule = require('node:timers')
  const fake = (f) => typeof f === 'function' && f.clock !== undefined
  return {
    setTimeout: fake(globalThis.setTimeout),
    setImmediate: fake(globalThis.setImmediate),
    queueMicrotask: fake(globalThis.queueMicrotask),
    nextTick: fake(process.nextTick),
    Date: globalThis.Date.clock !== undefined || fake(globalThis.Date.now),
    performance: typeof performance !== 'undefined' && (fake(performance.now) || performance.now !== nativePerfNow),
    nodeTimersSetTimeout: fake(timersModule.setTimeout),
    nodeTimersSetImmediate: fake(timersModule.setImmediate),
  }
}

/** Run `fn`, emit its marker (ok or the error), rethrow a failure. */
async function check(ctx, name, fn) {
  const t0 = perfNow()
  try {
    const data = (await fn()) || {}
    emit({ runner: ctx.runner, check: name, ok: true, realMs: since(t0), ...data })
  } catch (e) {
    emit({
      runner: ctx.runner,
      check: name,
      ok: false,
      realMs: since(t0),
      error: String((e && e.stack) || e)
        .split('\n')
        .slice(0, 4)
        .join(' | '),
    })
    throw e
  }
}

/** The fakes are really on: the fake clock stands still while real time passes. */
async function fakesOn(ctx) {
  await check(ctx, 'fakes-on', async () => {
    const faked = fakedApis()
    assert.ok(faked.setTimeout, 'global setTimeout is not fake: the runner did not install fake timers')
    const d0 = Date.now()
    await ctx.sleep(30)
    assert.equal(Date.now(), d0, 'the fake Date advanced without the test advancing it')
    return { faked }
  })
}

function newClient(_ctx) {
  const { RedisClient } = load()
  return new RedisClient({ url: process.env.REDIS_URL, logger: false })
}

/** The client is connected (so the calls below are answered by Redis, not the fallback). */
async function ready(ctx, client) {
  await check(ctx, 'ready', async () => {
    assert.equal(await ctx.within(client.ready(2000), 'client.ready()'), true, 'not connected to REDIS_URL')
  })
}

/** RedisStore: increment/get/decrement/resetKey, one at a time and concurrently. */
async function store(ctx, client) {
  await check(ctx, 'store', async () => {
    const { RedisStore } = load()
    const s = new RedisStore({ client, prefix: ctx.key('store') + ':' })
    s.init({ windowMs: 60000, limit: 5 })
    const k = 'k'
    for (let i = 1; i <= 5; i++) {
      const r = await ctx.within(s.increment(k), `store.increment #${i}`)
      assert.equal(r.totalHits, i, `increment #${i}`)
      assert.ok(r.resetTime instanceof Date, 'resetTime is a Date')
      // On the caller's (fake) clock: less than one window ahead of the fake now.
      const ahead = r.resetTime.getTime() - Date.now()
      assert.ok(ahead > 0 && ahead <= 60000, `resetTime is ${ahead} ms ahead of Date.now()`)
    }
    assert.equal((await ctx.within(s.increment(k), 'store.increment #6')).totalHits, 6, '6th increment')
    assert.equal((await ctx.within(s.get(k), 'store.get')).totalHits, 6, 'get after 6 increments')
    await ctx.within(s.decrement(k), 'store.decrement')
    assert.equal((await ctx.within(s.get(k), 'store.get after decrement')).totalHits, 5, 'get after decrement')
    await ctx.within(s.resetKey(k), 'store.resetKey')
    assert.equal(await ctx.within(s.get(k), 'store.get after resetKey'), undefined, 'get after resetKey')

    // A call made while a batch is in flight is flushed by setImmediate, not by a microtask.
    const a = s.increment('busy')
    // oxlint-disable-next-line no-unnecessary-await
    await null // the microtask flush of `a` has run: its batch is in flight
    const b = s.increment('busy')
    const both = await ctx.within(Promise.all([a, b]), 'store.increment while a batch is in flight')
    assert.deepEqual(both.map((r) => r.totalHits).sort(), [1, 2])

    const many = await ctx.within(
      Promise.all(Array.from({ length: 20 }, () => s.increment('many'))),
      '20 concurrent increments',
    )
    assert.deepEqual(
      many.map((r) => r.totalHits).sort((x, y) => x - y),
      Array.from({ length: 20 }, (_, i) => i + 1),
    )
  })
}

/**
 * Control, without redis-guard: under the fakes now on, does a plain node:http server emit
 * 'listening' and answer a node:http GET, and does `fetch` (undici, which schedules with the
 * global timer functions and queueMicrotask of its realm) answer? Node's net and stream
 * internals call `process.nextTick`, so a fake `process.nextTick` on the real process object
 * stops them. Never fails; reports and returns `{ nodeHttp, fetch }`.
 */
async function httpControl(ctx) {
  const out = { nodeHttp: false, fetch: false }
  await check(ctx, 'http-control', async () => {
    const server = http.createServer((req, res) => res.end('ok'))
    server.listen(0, '127.0.0.1')
    const listens = await ctx
      .within(new Promise((resolve) => server.once('listening', () => resolve(true))), 'plain http listen', 1000)
      .catch(() => false)
    if (listens) {
      const url = `http://127.0.0.1:${server.address().port}/`
      out.nodeHttp = await ctx.within(httpGet(url), 'plain http GET', 1000).then(
        (r) => r.body === 'ok',
        () => false,
      )
      out.fetch = await ctx.within(fetchGet(url), 'plain fetch', 1000).then(
        (r) => r.body === 'ok',
        () => false,
      )
    }
    server.closeAllConnections()
    server.close()
    return out
  })
  return out
}

/** A GET through node:http (no client timers: undici's fetch may use the global ones). */
function httpGet(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () =>
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }),
      )
      res.on('error', reject)
    })
    req.on('error', reject)
  })
}

async function fetchGet(url) {
  const res = await fetch(url, { headers: { connection: 'close' } })
  return { status: res.status, headers: Object.fromEntries(res.headers), body: await res.text() }
}

/**
 * express-rate-limit with a RedisStore in an Express app: 5 requests pass, the 6th is 429.
 * `how`: 'http' (node:http) or 'fetch'.
 */
async function express(ctx, client, how = 'http') {
  await check(ctx, `express-${how}`, async () => {
    const { RedisStore } = load()
    const expressFn = require('express')
    const { rateLimit } = require('express-rate-limit')
    const app = expressFn()
    app.use(
      rateLimit({
        windowMs: 60000,
        limit: 5,
        standardHeaders: 'draft-7',
        legacyHeaders: false,
        store: new RedisStore({ client, prefix: ctx.key(`express-${how}`) + ':' }),
      }),
    )
    app.get('/', (req, res) => res.send('ok'))
    const server = app.listen(0, '127.0.0.1')
    await ctx.within(
      new Promise((resolve, reject) => {
        server.once('listening', resolve)
        server.once('error', reject)
      }),
      'app.listen(0)',
    )
    const url = `http://127.0.0.1:${server.address().port}/`
    const get = how === 'fetch' ? fetchGet : httpGet
    try {
      // Three at once: the later ones arrive while the first batch is in flight.
      const first = await ctx.within(Promise.all([get(url), get(url), get(url)]), `3 concurrent requests (${how})`)
      assert.deepEqual(
        first.map((r) => r.status),
        [200, 200, 200],
      )
      const statuses = first.map((r) => r.status)
      for (let i = 4; i <= 6; i++) {
        const r = await ctx.within(get(url), `request #${i} (${how})`)
        statuses.push(r.status)
        if (i === 6) assert.ok(r.headers.ratelimit, 'the RateLimit header is set')
      }
      assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429])
      return { statuses }
    } finally {
      server.closeAllConnections()
      await ctx.within(new Promise((resolve) => server.close(resolve)), 'server.close()').catch(() => {})
    }
  })
}

/** The seed-compatible helpers acquireLock/releaseLock. */
/** Cache (a batched feature with bytes both ways): set/get/getMany/has/delete. */
async function cache(ctx, client) {
  await check(ctx, 'cache', async () => {
    const { Cache } = load()
    const c = new Cache({ client, prefix: ctx.key('cache') + ':' })
    assert.equal(await ctx.within(c.set('a', { n: 1 }, { ttlMs: 60000 }), 'cache.set'), true)
    assert.deepEqual(await ctx.within(c.get('a'), 'cache.get'), { n: 1 })
    const many = await ctx.within(Promise.all([c.get('a'), c.has('a'), c.get('missing')]), 'concurrent cache calls')
    assert.deepEqual(many, [{ n: 1 }, true, undefined])
    assert.equal(await ctx.within(c.delete('a'), 'cache.delete'), true)
    assert.equal(await ctx.within(c.get('a'), 'cache.get after delete'), undefined)
    // getOrSet: its factory timeout and fill lock run on the library's own timers.
    const filled = await ctx.within(
      Promise.all([c.getOrSet('f', () => ({ f: 1 }), { tags: ['t'] }), c.getOrSet('f', () => ({ f: 2 }))]),
      'cache.getOrSet',
    )
    assert.deepEqual(filled, [{ f: 1 }, { f: 1 }])
    assert.equal(await ctx.within(c.invalidateTags(['t']), 'cache.invalidateTags'), 1)
    assert.equal(await ctx.within(c.get('f'), 'cache.get after invalidateTags'), undefined)
  })
}

async function helpers(ctx, client) {
  await check(ctx, 'helpers', async () => {
    const k = ctx.key('helper')
    assert.equal(await ctx.within(client.acquireLock(k, 10), 'acquireLock'), true, 'first acquireLock')
    assert.equal(await ctx.within(client.acquireLock(k, 10), 'second acquireLock'), false, 'second acquireLock')
    assert.equal(await ctx.within(client.releaseLock(k), 'releaseLock'), true, 'releaseLock')
    assert.equal(
      await ctx.within(client.acquireLock(k, 10), 'acquireLock after release'),
      true,
      'acquireLock after release',
    )
    assert.equal(await ctx.within(client.releaseLock(k), 'releaseLock'), true, 'second releaseLock')
  })
}

/** client.lock(): a lease is held, its signal stays quiet, waitMs retries in real time, release. */
async function lease(ctx, client) {
  await check(ctx, 'lease', async () => {
    const k = ctx.key('lease')
    const l = await ctx.within(client.lock(k, { ttlMs: 5000 }), 'client.lock')
    assert.ok(l, 'lock() returned a lease')
    assert.equal(l.held, true, 'lease.held')
    const signal = l.signal
    await ctx.sleep(150)
    assert.equal(signal.aborted, false, 'lease.signal aborted after 150 real ms of a 5 s lease')
    assert.equal(l.held, true, 'lease.held after 150 ms')
    // Held: a second lock() with waitMs retries (sleeping between tries) and gives up in ~300 ms.
    const t0 = perfNow()
    const other = await ctx.within(
      client.lock(k, { ttlMs: 5000, waitMs: 300, retryDelayMs: 20 }),
      'client.lock({ waitMs: 300 }) on a held key',
    )
    const waited = since(t0)
    assert.equal(other, null, 'a held key is not granted twice')
    assert.equal(await ctx.within(l.release(), 'lease.release()'), true, 'lease.release()')
    assert.equal(l.held, false, 'lease.held after release')
    return { waitedMs: waited }
  })
}

/** A lease's expiry runs in real time: its signal aborts with LOCK_LOST once the TTL has passed. */
async function leaseExpiry(ctx, client) {
  await check(ctx, 'lease-expiry', async () => {
    const l = await ctx.within(client.lock(ctx.key('expiry'), { ttlMs: 200 }), 'client.lock({ ttlMs: 200 })')
    const signal = l.signal
    assert.equal(signal.aborted, false)
    await ctx.sleep(700)
    assert.equal(
      signal.aborted,
      true,
      'lease.signal did not abort 700 real ms into a 200 ms lease (expiry timer on fake time?)',
    )
    assert.equal(signal.reason && signal.reason.code, 'ERR_REDIS_GUARD_LOCK_LOST')
    assert.equal(l.held, false, 'lease.held after expiry')
    assert.equal(await ctx.within(l.release(), 'release of an expired lease'), false)
  })
}

/** withLock runs fn and releases; with a short TTL it keeps extending in real time. */
async function withLock(ctx, client) {
  await check(ctx, 'withLock', async () => {
    const k = ctx.key('withlock')
    let ran = false
    const v = await ctx.within(
      client.withLock(k, { ttlMs: 5000 }, async (signal) => {
        ran = true
        assert.equal(signal.aborted, false)
        return 42
      }),
      'client.withLock',
    )
    assert.equal(ran, true, 'fn ran')
    assert.equal(v, 42, "withLock resolves with fn's value")
    // Released: the key can be taken again at once.
    const again = await ctx.within(client.lock(k, { ttlMs: 1000 }), 'lock() after withLock')
    assert.ok(again, 'withLock released the lock')
    assert.equal(await ctx.within(again.release(), 'release'), true)

    // ttlMs 600: extended every 200 real ms, so 1000 ms into fn the lock is still held (without
    // the extensions it would have expired at 600 ms and the probe below would get it).
    const k2 = ctx.key('withlock-extend')
    const stillHeld = await ctx.within(
      client.withLock(k2, { ttlMs: 600 }, async (signal) => {
        await ctx.sleep(1000)
        const probe = await ctx.within(client.lock(k2, { ttlMs: 1000 }), 'probe lock() inside withLock')
        if (probe) await probe.release()
        return { aborted: signal.aborted, probeGranted: !!probe }
      }),
      'client.withLock({ ttlMs: 600 }) with a 1000 ms fn',
      SETTLE_MS + 1000,
    )
    assert.deepEqual(
      stillHeld,
      { aborted: false, probeGranted: false },
      'withLock did not keep its 600 ms lease for 1000 real ms',
    )
  })
}

async function close(ctx, client) {
  await check(ctx, 'close', async () => {
    const stats = client.stats()
    await ctx.within(client.close(), 'client.close()')
    // Every call above was answered by Redis: none fell back or timed out.
    assert.equal(stats.fallbacks, 0, `fallbacks: ${JSON.stringify(stats)}`)
    assert.equal(stats.timeouts, 0, `timeouts: ${JSON.stringify(stats)}`)
    return { stats }
  })
}

/** The checks, in order (close last). */
const CHECKS = { store, express, cache, helpers, lease, leaseExpiry, withLock }

/**
 * Register the library checks as tests of a Jest or Vitest file, in order, between the file's
 * own set-up test and its close (`client()`: the client that set-up made).
 * @param {(name: string, fn: () => Promise<unknown>) => void} test
 * @param {object} ctx
 * @param {() => object} client
 */
function registerLibTests(test, ctx, client) {
  test('client is connected', () => ready(ctx, client()))
  test('RedisStore increment/get/decrement/resetKey', () => store(ctx, client()))
  test('express-rate-limit in an Express app (node:http requests)', () => express(ctx, client(), 'http'))
  test('express-rate-limit in an Express app (fetch requests)', () => express(ctx, client(), 'fetch'))
  test('Cache set/get/has/delete', () => cache(ctx, client()))
  test('acquireLock / releaseLock', () => helpers(ctx, client()))
  test('client.lock() lease, signal, waitMs, release', () => lease(ctx, client()))
  test('a lease expires in real time', () => leaseExpiry(ctx, client()))
  test('withLock runs fn, extends and releases', () => withLock(ctx, client()))
}

module.exports = {
  ENTRY,
  MARK,
  SETTLE_MS,
  load,
  context,
  fakedApis,
  fakesOn,
  httpControl,
  newClient,
  ready,
  close,
  check,
  emit,
  registerLibTests,
  ...CHECKS,
}
