// RedisStore against a real redis-server: the express-rate-limit Store contract, the wire
// format shared with rate-limit-redis, atomicity across processes, the over-limit local cache,
// hostile keys, and the fail-open policies ('memory', 'allow', 'deny') through a killed, a
// paused and a not-yet-started server.
// Run: node --test __tests__/store.test.mjs

import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'

import Redis from 'ioredis'

import { freePort, parseInfo, startRedis, waitFor } from './helpers/redis.mjs'
import { INDEX_MJS_URL, runNode, spawnNode, timed, uniquePrefix } from './helpers/utils.mjs'
import { RedisClient, RedisGuardError, RedisStore } from '../index.mjs'

const DEADLINE = 250 // the client's default commandTimeoutMs
const CODES = ['ERR_REDIS_GUARD_UNAVAILABLE', 'ERR_REDIS_GUARD_TIMEOUT']

const newClient = (url, opts = {}) => new RedisClient({ url, logger: false, ...opts })

/** `{ calls }` of one command from `INFO commandstats` (0 when never called). */
async function cmdCalls(server, cmd) {
  const info = parseInfo(await server.cli('INFO', 'commandstats'))
  const v = info[`cmdstat_${cmd}`]
  if (!v) return 0
  return Number(/calls=(\d+)/.exec(v)[1])
}

/** Script calls that reached Redis (EVALSHA plus EVAL retries). */
const scriptCalls = async (server) => (await cmdCalls(server, 'evalsha')) + (await cmdCalls(server, 'eval'))

/** `promise`, or a rejection after `ms` (the timer is cleared either way). */
function withTimeout(promise, ms, what) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish in ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

function assertResult(r, windowMs) {
  assert.ok(Number.isInteger(r.totalHits) && r.totalHits >= 1, `totalHits ${r.totalHits}`)
  assert.ok(r.resetTime instanceof Date && !Number.isNaN(r.resetTime.getTime()), 'resetTime is a real Date')
  const ahead = r.resetTime.getTime() - Date.now()
  assert.ok(ahead > 0 && ahead <= windowMs + 50, `resetTime ${ahead} ms ahead (window ${windowMs})`)
}

// ---------------------------------------------------------------------------------------------
// One shared server for the tests that do not hurt it.
// ---------------------------------------------------------------------------------------------

describe('RedisStore on a running server', () => {
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

  test('increment resolves { totalHits, resetTime: Date } ~windowMs ahead; get of an unknown key is undefined', async () => {
    const store = new RedisStore({ client, prefix: uniquePrefix('shape') })
    store.init({ windowMs: 60_000, limit: 100 })
    const r1 = await store.increment('a')
    assertResult(r1, 60_000)
    assert.equal(r1.totalHits, 1)
    assert.ok(r1.resetTime.getTime() - Date.now() > 55_000)
    assert.deepEqual(Object.keys(r1).sort(), ['resetTime', 'source', 'totalHits'])
    assert.equal(r1.source, 'redis')
    const r2 = await store.increment('a')
    assert.equal(r2.totalHits, 2)
    assertResult(r2, 60_000)
    const g = await store.get('a')
    assert.equal(g.totalHits, 2)
    assert.ok(g.resetTime instanceof Date)
    assert.equal(await store.get('never-seen'), undefined)
    assert.equal(store.localKeys, false)
    assert.equal(typeof store.prefix, 'string')
  })

  test('calls made before the connection is up work and count in Redis', async () => {
    const prefix = uniquePrefix('early')
    // Nothing awaited between construction and the calls, as express-rate-limit does.
    const c = newClient(server.url)
    try {
      const store = new RedisStore({ client: c, prefix })
      store.init({ windowMs: 60_000, limit: 100 })
      const results = await Promise.all([store.increment('k'), store.increment('k'), store.increment('k')])
      assert.deepEqual(results.map((r) => r.totalHits).sort(), [1, 2, 3])
      for (const r of results) assertResult(r, 60_000)
      assert.equal(await server.cli('GET', `${prefix}k`), '3', 'the early hits reached Redis, not the fallback')
      const next = await store.increment('k')
      assert.equal(next.totalHits, 4)
    } finally {
      await c.close()
    }
  })

  test('PX TTL is set when a window starts; PTTL <= 0 starts a new window', async () => {
    const prefix = uniquePrefix('ttl')
    const store = new RedisStore({ client, prefix })
    store.init({ windowMs: 400, limit: 100 })
    const key = `${prefix}w`
    await store.increment('w')
    const pttl1 = Number(await server.cli('PTTL', key))
    assert.ok(pttl1 > 0 && pttl1 <= 400, `PTTL ${pttl1}`)
    assert.equal(await server.cli('GET', key), '1')
    const r2 = await store.increment('w')
    assert.equal(r2.totalHits, 2)
    const pttl2 = Number(await server.cli('PTTL', key))
    assert.ok(pttl2 > 0 && pttl2 <= pttl1, `the second hit keeps the window's expiry (${pttl2} <= ${pttl1})`)
    // The window ends: the key expires and the next hit starts a new window at 1.
    await waitFor(async () => Number(await server.cli('PTTL', key)) === -2, {
      timeout: 5000,
      interval: 50,
      what: 'window to expire',
    })
    const r3 = await store.increment('w')
    assert.equal(r3.totalHits, 1)
    assertResult(r3, 400)
    const pttl3 = Number(await server.cli('PTTL', key))
    assert.ok(pttl3 > 0 && pttl3 <= 400, `new window PTTL ${pttl3}`)

    // A key without a TTL (PTTL -1, e.g. written by an old peer) gets one and restarts the window.
    await server.cli('SET', `${prefix}persist`, '7')
    const r4 = await store.increment('persist')
    assert.ok(Number.isInteger(r4.totalHits) && r4.totalHits >= 1)
    const pttl4 = Number(await server.cli('PTTL', `${prefix}persist`))
    assert.ok(pttl4 > 0 && pttl4 <= 400, `PTTL set on a key that had none (${pttl4})`)
    assert.equal(await server.cli('GET', `${prefix}persist`), String(r4.totalHits))
  })

  test('a key left without a TTL and at or below zero (a peer decremented after expiry) restarts at 1', async () => {
    const prefix = uniquePrefix('neg')
    const store = new RedisStore({ client, prefix })
    store.init({ windowMs: 60_000, limit: 100 })
    for (const v of ['-1', '0', '-3']) {
      await server.cli('SET', `${prefix}k${v}`, v)
      const r = await store.increment(`k${v}`)
      assert.equal(r.totalHits, 1, `starting from ${v} without TTL`)
      assertResult(r, 60_000)
      assert.equal(await server.cli('GET', `${prefix}k${v}`), '1')
      assert.ok(Number(await server.cli('PTTL', `${prefix}k${v}`)) > 0)
    }
  })

  test('resetExpiryOnChange restarts the window on every hit; the default keeps it', async () => {
    const prefix = uniquePrefix('rexp')
    const sliding = new RedisStore({ client, prefix, resetExpiryOnChange: true })
    sliding.init({ windowMs: 10_000, limit: 100 })
    const fixed = new RedisStore({ client, prefix: `${prefix}fixed:` })
    fixed.init({ windowMs: 10_000, limit: 100 })
    await sliding.increment('k')
    await fixed.increment('k')
    await sleep(600)
    const rs = await sliding.increment('k')
    const rf = await fixed.increment('k')
    assert.equal(rs.totalHits, 2)
    assert.equal(rf.totalHits, 2)
    const ps = Number(await server.cli('PTTL', `${prefix}k`))
    const pf = Number(await server.cli('PTTL', `${prefix}fixed:k`))
    assert.ok(ps > 9_500, `sliding window restarted: PTTL ${ps}`)
    assert.ok(pf <= 9_400, `fixed window kept: PTTL ${pf}`)
    assert.ok(rs.resetTime.getTime() - rf.resetTime.getTime() >= 500, 'resetTime follows the restarted window')
  })

  test('decrement never goes below zero and never leaves a key without a TTL', async () => {
    const prefix = uniquePrefix('decr')
    const store = new RedisStore({ client, prefix })
    store.init({ windowMs: 30_000, limit: 100 })

    await store.increment('a')
    await store.increment('a')
    await store.decrement('a')
    assert.equal(await server.cli('GET', `${prefix}a`), '1')
    const pa = Number(await server.cli('PTTL', `${prefix}a`))
    assert.ok(pa > 0 && pa <= 30_000)
    await store.decrement('a')
    await store.decrement('a')
    await store.decrement('a')
    assert.equal(await server.cli('GET', `${prefix}a`), '0', 'stops at zero')
    assert.ok(Number(await server.cli('PTTL', `${prefix}a`)) > 0)
    assert.equal((await store.increment('a')).totalHits, 1, 'counts from zero again')

    // A key without TTL (written by hand or by an old peer): decrement gives it one.
    await server.cli('SET', `${prefix}b`, '5')
    assert.equal(Number(await server.cli('PTTL', `${prefix}b`)), -1)
    await store.decrement('b')
    assert.equal(await server.cli('GET', `${prefix}b`), '4')
    const pb = Number(await server.cli('PTTL', `${prefix}b`))
    assert.ok(pb > 0 && pb <= 30_000, `TTL added (${pb})`)

    // Zero without TTL stays zero and gets a TTL.
    await server.cli('SET', `${prefix}c`, '0')
    await store.decrement('c')
    assert.equal(await server.cli('GET', `${prefix}c`), '0')
    assert.ok(Number(await server.cli('PTTL', `${prefix}c`)) > 0)

    // Zero with a TTL stays zero, TTL kept.
    await server.cli('SET', `${prefix}d`, '0', 'PX', '20000')
    await store.decrement('d')
    assert.equal(await server.cli('GET', `${prefix}d`), '0')
    const pd = Number(await server.cli('PTTL', `${prefix}d`))
    assert.ok(pd > 0 && pd <= 20_000)

    // No key: nothing is created.
    await store.decrement('missing')
    assert.equal(await server.cli('EXISTS', `${prefix}missing`), '0')
  })

  test('resetKey deletes the key; the next hit starts at 1', async () => {
    const prefix = uniquePrefix('rk')
    const store = new RedisStore({ client, prefix })
    store.init({ windowMs: 60_000, limit: 100 })
    await store.increment('a')
    await store.increment('a')
    await store.increment('b')
    await store.resetKey('a')
    assert.equal(await server.cli('EXISTS', `${prefix}a`), '0')
    assert.equal(await server.cli('GET', `${prefix}b`), '1', 'other keys untouched')
    assert.equal(await store.get('a'), undefined)
    assert.equal((await store.increment('a')).totalHits, 1)
    await store.resetKey('never-existed') // no error
  })

  test('options only the native store checks (an unknown scriptMode): ERR_REDIS_GUARD_CONFIG, and the client made for `url` is closed, not left connected', async () => {
    const connections = async () =>
      (await server.cli('CLIENT', 'LIST')).split('\n').filter((l) => l.includes('addr=')).length
    const baseline = await connections()
    assert.throws(() => new RedisStore({ url: server.url, scriptMode: 'per-batch' }), {
      code: 'ERR_REDIS_GUARD_CONFIG',
      message: /scriptMode/,
    })
    await sleep(500) // long enough for a leaked client to have connected
    assert.equal(await connections(), baseline)
  })

  for (const scriptMode of ['batch', 'per-key']) {
    test(`NOSCRIPT (SCRIPT FLUSH) between calls: reloaded, no error, no double count (scriptMode ${scriptMode})`, async () => {
      const prefix = uniquePrefix(`noscript-${scriptMode}`)
      const store = new RedisStore({ client, prefix, scriptMode })
      store.init({ windowMs: 60_000, limit: 1_000_000 })
      const fallbacksBefore = client.stats().fallbacks
      for (let i = 1; i <= 3; i++) assert.equal((await store.increment('k')).totalHits, i)
      // A lone call.
      await server.cli('SCRIPT', 'FLUSH')
      assert.equal((await store.increment('k')).totalHits, 4)
      await server.cli('SCRIPT', 'FLUSH')
      assert.equal((await store.get('k')).totalHits, 4)
      // A batch, several keys and ops mixed.
      await server.cli('SCRIPT', 'FLUSH')
      const batch = await Promise.all([
        ...Array.from({ length: 40 }, () => store.increment('k')),
        ...Array.from({ length: 10 }, (_, i) => store.increment(`other${i}`)),
        store.get('k'),
      ])
      const hits = batch
        .slice(0, 40)
        .map((r) => r.totalHits)
        .sort((a, b) => a - b)
      assert.deepEqual(
        hits,
        Array.from({ length: 40 }, (_, i) => i + 5),
        'every hit counted exactly once',
      )
      assert.equal(await server.cli('GET', `${prefix}k`), '44')
      for (let i = 0; i < 10; i++) assert.equal(await server.cli('GET', `${prefix}other${i}`), '1')
      // Decrement and resetKey after a flush too.
      await server.cli('SCRIPT', 'FLUSH')
      await store.decrement('k')
      assert.equal(await server.cli('GET', `${prefix}k`), '43')
      await server.cli('SCRIPT', 'FLUSH')
      await store.resetKey('k')
      assert.equal(await server.cli('EXISTS', `${prefix}k`), '0')
      assert.equal(client.stats().fallbacks - fallbacksBefore, 0, 'nothing went to the fallback')
      assert.equal(client.isAvailable(), true)
    })
  }

  test('10,000 increments of one key from two processes (batch and per-key scripts) end at exactly 10,000', async (t) => {
    const prefix = uniquePrefix('atomic')
    const children = []
    try {
      const hammer = {
        name: 'hammer',
        source: `
import { RedisClient, RedisStore } from ${JSON.stringify(INDEX_MJS_URL)};
const [url, prefix, total, inflight, scriptMode] = process.argv.slice(2);
// A generous deadline: this test is about atomicity, not about the fallback.
const client = new RedisClient({ url, logger: false, commandTimeoutMs: 10000 });
if (!(await client.ready(5000))) { console.error('not connected'); process.exit(2); }
const store = new RedisStore({ client, prefix, scriptMode });
store.init({ windowMs: 600000 }); // no static limit: every hit goes to Redis
process.stdout.write('ready\\n');
await new Promise((resolve) => process.stdin.once('data', resolve));
const hits = [];
let started = 0;
async function worker() {
  while (started < Number(total)) {
    started++;
    hits.push((await store.increment('shared')).totalHits);
  }
}
await Promise.all(Array.from({ length: Number(inflight) }, worker));
process.stdout.write(JSON.stringify({ hits, stats: client.stats() }) + '\\n');
await client.close();
process.stdin.destroy();
`,
      }
      for (const scriptMode of ['batch', 'per-key']) {
        children.push(await spawnNode(hammer, [server.url, prefix, '5000', '200', scriptMode]))
      }
      await Promise.all(children.map((c) => c.next((l) => l.text === 'ready', 15_000)))
      for (const c of children) c.write('go\n')
      const exits = await withTimeout(Promise.all(children.map((c) => c.exited)), 40_000, 'the two children')
      assert.deepEqual(
        exits.map((e) => e.code),
        [0, 0],
        children.map((c) => c.stderr).join('\n'),
      )
      const reports = await Promise.all(children.map((c) => c.next((l) => Array.isArray(l.hits))))
      for (const r of reports) {
        assert.equal(r.hits.length, 5000)
        assert.equal(r.stats.fallbacks, 0, 'no call went to the fallback')
      }
      assert.equal(await server.cli('GET', `${prefix}shared`), '10000')
      // Atomic: every value 1..10000 was handed out exactly once across both processes.
      const all = reports.flatMap((r) => r.hits).sort((a, b) => a - b)
      assert.equal(all.length, 10_000)
      for (let i = 0; i < all.length; i++)
        if (all[i] !== i + 1) assert.fail(`value ${i + 1} missing or duplicated (got ${all[i]})`)
      t.diagnostic('two processes (scriptMode batch and per-key), 200 calls in flight each: exactly 10000')
    } finally {
      await Promise.all(children.map((c) => c.stop()))
    }
  })

  test('over the limit, hits are answered locally until resetTime (blockOverLimit)', async () => {
    const prefix = uniquePrefix('block')
    const store = new RedisStore({ client, prefix })
    store.init({ windowMs: 60_000, limit: 5 })
    const before = await scriptCalls(server)
    const seen = []
    for (let i = 0; i < 55; i++) seen.push(await store.increment('abuser'))
    const used = (await scriptCalls(server)) - before
    assert.deepEqual(
      seen.map((r) => r.totalHits),
      Array.from({ length: 55 }, (_, i) => i + 1),
      'counts keep growing',
    )
    // Hits 1..5 and the 6th (the one that finds the key over the limit) reach Redis; the rest do not.
    assert.equal(used, 6, `script calls that reached Redis: ${used}`)
    assert.equal(await server.cli('GET', `${prefix}abuser`), '6')
    const reset = seen[5].resetTime.getTime()
    for (const r of seen.slice(6)) assert.equal(r.resetTime.getTime(), reset, 'the same window end')
    assert.equal((await store.get('abuser')).totalHits, 55)
    // Other keys are not affected, and resetKey lifts the block.
    assert.equal((await store.increment('someone-else')).totalHits, 1)
    await store.resetKey('abuser')
    const b2 = await scriptCalls(server)
    assert.equal((await store.increment('abuser')).totalHits, 1)
    assert.equal((await scriptCalls(server)) - b2, 1, 'after resetKey the key goes to Redis again')
  })

  test('blockOverLimit: false sends every hit to Redis', async () => {
    const prefix = uniquePrefix('noblock')
    const store = new RedisStore({ client, prefix, blockOverLimit: false })
    store.init({ windowMs: 60_000, limit: 5 })
    const before = await scriptCalls(server)
    for (let i = 0; i < 55; i++) assert.equal((await store.increment('abuser')).totalHits, i + 1)
    assert.equal((await scriptCalls(server)) - before, 55)
    assert.equal(await server.cli('GET', `${prefix}abuser`), '55')
  })

  test('no local block without a static positive limit (limit as a function, or 0 as express-slow-down passes)', async () => {
    for (const limit of [() => 5, 0]) {
      const prefix = uniquePrefix('dynlimit')
      const store = new RedisStore({ client, prefix })
      store.init({ windowMs: 60_000, limit })
      const before = await scriptCalls(server)
      for (let i = 0; i < 20; i++) assert.equal((await store.increment('k')).totalHits, i + 1)
      assert.equal((await scriptCalls(server)) - before, 20, `limit ${limit}: every hit reached Redis`)
      assert.equal(await server.cli('GET', `${prefix}k`), '20')
    }
  })

  test('the over-limit block ends with the window', async () => {
    const prefix = uniquePrefix('blockend')
    const store = new RedisStore({ client, prefix })
    store.init({ windowMs: 500, limit: 2 })
    for (let i = 0; i < 5; i++) await store.increment('k')
    assert.equal(await server.cli('GET', `${prefix}k`), '3')
    await waitFor(async () => Number(await server.cli('PTTL', `${prefix}k`)) === -2, {
      timeout: 5000,
      interval: 50,
      what: 'window to expire',
    })
    await sleep(20) // the local resetTime is computed from the same PTTL, a few ms later
    const r = await store.increment('k')
    assert.equal(r.totalHits, 1, 'a new window in Redis')
    assert.equal(await server.cli('GET', `${prefix}k`), '1')
  })

  test('hostile keys: 1 MiB (stored hashed), NUL, emoji, lone surrogates, hash tags, boundary lengths', async () => {
    const prefix = uniquePrefix('hostile')
    const store = new RedisStore({ client, prefix })
    store.init({ windowMs: 60_000, limit: 1000 })
    const io = new Redis({ host: '127.0.0.1', port: server.port, lazyConnect: true, maxRetriesPerRequest: 1 })
    try {
      await io.connect()
      const huge = 'x'.repeat(1 << 20)
      const r1 = await store.increment(huge)
      const r2 = await store.increment(huge)
      assert.equal(r1.totalHits, 1)
      assert.equal(r2.totalHits, 2)
      const hashed = `${prefix}#sha1:${createHash('sha1').update(huge).digest('hex')}`
      assert.equal(await server.cli('GET', hashed), '2', 'the 1 MiB key is stored under its SHA-1')
      assert.equal(await io.exists(`${prefix}${huge}`), 0, 'never the raw 1 MiB key')
      assert.equal((await store.get(huge)).totalHits, 2)

      // 1024 bytes: stored as is; 1025 bytes: hashed. Counted in UTF-8 bytes, not characters.
      const k1024 = 'k'.repeat(1024)
      const k1025 = 'k'.repeat(1025)
      const kMulti = 'é'.repeat(513) // 1026 bytes, 513 characters
      for (const k of [k1024, k1025, kMulti]) await store.increment(k)
      assert.equal(await io.get(`${prefix}${k1024}`), '1')
      assert.equal(await io.exists(`${prefix}${k1025}`), 0)
      assert.equal(await io.get(`${prefix}#sha1:${createHash('sha1').update(k1025).digest('hex')}`), '1')
      assert.equal(await io.get(`${prefix}#sha1:${createHash('sha1').update(kMulti).digest('hex')}`), '1')

      // Ordinary keys keep their exact bytes (UTF-8; a lone surrogate becomes U+FFFD like Buffer.from does).
      const odd = [
        'a\u0000b',
        '\u0000',
        'user-😀-𝄞',
        '\ud800',
        'x\udc00y',
        'a{}b',
        'x}{y',
        'spaces and\nnewline',
        '*?[glob]',
      ]
      for (const k of odd) {
        assert.equal((await store.increment(k)).totalHits, 1, JSON.stringify(k))
        assert.equal((await store.increment(k)).totalHits, 2, JSON.stringify(k))
        const bytes = Buffer.from(prefix + k, 'utf8')
        assert.equal(await io.get(bytes), '2', `exact key bytes for ${JSON.stringify(k)}`)
        assert.equal((await store.get(k)).totalHits, 2)
      }
      // A key bringing its own cluster hash tag gets a tag derived from its hash in front (so a
      // client cannot pin every counter to one slot): `${prefix}{<8 hex of sha1(key)>}${key}`.
      for (const k of ['{tag}key', 'user-{x}']) {
        assert.equal((await store.increment(k)).totalHits, 1)
        assert.equal((await store.increment(k)).totalHits, 2)
        const tagged = `${prefix}{${createHash('sha1').update(k).digest('hex').slice(0, 8)}}${k}`
        assert.equal(await io.get(Buffer.from(tagged)), '2', `hash-tag key ${k}`)
        assert.equal(await io.exists(`${prefix}${k}`), 0)
      }
      // NUL does not truncate: 'a' and 'a\0b' are different keys.
      assert.equal((await store.increment('a')).totalHits, 1)
      // Every key of this prefix in Redis is short.
      let cursor = '0'
      let n = 0
      do {
        const [next, keys] = await io.scanBuffer(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
        cursor = String(next)
        for (const k of keys) {
          n++
          assert.ok(k.length <= prefix.length + 1024 + 8, `key of ${k.length} bytes in Redis`)
        }
      } while (cursor !== '0')
      assert.ok(n >= odd.length + 4)
      // Non-string keys are refused synchronously-ish with a typed error.
      await assert.rejects(
        store.increment(42),
        (e) => e instanceof RedisGuardError && e.code === 'ERR_REDIS_GUARD_INVALID_ARG',
      )
    } finally {
      io.disconnect()
    }
  })
})

// ---------------------------------------------------------------------------------------------
// resetAll on a server of its own (DBSIZE and commandstats must be exact).
// ---------------------------------------------------------------------------------------------

test('resetAll deletes only its prefix with SCAN (paged) + UNLINK, never KEYS', async () => {
  const server = await startRedis()
  const client = newClient(server.url)
  try {
    // Glob characters in the prefix must be matched literally.
    const prefix = `ra-${process.pid}[x]*?:`
    const victim = `ra-${process.pid}x-other:` // what an unescaped `ra-PID[x]*?:*` would also match
    const store = new RedisStore({ client, prefix })
    store.init({ windowMs: 600_000, limit: 1_000_000 })
    const other = new RedisStore({ client, prefix: victim })
    other.init({ windowMs: 600_000, limit: 1_000_000 })
    const N = 2500
    await Promise.all(Array.from({ length: N }, (_, i) => store.increment(`user-${i}`)))
    await Promise.all(Array.from({ length: 300 }, (_, i) => other.increment(`user-${i}`)))
    await server.cli('SET', 'unrelated:1', 'v')
    await server.cli('SET', `x${prefix}`, 'v') // contains the prefix, but not at the start
    await server.cli('SET', `ra-${process.pid}[x]*?`, 'v') // the prefix without its last character
    assert.equal(Number(await server.cli('DBSIZE')), N + 300 + 3)
    await server.cli('CONFIG', 'RESETSTAT')

    await store.resetAll()

    assert.equal(Number(await server.cli('DBSIZE')), 300 + 3, 'exactly the prefix keys are gone')
    assert.equal(await server.cli('GET', 'unrelated:1'), 'v')
    assert.equal(await server.cli('GET', `${victim}user-7`), '1')
    assert.equal(await server.cli('GET', `x${prefix}`), 'v')
    const stats = parseInfo(await server.cli('INFO', 'commandstats'))
    assert.equal(stats.cmdstat_keys, undefined, 'KEYS never called')
    assert.ok((await cmdCalls(server, 'scan')) >= 2, `SCAN paged (${await cmdCalls(server, 'scan')} calls)`)
    assert.ok((await cmdCalls(server, 'unlink')) >= 1 || (await cmdCalls(server, 'del')) >= 1)
    // The store keeps working, and a second resetAll on an empty prefix is fine.
    assert.equal((await store.increment('user-1')).totalHits, 1)
    await store.resetAll()
    assert.equal(Number(await server.cli('DBSIZE')), 300 + 3)
  } finally {
    await client.close()
    await server.stop()
  }
})

// ---------------------------------------------------------------------------------------------
// Fail-open policies through outages.
// ---------------------------------------------------------------------------------------------

/** Check what one policy answers while Redis is out; `fresh` is a key never used before. */
async function checkOutageAnswers(store, mode, fresh, windowMs) {
  const bound = DEADLINE + 50
  const answers = []
  for (let i = 0; i < 3; i++) answers.push(await timed(() => store.increment(fresh)))
  for (const [i, a] of answers.entries()) {
    assert.ok(a.ms <= bound, `${mode}: call ${i + 1} answered in ${a.ms.toFixed(1)} ms (bound ${bound})`)
  }
  if (mode === 'memory') {
    for (const a of answers) assert.ifError(a.error)
    assert.deepEqual(
      answers.map((a) => a.value.totalHits),
      [1, 2, 3],
      'counted locally in a fresh window',
    )
    for (const a of answers) assertResult(a.value, windowMs)
    assert.equal((await store.get(fresh)).totalHits, 3)
  } else if (mode === 'allow') {
    for (const a of answers) assert.ifError(a.error)
    assert.deepEqual(
      answers.map((a) => a.value.totalHits),
      [1, 1, 1],
    )
    for (const a of answers) assertResult(a.value, windowMs)
  } else {
    for (const a of answers) {
      assert.ok(a.error, 'deny rejects')
      assert.ok(a.error instanceof RedisGuardError, `a RedisGuardError, got ${a.error}`)
      assert.ok(CODES.includes(a.error.code), `code ${a.error.code}`)
    }
    const g = await timed(() => store.get(fresh))
    assert.ok(g.error && CODES.includes(g.error.code), 'get rejects too')
  }
  return answers
}

/** After the outage: back to Redis by itself, and counting there. */
async function checkRecovery(server, client, store, prefix) {
  await waitFor(() => client.isAvailable(), { timeout: 15_000, interval: 25, what: 'client to recover' })
  const r1 = await store.increment('after')
  const r2 = await store.increment('after')
  assert.equal(r1.totalHits, 1)
  assert.equal(r2.totalHits, 2)
  assert.equal(await server.cli('GET', `${prefix}after`), '2', 'counting in Redis again')
  assert.ok(Number(await server.cli('PTTL', `${prefix}after`)) > 0)
}

for (const mode of ['memory', 'allow', 'deny']) {
  describe(`onUnavailable: '${mode}'`, () => {
    test('server killed mid-test (SIGKILL), then restarted', async () => {
      const server = await startRedis()
      const client = newClient(server.url)
      try {
        assert.equal(await client.ready(5000), true)
        const prefix = uniquePrefix(`kill-${mode}`)
        const store = new RedisStore({ client, prefix, onUnavailable: mode })
        store.init({ windowMs: 60_000, limit: 100 })
        assert.equal((await store.increment('before')).totalHits, 1)
        assert.equal((await store.increment('before')).totalHits, 2)
        // Calls in flight while the server dies end within the deadline.
        const t0 = performance.now()
        const inflight = Array.from({ length: 20 }, (_, i) =>
          store.increment(`inflight-${i % 3}`).then(
            (v) => ({ v, ms: performance.now() - t0 }),
            (e) => ({ e, ms: performance.now() - t0 }),
          ),
        )
        await server.kill()
        for (const r of await Promise.all(inflight)) {
          assert.ok(r.ms <= DEADLINE + 100, `in-flight call ended after ${r.ms.toFixed(1)} ms`)
          if (r.e) assert.ok(mode === 'deny' && CODES.includes(r.e.code), `in-flight error ${r.e}`)
        }
        await checkOutageAnswers(store, mode, 'fresh', 60_000)
        await server.restart()
        await checkRecovery(server, client, store, prefix)
      } finally {
        await client.close()
        await server.stop()
      }
    })

    test('server paused (SIGSTOP), then resumed', async () => {
      const server = await startRedis()
      const client = newClient(server.url)
      try {
        assert.equal(await client.ready(5000), true)
        const prefix = uniquePrefix(`pause-${mode}`)
        const store = new RedisStore({ client, prefix, onUnavailable: mode })
        store.init({ windowMs: 60_000, limit: 100 })
        assert.equal((await store.increment('before')).totalHits, 1)
        server.pause()
        const answers = await checkOutageAnswers(store, mode, 'fresh', 60_000)
        if (mode === 'deny')
          assert.equal(answers[0].error.code, 'ERR_REDIS_GUARD_TIMEOUT', 'the hung call hit the deadline')
        // Later calls do not queue behind the hung connection.
        const later = await timed(() => store.increment('fresh2'))
        assert.ok(later.ms < 50, `a call after the circuit opened took ${later.ms.toFixed(1)} ms`)
        server.resume()
        await checkRecovery(server, client, store, prefix)
        // Only the call that hung was ever sent; Redis runs it once when it wakes up, nothing
        // is re-sent (no double count), and the calls answered by the fallback never reach it.
        assert.ok(['', '1'].includes(await server.cli('GET', `${prefix}fresh`)), 'at most the hung call reached Redis')
        assert.equal(await server.cli('EXISTS', `${prefix}fresh2`), '0')
      } finally {
        server.resume()
        await client.close()
        await server.stop()
      }
    })

    test('store started while the server is down; server starts 2 s later', async () => {
      const port = await freePort()
      const client = newClient(`redis://127.0.0.1:${port}`)
      let server
      try {
        const prefix = uniquePrefix(`startup-${mode}`)
        const store = new RedisStore({ client, prefix, onUnavailable: mode })
        store.init({ windowMs: 60_000, limit: 100 })
        const t0 = Date.now()
        await checkOutageAnswers(store, mode, 'fresh', 60_000)
        assert.equal(client.isAvailable(), false)
        await sleep(Math.max(0, 2000 - (Date.now() - t0)))
        server = await startRedis({ port })
        await checkRecovery(server, client, store, prefix)
      } finally {
        await client.close()
        await server?.stop()
      }
    })
  })
}

test('long outage at start-up: the server starts ~6 s later and counting moves to Redis', async () => {
  const port = await freePort()
  const client = newClient(`redis://127.0.0.1:${port}`)
  let server
  try {
    const prefix = uniquePrefix('long')
    const store = new RedisStore({ client, prefix })
    store.init({ windowMs: 60_000, limit: 1000 })
    const t0 = Date.now()
    let n = 0
    while (Date.now() - t0 < 6000) {
      const a = await timed(() => store.increment('k'))
      n++
      assert.ok(a.ms <= DEADLINE + 50, `answered in ${a.ms.toFixed(1)} ms`)
      assert.equal(a.value.totalHits, n, 'memory fallback counts')
      await sleep(200)
    }
    assert.equal(client.isAvailable(), false)
    server = await startRedis({ port })
    const up = Date.now()
    await waitFor(() => client.isAvailable(), { timeout: 10_000, interval: 25, what: 'client to connect' })
    const r = await store.increment('k')
    assert.equal(r.totalHits, 1, 'Redis had no count yet: a new window there')
    assert.equal(await server.cli('GET', `${prefix}k`), '1')
    assert.ok(Number(await server.cli('PTTL', `${prefix}k`)) > 0)
    assert.ok(Date.now() - up < 10_000)
  } finally {
    await client.close()
    await server?.stop()
  }
})

test('memory fallback stays bounded: 1,000,000 distinct keys (then another million) with fallbackMaxKeys 1000', async (t) => {
  // In a child process of its own: its RSS is the store's alone, and promises run at full
  // speed (inside a node:test callback, async context tracking makes each one ~5x dearer).
  const port = await freePort() // never started: Redis is down for the whole test
  const flood = `
import { RedisClient, RedisStore } from ${JSON.stringify(INDEX_MJS_URL)};
const [url, prefix] = process.argv.slice(2);
const client = new RedisClient({ url, logger: false });
const store = new RedisStore({ client, prefix, fallbackMaxKeys: 1000 });
store.init({ windowMs: 600000, limit: 100 });
const connected = await client.ready(2000);
await store.increment('warm-up');
const m0 = process.memoryUsage();
const t0 = performance.now();
let slowest = 0;
let maxSize = 0;
let bad = 0;
for (let b = 0; b < 100; b++) {
  const tb = performance.now();
  const ps = [];
  for (let i = 0; i < 10000; i++) ps.push(store.increment('flood-' + b + '-' + i));
  const results = await Promise.all(ps);
  for (const r of results) if (r.totalHits !== 1) bad++;
  slowest = Math.max(slowest, performance.now() - tb);
  maxSize = Math.max(maxSize, store.fallbackSize());
}
const ms = performance.now() - t0;
const peak = process.memoryUsage();
globalThis.gc();
const m1 = process.memoryUsage();
// Keys are evicted oldest first, but batches of one turn may be served in any order, so the
// check uses a key counted after the flood: counting still works with the table full.
await store.increment('after-flood');
const recent = (await store.increment('after-flood')).totalHits;
// A second million: memory must plateau (bounded), not grow with the keys seen.
for (let b = 0; b < 100; b++) {
  const ps = [];
  for (let i = 0; i < 10000; i++) ps.push(store.increment('second-' + b + '-' + i));
  await Promise.all(ps);
  maxSize = Math.max(maxSize, store.fallbackSize());
}
globalThis.gc();
const m2 = process.memoryUsage();
process.stdout.write(JSON.stringify({ connected, ms, slowest, maxSize, bad, recent,
  secondRssMb: (m2.rss - m1.rss) / 1e6, secondHeapMb: (m2.heapUsed - m1.heapUsed) / 1e6,
  size: store.fallbackSize(), fallbacks: client.stats().fallbacks,
  rssMb: (m1.rss - m0.rss) / 1e6, heapMb: (m1.heapUsed - m0.heapUsed) / 1e6, rss0Mb: m0.rss / 1e6,
  peakRssMb: (peak.rss - m0.rss) / 1e6 }) + '\\n');
await client.close();
`
  const child = await runNode(flood, {
    name: 'flood',
    nodeArgs: ['--expose-gc'],
    args: [`redis://127.0.0.1:${port}`, uniquePrefix('flood')],
    timeout: 30_000,
  })
  assert.equal(child.timedOut, false, 'the flood child did not finish in 30000 ms')
  assert.equal(child.code, 0, `flood child: ${child.code} ${child.stderr}`)
  const r = JSON.parse(child.stdout)
  assert.equal(r.connected, false, 'Redis was down')
  assert.equal(r.bad, 0, 'every distinct key counted 1 in the fallback')
  assert.ok(r.maxSize <= 1000 && r.size <= 1000, `fallbackSize peaked at ${r.maxSize}`)
  assert.ok(r.size > 0)
  assert.equal(r.recent, 2, 'a key counted after the flood keeps counting')
  assert.ok(r.fallbacks >= 2_000_000)
  assert.ok(r.ms < 30_000, `the flood took ${r.ms.toFixed(0)} ms`)
  t.diagnostic(
    `1M keys in ${r.ms.toFixed(0)} ms (slowest batch of 10k: ${r.slowest.toFixed(0)} ms), ` +
      `RSS ${r.rss0Mb.toFixed(0)} MB at start, +${r.peakRssMb.toFixed(1)} MB at the end of the flood, ` +
      `+${r.rssMb.toFixed(1)} MB after GC (heap +${r.heapMb.toFixed(1)} MB), fallbackSize ${r.size}; ` +
      `a second million: RSS ${r.secondRssMb >= 0 ? '+' : ''}${r.secondRssMb.toFixed(1)} MB, heap ${r.secondHeapMb >= 0 ? '+' : ''}${r.secondHeapMb.toFixed(1)} MB`,
  )
  // What stays is bounded by the 1000 keys (plus allocator and V8 slack), not by the keys seen:
  // the second million adds (next to) nothing.
  assert.ok(r.heapMb < 20, `JS heap kept ${r.heapMb.toFixed(1)} MB`)
  assert.ok(
    r.peakRssMb < 300 && r.rssMb < 200,
    `RSS grew by ${r.peakRssMb.toFixed(1)} MB (${r.rssMb.toFixed(1)} MB after GC)`,
  )
  assert.ok(
    r.secondRssMb < 60 && r.secondHeapMb < 5,
    `a second million grew RSS by ${r.secondRssMb.toFixed(1)} MB, heap by ${r.secondHeapMb.toFixed(1)} MB`,
  )
})
