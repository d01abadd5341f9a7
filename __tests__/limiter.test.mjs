// RateLimiter and RedisStore's `algorithm` against a real redis-server, for each algorithm:
// the boundary burst (the fixed window lets ~2x the limit through in a moment that spans two
// windows; the sliding window and GCRA do not), GCRA's spacing and exact retryAfterMs, costs
// (a refused call consumes nothing; a cost over the limit writes nothing), bad arguments as
// typed errors, the key layout, exact counts with four processes on one key, and the memory
// fallback running the same algorithm while Redis is down.
// Run: node --test __tests__/limiter.test.mjs

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'

import { freePort, startRedis } from './helpers/redis.mjs'
import { INDEX_MJS_URL, runNode, uniquePrefix } from './helpers/utils.mjs'
import { RateLimiter, RedisClient, RedisStore } from '../index.mjs'

const ALGORITHMS = ['fixed-window', 'sliding-window', 'gcra']
const newClient = (url, opts = {}) => new RedisClient({ url, logger: false, ...opts })

/** Sleep until `at` (ms since the epoch, this host's clock). */
async function sleepUntil(at) {
  const ms = at - Date.now()
  if (ms > 0) await sleep(ms)
}

/** How many of `results` were allowed. */
const allowedOf = (results) => results.filter((r) => r.allowed).length

describe('RateLimiter on a running server', () => {
  let server
  let client
  before(async () => {
    server = await startRedis()
    client = newClient(server.url)
    assert.equal(await client.ready(5000), true)
  })
  after(async () => {
    await client?.close()
    await server?.stop()
  })

  /**
   * GCRA's key at `key` expires a window past the end of the window-long slot (on the epoch
   * grid) that holds its TAT: at least a window past the TAT, at most two.
   */
  async function assertGcraExpiry(key, windowMs) {
    // The TTL first, then the clock: the TTL read is then, if anything, longer than at `now`.
    const ttl = Number(await server.cli('PTTL', key))
    const [sec, usec] = (await server.cli('TIME')).split('\n').map(Number)
    const now = sec * 1e6 + usec
    const tat = Number(await server.cli('GET', key))
    const end = Math.ceil(tat / (windowMs * 1000)) * windowMs * 1000
    const expected = (end - now) / 1000 + windowMs
    // (PTTL is in whole ms, rounded down; the reads take a few ms)
    assert.ok(
      ttl >= expected - 2 && ttl <= expected + 100,
      `TTL ${ttl} ms, expected ${expected.toFixed(0)}: a window past the slot of the TAT ${(tat - now) / 1000} ms ahead`,
    )
    assert.ok(ttl * 1000 + 2000 >= tat - now + windowMs * 1000, `TTL ${ttl} ms: at least a window past the TAT`)
    return { tat, now }
  }

  const limiter = (algorithm, opts = {}) =>
    new RateLimiter({ limit: 20, windowMs: 1000, algorithm, client, prefix: uniquePrefix(algorithm), ...opts })

  for (const algorithm of ALGORITHMS) {
    test(`${algorithm}: the boundary burst (limit 20 per second, 19 calls 150 ms before a window ends and 20 just after)`, async () => {
      const l = limiter(algorithm)
      const first = await l.limit('burst')
      assert.equal(first.allowed, true)
      // The fixed window starts at the first call; the sliding window's are aligned on Redis's
      // clock and resetTime is the end of the current one; GCRA has no windows (its rate is
      // 20/s): the same timeline is used.
      const boundary = algorithm === 'gcra' ? Date.now() + 1000 - 5 : first.resetTime.getTime()
      await sleepUntil(boundary - 150)
      const before = await Promise.all(Array.from({ length: 19 }, () => l.limit('burst')))
      await sleepUntil(boundary + 20)
      const afterB = await Promise.all(Array.from({ length: 20 }, () => l.limit('burst')))
      const spanMs = Date.now() - (boundary - 150)
      const passed = allowedOf(before) + allowedOf(afterB)
      console.log(`BURST ${algorithm}: ${passed} of 39 passed within ${spanMs} ms (limit 20/s)`)
      if (algorithm === 'fixed-window') assert.ok(passed >= 38, `the fixed window lets ~2x through: ${passed}`)
      else assert.ok(passed <= 20 + 5, `${algorithm} holds the limit across the boundary: ${passed}`)
      for (const r of afterB.filter((r) => !r.allowed)) assert.ok(r.retryAfterMs > 0)
    })

    test(`${algorithm}: costs: a refused call consumes nothing; a cost over the limit is refused with nothing written`, async () => {
      const l = limiter(algorithm, { limit: 10, windowMs: 60_000 })
      const a = await l.limit('c', { cost: 4 })
      assert.deepEqual([a.allowed, a.remaining, a.retryAfterMs, a.source], [true, 6, 0, 'redis'])
      assert.equal((await l.limit('c', { cost: 4 })).remaining, 2)
      const no = await l.limit('c', { cost: 4 })
      assert.equal(no.allowed, false)
      assert.equal(no.remaining, 2, 'the refused call took nothing')
      assert.ok(no.retryAfterMs > 0 && Number.isFinite(no.retryAfterMs), `retryAfterMs ${no.retryAfterMs}`)
      const two = await l.limit('c', { cost: 2 })
      assert.deepEqual([two.allowed, two.remaining], [true, 0])
      const g = await l.get('c')
      assert.deepEqual([g.allowed, g.remaining, g.limit], [false, 0, 10])

      const huge = await l.limit('fresh', { cost: 11 })
      assert.deepEqual([huge.allowed, huge.retryAfterMs, huge.remaining], [false, Infinity, 10])
      assert.equal(await server.cli('--scan', '--pattern', `${l.prefix}*fresh`), '', 'nothing written')
      await l.reset('c')
      assert.equal((await l.limit('c')).remaining, 9, 'reset gives the whole allowance back')
    })

    test(`${algorithm}: bad arguments are typed errors, never a crash`, async () => {
      const l = limiter(algorithm)
      for (const cost of [0, -1, 1.5, NaN, Infinity, '2', null]) {
        await assert.rejects(l.limit('k', { cost }), { code: 'ERR_REDIS_GUARD_INVALID_ARG' }, `cost ${String(cost)}`)
      }
      for (const key of [1, undefined, null, {}, Symbol.iterator]) {
        await assert.rejects(l.limit(key), { code: 'ERR_REDIS_GUARD_INVALID_ARG' })
        await assert.rejects(l.get(key), { code: 'ERR_REDIS_GUARD_INVALID_ARG' })
        await assert.rejects(l.reset(key), { code: 'ERR_REDIS_GUARD_INVALID_ARG' })
      }
      for (const bad of [
        { limit: 0, windowMs: 1000 },
        { limit: 1.5, windowMs: 1000 },
        { limit: 5, windowMs: 0 },
        { limit: 5 },
        { limit: 5, windowMs: 1000, algorithm: 'leaky' },
        { limit: 5, windowMs: 1000, burst: algorithm === 'gcra' ? 0 : 3 },
        { limit: 5, windowMs: 1000, nope: 1 },
      ]) {
        assert.throws(() => new RateLimiter({ client, algorithm, ...bad }), { code: 'ERR_REDIS_GUARD_CONFIG' })
      }
      assert.throws(() => new RateLimiter(), { code: 'ERR_REDIS_GUARD_CONFIG' })
      assert.throws(() => new RedisStore({ client, algorithm: 'token' }), { code: 'ERR_REDIS_GUARD_CONFIG' })
    })

    test(`${algorithm}: exact counts with four processes on one key (4 x 300 calls, limit 500)`, async () => {
      const prefix = uniquePrefix(`procs-${algorithm}`)
      // GCRA's rate is 500 per hour here, so nothing refills during the run.
      const windowMs = algorithm === 'gcra' ? 3_600_000 : 60_000
      const src = `
        import { RateLimiter, RedisClient } from ${JSON.stringify(INDEX_MJS_URL)}
        const client = new RedisClient({ url: process.argv[2], logger: false })
        await client.ready(5000)
        const l = new RateLimiter({ limit: 500, windowMs: ${windowMs}, algorithm: '${algorithm}', client, prefix: process.argv[3] })
        const rs = await Promise.all(Array.from({ length: 300 }, () => l.limit('shared')))
        console.log('RESULT ' + JSON.stringify({ allowed: rs.filter((r) => r.allowed).length, sources: [...new Set(rs.map((r) => r.source))] }))
        await client.close()
      `
      const runs = await Promise.all(
        [0, 1, 2, 3].map(() => runNode(src, { args: [server.url, prefix], name: 'limiter-proc', type: 'module' })),
      )
      for (const r of runs) assert.equal(r.code, 0, r.stderr)
      const total = runs.reduce((n, r) => n + r.result.allowed, 0)
      for (const r of runs) assert.deepEqual(r.result.sources, ['redis'])
      assert.equal(total, 500, `exactly the limit passed across four processes (${runs.map((r) => r.result.allowed)})`)
      const l = new RateLimiter({ limit: 500, windowMs, algorithm, client, prefix })
      assert.equal((await l.get('shared')).remaining, 0)
    })
  }

  test('GCRA spacing: 10 per second, burst 10 at once, then one every 100 ms; retryAfterMs is exact', async () => {
    const l = limiter('gcra', { limit: 10, windowMs: 1000 })
    const burst = await Promise.all(Array.from({ length: 10 }, () => l.limit('g')))
    assert.equal(allowedOf(burst), 10)
    const no = await l.limit('g')
    assert.equal(no.allowed, false)
    assert.ok(no.retryAfterMs > 0 && no.retryAfterMs <= 100, `retryAfterMs ${no.retryAfterMs}`)
    await sleep(no.retryAfterMs)
    const yes = await l.limit('g')
    assert.equal(yes.allowed, true, 'passes once retryAfterMs has passed')
    const next = await l.limit('g')
    assert.equal(next.allowed, false)
    assert.ok(next.retryAfterMs > 80 && next.retryAfterMs <= 100, `the next one ~100 ms later: ${next.retryAfterMs}`)
    // burst 1: strictly spaced.
    const s = limiter('gcra', { limit: 10, windowMs: 1000, burst: 1 })
    assert.equal((await s.limit('s')).allowed, true)
    const r = await s.limit('s')
    assert.equal(r.allowed, false)
    assert.ok(r.retryAfterMs > 80 && r.retryAfterMs <= 100, `retryAfterMs ${r.retryAfterMs}`)
    // 10 spaced calls over ~1 s all pass with burst 1.
    let passed = 0
    for (let i = 0; i < 5; i++) {
      const x = await s.limit('spaced')
      if (x.allowed) passed++
      await sleep(110)
    }
    assert.equal(passed, 5)
  })

  for (const algorithm of ALGORITHMS) {
    test(`${algorithm}: a key alone in its script call (the scripts' straight path) decides as a key with many ops in one call (the per-key state), costs and refusals alike`, async () => {
      // Long windows and a slow rate: the decisions do not depend on the ms each call ran at.
      const opts = { limit: 10, windowMs: 3_600_000 }
      const one = limiter(algorithm, opts)
      const many = limiter(algorithm, opts)
      const costs = [1, 3, 2, 11, 4, 1, 1, 5, 2]
      const alone = []
      for (const cost of costs) alone.push(await one.limit('k', { cost })) // one op per call
      const together = await Promise.all(costs.map((cost) => many.limit('k', { cost }))) // one call
      const view = (r) => [r.allowed, r.remaining, r.retryAfterMs === Infinity ? 'never' : r.retryAfterMs > 0]
      assert.deepEqual(together.map(view), alone.map(view))
      assert.deepEqual(
        alone.map((r) => r.allowed),
        [true, true, true, false, true, false, false, false, false],
      )
      // And the hits of a store (counted always, refused over the limit), both ways.
      const hits = async (prefix, parallel) => {
        const store = new RedisStore({ client, algorithm, prefix, blockOverLimit: false })
        store.init({ windowMs: 3_600_000, limit: 3 })
        if (parallel) return Promise.all(Array.from({ length: 5 }, () => store.increment('k')))
        const out = []
        for (let i = 0; i < 5; i++) out.push(await store.increment('k'))
        return out
      }
      const a = await hits(uniquePrefix(`${algorithm}-h1`), false)
      const b = await hits(uniquePrefix(`${algorithm}-h2`), true)
      assert.deepEqual(
        b.map((r) => r.totalHits),
        a.map((r) => r.totalHits),
      )
      assert.deepEqual(
        a.map((r) => r.totalHits),
        [1, 2, 3, 4, 5],
      )
    })
  }

  test('key layout: fixed ${prefix}${key} integer string; sliding ${prefix}sw:${key} w:c:p; gcra ${prefix}gcra:${key} TAT; one key per client', async () => {
    const prefix = uniquePrefix('layout')
    for (const algorithm of ALGORITHMS) {
      const l = new RateLimiter({ limit: 10, windowMs: 60_000, algorithm, client, prefix })
      await l.limit('user:1', { cost: 3 })
    }
    const keys = (await server.cli('--scan', '--pattern', `${prefix}*`)).split('\n').filter(Boolean).sort()
    assert.deepEqual(keys, [`${prefix}gcra:user:1`, `${prefix}sw:user:1`, `${prefix}user:1`])
    assert.equal(await server.cli('GET', `${prefix}user:1`), '3')
    const [w, c, p] = (await server.cli('GET', `${prefix}sw:user:1`)).split(':').map(Number)
    assert.deepEqual([c, p], [3, 0], '<window index>:<current>:<previous>')
    const [sec] = (await server.cli('TIME')).split('\n')
    assert.equal(w, Math.floor((Number(sec) * 1000) / 60_000), 'the window index on Redis clock')
    const tatText = await server.cli('GET', `${prefix}gcra:user:1`)
    assert.match(tatText, /^\d+$/, 'the TAT is a whole number of µs')
    const tat = Number(tatText)
    assert.ok(Math.abs(tat - (Number(sec) * 1e6 + 3 * 6e6)) < 2e6, `TAT ${tat} µs: now + 3 x 6 s`)
    await assertGcraExpiry(`${prefix}gcra:user:1`, 60_000)
    for (const k of keys) assert.ok(Number(await server.cli('PTTL', k)) > 0, `${k} has a TTL`)
  })

  test('RedisStore with the sliding window and GCRA: every hit counts (express-rate-limit decides, and may decrement); over the limit, resetTime is when the next one passes', async () => {
    for (const algorithm of ['sliding-window', 'gcra']) {
      const store = new RedisStore({
        client,
        algorithm,
        prefix: uniquePrefix(`store-${algorithm}`),
        blockOverLimit: false,
      })
      store.init({ windowMs: 1000, limit: 3 })
      const rs = []
      for (let i = 0; i < 5; i++) rs.push(await store.increment('x'))
      assert.deepEqual(
        rs.map((r) => r.totalHits),
        [1, 2, 3, 4, 5],
      )
      // Over the limit, resetTime is when the next hit passes: for the sliding window up to the
      // end of the next window (the hits of this one still weigh there).
      const wait = rs[4].resetTime.getTime() - Date.now()
      assert.ok(wait > 0 && wait <= 2000, `${algorithm}: resetTime ${wait} ms ahead`)
      await store.decrement('x')
      assert.equal((await store.get('x')).totalHits, 4)
      await store.resetKey('x')
      assert.equal(await store.get('x'), undefined)
    }
    const g = new RedisStore({ client, algorithm: 'gcra' })
    assert.throws(() => g.init({ windowMs: 1000, limit: () => 5 }), { code: 'ERR_REDIS_GUARD_CONFIG' })
  })

  test("GCRA: hits that push the TAT into a later slot extend the key's expiry; a value of another layout is replaced, not misread", async () => {
    const prefix = uniquePrefix('gcra-expiry')
    const store = new RedisStore({ client, algorithm: 'gcra', prefix, blockOverLimit: false })
    store.init({ windowMs: 1000, limit: 2 }) // T = 500 ms
    for (let i = 0; i < 20; i++) await store.increment('x') // every hit counts: TAT about now + 10 s
    const { tat, now } = await assertGcraExpiry(`${prefix}gcra:x`, 1000)
    assert.ok(Math.abs(tat - now - 10e6) < 1e6, `TAT ${((tat - now) / 1e6).toFixed(2)} s ahead, about 10`)
    assert.equal((await store.get('x')).totalHits, 20)
    // An older layout (the TAT as fractional ms): read as no TAT, then written in µs.
    await server.cli('SET', `${prefix}gcra:y`, '1796150000123.4561', 'PX', '60000')
    assert.equal(await store.get('y'), undefined)
    assert.equal((await store.increment('y')).totalHits, 1)
    assert.match(await server.cli('GET', `${prefix}gcra:y`), /^\d+$/)
    // The one-op path (a RateLimiter's limit): the TAT moves on with time into later slots.
    const l = new RateLimiter({ limit: 2, windowMs: 1000, algorithm: 'gcra', client, prefix })
    for (let i = 0; i < 6; i++) {
      await l.limit('z')
      await assertGcraExpiry(`${prefix}gcra:z`, 1000)
      await sleep(150)
    }
  })
})

describe('RateLimiter while Redis is down', () => {
  test("'memory' runs the same algorithm in process; 'allow' lets through; 'deny' rejects with a typed error", async () => {
    const port = await freePort()
    const client = newClient(`redis://127.0.0.1:${port}`, { connectTimeoutMs: 200 })
    try {
      const g = new RateLimiter({ limit: 10, windowMs: 1000, algorithm: 'gcra', client, prefix: 'down:' })
      const rs = await Promise.all(Array.from({ length: 11 }, () => g.limit('k')))
      assert.deepEqual([...new Set(rs.map((r) => r.source))], ['memory'])
      assert.equal(allowedOf(rs), 10)
      assert.ok(rs[10].retryAfterMs > 0 && rs[10].retryAfterMs <= 100)
      const s = new RateLimiter({ limit: 5, windowMs: 60_000, algorithm: 'sliding-window', client, prefix: 'down:' })
      assert.equal(allowedOf(await Promise.all(Array.from({ length: 8 }, () => s.limit('k')))), 5)
      assert.equal((await s.limit('k', { cost: 9 })).retryAfterMs, Infinity)
      const f = new RateLimiter({ limit: 5, windowMs: 60_000, client, prefix: 'down:' })
      assert.equal(allowedOf(await Promise.all(Array.from({ length: 8 }, () => f.limit('k', { cost: 2 })))), 2)
      await f.reset('k')
      assert.equal((await f.get('k')).remaining, 5)

      const a = new RateLimiter({ limit: 1, windowMs: 1000, client, onUnavailable: 'allow' })
      for (let i = 0; i < 3; i++) assert.deepEqual(pick(await a.limit('k')), [true, 'allow'])
      const d = new RateLimiter({
        limit: 1,
        windowMs: 1000,
        algorithm: 'sliding-window',
        client,
        onUnavailable: 'deny',
      })
      await assert.rejects(d.limit('k'), { code: 'ERR_REDIS_GUARD_UNAVAILABLE' })

      const t0 = performance.now()
      await Promise.all(Array.from({ length: 1000 }, (_, i) => g.limit(`flood:${i}`)))
      assert.ok(performance.now() - t0 < 1000, 'no queueing while down')
      const small = new RateLimiter({ limit: 5, windowMs: 60_000, algorithm: 'gcra', client, fallbackMaxKeys: 100 })
      await Promise.all(Array.from({ length: 5000 }, (_, i) => small.limit(`f${i}`)))
      assert.ok(small.fallbackSize() <= 100, `bounded: ${small.fallbackSize()}`)
    } finally {
      await client.close()
    }
  })
})

const pick = (r) => [r.allowed, r.source]
