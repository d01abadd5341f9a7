// The query cache's getOrSet, grace, tags and L1 against REAL redis-server processes: one factory
// per key in a process and across four processes (a cold-key stampede), factory errors and
// timeouts (typed, nothing cached), take-over from a holder that died, grace (stale served when
// the factory fails or is slow, refreshed in the background), tag invalidation (O(1) per tag,
// atomic with reads, in the wire format the README documents), and an L1 kept coherent across
// two processes, emptied when its channel is interrupted.
// Run: node --test __tests__/cache-fill.test.mjs
//
// Rules: no mocks; every test uses its own key prefix or server; every client, child and server
// is closed in `finally`; loopback only; every loop is bounded.

import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'

import guard from '../index.js'
import { parseInfo, startProxy, startRedis, waitFor } from './helpers/redis.mjs'
import { spawnNode, uniquePrefix, rejectsCode } from './helpers/utils.mjs'

const { Cache, RedisClient, codes } = guard
const WORKER = fileURLToPath(new URL('./helpers/cache-worker.mjs', import.meta.url))

async function cmdCalls(server, cmd) {
  const v = parseInfo(await server.cli('INFO', 'commandstats'))[`cmdstat_${cmd}`]
  return v ? Number(/calls=(\d+)/.exec(v)[1]) : 0
}

/** A server of its own and a connected client, closed after `fn`. */
async function withServer(fn) {
  const server = await startRedis()
  const client = new RedisClient({ url: server.url, logger: false })
  try {
    assert.equal(await client.ready(5000), true, 'client connects')
    return await fn({ server, client })
  } finally {
    await client.close()
    await server.stop()
  }
}

/** A cache worker process (helpers/cache-worker.mjs), ready; `call(op, args)` one request. */
async function worker(url, prefix, { l1 = false } = {}) {
  const w = await spawnNode(WORKER, [], { env: { ...process.env, REDIS_URL: url, PREFIX: prefix, L1: l1 ? '1' : '' } })
  const ready = await w.next((l) => l.ready === true, 15_000)
  let seq = 0
  return {
    ...w,
    ready,
    async call(op, args = {}) {
      const id = ++seq
      w.write(JSON.stringify({ id, op, ...args }) + '\n')
      const r = await w.next((l) => l.id === id, 20_000)
      if (r.error) throw Object.assign(new Error(r.error), { code: r.error })
      return r.result
    },
  }
}

describe('getOrSet', () => {
  test('a miss runs the factory once for 500 concurrent calls, stores its value, then hits', async () => {
    await withServer(async ({ client }) => {
      const cache = new Cache({ client, prefix: uniquePrefix('gos') })
      let runs = 0
      const factory = async () => {
        runs++
        await sleep(50)
        return { n: 42 }
      }
      const values = await Promise.all(Array.from({ length: 500 }, () => cache.getOrSet('k', factory)))
      assert.equal(runs, 1)
      assert.ok(values.every((v) => v.n === 42))
      assert.deepEqual(await cache.get('k'), { n: 42 }, 'stored')
      assert.deepEqual(await cache.getOrSet('k', factory), { n: 42 })
      assert.equal(runs, 1, 'a hit runs no factory')
      const s = cache.stats()
      assert.equal(s.factoryCalls, 1)
      assert.equal(s.misses, 500, 'each call read once and missed; they shared one fill')
      assert.equal(s.sets, 1)
    })
  })

  test('a factory that throws rejects every caller with its error and caches nothing; the next call runs again', async () => {
    await withServer(async ({ client, server }) => {
      const prefix = uniquePrefix('gos-err')
      const cache = new Cache({ client, prefix })
      const boom = new Error('db down')
      let runs = 0
      const failing = async () => {
        runs++
        await sleep(20)
        throw boom
      }
      const rs = await Promise.allSettled(Array.from({ length: 20 }, () => cache.getOrSet('k', failing)))
      assert.equal(runs, 1)
      assert.ok(
        rs.every((r) => r.status === 'rejected' && r.reason === boom),
        'the factory error itself',
      )
      assert.equal(await server.cli('EXISTS', `${prefix}k`), '0', 'nothing cached')
      assert.equal(await server.cli('EXISTS', `${prefix}__rg:lock:k`), '0', 'the fill lock was given back')
      assert.equal(await cache.getOrSet('k', () => 7), 7, 'the next call runs the factory again')
      assert.equal(cache.stats().errors, 1)
    })
  })

  test('bad input: key, factory, options, an undefined / BigInt / circular result: typed errors, nothing cached', async () => {
    await withServer(async ({ client, server }) => {
      const prefix = uniquePrefix('gos-bad')
      const cache = new Cache({ client, prefix })
      await rejectsCode(
        cache.getOrSet(/** @type {any} */ (1), () => 1),
        codes.INVALID_ARG,
        'number key',
      )
      await rejectsCode(
        cache.getOrSet('', () => 1),
        codes.INVALID_ARG,
        'empty key',
      )
      await rejectsCode(
        cache.getOrSet('__rg:lock:x', () => 1),
        codes.INVALID_ARG,
        'reserved key',
      )
      await rejectsCode(cache.getOrSet('k', /** @type {any} */ (42)), codes.INVALID_ARG, 'no factory')
      await rejectsCode(
        cache.getOrSet('k', () => 1, { timeoutMs: -1 }),
        codes.INVALID_ARG,
        'timeoutMs',
      )
      await rejectsCode(
        cache.getOrSet('k', () => 1, { tags: [''] }),
        codes.INVALID_ARG,
        'empty tag',
      )
      await rejectsCode(
        cache.getOrSet('k', () => 1, { graceMs: -5 }),
        codes.INVALID_ARG,
        'graceMs',
      )
      await rejectsCode(
        cache.getOrSet('u', () => undefined),
        codes.INVALID_ARG,
        'undefined result',
      )
      await rejectsCode(
        cache.getOrSet('b', () => 10n),
        codes.INVALID_ARG,
        'BigInt result',
      )
      const circular = {}
      circular.self = circular
      await rejectsCode(
        cache.getOrSet('c', () => circular),
        codes.INVALID_ARG,
        'circular result',
      )
      assert.equal(Number(await server.cli('DBSIZE')), 0, 'nothing cached, no lock left')
    })
  })

  test('a factory that never settles: ERR_REDIS_GUARD_TIMEOUT after timeoutMs for every caller, nothing cached', async () => {
    await withServer(async ({ client, server }) => {
      const prefix = uniquePrefix('gos-hang')
      const cache = new Cache({ client, prefix, timeoutMs: 300 })
      const t0 = Date.now()
      const rs = await Promise.allSettled(
        Array.from({ length: 10 }, () => cache.getOrSet('k', () => new Promise(() => {}))),
      )
      const took = Date.now() - t0
      assert.ok(rs.every((r) => r.status === 'rejected' && r.reason.code === codes.TIMEOUT))
      assert.ok(took >= 290 && took < 2000, `answered after ${took} ms`)
      assert.equal(await server.cli('EXISTS', `${prefix}k`), '0')
      assert.equal(cache.stats().timeouts, 1)
    })
  })

  test('a cold-key stampede over four processes (1,000 calls): the factory runs once; the others get its value', async () => {
    const server = await startRedis()
    const prefix = uniquePrefix('stampede')
    const workers = []
    try {
      for (let i = 0; i < 4; i++) workers.push(await worker(server.url, prefix))
      const rs = await Promise.all(workers.map((w) => w.call('getOrSet', { key: 'cold', n: 250, factoryMs: 300 })))
      const total = rs.reduce((a, r) => a + r.factoryCalls, 0)
      assert.equal(total, 1, `factory runs over 4 processes: ${JSON.stringify(rs)}`)
      const values = new Set(rs.flatMap((r) => r.values))
      assert.equal(values.size, 1, `one value everywhere: ${[...values]}`)
    } finally {
      await Promise.all(workers.map((w) => w.stop()))
      await server.stop()
    }
  })

  test('a holder that dies mid-fill: another process takes over once its fill lock expires', async () => {
    const server = await startRedis()
    const prefix = uniquePrefix('takeover')
    const workers = []
    try {
      for (let i = 0; i < 2; i++) workers.push(await worker(server.url, prefix))
      const [a, b] = workers
      // a starts a slow fill (its lock lives timeoutMs = 1 s), then dies.
      a.write(JSON.stringify({ id: 99, op: 'getOrSet', key: 'k', factoryMs: 60_000, timeoutMs: 1000 }) + '\n')
      await waitFor(async () => (await server.cli('EXISTS', `${prefix}__rg:lock:k`)) === '1', {
        what: 'a holds the lock',
      })
      process.kill(a.child.pid, 'SIGKILL')
      const t0 = Date.now()
      const r = await b.call('getOrSet', { key: 'k', factoryMs: 10, value: 'b', timeoutMs: 3000 })
      assert.equal(r.factoryCalls, 1, 'b ran the factory')
      assert.equal(JSON.parse(r.values[0]).value, 'b')
      assert.ok(Date.now() - t0 < 3000, 'within its wait')
    } finally {
      await Promise.all(workers.map((w) => w.stop()))
      await server.stop()
    }
  })
})

describe('getOrSet with Redis down', () => {
  test("'memory': one factory per key at a time, then the memory tier; within the deadline; 'deny' rejects, runs nothing", async () => {
    const server = await startRedis()
    const client = new RedisClient({ url: server.url, logger: false })
    try {
      await client.ready(5000)
      const cache = new Cache({ client, prefix: uniquePrefix('gos-down') })
      const deny = new Cache({ client, prefix: uniquePrefix('gos-deny'), onUnavailable: 'deny' })
      await server.stop()
      await waitFor(() => !client.isAvailable(), { what: 'down' })
      let runs = 0
      const factory = async () => {
        runs++
        await sleep(30)
        return runs
      }
      const t0 = Date.now()
      const first = await Promise.all(Array.from({ length: 100 }, () => cache.getOrSet('k', factory)))
      assert.ok(
        first.every((v) => v === 1),
        'one factory run for 100 calls',
      )
      assert.equal(await cache.getOrSet('k', factory), 1, 'then the memory tier answers')
      assert.equal(runs, 1)
      assert.ok(Date.now() - t0 < 1000, `answered in ${Date.now() - t0} ms`)
      await rejectsCode(deny.getOrSet('k', factory), codes.UNAVAILABLE, "'deny'")
      assert.equal(runs, 1, "'deny' ran no factory")
      assert.ok(cache.stats().fallbacks > 0)
    } finally {
      await client.close()
      await server.stop()
    }
  })
})

describe('grace', () => {
  test('an expired entry within grace: served when the factory fails or is slow, refreshed in the background', async () => {
    await withServer(async ({ client, server }) => {
      const prefix = uniquePrefix('grace')
      const cache = new Cache({ client, prefix, timeoutMs: 200 })
      await cache.set('k', 'old', { ttlMs: 100, graceMs: 60_000 })
      const raw = await server.cli('GET', `${prefix}k`)
      assert.ok(raw.startsWith('\0rg1\n{"g":60000}\n'), `the envelope: ${JSON.stringify(raw)}`)
      assert.equal(await cache.get('k'), 'old', 'fresh')
      await sleep(150)
      assert.equal(await cache.get('k'), undefined, 'get: a stale entry is a miss')
      assert.equal(await cache.has('k'), false)
      // The factory fails: the stale value.
      assert.equal(
        await cache.getOrSet('k', () => Promise.reject(new Error('db down')), { ttlMs: 100, graceMs: 60_000 }),
        'old',
      )
      // The factory is slow: the stale value after timeoutMs, then the new value once it ends.
      const t0 = Date.now()
      const v = await cache.getOrSet('k', () => sleep(400).then(() => 'new'), { ttlMs: 60_000, graceMs: 60_000 })
      assert.equal(v, 'old')
      assert.ok(Date.now() - t0 < 380, 'answered before the factory ended')
      await waitFor(async () => (await cache.get('k')) === 'new', { timeout: 3000, what: 'the background refresh' })
      assert.equal(cache.stats().staleHits, 2)
    })
  })

  test('without grace, an expired entry is a miss: the factory runs', async () => {
    await withServer(async ({ client }) => {
      const cache = new Cache({ client, prefix: uniquePrefix('nograce') })
      await cache.set('k', 'old', { ttlMs: 50 })
      await sleep(100)
      assert.equal(await cache.getOrSet('k', () => 'new'), 'new')
    })
  })
})

describe('tags', () => {
  test('invalidateTags: one INCR per tag, no scan; entries with the tag are gone, others stay; documented wire format', async () => {
    await withServer(async ({ client, server }) => {
      const prefix = uniquePrefix('tags')
      const cache = new Cache({ client, prefix })
      await cache.set('user:1', { id: 1 }, { tags: ['team:7', 'user:1'] })
      await cache.set('user:2', { id: 2 }, { tags: ['team:8'] })
      await cache.set('plain', 1)
      const raw = await server.cli('GET', `${prefix}user:1`)
      assert.equal(raw, '\0rg1\n{"t":{"team:7":0,"user:1":0}}\n{"id":1}')
      assert.deepEqual(await cache.get('user:1'), { id: 1 })
      await server.cli('CONFIG', 'RESETSTAT')
      assert.equal(await cache.invalidateTags(['team:7']), 1)
      assert.equal(await cmdCalls(server, 'incr'), 1)
      assert.equal(await cmdCalls(server, 'scan'), 0)
      assert.equal(await cmdCalls(server, 'keys'), 0)
      assert.equal(await server.cli('GET', `${prefix}__rg:tag:team:7`), '1')
      assert.equal(await cache.get('user:1'), undefined, 'invalidated')
      assert.equal(await server.cli('EXISTS', `${prefix}user:1`), '0', 'and unlinked by the read')
      assert.deepEqual(await cache.get('user:2'), { id: 2 })
      assert.equal(await cache.get('plain'), 1)
      await cache.set('user:1', { id: 1, v: 2 }, { tags: ['team:7'] })
      assert.deepEqual(await cache.get('user:1'), { id: 1, v: 2 }, 'written after: served')
    })
  })

  test('atomic with reads: while invalidations run, no read that starts after one resolved serves an entry written before it', async () => {
    await withServer(async ({ client }) => {
      const cache = new Cache({ client, prefix: uniquePrefix('tags-race') })
      let violations = 0
      for (let round = 0; round < 50; round++) {
        await cache.set('k', round, { tags: ['t'] })
        const inv = cache.invalidateTags(['t'])
        const early = cache.get('k') // concurrent: either answer is right
        await inv
        const after = await cache.get('k')
        if (after !== undefined) violations++
        await early
      }
      assert.equal(violations, 0)
    })
  })

  test('getOrSet reads the tag versions when it starts: an invalidation during the factory discards its value', async () => {
    await withServer(async ({ client }) => {
      const cache = new Cache({ client, prefix: uniquePrefix('tags-fill') })
      const v = await cache.getOrSet(
        'k',
        async () => {
          await sleep(50)
          await cache.invalidateTags(['t'])
          return 'computed before the invalidation'
        },
        { tags: ['t'] },
      )
      assert.equal(v, 'computed before the invalidation', 'the caller gets it')
      assert.equal(await cache.get('k'), undefined, 'but it is not served after the invalidation')
    })
  })

  test('Redis down: invalidateTags rejects (it would not reach Redis) and empties the memory tier', async () => {
    const server = await startRedis()
    const client = new RedisClient({ url: server.url, logger: false })
    try {
      await client.ready(5000)
      const cache = new Cache({ client, prefix: uniquePrefix('tags-down') })
      await server.stop()
      await waitFor(() => !client.isAvailable(), { what: 'down' })
      await cache.set('k', 1, { tags: ['t'] })
      assert.equal(await cache.get('k'), 1, 'the memory tier')
      await rejectsCode(cache.invalidateTags(['t']), codes.UNAVAILABLE, 'invalidateTags while down')
      assert.equal(await cache.get('k'), undefined, 'the memory tier was emptied')
    } finally {
      await client.close()
      await server.stop()
    }
  })
})

describe('L1', () => {
  test('two processes: a set, a delete and a tag invalidation in one reach the other L1; L1 hits need no Redis', async () => {
    const server = await startRedis()
    const prefix = uniquePrefix('l1')
    const workers = []
    try {
      for (let i = 0; i < 2; i++) workers.push(await worker(server.url, prefix, { l1: true }))
      const [a, b] = workers
      assert.equal(a.ready.l1 && b.ready.l1, true, 'both L1s hear the channel')
      await a.call('set', { key: 'k', value: 1, options: { tags: ['team'] } })
      // A read that overlaps the news of the set does not fill the L1: read until one does.
      for (let i = 0; i < 50 && (await b.call('l1')).size === 0; i++) assert.equal(await b.call('get', { key: 'k' }), 1)
      const before = (await b.call('stats')).l1Hits
      await server.cli('CONFIG', 'RESETSTAT')
      for (let i = 0; i < 5; i++) assert.equal(await b.call('get', { key: 'k' }), 1)
      assert.equal((await cmdCalls(server, 'evalsha')) + (await cmdCalls(server, 'mget')), 0, 'L1 hits send nothing')
      assert.equal((await b.call('stats')).l1Hits - before, 5)
      await a.call('set', { key: 'k', value: 2, options: { tags: ['team'] } })
      await waitFor(async () => (await b.call('get', { key: 'k' })) === 2, { timeout: 2000, what: 'the set reaches b' })
      await a.call('invalidateTags', { tags: ['team'] })
      await waitFor(async () => (await b.call('get', { key: 'k' })) === null, {
        timeout: 2000,
        what: 'the invalidation reaches b',
      })
      await a.call('set', { key: 'j', value: 'x' })
      assert.equal(await b.call('get', { key: 'j' }), 'x')
      await a.call('delete', { key: 'j' })
      await waitFor(async () => (await b.call('get', { key: 'j' })) === null, {
        timeout: 2000,
        what: 'the delete reaches b',
      })
    } finally {
      await Promise.all(workers.map((w) => w.stop()))
      await server.stop()
    }
  })

  test('after a black hole the subscriber resumes and the L1 serves again; while it lasts (with the connection replaced into it) the L1 stays off', async () => {
    const server = await startRedis()
    const proxy = await startProxy(server.port)
    const workers = []
    try {
      const b = await worker(`redis://127.0.0.1:${proxy.port}`, uniquePrefix('l1-back'), { l1: true })
      workers.push(b)
      proxy.setMode('blackhole')
      await waitFor(async () => (await b.call('l1')).interruptions >= 1 || !(await b.call('l1')).ready, {
        timeout: 5000,
        what: "b's L1 notices",
      })
      // Long enough for the subscriber to replace its silent connection (after 4 deadlines,
      // at least 1 s): the new one is open but silent, and must not count as subscribed.
      const until = Date.now() + 5000
      while (Date.now() < until) {
        assert.equal((await b.call('l1')).ready, false, 'off while the channel is black-holed')
        await new Promise((r) => setTimeout(r, 200))
      }
      proxy.setMode('pass')
      await waitFor(async () => (await b.call('l1')).ready, { timeout: 30_000, what: "b's channel is back" })
    } finally {
      await Promise.all(workers.map((w) => w.stop()))
      await proxy.close()
      await server.stop()
    }
  })

  test('a channel interrupted (a black hole): the L1 empties and turns off, so it never serves what was deleted meanwhile', async () => {
    const server = await startRedis()
    const proxy = await startProxy(server.port)
    const prefix = uniquePrefix('l1-down')
    const workers = []
    try {
      const a = await worker(server.url, prefix, { l1: true })
      workers.push(a)
      const b = await worker(`redis://127.0.0.1:${proxy.port}`, prefix, { l1: true })
      workers.push(b)
      await a.call('set', { key: 'k', value: 'v1' })
      // A read that overlaps the news of the set does not fill the L1: read until one does.
      for (let i = 0; i < 50 && (await b.call('l1')).size === 0; i++)
        assert.equal(await b.call('get', { key: 'k' }), 'v1')
      assert.equal((await b.call('l1')).size, 1)
      proxy.setMode('blackhole')
      await waitFor(async () => (await b.call('l1')).interruptions >= 1, { timeout: 5000, what: "b's L1 notices" })
      await a.call('delete', { key: 'k' }) // b cannot hear it
      const l1 = await b.call('l1')
      assert.equal(l1.size, 0, 'emptied')
      assert.equal(l1.ready, false, 'off while the channel is down')
      proxy.setMode('pass')
      assert.equal(await b.call('get', { key: 'k' }), null, 'the deleted key is not served (Redis answers)')
    } finally {
      await Promise.all(workers.map((w) => w.stop()))
      await proxy.close()
      await server.stop()
    }
  })
})
