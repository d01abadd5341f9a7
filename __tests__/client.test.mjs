// RedisClient against real redis-server processes: the safe defaults (deadline, no queueing
// while down, reconnect by itself, no blind re-send, bounded buffer), auth, TLS, logging,
// secrets, health and the module-level helpers (in a child process).
// Run: node --test __tests__/client.test.mjs
//
// Every test starts its own server(s), uses its own key prefix and closes every client in
// `finally`. Nothing here touches port 6379: the module-level helpers (which read the process
// environment) only run in child processes with an explicit REDIS_URL / REDIS_HOST.

import assert from 'node:assert/strict'
import fsp from 'node:fs/promises'
import { createRequire } from 'node:module'
import path from 'node:path'
import { describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import util from 'node:util'

import { freePort, makeCerts, parseInfo, startProxy, startRedis, waitFor } from './helpers/redis.mjs'
import { listen, runNode, timed, uniquePrefix } from './helpers/utils.mjs'

const require = createRequire(import.meta.url)
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const { RedisClient, RedisStore } = require(ROOT)
const express = require('express')

/** Slack allowed on top of a deadline (timers, the JS<->Rust crossing, a busy 2-core box). */
const SLACK_MS = 50
/** "At once" while the client knows Redis is down. */
const FAST_MS = 5

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/** A function logger that records `{ level, message, fields }`. */
function recorder() {
  const lines = []
  const logger = (level, message, fields) => lines.push({ level, message, fields })
  return { lines, logger }
}

/**
 * Capture what is printed while `fn` runs: console.info/warn/error/log/debug, and direct writes
 * to process.stdout / process.stderr (the default logger writes to stderr directly).
 */
async function captureConsole(fn) {
  const names = ['log', 'info', 'warn', 'error', 'debug']
  const orig = Object.fromEntries(names.map((n) => [n, console[n]]))
  const writes = { stdout: process.stdout.write, stderr: process.stderr.write }
  const printed = []
  for (const n of names) console[n] = (...a) => printed.push({ method: n, text: a.map(String).join(' ') })
  for (const [name, w] of Object.entries(writes)) {
    process[name].write = function (chunk, ...rest) {
      const text = String(chunk)
      if (text.includes('[redis-guard]')) {
        printed.push({ method: name, text: text.replace(/\n$/, '') })
        return true
      }
      return w.call(this, chunk, ...rest)
    }
  }
  try {
    await fn(printed)
  } finally {
    Object.assign(console, orig)
    process.stdout.write = writes.stdout
    process.stderr.write = writes.stderr
  }
  return printed
}

/** total_connections_received of a server (the INFO call's own connection included). */
async function connectionsReceived(server) {
  return Number(parseInfo(await server.cli('INFO', 'stats')).total_connections_received)
}

/** calls= of one command in INFO commandstats (0 when never called). */
async function commandCalls(server, name) {
  const stats = parseInfo(await server.cli('INFO', 'commandstats'))
  const m = /calls=(\d+)/.exec(stats[`cmdstat_${name}`] ?? '')
  return m ? Number(m[1]) : 0
}

/** A store on `client` with its own prefix, initialised like express-rate-limit does. */
function makeStore(client, name, options = {}) {
  const store = new RedisStore({ client, prefix: uniquePrefix(name), ...options })
  store.init({ windowMs: 10 * 60_000, limit: 1_000_000 })
  return store
}

function assertIncrement(r, what) {
  assert.ok(r && Number.isInteger(r.totalHits) && r.totalHits >= 1, `${what}: totalHits ${util.inspect(r)}`)
  assert.ok(r.resetTime instanceof Date && !Number.isNaN(r.resetTime.getTime()), `${what}: resetTime`)
}

// ---------------------------------------------------------------------------------------------
// safe defaults
// ---------------------------------------------------------------------------------------------

describe('close', () => {
  test('close() right after construction, before the connection is up, leaves no connection behind', async () => {
    const server = await startRedis()
    try {
      const connections = async () =>
        (await server.cli('CLIENT', 'LIST')).split('\n').filter((l) => l.includes('addr=')).length
      const baseline = await connections()
      // Closed at once, after a turn, and after a short wait: the connection may be under way.
      for (let i = 0; i < 30; i++) {
        const client = new RedisClient({ url: server.url, logger: false })
        if (i % 3 === 1) await new Promise((r) => setImmediate(r))
        if (i % 3 === 2) await sleep(1 + (i % 5))
        await client.close()
      }
      await sleep(500) // long enough for a leaked connection to be made
      assert.equal(await connections(), baseline)
    } finally {
      await server.stop()
    }
  })
})

describe('safe defaults', () => {
  for (const commandTimeoutMs of [undefined, 100]) {
    const deadline = commandTimeoutMs ?? 250
    test(`a hung server (SIGSTOP) costs at most the deadline (${deadline} ms${commandTimeoutMs ? '' : ', default'})`, async () => {
      const server = await startRedis()
      const client = new RedisClient({
        url: server.url,
        logger: false,
        ...(commandTimeoutMs ? { commandTimeoutMs } : {}),
      })
      try {
        assert.equal(client.commandTimeoutMs, deadline)
        assert.equal(await client.ready(3000), true)
        const store = makeStore(client, 'hang')
        assertIncrement(await store.increment('warm'), 'warm-up')

        // Each operation alone, as the first call to meet the hung server (the circuit is
        // closed again before each one, so every one really waits on Redis).
        const ops = {
          increment: async () => {
            const r = await store.increment(`k-${Math.random()}`)
            assertIncrement(r, 'increment under SIGSTOP')
          },
          lock: async () => {
            const lease = await client.lock(`l-${Math.random()}`, { ttlMs: 2000 })
            assert.ok(lease, 'the default onUnavailable (local) grants the lock')
            assert.equal(lease.source, 'local')
            await lease.release()
          },
          acquireLock: async () => {
            assert.equal(await client.acquireLock(`a-${Math.random()}`, 2), true)
          },
          healthCheck: async () => {
            const h = await client.healthCheck()
            assert.equal(h.status, 'unhealthy')
            assert.equal(h.connected, false)
          },
        }
        for (const [name, op] of Object.entries(ops)) {
          await waitFor(() => client.isAvailable(), { timeout: 10_000, what: 'client available' })
          server.pause()
          try {
            const r = await timed(op)
            assert.ifError(r.error)
            assert.ok(r.ms <= deadline + SLACK_MS, `${name} took ${r.ms.toFixed(1)} ms (deadline ${deadline})`)
          } finally {
            server.resume()
          }
        }

        // All of them at once.
        await waitFor(() => client.isAvailable(), { timeout: 10_000, what: 'client available' })
        server.pause()
        try {
          const all = await Promise.all(Object.values(ops).map((op) => timed(op)))
          for (const r of all) {
            assert.ifError(r.error)
            assert.ok(r.ms <= deadline + SLACK_MS, `concurrent call took ${r.ms.toFixed(1)} ms`)
          }
          assert.equal(client.isAvailable(), false, 'the deadline opened the circuit')
        } finally {
          server.resume()
        }
        await waitFor(() => client.isAvailable(), { timeout: 10_000, what: 'recovery after SIGCONT' })
        assert.ok(client.stats().timeouts + client.stats().errors >= 1)
      } finally {
        await client.close()
        await server.stop()
      }
    })
  }

  test('start-up: calls made before the connection is up reach Redis; ready() after the fact is true at once', async () => {
    const server = await startRedis()
    try {
      // express-rate-limit does not await anything: the first request may come right away.
      const c1 = new RedisClient({ url: server.url, logger: false })
      try {
        const store = makeStore(c1, 'startup')
        const r = await timed(() => store.increment('first'))
        assertIncrement(r.value, 'first increment')
        assert.ok(r.ms <= c1.commandTimeoutMs + SLACK_MS, `first increment took ${r.ms} ms`)
        assert.equal(
          await server.cli('GET', `${store.prefix}first`),
          '1',
          'the very first increment was counted in Redis',
        )
        assert.equal(c1.isAvailable(), true)
      } finally {
        await c1.close()
      }
      // Connect while nobody waits in ready(); a later ready() must see the state as it is.
      const c2 = new RedisClient({ url: server.url, logger: false })
      try {
        await waitFor(() => c2.isAvailable(), { timeout: 5000, interval: 10, what: 'connection' })
        const r = await timed(() => c2.ready(2000))
        assert.equal(r.value, true)
        assert.ok(r.ms < 100, `ready() after connecting took ${r.ms} ms`)
      } finally {
        await c2.close()
      }
    } finally {
      await server.stop()
    }
  })

  test('while down, calls go to the fallback at once; back to Redis by itself after a restart', async () => {
    const server = await startRedis()
    const client = new RedisClient({ url: server.url, logger: false })
    try {
      assert.equal(await client.ready(3000), true)
      const store = makeStore(client, 'down')
      assertIncrement(await store.increment('before'), 'before')
      assert.equal(await server.cli('GET', `${store.prefix}before`), '1')

      await server.kill()
      await waitFor(() => !client.isAvailable(), { timeout: 5000, interval: 5, what: 'client to notice the kill' })

      await store.increment('warm') // not measured: first call after the state change
      await client.lock('warm', { ttlMs: 1000 })
      const samples = []
      for (let i = 0; i < 20; i++) {
        const r = await timed(() => store.increment(`down-${i % 3}`))
        assert.ifError(r.error)
        assertIncrement(r.value, 'fallback increment')
        samples.push(['increment', r.ms])
      }
      for (let i = 0; i < 10; i++) {
        const r = await timed(() => client.lock(`down-lock-${i}`, { ttlMs: 1000 }))
        assert.ifError(r.error)
        assert.equal(r.value.source, 'local')
        samples.push(['lock', r.ms])
        const a = await timed(() => client.acquireLock(`down-acq-${i}`, 1))
        assert.equal(a.value, true)
        samples.push(['acquireLock', a.ms])
      }
      // Never a wait for a deadline or a connection; at once but for a scheduling hiccup of the
      // machine (one CI run saw one call of 40 take 5.5 ms while the others took 0.05-2.4 ms).
      for (const [what, ms] of samples) {
        assert.ok(
          ms < SLACK_MS,
          `${what} took ${ms.toFixed(2)} ms while Redis was known down: ${JSON.stringify(samples)}`,
        )
      }
      const slow = samples.filter(([, ms]) => ms >= FAST_MS)
      assert.ok(
        slow.length <= samples.length / 10,
        `${slow.length} of ${samples.length} calls took ${FAST_MS} ms or more while Redis was known down: ${JSON.stringify(samples)}`,
      )
      // The memory fallback counts: three keys, 20 calls.
      assert.equal((await store.increment('down-0')).totalHits, 8)
      const h = await timed(() => client.healthCheck())
      assert.equal(h.value.status, 'unhealthy')
      assert.equal(h.value.mode, 'fallback')
      assert.ok(h.ms <= client.commandTimeoutMs + SLACK_MS, `healthCheck while down took ${h.ms} ms`)

      await server.restart() // same port, empty data set
      await waitFor(() => client.isAvailable(), { timeout: 10_000, interval: 20, what: 'recovery by itself' })
      const r = await store.increment('after')
      assert.equal(r.totalHits, 1)
      assert.equal(await server.cli('EXISTS', `${store.prefix}after`), '1', 'the increment went to Redis')
      assert.equal(await server.cli('GET', `${store.prefix}after`), '1')
      const ttl = Number(await server.cli('PTTL', `${store.prefix}after`))
      assert.ok(ttl > 0 && ttl <= 10 * 60_000, `PTTL ${ttl}`)
      const lease = await client.lock('after-lock', { ttlMs: 5000 })
      assert.equal(lease.source, 'redis')
      await lease.release()
      assert.equal((await client.healthCheck()).status, 'healthy')
    } finally {
      await client.close()
      await server.stop()
    }
  })

  test('an increment is never re-sent after a dropped connection (proxy: blackhole, reset, pass)', async () => {
    // Soundness of the check: in 'blackhole' the proxy swallows every byte in BOTH directions,
    // so the increments issued then never reach Redis on the connection they were written to.
    // Their callers get an answer from the memory fallback at the deadline. If the client
    // re-sent them after the reset (a retry of an unacknowledged command on the new
    // connection), Redis would count them on top of the fallback: the final Redis counter would
    // exceed the number of increments that were answered from Redis.
    // Those are told apart by their totalHits: on a fresh key Redis answers 1..N1 and then
    // continues from N1, while the memory fallback starts its own count at 1 (N1 = 20 and
    // only 10 fallback calls, so the two series cannot overlap).
    const server = await startRedis()
    const proxy = await startProxy(server.port)
    const client = new RedisClient({ host: '127.0.0.1', port: proxy.port, logger: false })
    try {
      assert.equal(await client.ready(3000), true)
      const store = makeStore(client, 'resend')

      const N1 = 20
      for (let i = 1; i <= N1; i++) assert.equal((await store.increment('k')).totalHits, i, 'phase 1 from Redis')

      proxy.setMode('blackhole')
      const t0 = performance.now()
      const held = await Promise.all(Array.from({ length: 7 }, () => store.increment('k')))
      const heldMs = performance.now() - t0
      assert.ok(heldMs <= client.commandTimeoutMs + SLACK_MS, `blackholed increments took ${heldMs} ms`)
      assert.equal(client.isAvailable(), false)
      const fallbackHits = held.map((r) => r.totalHits)
      for (let i = 0; i < 3; i++) fallbackHits.push((await store.increment('k')).totalHits)
      assert.deepEqual(fallbackHits, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'the fallback counted them, from 1')

      proxy.setMode('reset')
      await sleep(300)
      proxy.setMode('pass')
      await waitFor(() => client.isAvailable(), { timeout: 10_000, interval: 20, what: 'reconnect through the proxy' })

      const N3 = 4
      const after3 = []
      for (let i = 0; i < N3; i++) after3.push((await store.increment('k')).totalHits)
      assert.deepEqual(after3, [21, 22, 23, 24], 'Redis continues from N1: nothing was re-sent in between')

      await sleep(1000) // a late re-send would land now
      assert.equal(
        await server.cli('GET', `${store.prefix}k`),
        String(N1 + N3),
        'the Redis counter holds exactly the increments answered from Redis',
      )
    } finally {
      await client.close()
      await proxy.close()
      await server.stop()
    }
  })

  for (const commandTimeoutMs of [250, 100]) {
    test(`bounded command buffer: 100 concurrent calls on a hung server all settle (maxCommandBuffer 8, ${commandTimeoutMs} ms)`, async () => {
      const server = await startRedis()
      const client = new RedisClient({ url: server.url, logger: false, maxCommandBuffer: 8, commandTimeoutMs })
      try {
        assert.equal(await client.ready(3000), true)
        // Several stores: each batches its own calls, so more separate commands reach fred.
        const stores = Array.from({ length: 4 }, (_, i) => makeStore(client, `buf${i}`))
        server.pause()
        const t0 = performance.now()
        const settledAt = new Array(100).fill(null)
        const calls = Array.from({ length: 100 }, (_, i) => {
          const p =
            i % 3 === 0
              ? stores[i % 4].increment(`k${i}`)
              : i % 3 === 1
                ? client.lock(`l${i}`, { ttlMs: 1000 })
                : client.healthCheck()
          return p.then(
            (v) => {
              settledAt[i] = performance.now() - t0
              return v
            },
            (e) => {
              settledAt[i] = performance.now() - t0
              return e
            },
          )
        })
        // Guard: report hung calls instead of hanging the test.
        await Promise.race([Promise.all(calls), sleep(3000)])
        const hung = settledAt.map((t, i) => (t === null ? i : -1)).filter((i) => i >= 0)
        assert.deepEqual(hung, [], 'calls that never settled')
        const worst = Math.max(...settledAt)
        assert.ok(worst <= commandTimeoutMs + SLACK_MS, `slowest call settled after ${worst.toFixed(1)} ms`)
        const results = await Promise.all(calls)
        for (const [i, r] of results.entries()) {
          // Fail open: increments counted in memory, locks granted locally, health unhealthy.
          assert.ok(!(r instanceof Error), `call ${i} rejected: ${r && r.message}`)
        }
      } finally {
        server.resume()
        await client.close()
        await server.stop()
      }
    })
  }
})

// ---------------------------------------------------------------------------------------------
// auth
// ---------------------------------------------------------------------------------------------

describe('auth', () => {
  test('requirepass: the right password works, a wrong one is reported once with no reconnect storm', async () => {
    const server = await startRedis({ password: 'right-pw-1' })
    const good = new RedisClient({ host: '127.0.0.1', port: server.port, password: 'right-pw-1', logger: false })
    let bad
    try {
      assert.equal(await good.ready(3000), true)
      const store = makeStore(good, 'auth')
      assertIncrement(await store.increment('x'), 'authenticated increment')
      assert.equal(await server.cli('GET', `${store.prefix}x`), '1')
      await good.close()

      const rec = recorder()
      const before = await connectionsReceived(server)
      bad = new RedisClient({
        host: '127.0.0.1',
        port: server.port,
        password: 'wrong-pw-2',
        logger: rec.logger,
        connectTimeoutMs: 1000,
      })
      assert.equal(await bad.ready(2000), false)
      assert.equal(bad.isAvailable(), false)
      const h = await bad.healthCheck()
      assert.equal(h.status, 'unhealthy')
      assert.equal(h.connected, false)
      assert.match(h.error, /auth|WRONGPASS|password/i)
      assert.ok(!JSON.stringify(h).includes('wrong-pw-2'))

      // Reconnects back off exponentially (50 ms doubling to 2 s, + jitter): about 6 attempts in
      // the first 3 s, then one every ~2 s. A hot loop would be hundreds.
      await sleep(3000)
      const at3s = await connectionsReceived(server)
      const grew = at3s - before - 1 // minus our own INFO connection
      assert.ok(grew >= 1, 'the client did try')
      assert.ok(grew <= 7, `${grew} connections in ~3 s: a reconnect storm`)
      await sleep(2000)
      const steady = (await connectionsReceived(server)) - at3s - 1
      assert.ok(steady <= 2, `${steady} connections in 2 s once backed off`)

      const errors = rec.lines.filter((l) => l.level === 'error')
      assert.equal(errors.length, 1, `one error line, got ${JSON.stringify(rec.lines)}`)
      assert.match(errors[0].message, /credential|password|auth/i)
      assert.equal(errors[0].fields.url, `redis://:***@127.0.0.1:${server.port}`)
      assert.ok(!JSON.stringify(rec.lines).includes('wrong-pw-2'))
      // Calls still fail open, at once.
      const bs = makeStore(bad, 'auth-bad')
      const r = await timed(() => bs.increment('y'))
      assertIncrement(r.value, 'fallback increment')
      assert.ok(r.ms < FAST_MS * 4, `${r.ms} ms`)
      assert.equal(await server.cli('EXISTS', `${bs.prefix}y`), '0')
    } finally {
      await good.close()
      await bad?.close()
      await server.stop()
    }
  })

  test('no password against a requirepass server: NOAUTH reported as a credentials error', async () => {
    const server = await startRedis({ password: 'right-pw-3' })
    const rec = recorder()
    const c = new RedisClient({ host: '127.0.0.1', port: server.port, logger: rec.logger, connectTimeoutMs: 1000 })
    try {
      assert.equal(await c.ready(2000), false)
      const h = await c.healthCheck()
      assert.equal(h.status, 'unhealthy')
      assert.match(h.error, /NOAUTH|auth/i)
      await waitFor(() => rec.lines.some((l) => l.level === 'error'), { timeout: 2000, what: 'error line' })
    } finally {
      await c.close()
      await server.stop()
    }
  })

  test('ACL user with username + password works; a wrong ACL password does not', async () => {
    const server = await startRedis({
      users: [
        // The fence counter of lock:K is `lock:{lock:K}:fence` (same cluster slot), inside ~lock:*.
        { name: 'limiter', password: 'pw', rules: 'on ~rl:* ~lock:* +@all' },
        // The rate-limit-only user of FAULTS.md.
        { name: 'rlonly', password: 'pw2', rules: 'on ~rl:* +@read +@write +@scripting' },
      ],
    })
    const c = new RedisClient({
      host: '127.0.0.1',
      port: server.port,
      username: 'limiter',
      password: 'pw',
      logger: false,
    })
    const wrong = new RedisClient({
      url: `redis://limiter:nope@127.0.0.1:${server.port}`,
      logger: false,
      connectTimeoutMs: 1000,
    })
    try {
      assert.equal(c.url, `redis://limiter:***@127.0.0.1:${server.port}`)
      assert.equal(await c.ready(3000), true)
      assert.equal((await c.healthCheck()).status, 'healthy')
      const prefix = `rl:acl:${process.pid}:`
      const store = new RedisStore({ client: c, prefix })
      store.init({ windowMs: 60_000, limit: 100 })
      assert.equal((await store.increment('k')).totalHits, 1)
      assert.equal((await store.increment('k')).totalHits, 2)
      assert.equal(await server.cli('GET', `${prefix}k`), '2')
      assert.equal(await c.acquireLock('acl-job', 5), true)
      assert.ok(Number(await server.cli('PTTL', 'lock:acl-job')) > 0, 'lock:acl-job is in Redis')
      assert.equal(await c.releaseLock('acl-job'), true)
      assert.equal(await server.cli('EXISTS', 'lock:acl-job'), '0')

      assert.equal(await wrong.ready(2000), false)
      assert.match((await wrong.healthCheck()).error, /WRONGPASS|auth/i)

      // +@read +@write +@scripting is enough for the store (EVALSHA / EVAL, no SCRIPT LOAD needed).
      const rl = new RedisClient({
        host: '127.0.0.1',
        port: server.port,
        username: 'rlonly',
        password: 'pw2',
        logger: false,
      })
      try {
        // Its PING gets NOPERM: the server answered, so the client is up and healthy.
        assert.equal(await rl.ready(3000), true)
        assert.equal((await rl.healthCheck()).status, 'healthy')
        const s2 = new RedisStore({ client: rl, prefix: `rl:faults:${process.pid}:` })
        s2.init({ windowMs: 60_000, limit: 100 })
        assert.equal((await s2.increment('k')).totalHits, 1)
        assert.equal(await server.cli('GET', `rl:faults:${process.pid}:k`), '1')
      } finally {
        await rl.close()
      }
    } finally {
      await c.close()
      await wrong.close()
      await server.stop()
    }
  })

  test('ACL user scoped to the lock prefix only (~lock:*) can take locks', async () => {
    const server = await startRedis({ users: [{ name: 'locker', password: 'pw', rules: 'on ~lock:* +@all' }] })
    const c = new RedisClient({
      host: '127.0.0.1',
      port: server.port,
      username: 'locker',
      password: 'pw',
      logger: false,
    })
    try {
      assert.equal(await c.ready(3000), true)
      assert.equal(await c.acquireLock('scoped', 5), true)
      assert.equal(await c.releaseLock('scoped'), true)
    } finally {
      await c.close()
      await server.stop()
    }
  })
})

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

describe('TLS', () => {
  /** Connect with `options`; returns { ready, available, health, lines } and closes. */
  async function attempt(options) {
    const rec = recorder()
    const c = new RedisClient({ connectTimeoutMs: 1000, ...options, logger: rec.logger })
    try {
      const ready = await c.ready(2500)
      const health = await c.healthCheck()
      await sleep(50) // let log lines cross the thread-safe function
      return { ready, available: c.isAvailable(), health, lines: rec.lines, url: c.url }
    } finally {
      await c.close()
    }
  }

  function assertFails(r, what, pattern) {
    assert.equal(r.ready, false, `${what}: connected`)
    assert.equal(r.available, false, `${what}: available`)
    assert.equal(r.health.status, 'unhealthy', `${what}: ${JSON.stringify(r.health)}`)
    assert.equal(r.health.mode, 'fallback')
    if (pattern) assert.match(r.health.error, pattern, `${what}: error`)
    const logged = r.lines.filter((l) => l.level === 'warn' || l.level === 'error')
    assert.ok(logged.length >= 1, `${what}: nothing logged: ${JSON.stringify(r.lines)}`)
    assert.ok(
      logged.some((l) => l.fields && l.fields.error),
      `${what}: the logged line carries the error`,
    )
  }

  test('server verification: custom CA works; system roots, a wrong CA and plaintext fail; insecure works', async () => {
    const certs = await makeCerts()
    const server = await startRedis({ tls: true })
    try {
      const base = { host: '127.0.0.1', port: server.port }

      const ok = await attempt({ ...base, tls: { ca: certs.ca } })
      assert.equal(ok.ready, true)
      assert.equal(ok.health.status, 'healthy')
      assert.equal(ok.url, `rediss://127.0.0.1:${server.port}`)
      assert.ok(ok.lines.some((l) => l.level === 'info' && /connected/i.test(l.message)))

      const viaUrl = await attempt({ url: `rediss://localhost:${server.port}`, tls: { ca: certs.ca } })
      assert.equal(viaUrl.health.status, 'healthy', 'rediss:// + ca, host name checked against the SAN')

      assertFails(
        await attempt({ ...base, tls: true }),
        'system roots (tls: true)',
        /certificate|UnknownIssuer|InvalidCertificate/i,
      )
      assertFails(
        await attempt({ url: `rediss://127.0.0.1:${server.port}` }),
        'system roots (rediss://)',
        /certificate|UnknownIssuer/i,
      )
      assertFails(await attempt({ ...base, tls: { ca: certs.wrongCa } }), 'wrong CA', /certificate|UnknownIssuer/i)
      // tls.servername: the name the certificate is checked against (SAN DNS:localhost).
      const named = await attempt({ ...base, tls: { ca: certs.ca, servername: 'localhost' } })
      assert.equal(named.health.status, 'healthy', 'servername in the certificate')
      assertFails(
        await attempt({ ...base, tls: { ca: certs.ca, servername: 'not-the-server.example' } }),
        'wrong servername',
        /certificate|name|NotValidForName/i,
      )

      const insecure = await attempt({ ...base, tls: { insecure: true } })
      assert.equal(insecure.ready, true, 'insecure: true skips verification')
      assert.equal(insecure.health.status, 'healthy')

      // Plaintext to the TLS port: fails, never silently works (and nothing reaches Redis).
      const rec = recorder()
      const plain = new RedisClient({
        url: `redis://127.0.0.1:${server.port}`,
        connectTimeoutMs: 1000,
        logger: rec.logger,
      })
      try {
        assert.equal(await plain.ready(2500), false)
        assert.equal(plain.isAvailable(), false)
        assert.equal((await plain.healthCheck()).status, 'unhealthy')
        const store = makeStore(plain, 'plain')
        assertIncrement(await store.increment('k'), 'plaintext fallback')
        assert.equal(await server.cli('EXISTS', `${store.prefix}k`), '0')
        assert.ok(rec.lines.some((l) => l.level === 'warn' || l.level === 'error'))
      } finally {
        await plain.close()
      }
    } finally {
      await server.stop()
    }
  })

  test('client certificates: authClients server accepts cert+key, rejects a client without one', async () => {
    const certs = await makeCerts()
    const server = await startRedis({ tls: { authClients: true } })
    try {
      const base = { host: '127.0.0.1', port: server.port }
      const ok = await attempt({ ...base, tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey } })
      assert.equal(ok.ready, true)
      assert.equal(ok.health.status, 'healthy')
      assertFails(await attempt({ ...base, tls: { ca: certs.ca } }), 'no client cert', /certificate|alert|Certificate/i)
      // The same as PEM text instead of file paths.
      const pem = async (f) => fsp.readFile(f, 'utf8')
      const okPem = await attempt({
        ...base,
        tls: { ca: await pem(certs.ca), cert: await pem(certs.clientCert), key: await pem(certs.clientKey) },
      })
      assert.equal(okPem.health.status, 'healthy')
    } finally {
      await server.stop()
    }
  })
})

// ---------------------------------------------------------------------------------------------
// logging
// ---------------------------------------------------------------------------------------------

describe('logging', () => {
  test('the default logger prints one line per state change, URL masked', async () => {
    const server = await startRedis({ password: 'log-pw-1' })
    let client
    const printed = await captureConsole(async (out) => {
      try {
        client = new RedisClient({ host: '127.0.0.1', port: server.port, password: 'log-pw-1' })
        assert.equal(await client.ready(3000), true)
        await waitFor(() => out.length >= 1, { timeout: 2000, what: 'connected line' })
        await server.kill()
        await waitFor(() => !client.isAvailable(), { timeout: 5000, what: 'client to notice' })
        // Down for a while, with reconnect attempts failing: still one line.
        await sleep(1500)
        await server.restart()
        await waitFor(() => client.isAvailable(), { timeout: 10_000, what: 'recovery' })
        await sleep(300)
      } finally {
        await client?.close()
        await server.stop()
      }
    })
    const lines = printed.filter((p) => p.text.includes('[redis-guard]'))
    assert.equal(lines.length, 3, `connected, unavailable, recovered: ${JSON.stringify(printed)}`)
    assert.match(lines[0].text, /connected/i)
    assert.match(lines[1].text, /unavailable|falling back/i)
    assert.ok(
      lines.every((l) => l.method === 'stderr'),
      'every line on stderr',
    )
    assert.match(lines[2].text, /recovered/i)
    for (const l of lines) {
      assert.ok(l.text.includes(`redis://:***@127.0.0.1:${server.port}`), l.text)
      assert.ok(!l.text.includes('log-pw-1'))
    }
  })

  test('a function logger gets (level, message, fields) with fields.url masked', async () => {
    const server = await startRedis({ password: 'log-pw-2' })
    const rec = recorder()
    const client = new RedisClient({ url: `redis://:log-pw-2@127.0.0.1:${server.port}`, logger: rec.logger })
    try {
      assert.equal(await client.ready(3000), true)
      await waitFor(() => rec.lines.length >= 1, { timeout: 2000, what: 'a log line' })
      await server.kill()
      await waitFor(() => rec.lines.length >= 2, { timeout: 5000, what: 'the unavailable line' })
    } finally {
      await client.close()
      await server.stop()
    }
    const [up, down] = rec.lines
    assert.equal(up.level, 'info')
    assert.equal(typeof up.message, 'string')
    assert.equal(up.fields.url, `redis://:***@127.0.0.1:${server.port}`)
    assert.equal(down.level, 'warn')
    assert.equal(down.fields.url, `redis://:***@127.0.0.1:${server.port}`)
    assert.equal(typeof down.fields.error, 'string')
    assert.ok(!JSON.stringify(rec.lines).includes('log-pw-2'))
  })

  test('logger: false is silent', async () => {
    const server = await startRedis()
    let client
    const printed = await captureConsole(async () => {
      try {
        client = new RedisClient({ url: server.url, logger: false, env: { REDIS_URL: '${{Redis.REDIS_URL}}' } })
        assert.equal(await client.ready(3000), true)
        await server.kill()
        await waitFor(() => !client.isAvailable(), { timeout: 5000 })
        await server.restart()
        await waitFor(() => client.isAvailable(), { timeout: 10_000 })
        await sleep(200)
      } finally {
        await client?.close()
        await server.stop()
      }
    })
    assert.deepEqual(printed, [])
  })

  test('a pino-like object logger: method per level, (fields, message)', async () => {
    const server = await startRedis()
    const calls = []
    const pinoLike = {
      info(obj, msg) {
        calls.push(['info', obj, msg, this])
      },
      warn(obj, msg) {
        calls.push(['warn', obj, msg, this])
      },
      error(obj, msg) {
        calls.push(['error', obj, msg, this])
      },
    }
    const client = new RedisClient({ url: server.url, logger: pinoLike })
    try {
      assert.equal(await client.ready(3000), true)
      await waitFor(() => calls.length >= 1, { timeout: 2000 })
      await server.kill()
      await waitFor(() => calls.length >= 2, { timeout: 5000 })
    } finally {
      await client.close()
      await server.stop()
    }
    assert.equal(calls[0][0], 'info')
    assert.deepEqual(calls[0][1], { url: `redis://127.0.0.1:${server.port}` })
    assert.match(calls[0][2], /connected/i)
    assert.equal(calls[0][3], pinoLike, 'called as a method')
    assert.equal(calls[1][0], 'warn')
    assert.equal(typeof calls[1][1].error, 'string')
  })
})

// ---------------------------------------------------------------------------------------------
// no secret anywhere
// ---------------------------------------------------------------------------------------------

describe('no secret anywhere', () => {
  test('the password appears in no log line, error, health result or inspect output', async () => {
    const PW = 'S3cr3t-P4ss!'
    const WRONG = 'Wr0ng-S3cr3t?'
    const secrets = [PW, encodeURIComponent(PW), WRONG, encodeURIComponent(WRONG), 'S3cr3t']
    const server = await startRedis({ password: PW })
    const seen = [] // every text a user could see
    const rec = recorder()
    const see = (label, v) => seen.push([label, typeof v === 'string' ? v : JSON.stringify(v)])
    const seeError = (label, e) => {
      assert.ok(e instanceof Error, `${label}: expected an error`)
      see(`${label} message`, e.message)
      see(`${label} stack`, String(e.stack))
      see(`${label} inspect`, util.inspect(e, { showHidden: true, depth: 10 }))
    }
    let good
    let bad
    let viaUrl
    const printed = await captureConsole(async () => {
      try {
        good = new RedisClient({ host: '127.0.0.1', port: server.port, password: PW, logger: rec.logger })
        viaUrl = new RedisClient(`redis://:${encodeURIComponent(PW)}@127.0.0.1:${server.port}`) // default logger
        bad = new RedisClient({
          url: `redis://:${encodeURIComponent(WRONG)}@127.0.0.1:${server.port}`,
          logger: rec.logger,
          connectTimeoutMs: 1000,
        })
        assert.equal(await good.ready(3000), true)
        assert.equal(await viaUrl.ready(3000), true, JSON.stringify(await viaUrl.healthCheck()))
        assert.equal(await bad.ready(2000), false)

        const store = makeStore(good, 'secret')
        const denyStore = makeStore(good, 'secret-deny', { onUnavailable: 'deny' })
        await store.increment('k')
        const lease = await good.lock('secret-lock', { ttlMs: 5000 })
        assert.equal(lease.source, 'redis')
        see('health deep', await good.healthCheck({ deep: true }))
        see('health bad', await bad.healthCheck())

        await server.kill() // mid-test
        await waitFor(() => !good.isAvailable() && !viaUrl.isAvailable(), { timeout: 5000 })
        see('health down', await good.healthCheck())
        see('health down url', await viaUrl.healthCheck())
        see('increment down', await store.increment('k'))
        const denied = await denyStore.increment('k').then(
          () => null,
          (e) => e,
        )
        seeError('deny store', denied)
        const lockDenied = await good.lock('x', { onUnavailable: 'deny' }).then(
          () => null,
          (e) => e,
        )
        seeError('deny lock', lockDenied)
        const ext = await lease.extend(5000).then(
          () => null,
          (e) => e,
        )
        if (ext) seeError('extend while down', ext)
        see('release while down', await lease.release().catch((e) => e.message))

        for (const [label, obj] of [
          ['client', good],
          ['url client', viaUrl],
          ['bad client', bad],
          ['store', store],
          ['lease', lease],
        ]) {
          see(`inspect ${label}`, util.inspect(obj, { depth: 10, showHidden: true }))
          see(`inspect raw ${label}`, util.inspect(obj, { depth: 10, customInspect: false, showHidden: true }))
          see(`json ${label}`, JSON.stringify(obj) ?? '')
          see(`string ${label}`, String(obj))
        }
        see('url', good.url)
        see('stats', good.stats())
        const configErr = (() => {
          try {
            new RedisClient({ url: `redis://:${encodeURIComponent(PW)}@127.0.0.1:0` })
          } catch (e) {
            return e
          }
        })()
        seeError('config error', configErr)

        await server.restart()
        await waitFor(() => good.isAvailable(), { timeout: 10_000 })
        see('health back', await good.healthCheck())
        await sleep(200)
      } finally {
        await good?.close()
        await bad?.close()
        await viaUrl?.close()
        await server.stop()
      }
    })
    for (const l of rec.lines) see(`log ${l.level}`, l)
    for (const p of printed) see(`console.${p.method}`, p.text)
    assert.ok(
      rec.lines.some((l) => l.level === 'error'),
      'the wrong password was logged',
    )
    assert.ok(
      rec.lines.some((l) => l.level === 'warn'),
      'the kill was logged',
    )
    assert.ok(
      printed.some((p) => p.text.includes('[redis-guard]')),
      'the default logger printed',
    )
    assert.ok(seen.length > 30)
    for (const [label, text] of seen) {
      for (const s of secrets) assert.ok(!text.includes(s), `${label} shows a secret: ${text}`)
    }
  })
})

// ---------------------------------------------------------------------------------------------
// health
// ---------------------------------------------------------------------------------------------

describe('health', () => {
  test('healthCheck(): healthy with latency; deep SET/GET/DEL leaves nothing; unhealthy when killed', async () => {
    const server = await startRedis({ password: 'health-pw' })
    const client = new RedisClient({ host: '127.0.0.1', port: server.port, password: 'health-pw', logger: false })
    try {
      assert.equal(await client.ready(3000), true)
      const h = await client.healthCheck()
      assert.equal(h.status, 'healthy')
      assert.equal(h.connected, true)
      assert.equal(typeof h.latencyMs, 'number')
      assert.ok(h.latencyMs >= 0 && h.latencyMs < 250, `latency ${h.latencyMs}`)
      assert.equal(h.mode, 'redis')
      assert.equal(h.topology, 'standalone')
      assert.equal(h.url, `redis://:***@127.0.0.1:${server.port}`)
      assert.equal(h.error, undefined)

      const before = {}
      for (const c of ['set', 'get', 'del']) before[c] = await commandCalls(server, c)
      const deep = await client.healthCheck({ deep: true })
      assert.equal(deep.status, 'healthy', JSON.stringify(deep))
      for (const c of ['set', 'get', 'del']) {
        assert.equal((await commandCalls(server, c)) - before[c], 1, `deep check ran one ${c.toUpperCase()}`)
      }
      assert.equal(await server.cli('DBSIZE'), '0', 'the probe key is gone')

      await server.kill()
      await waitFor(() => !client.isAvailable(), { timeout: 5000 })
      const down = await client.healthCheck()
      assert.equal(down.status, 'unhealthy')
      assert.equal(down.connected, false)
      assert.equal(down.mode, 'fallback')
      assert.equal(down.latencyMs, null)
      assert.equal(typeof down.error, 'string')
      const deepDown = await client.healthCheck({ deep: true })
      assert.equal(deepDown.status, 'unhealthy')
    } finally {
      await client.close()
      await server.stop()
    }
  })

  test('healthHandler() in an Express 5 app: 200 JSON, then 503 after the server is killed', async () => {
    const server = await startRedis()
    const client = new RedisClient({ url: server.url, logger: false })
    const app = express()
    app.get('/health', client.healthHandler())
    app.get('/health/deep', client.healthHandler({ deep: true }))
    const http = await listen(app)
    const base = http.url
    try {
      assert.equal(await client.ready(3000), true)
      let res = await fetch(`${base}/health`)
      assert.equal(res.status, 200)
      assert.match(res.headers.get('content-type'), /application\/json/)
      let body = await res.json()
      assert.equal(body.status, 'healthy')
      assert.equal(body.mode, 'redis')
      assert.equal(typeof body.latencyMs, 'number')
      res = await fetch(`${base}/health/deep`)
      assert.equal(res.status, 200)
      assert.equal((await res.json()).status, 'healthy')

      await server.kill()
      await waitFor(() => !client.isAvailable(), { timeout: 5000 })
      const t0 = performance.now()
      res = await fetch(`${base}/health`)
      const ms = performance.now() - t0
      assert.equal(res.status, 503)
      body = await res.json()
      assert.equal(body.status, 'unhealthy')
      assert.equal(body.mode, 'fallback')
      assert.equal(body.connected, false)
      assert.ok(ms < 1000, `health request took ${ms} ms`)
    } finally {
      await http.close()
      await client.close()
      await server.stop()
    }
  })
})

// ---------------------------------------------------------------------------------------------
// module-level helpers, in a child process
// ---------------------------------------------------------------------------------------------

describe('module-level helpers (default client from the environment)', () => {
  const CHILD = `
'use strict'
const g = require(${JSON.stringify(ROOT)})
;(async () => {
  const out = {}
  out.before = g.isRedisAvailable()
  out.ready = await g.getDefaultClient().ready(3000)
  out.after = g.isRedisAvailable()
  out.url = g.getDefaultClient().url
  out.health = await g.healthCheck()
  out.acquire = await g.acquireLock('jobs:42', 10)
  out.acquireAgain = await g.acquireLock('jobs:42', 10)
  out.extend = await g.extendLock('jobs:42', 20)
  out.release = await g.releaseLock('jobs:42')
  out.releaseAgain = await g.releaseLock('jobs:42')
  out.keep = await g.acquireLock('jobs:keep', 10)
  out.busy = await g.acquireLock('jobs:busy', 10)
  out.releaseBusy = await g.releaseLock('jobs:busy')
  out.handler = await new Promise((resolve) => {
    const res = { headers: {}, setHeader(k, v) { this.headers[k] = v }, end(b) { resolve({ status: this.statusCode, body: JSON.parse(b) }) } }
    g.healthHandler()({}, res, (e) => resolve({ error: String(e) }))
  })
  out.doneAt = Date.now()
  process.stdout.write('RESULT ' + JSON.stringify(out) + '\\n')
  // No close(): the process must exit by itself.
})().catch((e) => { console.error('CHILD FAILED', e); process.exitCode = 2 })
`

  /** Run `source` (CommonJS) in a child with a clean environment: only PATH and `env` (no inherited REDIS_*). */
  function runChild(env, source = CHILD) {
    return runNode(source, {
      type: 'commonjs',
      name: 'child',
      env: { PATH: process.env.PATH, ...env },
      timeout: 20_000,
    })
  }

  function assertChild(r, server) {
    assert.equal(r.signal, null, `child killed (hung?): ${r.stderr}`)
    assert.equal(r.code, 0, `child failed: ${r.stderr}`)
    assert.ok(r.result, `no RESULT line: ${r.stdout} ${r.stderr}`)
    const o = r.result
    assert.ok(
      r.exitedAt - o.doneAt < 3000,
      `exited ${r.exitedAt - o.doneAt} ms after its work: something keeps the loop alive`,
    )
    if (!server) return o
    assert.equal(o.before, false, 'not available before the connection is up')
    assert.equal(o.ready, true)
    assert.equal(o.after, true)
    assert.equal(o.url, `redis://127.0.0.1:${server.port}`)
    assert.equal(o.health.status, 'healthy')
    assert.equal(o.health.mode, 'redis')
    assert.equal(o.acquire, true)
    assert.equal(o.acquireAgain, false, 'held: not granted twice')
    assert.equal(o.extend, true)
    assert.equal(o.release, true)
    assert.equal(o.releaseAgain, false)
    assert.equal(o.keep, true)
    assert.equal(o.busy, false, 'held by someone else')
    assert.equal(o.releaseBusy, false, 'never deletes a lock this process does not hold')
    assert.equal(o.handler.status, 200)
    assert.equal(o.handler.body.status, 'healthy')
    return o
  }

  test('REDIS_URL: isRedisAvailable, healthCheck, acquireLock/releaseLock; exits by itself', async () => {
    const server = await startRedis()
    try {
      await server.cli('SET', 'lock:jobs:busy', 'someone-else', 'PX', '60000')
      const r = await runChild({ REDIS_URL: server.url })
      assertChild(r, server)
      // The helpers use the ioredis-era key `lock:${key}`, with the TTL given in seconds.
      const pttl = Number(await server.cli('PTTL', 'lock:jobs:keep'))
      assert.ok(pttl > 0 && pttl <= 10_000, `PTTL lock:jobs:keep ${pttl}`)
      assert.equal(await server.cli('EXISTS', 'lock:jobs:42'), '0')
      assert.equal(await server.cli('GET', 'lock:jobs:busy'), 'someone-else')
    } finally {
      await server.stop()
    }
  })

  test('REDIS_HOST/REDIS_PORT (no REDIS_URL): same results', async () => {
    const server = await startRedis()
    try {
      await server.cli('SET', 'lock:jobs:busy', 'someone-else', 'PX', '60000')
      const r = await runChild({ REDIS_HOST: '127.0.0.1', REDIS_PORT: String(server.port) })
      assertChild(r, server)
      assert.equal(await server.cli('GET', 'lock:jobs:busy'), 'someone-else')
    } finally {
      await server.stop()
    }
  })

  // Batch results come back through one weak callback per batcher (src/batch/completion.rs): it
  // must keep the loop alive while a batch is out, and never once nothing is.
  const INFLIGHT_CHILD = `
'use strict'
const { RedisClient, RedisStore } = require(${JSON.stringify(ROOT)})
;(async () => {
  const client = new RedisClient({ url: process.env.REDIS_URL, logger: false })
  const out = { ready: await client.ready(3000) }
  const store = new RedisStore({ client, prefix: 'inflight:' })
  out.first = (await store.increment('k')).totalHits
  const pid = Number(process.env.REDIS_PID)
  process.kill(pid, 'SIGSTOP') // nothing but the batch in flight keeps the loop alive now
  const t0 = Date.now()
  try {
    out.second = (await store.increment('k')).totalHits
    out.lock = await client.acquireLock('job', 5)
  } finally {
    process.kill(pid, 'SIGCONT')
  }
  out.waited = Date.now() - t0
  out.doneAt = Date.now()
  process.stdout.write('RESULT ' + JSON.stringify(out) + '\\n')
  // No close(): the process must exit by itself.
})().catch((e) => { console.error('CHILD FAILED', e); process.exitCode = 2 })
`
  test('a batch in flight keeps the process alive until it is answered; an idle client never does', async () => {
    const server = await startRedis()
    try {
      const r = await runChild({ REDIS_URL: server.url, REDIS_PID: String(server.pid) }, INFLIGHT_CHILD)
      const o = assertChild(r, null)
      assert.equal(o.ready, true)
      assert.equal(o.first, 1)
      assert.equal(o.second, 1, 'answered by the memory fallback after the deadline')
      assert.equal(o.lock, true, 'granted by the local table')
      assert.ok(o.waited >= 200, `waited ${o.waited} ms for the deadline`)
    } finally {
      server.resume()
      await server.stop()
    }
  })

  test('Redis unreachable: the helpers fail open and the process still exits by itself', async () => {
    const port = await freePort() // nobody listens there
    const r = await runChild({ REDIS_URL: `redis://127.0.0.1:${port}` })
    const o = assertChild(r, null)
    assert.equal(o.before, false)
    assert.equal(o.ready, false)
    assert.equal(o.after, false)
    assert.equal(o.health.status, 'unhealthy')
    assert.equal(o.acquire, true, 'local fallback grants')
    assert.equal(o.acquireAgain, false, 'and still excludes within the process')
    assert.equal(o.release, true)
    assert.equal(o.handler.status, 503)
    assert.match(r.stderr, /unavailable/i, 'the default logger reported it')
  })
})

test('after close(): no hang, no I/O — store calls use the fallback, lock calls reject CLOSED, health is unhealthy', async () => {
  const server = await startRedis()
  const c = new RedisClient({ url: server.url, logger: false })
  try {
    assert.equal(await c.ready(3000), true)
    const store = new RedisStore({ client: c, prefix: uniquePrefix('closed') })
    store.init({ windowMs: 60_000, limit: 100 })
    assert.equal((await store.increment('k')).totalHits, 1)
    await c.close()
    assert.equal(c.isAvailable(), false)
    const t0 = performance.now()
    const r = await store.increment('k')
    assert.equal(r.totalHits, 1, 'counted by the memory fallback, not by Redis')
    assert.ok(performance.now() - t0 < FAST_MS + 20, 'settles at once')
    await assert.rejects(c.lock('job'), (e) => e.code === 'ERR_REDIS_GUARD_CLOSED')
    await assert.rejects(c.acquireLock('job'), (e) => e.code === 'ERR_REDIS_GUARD_CLOSED')
    const h = await c.healthCheck()
    assert.equal(h.status, 'unhealthy')
    assert.equal(h.mode, 'fallback')
    assert.equal(await server.cli('GET', `${store.prefix}k`), '1', 'Redis kept only the call made before close()')
    await c.close() // idempotent
  } finally {
    await c.close()
    await server.stop()
  }
})
