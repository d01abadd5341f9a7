// Distributed locks against a REAL redis-server: seed helpers (acquireLock / releaseLock /
// extendLock), leases (client.lock), withLock, fencing tokens, paused holders, Redis going
// away in each onUnavailable mode, and bad input.
// Run: node --test __tests__/lock.test.mjs
//
// Rules: no mocks; every test uses its own key prefix; every client, server and child process
// is closed in `finally`; loopback only; every loop is bounded.

import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

import guard from '../index.js'
import { startRedis, waitFor } from './helpers/redis.mjs'
import { spawnNode, timed, uniquePrefix, writeScript, rejectsCode } from './helpers/utils.mjs'

const { RedisClient, codes } = guard
const require = createRequire(import.meta.url)
const Redis = require('ioredis')

const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** The command deadline (default) and the slack we allow on top of it for a decision. */
const DEADLINE_MS = 250
const SLACK_MS = 50

// Every unhandled rejection anywhere in this file is a failure (checked by the last test).
const unhandled = []
/** Measured latencies, printed as diagnostics by the last test. */
const timings = {}
const note = (name, ms) => {
  ;(timings[name] ??= []).push(Math.round(ms * 10) / 10)
}
process.on('unhandledRejection', (reason) => {
  unhandled.push(reason)
})

/** @type {import('./helpers/redis.mjs').RedisServer} */
let server
/** A plain ioredis connection to the shared server, for inspecting keys cheaply. */
let raw
/** The child-process scripts (written to a temp dir in `before`). */
const scripts = {}

/** A fresh, test-private lock key (without the `lock:` prefix). */
function key(name) {
  return `${uniquePrefix(`lt-${name}`)}k`
}

/** Run `fn({ mk, defer })`; everything made with `mk` / registered with `defer` is closed after. */
async function scope(fn, srv = server) {
  const closers = []
  const mk = async (opts = {}) => {
    const c = new RedisClient({ url: srv.url, logger: false, ...opts })
    closers.push(() => c.close())
    if (opts.ready !== false) assert.equal(await c.ready(5000), true, 'client connects')
    return c
  }
  const defer = (f) => closers.push(f)
  try {
    return await fn({ mk, defer })
  } finally {
    for (const f of closers.reverse()) {
      try {
        await f()
      } catch {
        /* best effort */
      }
    }
  }
}

/** Resolves when `signal` aborts, or after `ms` (bounded wait). */
function abortedWithin(signal, ms) {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(true)
    const t = setTimeout(() => resolve(false), ms)
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(t)
        resolve(true)
      },
      { once: true },
    )
  })
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

const CHILD_PRELUDE = `
import { createRequire } from 'node:module';
const require = createRequire(${JSON.stringify(path.join(ROOT, 'package.json'))});
const { RedisClient } = require(${JSON.stringify(path.join(ROOT, 'index.js'))});
const Redis = require('ioredis');
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
`

/** Worker: N critical sections, each a NON-atomic read-modify-write of a counter in Redis. */
const MUTEX_WORKER = `${CHILD_PRELUDE}
const [url, lockKey, counterKey, insideKey, n] = process.argv.slice(2);
const client = new RedisClient({ url, logger: false });
const redis = new Redis(url, { maxRetriesPerRequest: 2 });
let overlaps = 0;
try {
  if (!(await client.ready(5000))) throw new Error('client did not connect');
  for (let i = 0; i < Number(n); i++) {
    await client.withLock(lockKey, { ttlMs: 5000, waitMs: 30000, retryDelayMs: 5 }, async (signal) => {
      if ((await redis.incr(insideKey)) !== 1) overlaps++;
      const v = Number((await redis.get(counterKey)) ?? 0);
      await sleep(Math.floor(Math.random() * 3));
      if (signal.aborted) throw new Error('lease lost inside the critical section');
      await redis.set(counterKey, String(v + 1));
      await redis.decr(insideKey);
    });
  }
  out({ done: Number(n), overlaps });
} finally {
  await client.close();
  redis.disconnect();
}
`

/** Holder: takes a lease (ttlMs 500), reports, waits for 'go' on stdin, then reports what it sees. */
const HOLDER = `${CHILD_PRELUDE}
const [url, lockKey] = process.argv.slice(2);
const client = new RedisClient({ url, logger: false });
try {
  if (!(await client.ready(5000))) throw new Error('client did not connect');
  const lease = await client.lock(lockKey, { ttlMs: 500 });
  let abortedAt = null;
  lease.signal.addEventListener('abort', () => { abortedAt = Date.now(); });
  out({ event: 'acquired', fence: lease.fence, token: lease.token, source: lease.source, expiresAt: lease.expiresAt });
  await new Promise((resolve) => process.stdin.once('data', resolve));
  process.stdin.pause();
  const resumedAt = Date.now();
  // The expiry timer is overdue after SIGCONT; give it a (bounded) chance to fire.
  if (!lease.signal.aborted) {
    await new Promise((resolve) => {
      const t = setTimeout(resolve, 1000);
      lease.signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }
  const report = {
    event: 'report',
    aborted: lease.signal.aborted,
    reasonCode: lease.signal.reason && lease.signal.reason.code,
    abortDelayMs: abortedAt === null ? null : abortedAt - resumedAt,
    held: lease.held,
  };
  try {
    report.extend = await lease.extend(5000);
  } catch (e) {
    report.extendError = e.code;
  }
  try {
    report.released = await lease.release();
  } catch (e) {
    report.releaseError = e.code || String(e);
  }
  try {
    report.extendAfterRelease = await lease.extend(5000);
  } catch (e) {
    report.extendAfterReleaseError = e.code;
  }
  out(report);
} finally {
  await client.close();
}
`

// ---------------------------------------------------------------------------------------------

before(async () => {
  server = await startRedis()
  raw = new Redis(server.url, { maxRetriesPerRequest: 2 })
  scripts.mutexWorker = await writeScript(MUTEX_WORKER, { name: 'mutex-worker' })
  scripts.holder = await writeScript(HOLDER, { name: 'holder' })
})

after(async () => {
  await guard.closeDefaultClient().catch(() => {})
  if (raw) raw.disconnect()
  if (server) await server.stop()
})

// ---------------------------------------------------------------------------------------------
// Seed helpers
// ---------------------------------------------------------------------------------------------

test('helpers: acquire true then false from a second client; token-checked release; TTL on lock:KEY', async () => {
  const savedUrl = process.env.REDIS_URL
  process.env.REDIS_URL = server.url
  await scope(async ({ mk, defer }) => {
    defer(async () => {
      await guard.closeDefaultClient()
      if (savedUrl === undefined) delete process.env.REDIS_URL
      else process.env.REDIS_URL = savedUrl
    })
    const other = await mk()
    const k = key('helpers')
    const lk = `lock:${k}`

    assert.equal(await guard.acquireLock(k, 10), true)
    assert.equal(guard.isRedisAvailable(), true)
    assert.equal(await other.acquireLock(k, 10), false, 'held elsewhere')
    assert.equal(await guard.acquireLock(k, 10), false, 'not re-entrant: a second acquire is refused')

    // The Redis key is lock:KEY with a TTL; its value is a random token. A helper grant is
    // SET NX PX alone: it takes no fencing token (leases do: lock:{lock:KEY}:fence).
    const pttl = await raw.pttl(lk)
    assert.ok(pttl > 9_000 && pttl <= 10_000, `PTTL ${pttl}`)
    assert.match(await raw.get(lk), /^[0-9a-f]{32}$/)
    assert.equal(await raw.get(`lock:{${lk}}:fence`), null, 'no fence counter for a helper grant')

    assert.equal(await guard.extendLock(k, 20), true)
    assert.ok((await raw.pttl(lk)) > 19_000)
    assert.equal(await other.extendLock(k, 60), false, 'another client cannot extend it')
    assert.ok((await raw.pttl(lk)) <= 20_000)

    assert.equal(await other.releaseLock(k), false, 'another client cannot release it')
    assert.equal(await raw.exists(lk), 1)
    assert.equal(await guard.releaseLock(k), true)
    assert.equal(await raw.exists(lk), 0)
    assert.equal(await guard.releaseLock(k), false, 'a second release: not held')
    assert.equal(await guard.releaseLock(key('never-taken')), false)
    assert.equal(await guard.extendLock(k, 10), false, 'extend after release')
    assert.equal(await raw.exists(lk), 0, 'extendLock did not recreate the key')

    // Now the other client can take it, default TTL 30 s.
    assert.equal(await other.acquireLock(k), true)
    const pttl2 = await raw.pttl(lk)
    assert.ok(pttl2 > 29_000 && pttl2 <= 30_000, `default ttl: PTTL ${pttl2}`)
    assert.equal(await raw.get(`lock:{${lk}}:fence`), null)
    assert.equal(await guard.acquireLock(k), false)
    assert.equal(await other.releaseLock(k), true)

    // Sub-second TTLs are honoured (rounded up to whole ms).
    assert.equal(await other.acquireLock(k, 0.25), true)
    const pttl3 = await raw.pttl(lk)
    assert.ok(pttl3 > 0 && pttl3 <= 250, `PTTL ${pttl3}`)
    assert.equal(await other.releaseLock(k), true)
  })
})

test('helpers: a lock that expired and was taken by someone else is never released or extended', async () => {
  await scope(async ({ mk }) => {
    const a = await mk()
    const b = await mk()

    for (const op of ['releaseLock', 'extendLock']) {
      const k = key(`expired-${op}`)
      const lk = `lock:${k}`
      assert.equal(await a.acquireLock(k, 1), true)
      assert.equal(await raw.pexpire(lk, 1), 1)
      await waitFor(async () => (await raw.exists(lk)) === 0, { timeout: 2000, interval: 5, what: 'expiry' })
      assert.equal(await b.acquireLock(k, 10), true, 'B takes the expired lock')
      const tokenB = await raw.get(lk)

      assert.equal(await a[op](k, 5), false, `A.${op} of B's lock`)
      assert.equal(await raw.get(lk), tokenB, 'B still holds it')
      const pttl = await raw.pttl(lk)
      assert.ok(pttl > 9_000, `A's ${op} did not touch B's TTL (PTTL ${pttl})`)
      // Whatever A tries afterwards, B keeps it.
      assert.equal(await a.releaseLock(k), false)
      assert.equal(await a.extendLock(k, 1), false)
      assert.equal(await raw.get(lk), tokenB)
      assert.equal(await b.releaseLock(k), true)
      assert.equal(await raw.exists(lk), 0)
    }

    // The same by really waiting for the 1 s TTL.
    const k = key('expired-wait')
    const lk = `lock:${k}`
    assert.equal(await a.acquireLock(k, 1), true)
    await sleep(1_100)
    assert.equal(await raw.exists(lk), 0)
    assert.equal(await b.acquireLock(k, 10), true)
    const tokenB = await raw.get(lk)
    assert.equal(await a.extendLock(k, 30), false)
    assert.equal(await a.releaseLock(k), false)
    assert.equal(await raw.get(lk), tokenB)
    assert.ok((await raw.pttl(lk)) > 8_000)
    assert.equal(await b.releaseLock(k), true)
  })
})

test('helpers: compatible with the old hand-written helper on lock:KEY (redis-cli SET NX EX)', async () => {
  await scope(async ({ mk }) => {
    const c = await mk()
    const k = key('compat')
    const lk = `lock:${k}`

    // The old helper holds it: the new one is excluded and cannot delete it.
    assert.equal(await server.cli('SET', lk, 'x', 'NX', 'EX', '10'), 'OK')
    assert.equal(await c.acquireLock(k), false)
    assert.equal(await c.lock(k), null)
    assert.equal(await c.releaseLock(k), false)
    assert.equal(await c.extendLock(k, 60), false)
    assert.equal(await server.cli('GET', lk), 'x')
    const ttl = Number(await server.cli('TTL', lk))
    assert.ok(ttl > 0 && ttl <= 10, `TTL ${ttl}`)
    assert.equal(await server.cli('DEL', lk), '1')

    // The new one holds it: the old helper's SET NX fails, and it sees lock:KEY with a TTL.
    assert.equal(await c.acquireLock(k, 10), true)
    assert.equal(await server.cli('SET', lk, 'y', 'NX', 'EX', '10'), '')
    assert.equal(await server.cli('TYPE', lk), 'string')
    const ttl2 = Number(await server.cli('TTL', lk))
    assert.ok(ttl2 > 0 && ttl2 <= 10, `TTL ${ttl2}`)
    assert.equal(await c.releaseLock(k), true)
    assert.equal(await server.cli('EXISTS', lk), '0')
  })
})

test('lockPrefix option and fence key naming (plain keys and keys with a hash tag)', async () => {
  await scope(async ({ mk }) => {
    const c = await mk({ lockPrefix: 'myapp:locks:' })
    const k = key('prefix')
    const lease = await c.lock(k, { ttlMs: 5_000 })
    assert.ok(lease)
    assert.equal(lease.source, 'redis')
    assert.equal(await raw.get(`myapp:locks:${k}`), lease.token)
    assert.equal(await raw.exists(`lock:${k}`), 0)
    assert.equal(await raw.get(`myapp:locks:{myapp:locks:${k}}:fence`), String(lease.fence))
    assert.equal(await c.acquireLock(k), false, 'the helpers use the same prefix')
    assert.equal(await lease.release(), true)

    // A key that already carries a hash tag keeps it: fence key is KEY:fence (same slot).
    const d = await mk()
    const tagged = `${key('tag')}{grp}x`
    const l2 = await d.lock(tagged, { ttlMs: 5_000 })
    assert.equal(await raw.get(`lock:${tagged}`), l2.token)
    assert.equal(await raw.get(`lock:${tagged}:fence`), String(l2.fence))
    assert.equal(await l2.release(), true)
  })
})

// ---------------------------------------------------------------------------------------------
// Mutual exclusion
// ---------------------------------------------------------------------------------------------

test('mutual exclusion: 4 processes x 200 non-atomic read-modify-writes inside withLock = 800', async (t) => {
  const k = key('mutex')
  const counterKey = `${k}:counter`
  const insideKey = `${k}:inside`
  const N = 200
  const workers = []
  const t0 = Date.now()
  try {
    for (let i = 0; i < 4; i++) {
      workers.push(await spawnNode(scripts.mutexWorker, [server.url, k, counterKey, insideKey, String(N)]))
    }
    const results = await Promise.all(workers.map((w) => w.next((l) => 'done' in l, 40_000)))
    const exits = await Promise.all(workers.map((w) => w.waitExit(10_000)))
    for (const [i, x] of exits.entries()) assert.equal(x.code, 0, `worker ${i} exit; stderr:\n${workers[i].stderr}`)
    for (const r of results) {
      assert.equal(r.done, N)
      assert.equal(r.overlaps, 0, 'two holders were inside the critical section at once')
    }
    assert.equal(await raw.get(counterKey), String(4 * N))
    assert.equal(await raw.get(insideKey), '0')
    assert.equal(await raw.exists(`lock:${k}`), 0, 'released after the last section')
    assert.equal(await raw.get(`lock:{lock:${k}}:fence`), String(4 * N), 'one fence per grant')
    t.diagnostic(`mutex: ${Date.now() - t0} ms`)
  } finally {
    await Promise.all(workers.map((w) => w.stop()))
    await raw.del(counterKey, insideKey)
  }
})

// ---------------------------------------------------------------------------------------------
// Fencing
// ---------------------------------------------------------------------------------------------

test('fencing: fences strictly increase across grants of one key, across clients and expiries', async () => {
  await scope(async ({ mk }) => {
    const clients = [await mk(), await mk(), await mk()]
    const k = key('fence')
    let last = 0
    const tokens = new Set()
    for (let i = 0; i < 30; i++) {
      const lease = await clients[i % 3].lock(k, { ttlMs: 5_000 })
      assert.ok(lease, `grant ${i}`)
      assert.equal(lease.source, 'redis')
      assert.equal(typeof lease.fence, 'number')
      assert.ok(Number.isSafeInteger(lease.fence))
      assert.ok(lease.fence > last, `fence ${lease.fence} after ${last}`)
      assert.ok(!tokens.has(lease.token), 'tokens are unique')
      tokens.add(lease.token)
      last = lease.fence
      if (i % 5 === 4) {
        // Let this one expire instead of releasing it: the next grant still gets a larger fence.
        await raw.pexpire(`lock:${k}`, 1)
        await waitFor(async () => (await raw.exists(`lock:${k}`)) === 0, { timeout: 2000, interval: 5 })
        assert.equal(await lease.release(), false)
      } else {
        assert.equal(await lease.release(), true)
      }
    }
    assert.equal(await raw.get(`lock:{lock:${k}}:fence`), String(last))
    assert.ok((await raw.pttl(`lock:{lock:${k}}:fence`)) > 0, 'the fence counter has a TTL')
    // Helpers take no fence (they never show one); the next lease still gets a larger one.
    assert.equal(await clients[0].acquireLock(k, 5), true)
    assert.equal(await raw.get(`lock:{lock:${k}}:fence`), String(last))
    assert.equal(await clients[0].releaseLock(k), true)
    const next = await clients[1].lock(k, { ttlMs: 5_000 })
    assert.equal(next.fence, last + 1)
    assert.equal(await next.release(), true)
  })
})

test('fencing: a holder paused past its TTL (SIGSTOP) loses the lease; the next grant has a larger fence', async () => {
  await scope(async ({ mk }) => {
    const me = await mk()
    const k = key('paused-holder')
    const lk = `lock:${k}`
    const holder = await spawnNode(scripts.holder, [server.url, k])
    let mine = null
    try {
      const got = await holder.next((l) => l.event === 'acquired')
      assert.equal(got.source, 'redis')
      assert.equal(await raw.get(lk), got.token)

      process.kill(holder.child.pid, 'SIGSTOP')
      const stoppedAt = Date.now()

      // Held (by a frozen process) until its TTL runs out; then ours, with a larger fence.
      mine = await me.lock(k, { ttlMs: 10_000, waitMs: 3_000, retryDelayMs: 10 })
      const grantedAt = Date.now()
      assert.ok(mine, "taken after the paused holder's TTL")
      assert.ok(
        grantedAt >= got.expiresAt - 50,
        `not granted before the holder's TTL (${got.expiresAt - grantedAt} ms early)`,
      )
      assert.ok(mine.fence > got.fence, `fence ${mine.fence} > ${got.fence}`)

      await sleep(Math.max(0, stoppedAt + 1_000 - Date.now()))
      process.kill(holder.child.pid, 'SIGCONT')
      holder.child.stdin.write('go\n')
      const report = await holder.next((l) => l.event === 'report')

      assert.equal(report.aborted, true, 'lease.signal aborted')
      assert.equal(report.reasonCode, codes.LOCK_LOST)
      assert.equal(report.held, false)
      assert.equal(report.extend, undefined, 'extend did not succeed')
      assert.equal(report.extendError, codes.LOCK_LOST)
      assert.equal(report.released, false, 'release() resolved false')
      assert.equal(report.releaseError, undefined, 'release() never rejects for a lost lock')
      assert.equal(report.extendAfterReleaseError, codes.LOCK_NOT_HELD)
      assert.equal((await holder.waitExit(5_000)).code, 0, holder.stderr)

      // Ours is untouched by the woken holder.
      assert.equal(await raw.get(lk), mine.token)
      assert.ok((await raw.pttl(lk)) > 5_000)
      assert.equal(mine.held, true)
      assert.equal(await mine.release(), true)
      mine = null
    } finally {
      await holder.stop()
      if (mine) await mine.release().catch(() => {})
    }
  })
})

test('fencing: PEXPIRE the lock to 1 ms in-process; the old lease cannot extend or release', async () => {
  await scope(async ({ mk }) => {
    const c1 = await mk()
    const c2 = await mk()
    const k = key('pexpire')
    const lk = `lock:${k}`
    const a = await c1.lock(k, { ttlMs: 10_000 })
    assert.equal(await server.cli('PEXPIRE', lk, '1'), '1')
    await waitFor(async () => (await raw.exists(lk)) === 0, { timeout: 2000, interval: 5 })
    const b = await c2.lock(k, { ttlMs: 10_000 })
    assert.ok(b)
    assert.ok(b.fence > a.fence)
    assert.equal(a.held, true, 'a does not know yet')

    await rejectsCode(a.extend(5_000), codes.LOCK_LOST)
    assert.equal(a.signal.aborted, true)
    assert.equal(a.signal.reason.code, codes.LOCK_LOST)
    assert.equal(a.held, false)
    await rejectsCode(a.extend(5_000), codes.LOCK_LOST, 'again')
    assert.equal(await a.release(), false)
    await rejectsCode(a.extend(5_000), codes.LOCK_NOT_HELD)
    assert.equal(await a.release(), false)

    assert.equal(await raw.get(lk), b.token)
    assert.ok((await raw.pttl(lk)) > 9_000)
    assert.equal(b.signal.aborted, false)
    assert.equal(await b.extend(20_000), true)
    assert.ok((await raw.pttl(lk)) > 19_000)
    assert.equal(await b.release(), true)
    assert.equal(await b.release(), false)
    await rejectsCode(b.extend(1_000), codes.LOCK_NOT_HELD)
    assert.equal(await raw.exists(lk), 0)
  })
})

test('lease: signal aborts by the local timer at expiresAt when not extended', async () => {
  await scope(async ({ mk }) => {
    const c = await mk()
    const k = key('lease-timer')
    const lease = await c.lock(k, { ttlMs: 200 })
    assert.ok(Math.abs(lease.expiresAt - (Date.now() + 200)) < 50)
    const t0 = Date.now()
    assert.equal(await abortedWithin(lease.signal, 1_000), true)
    const late = Date.now() - lease.expiresAt
    note('lease timer: abort after expiresAt', late)
    assert.ok(Date.now() - t0 >= 150 && late < 60, `aborted ${late} ms after expiresAt`)
    assert.equal(lease.signal.reason.code, codes.LOCK_LOST)
    assert.equal(lease.held, false)
    await rejectsCode(lease.extend(1_000), codes.LOCK_LOST)
    assert.equal(await lease.release(), false)

    // An extended lease's timer moves with it.
    const l2 = await c.lock(k, { ttlMs: 200 })
    await sleep(120)
    assert.equal(await l2.extend(400), true)
    assert.equal(await abortedWithin(l2.signal, 200), false, 'not aborted at the old expiry')
    assert.equal(l2.held, true)
    assert.equal(await l2.release(), true)
    assert.equal(await abortedWithin(l2.signal, 400), false, 'a released lease is not "lost" later')

    // An extension still in flight when the lease is released (withLock's timer can do this)
    // must not re-arm the expiry timer of the released lease.
    const l3 = await c.lock(k, { ttlMs: 200 })
    const ext = l3.extend(200)
    assert.equal(await l3.release(), true)
    await ext.catch(() => {})
    assert.equal(await abortedWithin(l3.signal, 400), false, 'no spurious abort after release')
    assert.equal(l3.held, false)
    assert.equal(await raw.exists(`lock:${k}`), 0)
  })
})

// ---------------------------------------------------------------------------------------------
// withLock
// ---------------------------------------------------------------------------------------------

test('withLock: a function that outlives the TTL keeps the lock, then releases it', async () => {
  await scope(async ({ mk }) => {
    const c1 = await mk()
    const c2 = await mk()
    const k = key('outlive')
    const lk = `lock:${k}`
    let samples = 0
    const r = await c1.withLock(k, { ttlMs: 300 }, async (signal) => {
      assert.ok(signal instanceof AbortSignal)
      const end = Date.now() + 1_200
      while (Date.now() < end) {
        const pttl = await raw.pttl(lk)
        assert.ok(pttl > 0 && pttl <= 300, `PTTL ${pttl}`)
        assert.equal(await c2.lock(k, { ttlMs: 1_000 }), null, 'another client cannot take it')
        assert.equal(await c2.acquireLock(k, 1), false)
        samples++
        await sleep(40)
      }
      assert.equal(signal.aborted, false)
      return 'done'
    })
    assert.equal(r, 'done')
    assert.ok(samples >= 10, `samples ${samples}`)
    assert.equal(await raw.exists(lk), 0, 'released when done')
    const next = await c2.lock(k)
    assert.ok(next)
    assert.equal(await next.release(), true)
  })
})

test('withLock: a throwing function rejects with that error and the lock is released', async () => {
  await scope(async ({ mk }) => {
    const c = await mk()
    const k = key('throws')
    const boom = new Error('boom')
    await assert.rejects(
      c.withLock(k, { ttlMs: 5_000 }, async () => {
        await sleep(10)
        throw boom
      }),
      (e) => e === boom,
    )
    assert.equal(await raw.exists(`lock:${k}`), 0)

    // A synchronous throw, and the short form withLock(key, fn).
    const boom2 = new TypeError('sync boom')
    await assert.rejects(
      c.withLock(k, () => {
        throw boom2
      }),
      (e) => e === boom2,
    )
    assert.equal(await raw.exists(`lock:${k}`), 0)
    assert.equal(await c.withLock(k, () => 42), 42)
    assert.equal(await raw.exists(`lock:${k}`), 0)
  })
})

test('withLock/lock: aborting the signal while waiting rejects ERR_REDIS_GUARD_ABORTED promptly', async () => {
  await scope(async ({ mk }) => {
    const c1 = await mk()
    const c2 = await mk()
    const k = key('abort')
    const holder = await c1.lock(k, { ttlMs: 10_000 })
    try {
      for (const how of ['lock', 'withLock']) {
        const ac = new AbortController()
        let called = false
        const p =
          how === 'lock'
            ? c2.lock(k, { waitMs: 10_000, signal: ac.signal })
            : c2.withLock(k, { waitMs: 10_000, signal: ac.signal }, () => {
                called = true
              })
        p.catch(() => {})
        await sleep(200 + Math.random() * 100)
        const t0 = performance.now()
        ac.abort(new Error('user went away'))
        const err = await rejectsCode(p, codes.ABORTED, how)
        const ms = performance.now() - t0
        note(`abort->reject ${how}`, ms)
        assert.ok(ms < 50, `${how}: rejected ${ms.toFixed(1)} ms after the abort`)
        assert.equal(called, false)
        assert.equal(err.cause && err.cause.message, 'user went away')
      }
      // An already-aborted signal: nothing is taken, even for a free key.
      const free = key('abort-free')
      await rejectsCode(c2.lock(free, { signal: AbortSignal.abort() }), codes.ABORTED)
      assert.equal(await raw.exists(`lock:${free}`), 0)
      assert.equal(await raw.get(`lock:${k}`), holder.token)
    } finally {
      await holder.release()
    }
  })
})

test('lock/withLock: waitMs is honoured (null / LOCK_TIMEOUT after ~waitMs); a freed lock is picked up', async () => {
  await scope(async ({ mk }) => {
    const c1 = await mk()
    const c2 = await mk()
    const k = key('wait')
    const holder = await c1.lock(k, { ttlMs: 10_000 })
    try {
      let r = await timed(() => c2.lock(k))
      assert.equal(r.value, null)
      assert.ok(r.ms < 50, `waitMs 0: ${r.ms} ms`)

      r = await timed(() => c2.lock(k, { waitMs: 300, retryDelayMs: 50 }))
      assert.equal(r.value, null)
      note('lock waitMs 300', r.ms)
      assert.ok(r.ms >= 295 && r.ms < 380, `waitMs 300: ${r.ms.toFixed(1)} ms`)

      r = await timed(() => c2.lock(k, { waitMs: 250, retryDelayMs: 1000 }))
      assert.equal(r.value, null)
      assert.ok(r.ms >= 245 && r.ms < 330, `waitMs 250, retryDelayMs 1000: ${r.ms.toFixed(1)} ms`)

      let called = false
      r = await timed(() =>
        c2.withLock(k, { waitMs: 300 }, () => {
          called = true
        }),
      )
      assert.equal(r.error && r.error.code, codes.LOCK_TIMEOUT)
      assert.ok(r.ms >= 295 && r.ms < 380, `withLock waitMs 300: ${r.ms.toFixed(1)} ms`)
      assert.equal(called, false)
      assert.equal(await raw.get(`lock:${k}`), holder.token)

      // Freed while waiting: picked up within about one retry delay.
      setTimeout(() => holder.release(), 150)
      r = await timed(() => c2.lock(k, { waitMs: 3_000, retryDelayMs: 20 }))
      assert.ok(r.value, 'acquired after the release')
      assert.ok(r.ms >= 140 && r.ms < 400, `picked up after ${r.ms.toFixed(1)} ms`)
      assert.ok(r.value.fence > holder.fence)
      assert.equal(await r.value.release(), true)
    } finally {
      await holder.release()
    }
  })
})

test('withLock: a lease lost during the function rejects LOCK_LOST and aborts the signal', async () => {
  await scope(async ({ mk }) => {
    const c = await mk()
    for (const how of ['overwrite', 'delete']) {
      const k = key(`lost-${how}`)
      const lk = `lock:${k}`
      let intrudedAt = 0
      let fnResult
      const fnDone = new Promise((resolve) => {
        fnResult = resolve
      })
      const r = await timed(() =>
        c.withLock(k, { ttlMs: 600 }, async (signal) => {
          await sleep(50)
          if (how === 'overwrite') assert.equal(await server.cli('SET', lk, 'intruder', 'PX', '10000'), 'OK')
          else assert.equal(await server.cli('DEL', lk), '1')
          intrudedAt = performance.now()
          const aborted = await abortedWithin(signal, 3_000)
          fnResult({ aborted, code: signal.reason && signal.reason.code, ms: performance.now() - intrudedAt })
          return 'finished'
        }),
      )
      assert.equal(r.error && r.error.code, codes.LOCK_LOST, `${how}: ${r.error && r.error.message}`)
      const seen = await fnDone
      assert.equal(seen.aborted, true, 'the signal passed to the function aborted')
      assert.equal(seen.code, codes.LOCK_LOST)
      assert.ok(
        seen.ms < 200 + 150,
        `${how}: noticed ${seen.ms.toFixed(0)} ms after the intrusion (extend every 200 ms)`,
      )
      if (how === 'overwrite') {
        assert.equal(await raw.get(lk), 'intruder', "the release did not delete the other holder's lock")
        await raw.del(lk)
      } else {
        assert.equal(await raw.exists(lk), 0)
      }
    }
  })
})

// ---------------------------------------------------------------------------------------------
// Redis unavailable
// ---------------------------------------------------------------------------------------------

const FAST_RECONNECT = { reconnect: { minDelayMs: 20, maxDelayMs: 200, jitterMs: 10 } }

test('Redis killed: local / allow / deny decisions within the deadline, fences continue, back to Redis by itself', async () => {
  const s = await startRedis()
  try {
    await scope(async ({ mk }) => {
      const c = await mk(FAST_RECONNECT)
      const k = key('down')
      const k2 = key('down-helper')
      const heldKey = key('down-held')
      let maxFence = 0
      for (let i = 0; i < 3; i++) {
        const l = await c.lock(k, { ttlMs: 5_000 })
        assert.equal(l.source, 'redis')
        maxFence = l.fence
        assert.equal(await l.release(), true)
      }
      const redisLease = await c.lock(heldKey, { ttlMs: 10_000 })
      assert.equal(redisLease.source, 'redis')

      await s.kill()
      const limit = DEADLINE_MS + SLACK_MS

      // 'local' (default): serialised in-process, fences above the largest Redis fence seen.
      let r = await timed(() => c.lock(k, { ttlMs: 5_000 }))
      assert.ifError(r.error)
      const l1 = r.value
      note('killed: first local decision', r.ms)
      assert.ok(r.ms <= limit, `local decision ${r.ms.toFixed(1)} ms`)
      assert.equal(l1.source, 'local')
      assert.ok(l1.fence > maxFence, `local fence ${l1.fence} > redis fence ${maxFence}`)
      r = await timed(() => c.lock(k, { ttlMs: 5_000 }))
      assert.equal(r.value, null, 'a second local acquire of the same key is refused')
      assert.ok(r.ms <= limit, `${r.ms} ms`)
      r = await timed(() => c.lock(k, { ttlMs: 5_000, waitMs: 200 }))
      assert.equal(r.value, null)
      assert.ok(r.ms >= 195 && r.ms < 200 + limit, `waitMs while down: ${r.ms} ms`)
      assert.equal(await l1.extend(5_000), true)
      assert.equal(await l1.release(), true)
      assert.equal(await l1.release(), false)
      const l2 = await c.lock(k, { ttlMs: 5_000 })
      assert.equal(l2.source, 'local')
      assert.ok(l2.fence > l1.fence)
      assert.equal(await l2.release(), true)
      let localFence = l2.fence

      // withLock and the helpers fall back the same way.
      assert.equal(
        await c.withLock(k, { ttlMs: 300 }, async (signal) => {
          await sleep(400) // longer than the TTL: the local lease is extended too
          return signal.aborted ? 'lost' : 'ok'
        }),
        'ok',
      )
      assert.equal(await c.acquireLock(k2, 5), true)
      assert.equal(await c.acquireLock(k2, 5), false)
      assert.equal(await c.releaseLock(k2), true)

      // A Redis lease this client still holds keeps the key in the local fallback too.
      r = await timed(() => c.lock(heldKey, { ttlMs: 5_000 }))
      assert.equal(r.value, null, 'no local grant over a Redis lease held in this process')
      assert.ok(r.ms <= limit)

      // A Redis lease held when Redis died cannot be confirmed: extend reports it lost,
      // release resolves false; neither hangs past the deadline.
      r = await timed(() => redisLease.extend(10_000))
      assert.equal(r.error && r.error.code, codes.LOCK_LOST)
      assert.ok(r.ms <= limit)
      assert.equal(redisLease.signal.aborted, true)
      r = await timed(() => redisLease.release())
      assert.equal(r.value, false)
      assert.ok(r.ms <= limit)
      const afterLost = await c.lock(heldKey, { ttlMs: 5_000 })
      assert.equal(afterLost.source, 'local', 'once given up, the key is free locally')
      assert.equal(await afterLost.release(), true)

      // 'allow': a pseudo-lease.
      r = await timed(() => c.lock(k, { onUnavailable: 'allow' }))
      assert.ok(r.ms <= limit)
      assert.equal(r.value.source, 'allow')
      assert.equal(r.value.fence, 0)
      assert.equal(await r.value.extend(1_000), true)
      assert.equal(await r.value.release(), true)
      assert.equal(await c.acquireLock(k2, 5, { onUnavailable: 'allow' }), true)
      assert.equal(await c.releaseLock(k2), true)

      // 'deny': fail closed, with a typed error.
      r = await timed(() => c.lock(k, { onUnavailable: 'deny' }))
      assert.equal(r.error && r.error.code, codes.UNAVAILABLE)
      note('killed: deny decision', r.ms)
      assert.ok(r.ms <= limit, `deny decision ${r.ms} ms`)
      r = await timed(() => c.withLock(k, { onUnavailable: 'deny' }, () => 1))
      assert.equal(r.error && r.error.code, codes.UNAVAILABLE)
      r = await timed(() => c.acquireLock(k2, 5, { onUnavailable: 'deny' }))
      assert.equal(r.error && r.error.code, codes.UNAVAILABLE)
      assert.ok(r.ms <= limit)
      assert.equal(c.isAvailable(), false)

      // A local lease that is still held when Redis comes back.
      const kSurvivor = key('down-survivor')
      const survivor = await c.lock(kSurvivor, { ttlMs: 10_000 })
      assert.equal(survivor.source, 'local')

      // Restart on the same port (data lost: no persistence): locks go to Redis by themselves.
      await s.restart()
      await waitFor(() => c.isAvailable(), { timeout: 10_000, interval: 20, what: 'isAvailable()' })

      // The local lease still excludes this process's Redis grants of that key until released.
      assert.equal(
        await c.lock(kSurvivor, { ttlMs: 5_000 }),
        null,
        'no Redis grant over a local lease held in this process',
      )
      assert.equal(survivor.held, true)
      assert.equal(await survivor.release(), true)
      const survivorBack = await c.lock(kSurvivor, { ttlMs: 5_000 })
      assert.equal(survivorBack.source, 'redis')
      assert.ok(survivorBack.fence > survivor.fence)
      assert.equal(await survivorBack.release(), true)
      const back = await c.lock(k, { ttlMs: 5_000 })
      assert.equal(back.source, 'redis')
      assert.equal(await s.cli('GET', `lock:${k}`), back.token)
      assert.ok(back.fence > localFence, `fence after recovery ${back.fence} > last local fence ${localFence}`)
      assert.equal(await back.release(), true)
      assert.equal(await c.acquireLock(k2, 5), true)
      assert.equal(await s.cli('EXISTS', `lock:${k2}`), '1')
      assert.equal(await c.releaseLock(k2), true)
    }, s)
  } finally {
    await s.stop()
  }
})

test('Redis killed under concurrent lock traffic: calls settle within the deadline, no error, no double grant in-process', async () => {
  const s = await startRedis()
  try {
    await scope(async ({ mk }) => {
      const c = await mk(FAST_RECONNECT)
      const keys = Array.from({ length: 4 }, (_, i) => key(`traffic-${i}`))
      const limit = DEADLINE_MS + SLACK_MS
      const calls = []
      const sources = {}
      const holders = new Map(keys.map((k) => [k, 0]))
      const overlaps = []
      let stop = false
      let killedAt = 0
      // 8 loops, two per key, on ONE client: lock, hold briefly, release. Two grants of one key
      // must never overlap in this process, whichever source (redis before the kill, local
      // after, and across the switch).
      const loops = [...keys, ...keys].map(async (k) => {
        for (let i = 0; i < 400 && !stop; i++) {
          const r = await timed(() => c.lock(k, { ttlMs: 2_000, waitMs: 20, retryDelayMs: 2 }))
          calls.push({ ms: r.ms, error: r.error, afterKill: killedAt > 0 })
          if (r.error || !r.value) continue
          holders.set(k, holders.get(k) + 1)
          if (holders.get(k) > 1) overlaps.push(`${k}: ${r.value.source} grant while held`)
          sources[r.value.source] = (sources[r.value.source] || 0) + 1
          await sleep(Math.random() * 3)
          holders.set(k, holders.get(k) - 1)
          const rel = await timed(() => r.value.release())
          calls.push({ ms: rel.ms, error: rel.error, afterKill: killedAt > 0 })
        }
      })
      await sleep(150)
      killedAt = performance.now()
      await s.kill()
      await sleep(400)
      stop = true
      await Promise.all(loops)

      const errors = calls.filter((x) => x.error)
      assert.deepEqual(
        errors.map((x) => `${x.error.code}: ${x.error.message}`),
        [],
        'no call rejected',
      )
      assert.deepEqual(overlaps, [], 'no double grant inside the process')
      const slowest = Math.max(...calls.map((x) => x.ms))
      note('killed under traffic: slowest call', slowest)
      assert.ok(slowest <= limit, `slowest call ${slowest.toFixed(1)} ms`)
      assert.ok(sources.redis > 0 && sources.local > 0, `sources ${JSON.stringify(sources)}`)
      assert.ok(calls.filter((x) => x.afterKill).length > 50)
    }, s)
  } finally {
    await s.stop()
  }
})

test('Redis paused (SIGSTOP): the deadline decides (deny / local / allow), then back to Redis on SIGCONT', async () => {
  const s = await startRedis()
  try {
    await scope(async ({ mk }) => {
      const cDeny = await mk(FAST_RECONNECT)
      const cLocal = await mk(FAST_RECONNECT)
      const cAllow = await mk(FAST_RECONNECT)
      const k = key('paused')
      const first = await cLocal.lock(k, { ttlMs: 2_000 })
      assert.equal(first.source, 'redis')
      assert.equal(await first.release(), true)

      s.pause()
      const limit = DEADLINE_MS + SLACK_MS
      try {
        // Each client's first call meets the hung server: the deadline fires, the policy decides.
        const [d, l, a] = await Promise.all([
          timed(() => cDeny.lock(key('paused-deny'), { onUnavailable: 'deny' })),
          timed(() => cLocal.lock(k, { ttlMs: 2_000 })),
          timed(() => cAllow.lock(key('paused-allow'), { onUnavailable: 'allow' })),
        ])
        assert.equal(d.error && d.error.code, codes.UNAVAILABLE)
        note('paused: deny decision', d.ms)
        note('paused: local decision', l.ms)
        note('paused: allow decision', a.ms)
        assert.ok(d.ms <= limit, `deny decision ${d.ms.toFixed(1)} ms`)
        assert.ifError(l.error)
        assert.equal(l.value.source, 'local')
        assert.ok(l.value.fence > first.fence)
        assert.ok(l.ms <= limit, `local decision ${l.ms.toFixed(1)} ms`)
        assert.ifError(a.error)
        assert.equal(a.value.source, 'allow')
        assert.ok(a.ms <= limit, `allow decision ${a.ms.toFixed(1)} ms`)

        // Later calls: no more waiting on the hung server.
        const again = await timed(() => cLocal.lock(k, { ttlMs: 2_000 }))
        assert.equal(again.value, null)
        assert.ok(again.ms <= limit)
        const d2 = await timed(() => cDeny.lock(key('paused-deny'), { onUnavailable: 'deny' }))
        assert.equal(d2.error && d2.error.code, codes.UNAVAILABLE)
        assert.ok(d2.ms <= limit)
        assert.equal(await l.value.release(), true)
        assert.equal(await a.value.release(), true)
      } finally {
        s.resume()
      }

      for (const c of [cDeny, cLocal, cAllow]) {
        await waitFor(() => c.isAvailable(), { timeout: 10_000, interval: 20, what: 'isAvailable()' })
      }
      const k3 = key('paused-after')
      const back = await cDeny.lock(k3, { ttlMs: 2_000, onUnavailable: 'deny' })
      assert.equal(back.source, 'redis')
      assert.equal(await s.cli('GET', `lock:${k3}`), back.token)
      assert.equal(await back.release(), true)
      const back2 = await cLocal.lock(k3, { ttlMs: 2_000 })
      assert.equal(back2.source, 'redis')
      assert.equal(await back2.release(), true)
    }, s)
  } finally {
    await s.stop()
  }
})

test('Redis down: two RedisClients of one process serialise the same key in the local fallback', async () => {
  const s = await startRedis()
  try {
    await scope(async ({ mk }) => {
      const c1 = await mk(FAST_RECONNECT)
      const c2 = await mk(FAST_RECONNECT)
      await s.kill()
      const k = key('two-clients')
      const l1 = await c1.lock(k, { ttlMs: 2_000 })
      assert.equal(l1.source, 'local')
      const l2 = await c2.lock(k, { ttlMs: 2_000 })
      if (l2) await l2.release()
      await l1.release()
      assert.equal(l2 && l2.source, null, 'the second client of the same process was refused')
    }, s)
  } finally {
    await s.stop()
  }
})

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

test('bad input: typed ERR_REDIS_GUARD_INVALID_ARG errors, nothing written, client still works', async () => {
  await scope(async ({ mk }) => {
    const c = await mk()
    const INVALID = codes.INVALID_ARG
    const badKeys = ['', 123, null, undefined, {}, ['a'], true, Symbol('k'), 'x'.repeat(9_000)]
    for (const bad of badKeys) {
      const label = typeof bad === 'symbol' ? 'symbol' : JSON.stringify(bad)?.slice(0, 20)
      await rejectsCode(c.lock(bad), INVALID, `lock(${label})`)
      await rejectsCode(
        c.withLock(bad, {}, () => 1),
        INVALID,
        `withLock(${label})`,
      )
      await rejectsCode(c.acquireLock(bad, 5), INVALID, `acquireLock(${label})`)
    }
    const k = key('bad')
    const badMs = [0, -1, NaN, 'x', Infinity, -Infinity, '100', {}, [], true, 2 ** 60]
    for (const ttlMs of badMs) {
      await rejectsCode(c.lock(k, { ttlMs }), INVALID, `ttlMs ${String(ttlMs)}`)
      await rejectsCode(
        c.withLock(k, { ttlMs }, () => 1),
        INVALID,
        `withLock ttlMs ${String(ttlMs)}`,
      )
      await rejectsCode(c.acquireLock(k, ttlMs), INVALID, `acquireLock ttl ${String(ttlMs)}`)
    }
    for (const waitMs of [-1, NaN, 'x']) await rejectsCode(c.lock(k, { waitMs }), INVALID, `waitMs ${waitMs}`)
    for (const retryDelayMs of [0, -5, NaN, 'x']) {
      await rejectsCode(c.lock(k, { retryDelayMs }), INVALID, `retryDelayMs ${retryDelayMs}`)
    }
    for (const onUnavailable of ['bogus', 42, '']) {
      await rejectsCode(c.lock(k, { onUnavailable }), INVALID, `onUnavailable ${onUnavailable}`)
      await rejectsCode(c.acquireLock(k, 5, { onUnavailable }), INVALID, `acquireLock onUnavailable ${onUnavailable}`)
    }
    for (const fn of [undefined, null, 'fn', 42]) {
      await rejectsCode(c.withLock(k, {}, fn), INVALID, `withLock fn ${fn}`)
    }
    // None of that took or created anything.
    assert.equal(await raw.exists(`lock:${k}`, `{lock:${k}}:fence`, 'lock:'), 0)

    // null / undefined options mean the defaults.
    for (const opts of [undefined, null]) {
      const lease = await c.lock(k, opts)
      assert.ok(lease, `lock(key, ${opts})`)
      assert.equal(await lease.release(), true)
    }
    assert.equal(await c.withLock(k, null, () => 'ok'), 'ok')

    // Bad extension on a live lease / helper lock: typed error, the lock is kept.
    const lease = await c.lock(k, { ttlMs: 5_000 })
    for (const ms of [0, -1, NaN, 'x', undefined]) {
      await rejectsCode(lease.extend(ms), INVALID, `extend(${String(ms)})`)
    }
    assert.equal(lease.held, true)
    assert.equal(lease.signal.aborted, false)
    assert.equal(await raw.get(`lock:${k}`), lease.token)
    assert.equal(await lease.release(), true)
    assert.equal(await c.acquireLock(k, 5), true)
    for (const ttl of [0, -1, NaN, 'x']) await rejectsCode(c.extendLock(k, ttl), INVALID, `extendLock(${ttl})`)
    assert.equal(await c.releaseLock(k), true)
    assert.equal(await c.releaseLock(123), false)

    // Unusual but valid keys work.
    for (const odd of ['a\u0000b', '🔒 lock', 'a b\nc', '{}', 'a}b{']) {
      const l = await c.lock(odd + k, { ttlMs: 5_000 })
      assert.ok(l, JSON.stringify(odd))
      assert.equal(l.source, 'redis')
      assert.equal(await raw.get(`lock:${odd}${k}`), l.token)
      assert.equal(await l.release(), true)
    }
    assert.equal(c.isAvailable(), true)
  })
})

// Node's --test runner executes the tests of one file in order: this one runs last.
test('no unhandled rejection anywhere in this file', async (t) => {
  // Let any late timers (lease expiry, in-flight extensions) run out.
  await sleep(700)
  for (const [name, v] of Object.entries(timings)) t.diagnostic(`${name}: ${v.join(', ')} ms`)
  assert.deepEqual(
    unhandled.map((e) => (e && e.stack) || String(e)),
    [],
  )
})
