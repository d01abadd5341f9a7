// Idempotency keys (IdempotencyKeys and the `idempotency` middleware) against REAL redis-server
// processes: the claim states, token fencing (a holder paused with SIGSTOP past its lease cannot
// overwrite the result of the one that took over), concurrent duplicates in one process and
// across two app processes (exactly one handler run per key), replay fidelity (res.json,
// res.send, res.write + res.end, res.status().end(), binary bodies, allow-listed headers),
// mismatch, required and malformed keys, 5xx and exceptions not stored, maxBodyBytes, client
// disconnects, scoping, hostile keys, Redis round trips per request, and Redis down or hung.
// Run: node --test __tests__/idempotency.test.mjs
//
// Rules: no mocks; every test uses its own key prefix or server; every client, child and server
// is closed in `finally`; loopback only; every loop is bounded.

import assert from 'node:assert/strict'
import http from 'node:http'
import { fileURLToPath } from 'node:url'
import { describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import express from 'express'

import guard from '../index.js'
import { freePort, parseInfo, startProxy, startRedis } from './helpers/redis.mjs'
import { listen, rejectsCode, spawnNode, uniquePrefix } from './helpers/utils.mjs'

const { IdempotencyKeys, RedisClient, idempotency, codes } = guard
const WORKER = fileURLToPath(new URL('./helpers/idem-worker.mjs', import.meta.url))

async function scriptCalls(server) {
  const info = parseInfo(await server.cli('INFO', 'commandstats'))
  let n = 0
  for (const c of ['evalsha', 'eval']) {
    const v = info[`cmdstat_${c}`]
    if (v) n += Number(/calls=(\d+)/.exec(v)[1])
  }
  return n
}

/** A POST with JSON (or raw) body; resolves { status, headers, body (Buffer), json }. */
function post(url, { key, body = {}, headers = {}, method = 'POST', raw } = {}) {
  const data = raw !== undefined ? raw : JSON.stringify(body)
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method,
        headers: {
          'content-type': 'application/json',
          ...(key !== undefined ? { 'idempotency-key': key } : {}),
          ...headers,
        },
        agent: false,
      },
      (res) => {
        const chunks = []
        res.on('data', (c) => chunks.push(c))
        res.on('end', () => {
          const b = Buffer.concat(chunks)
          let json
          try {
            json = JSON.parse(b.toString())
          } catch {}
          resolve({ status: res.statusCode, headers: res.headers, body: b, json })
        })
      },
    )
    req.on('error', reject)
    req.end(data)
  })
}

/** A server, a client, and an Express app with `mw` options on `/x` running `handler`. */
async function withApp(mwOptions, routes, fn, { server: given } = {}) {
  const server = given || (await startRedis())
  const client = new RedisClient({ url: server.url, logger: false })
  const runs = new Map()
  const count = (req) => {
    const k = req.get('idempotency-key') || ''
    runs.set(k, (runs.get(k) || 0) + 1)
  }
  const app = express()
  const mw = idempotency({ client, prefix: uniquePrefix('idem'), ...mwOptions })
  app.use(express.json())
  for (const [path, handler] of Object.entries(routes))
    app.all(path, mw, (req, res, next) => {
      count(req)
      return handler(req, res, next)
    })
  const http = await listen(app)
  try {
    assert.equal(await client.ready(5000), true)
    return await fn({ url: http.url, runs, server, client, mw })
  } finally {
    await http.close()
    await client.close()
    if (!given) await server.stop()
  }
}

describe('IdempotencyKeys', () => {
  test('claim states, complete, release, mismatch; one script call per claim', async () => {
    const server = await startRedis()
    const client = new RedisClient({ url: server.url, logger: false })
    try {
      const keys = new IdempotencyKeys({ client, prefix: uniquePrefix('ik'), lockTtlMs: 2000 })
      const c = await keys.claim('order-1', { fingerprint: 'f1' })
      assert.equal(c.state, 'acquired')
      assert.equal(c.source, 'redis')
      const busy = await keys.claim('order-1', { fingerprint: 'f1' })
      assert.equal(busy.state, 'in-progress')
      assert.ok(busy.retryAfterMs > 0 && busy.retryAfterMs <= 2000, `${busy.retryAfterMs}`)
      assert.equal((await keys.claim('order-1', { fingerprint: 'f2' })).state, 'mismatch')
      await c.complete({ id: 'ch_1', amount: 42 })
      await rejectsCode(c.complete('again'), codes.LOCK_NOT_HELD, 'a second complete')
      const before = await scriptCalls(server)
      const done = await keys.claim('order-1', { fingerprint: 'f1' })
      assert.equal(await scriptCalls(server), before + 1, 'a replay is one script call')
      assert.equal(done.state, 'completed')
      assert.deepEqual(done.result, { id: 'ch_1', amount: 42 })
      assert.equal((await keys.claim('order-1', { fingerprint: 'other' })).state, 'mismatch')
      assert.deepEqual(keys.stats(), {
        ...{ claims: 5, acquired: 1, inProgress: 1, completed: 1, mismatches: 2 },
        ...{ fallbacks: 0, errors: 0, lost: 0 },
      })
      const text = client.metrics()
      for (const [result, n] of Object.entries({ acquired: 1, replayed: 1, in_progress: 1, mismatch: 2 }))
        assert.match(
          text,
          new RegExp(`^redis_guard_idempotency_claims_total\\{result="${result}"\\} ${n}$`, 'm'),
          result,
        )
      assert.match(text, /^redis_guard_calls_total\{feature="idempotency"\} \d+$/m)
      // TTLs: the record keeps the retention, not the lease.
      const pttl = Number(await server.cli('PTTL', `${keys.prefix}order-1`))
      assert.ok(pttl > 23 * 3600_000, `retention ${pttl}`)
      // release gives the key back.
      const r = await keys.claim('order-2')
      assert.equal(await r.release(), true)
      assert.equal(await r.release(), false)
      const again = await keys.claim('order-2')
      assert.equal(again.state, 'acquired')
      await again.complete()
      const u = await keys.claim('order-2')
      assert.equal(u.state, 'completed')
      assert.equal(u.result, undefined)
      // Bad input: typed errors, nothing sent.
      await rejectsCode(keys.claim(''), codes.INVALID_ARG, 'empty key')
      await rejectsCode(keys.claim(/** @type {any} */ (42)), codes.INVALID_ARG, 'a number')
      await rejectsCode(keys.claim('x'.repeat(8193)), codes.INVALID_ARG, 'a long key')
      await rejectsCode(keys.claim('x'.repeat(1 << 20)), codes.INVALID_ARG, 'a 1 MiB key')
      // NUL, emoji, braces and the longest key are keys like any other, each its own.
      const odd = ['a\0b', 'a\0c', '💳', '{x}', '{x}y', '}{', 'é'.repeat(4096)]
      const got = await Promise.all(odd.map((k) => keys.claim(k)))
      assert.deepEqual(new Set(got.map((c) => c.state)), new Set(['acquired']), 'distinct keys')
      await Promise.all(got.map((c, i) => c.complete(i)))
      const back = await Promise.all(odd.map((k) => keys.claim(k)))
      assert.deepEqual(
        back.map((c) => c.result),
        odd.map((_, i) => i),
      )
      await rejectsCode(keys.claim('a\uD800b'), codes.INVALID_ARG, 'a lone surrogate')
      await rejectsCode(keys.claim('k', { fingerprint: 'x'.repeat(2000) }), codes.INVALID_ARG, 'a long fingerprint')
      const bad = await keys.claim('order-3')
      await rejectsCode(
        bad.complete(() => 1),
        codes.INVALID_ARG,
        'a function result',
      )
      await rejectsCode(bad.complete(10n), codes.INVALID_ARG, 'a BigInt result')
      assert.equal(bad.held, true, 'a bad result does not end the claim')
      await bad.release()
      assert.throws(() => new IdempotencyKeys({ client, onUnavailable: 'maybe' }), { code: codes.CONFIG })
      assert.throws(() => new IdempotencyKeys({ client, lockTtlMs: 0 }), { code: codes.CONFIG })
      assert.throws(() => new IdempotencyKeys({ client, nope: 1 }), { code: codes.CONFIG })
    } finally {
      await client.close()
      await server.stop()
    }
  })

  test('the lease is extended while held, and expires after a crash (take-over)', async () => {
    const server = await startRedis()
    const client = new RedisClient({ url: server.url, logger: false })
    try {
      const prefix = uniquePrefix('ik')
      const keys = new IdempotencyKeys({ client, prefix, lockTtlMs: 300 })
      const c = await keys.claim('long')
      await sleep(900)
      assert.equal((await keys.claim('long')).state, 'in-progress', 'extended past 3 leases')
      assert.equal(c.held, true)
      await c.complete('done')
      assert.equal((await keys.claim('long')).result, 'done')
      // A holder in another process that dies: its key is free after lockTtlMs.
      const w = await spawnNode(WORKER, [], {
        env: { ...process.env, REDIS_URL: server.url, PREFIX: prefix, LOCK_TTL_MS: '500' },
      })
      try {
        await w.next((l) => l.ready === true, 15_000)
        w.write(JSON.stringify({ id: 1, op: 'claim', key: 'crash' }) + '\n')
        assert.equal((await w.next((l) => l.id === 1)).result, 'acquired')
        process.kill(w.child.pid, 'SIGKILL')
        await w.exited
        assert.equal((await keys.claim('crash')).state, 'in-progress', 'still leased right after the crash')
        await sleep(600)
        const taken = await keys.claim('crash')
        assert.equal(taken.state, 'acquired', 'taken over after lockTtlMs')
        await taken.release()
      } finally {
        await w.stop()
      }
    } finally {
      await client.close()
      await server.stop()
    }
  })

  test('a holder paused (SIGSTOP) past its lease cannot overwrite the result of the one that took over', async () => {
    const server = await startRedis()
    const client = new RedisClient({ url: server.url, logger: false })
    const prefix = uniquePrefix('ik')
    const w = await spawnNode(WORKER, [], {
      env: { ...process.env, REDIS_URL: server.url, PREFIX: prefix, LOCK_TTL_MS: '400' },
    })
    try {
      await w.next((l) => l.ready === true, 15_000)
      w.write(JSON.stringify({ id: 1, op: 'claim', key: 'pay-7', fingerprint: 'f' }) + '\n')
      assert.equal((await w.next((l) => l.id === 1)).result, 'acquired')
      process.kill(w.child.pid, 'SIGSTOP')
      await sleep(900)
      const keys = new IdempotencyKeys({ client, prefix, lockTtlMs: 400 })
      const mine = await keys.claim('pay-7', { fingerprint: 'f' })
      assert.equal(mine.state, 'acquired', 'the lease expired while its holder was paused')
      await mine.complete({ by: 'second' })
      process.kill(w.child.pid, 'SIGCONT')
      w.write(JSON.stringify({ id: 2, op: 'complete', key: 'pay-7', result: { by: 'paused' } }) + '\n')
      assert.equal((await w.next((l) => l.id === 2)).error, codes.LOCK_LOST, 'the paused holder is fenced')
      w.write(JSON.stringify({ id: 3, op: 'stats' }) + '\n')
      assert.equal((await w.next((l) => l.id === 3)).result.lost, 1, 'counted as lost')
      const seen = await keys.claim('pay-7', { fingerprint: 'f' })
      assert.equal(seen.state, 'completed')
      assert.deepEqual(seen.result, { by: 'second' })
    } finally {
      await w.stop()
      await client.close()
      await server.stop()
    }
  })
})

describe('idempotency middleware', () => {
  test('concurrent duplicates in one process: one handler run per key; retries replay', async () => {
    await withApp(
      {},
      {
        '/pay': async (req, res) => {
          await sleep(100)
          res.status(201).json({ charged: req.body.amount })
        },
      },
      async ({ url, runs }) => {
        const rs = await Promise.all(
          Array.from({ length: 10 }, (_, k) =>
            Array.from({ length: 8 }, () => post(`${url}/pay`, { key: `k-${k}`, body: { amount: k } })),
          ).flat(),
        )
        for (let k = 0; k < 10; k++) assert.equal(runs.get(`k-${k}`), 1, `k-${k} ran once`)
        const statuses = rs.map((r) => r.status)
        assert.equal(statuses.filter((s) => s === 201).length >= 10, true)
        for (const r of rs.filter((r) => r.status === 409)) {
          assert.equal(r.headers['content-type'], 'application/problem+json')
          assert.equal(r.headers['retry-after'], '1')
          assert.equal(r.json.status, 409)
        }
        assert.deepEqual(new Set(statuses), new Set(statuses.filter((s) => s === 201 || s === 409)))
        const again = await post(`${url}/pay`, { key: 'k-3', body: { amount: 3 } })
        assert.equal(again.status, 201)
        assert.equal(again.headers['idempotent-replayed'], 'true')
        assert.deepEqual(again.json, { charged: 3 })
        assert.equal(runs.get('k-3'), 1)
      },
    )
  })

  test('replay fidelity: json, send, write + end, status().end(), binary, allow-listed headers', async () => {
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0xff, 0x00, 0xfe])
    await withApp(
      {},
      {
        '/json': (req, res) =>
          res
            .status(201)
            .set('location', '/orders/1')
            .set('x-private', 's')
            .json({ a: [1, 2] }),
        '/send': (req, res) => res.status(202).type('text').send('plain ünïcode'),
        '/stream': (req, res) => {
          res.statusCode = 200
          res.setHeader('content-type', 'text/csv')
          res.write('a,b\n')
          res.write(Buffer.from('1,2\n'))
          res.end('3,4\n')
        },
        '/empty': (req, res) => res.status(204).end(),
        '/binary': (req, res) => res.type('image/png').send(png),
      },
      async ({ url, runs }) => {
        for (const path of ['/json', '/send', '/stream', '/empty', '/binary']) {
          const key = `fid${path}`
          const first = await post(url + path, { key })
          const second = await post(url + path, { key })
          assert.equal(runs.get(key), 1, `${path}: one run`)
          assert.equal(first.headers['idempotent-replayed'], undefined)
          assert.equal(second.headers['idempotent-replayed'], 'true', path)
          assert.equal(second.status, first.status, `${path}: status`)
          assert.deepEqual(second.body, first.body, `${path}: body bytes`)
          assert.equal(second.headers['content-type'], first.headers['content-type'], `${path}: content-type`)
        }
        const j = await post(url + '/json', { key: 'fid/json' })
        assert.equal(j.headers.location, '/orders/1', 'allow-listed header replayed')
        assert.equal(j.headers['x-private'], undefined, 'other headers are not')
        assert.deepEqual((await post(url + '/binary', { key: 'fid/binary' })).body, png)
      },
    )
  })

  test('mismatch 422, required 400, malformed 400, methods, 5xx and exceptions not stored', async () => {
    let fail = true
    await withApp(
      { required: true },
      {
        '/pay': (req, res) => res.status(200).json({ ok: req.body?.amount }),
        '/flaky': (req, res) => {
          if (fail) return res.status(503).json({ retry: true })
          res.json({ ok: true })
        },
        '/throws': async () => {
          throw new Error('card declined by a bug')
        },
      },
      async ({ url, runs }) => {
        assert.equal((await post(`${url}/pay`, { key: 'm', body: { amount: 1 } })).status, 200)
        const mm = await post(`${url}/pay`, { key: 'm', body: { amount: 2 } })
        assert.equal(mm.status, 422)
        assert.equal(mm.headers['content-type'], 'application/problem+json')
        assert.equal(mm.json.status, 422)
        const other = await post(`${url}/pay?x=1`, { key: 'm', body: { amount: 1 } })
        assert.equal(other.status, 422, 'another URL is another request')
        assert.equal(runs.get('m'), 1)
        const missing = await post(`${url}/pay`, {})
        assert.equal(missing.status, 400)
        assert.equal(missing.headers['content-type'], 'application/problem+json')
        assert.match(missing.json.title, /Idempotency-Key is missing/)
        for (const bad of ['', '"unterminated', '"a"b"', 'two words', 'a,b', 'x'.repeat(256), '"\\n"'])
          assert.equal((await post(`${url}/pay`, { key: bad })).status, 400, `malformed ${JSON.stringify(bad)}`)
        // A structured-field string and the same bare token are one key.
        assert.equal((await post(`${url}/pay`, { key: '"sf-1"', body: { amount: 5 } })).status, 200)
        const r = await post(`${url}/pay`, { key: 'sf-1', body: { amount: 5 } })
        assert.equal(r.headers['idempotent-replayed'], 'true')
        // GET is not protected.
        assert.equal((await post(`${url}/pay`, { method: 'GET', raw: '' })).status, 200)
        // 5xx: not stored, a retry runs again.
        assert.equal((await post(`${url}/flaky`, { key: 'f' })).status, 503)
        fail = false
        const ok = await post(`${url}/flaky`, { key: 'f' })
        assert.equal(ok.status, 200)
        assert.equal(runs.get('f'), 2)
        // An exception (Express answers 500): not stored.
        assert.equal((await post(`${url}/throws`, { key: 't' })).status, 500)
        assert.equal((await post(`${url}/throws`, { key: 't' })).status, 500)
        assert.equal(runs.get('t'), 2)
      },
    )
  })

  test('maxBodyBytes, a client that disconnects, scope, hostile keys', async () => {
    const logs = []
    await withApp(
      { maxBodyBytes: 1000, scope: (req) => req.get('x-user') },
      {
        '/big': (req, res) => res.json({ big: 'x'.repeat(2000) }),
        '/slow': async (req, res) => {
          await sleep(300)
          res.json({ late: true })
        },
        '/pay': (req, res) => res.json({ user: req.get('x-user') }),
      },
      async ({ url, runs, server }) => {
        assert.equal((await post(`${url}/big`, { key: 'b' })).status, 200)
        assert.equal((await post(`${url}/big`, { key: 'b' })).headers['idempotent-replayed'], undefined)
        assert.equal(runs.get('b'), 2, 'a body over maxBodyBytes is not stored')
        // Disconnect before the response ends: the key is released.
        await new Promise((resolve) => {
          const req = http.request(`${url}/slow`, {
            method: 'POST',
            headers: { 'idempotency-key': 'gone', 'content-type': 'application/json' },
          })
          req.on('error', () => resolve())
          req.end('{}')
          setTimeout(() => {
            req.destroy()
            resolve()
          }, 100)
        })
        await sleep(100)
        const after = await post(`${url}/slow`, { key: 'gone' })
        assert.equal(after.status, 200)
        assert.equal(after.headers['idempotent-replayed'], undefined, 'runs again')
        // Scope: the same key for two users is two keys; neither replays the other's.
        const a = await post(`${url}/pay`, { key: 'same', headers: { 'x-user': 'alice' } })
        const b = await post(`${url}/pay`, { key: 'same', headers: { 'x-user': 'bob' } })
        assert.deepEqual([a.json.user, b.json.user], ['alice', 'bob'])
        assert.equal(b.headers['idempotent-replayed'], undefined)
        const a2 = await post(`${url}/pay`, { key: 'same', headers: { 'x-user': 'alice' } })
        assert.equal(a2.json.user, 'alice')
        assert.equal(a2.headers['idempotent-replayed'], 'true')
        // A scope cannot smuggle a key into another scope: "a:b" + "c" is not "a" + "b:c".
        await post(`${url}/pay`, { key: 'c', headers: { 'x-user': 'a:b' } })
        const smuggled = await post(`${url}/pay`, { key: 'b:c', headers: { 'x-user': 'a' } })
        assert.equal(smuggled.headers['idempotent-replayed'], undefined)
        // Hostile keys: braces (a hash tag), the longest key, a binary header value.
        for (const key of ['{x}', '{}', '}{', 'k'.repeat(255), '"{\\"q\\"}"']) {
          const r1 = await post(`${url}/pay`, { key, headers: { 'x-user': 'h' } })
          const r2 = await post(`${url}/pay`, { key, headers: { 'x-user': 'h' } })
          assert.equal(r1.status, 200, key)
          assert.equal(r2.headers['idempotent-replayed'], 'true', key)
        }
        const bin = await post(`${url}/pay`, { key: 'ab\u00ff\u0080', headers: { 'x-user': 'h' } }).catch(() => null)
        assert.ok(!bin || bin.status === 400, 'a binary key is rejected')
        const keysInRedis = await server.cli('DBSIZE')
        assert.ok(Number(keysInRedis) > 0)
        logs.push(keysInRedis)
      },
    )
  })

  test('a response over maxBodyBytes, and one whose lease was lost, are logged once through the client logger', async () => {
    const server = await startRedis()
    const lines = []
    const client = new RedisClient({ url: server.url, logger: (level, message) => lines.push([level, message]) })
    const app = express()
    const prefix = uniquePrefix('idem')
    const mw = idempotency({ client, prefix, maxBodyBytes: 10 })
    app.post('/big', mw, (req, res) => res.send('x'.repeat(100)))
    // Another holder takes the key while the handler runs (as after a pause past the lease).
    app.post('/stolen', mw, async (req, res) => {
      await server.cli('SET', `${prefix}${req.get('idempotency-key')}`, 'p:other:fp', 'PX', '10000')
      res.send('ok')
    })
    const h = await listen(app)
    try {
      assert.equal(await client.ready(5000), true)
      for (let i = 0; i < 3; i++) assert.equal((await post(`${h.url}/big`, { key: `b${i}` })).body.length, 100)
      await sleep(100)
      const warned = lines.filter(([level, m]) => level === 'warn' && /maxBodyBytes/.test(m))
      assert.equal(warned.length, 1, JSON.stringify(lines))
      assert.match(warned[0][1], /more than 10 bytes/)
      for (let i = 0; i < 3; i++) assert.equal((await post(`${h.url}/stolen`, { key: `s${i}` })).status, 200)
      await sleep(100)
      const lost = lines.filter(([level, m]) => level === 'warn' && /lease was lost/.test(m))
      assert.equal(lost.length, 1, JSON.stringify(lines))
      assert.equal(mw.keys.stats().lost, 3)
    } finally {
      await h.close()
      await client.close()
      await server.stop()
    }
  })

  test('an async scope is awaited (never the text of a promise)', async () => {
    await withApp(
      { scope: async (req) => `user-${req.get('x-user')}` },
      { '/pay': (req, res) => res.json({ user: req.get('x-user') }) },
      async ({ url, server, mw }) => {
        await post(`${url}/pay`, { key: 'k', headers: { 'x-user': '1' } })
        const other = await post(`${url}/pay`, { key: 'k', headers: { 'x-user': '2' } })
        assert.equal(other.headers['idempotent-replayed'], undefined, 'another scope')
        assert.equal(other.json.user, '2')
        assert.equal(await server.cli('EXISTS', `${mw.keys.prefix}user-1:k`), '1')
      },
    )
  })

  test('Redis round trips per request: 2 for a new key, 1 for a replay', async () => {
    await withApp({}, { '/pay': (req, res) => res.json({ ok: 1 }) }, async ({ url, server }) => {
      await post(`${url}/pay`, { key: 'warm' })
      const a = await scriptCalls(server)
      await post(`${url}/pay`, { key: 'new-1' })
      const b = await scriptCalls(server)
      await post(`${url}/pay`, { key: 'new-1' })
      const c = await scriptCalls(server)
      assert.equal(b - a, 2, 'claim + store')
      assert.equal(c - b, 1, 'one claim answers the replay')
    })
  })

  test('two app processes: exactly one handler run per key', async () => {
    const server = await startRedis()
    const prefix = uniquePrefix('idem')
    const env = { ...process.env, REDIS_URL: server.url, PREFIX: prefix }
    const ws = await Promise.all([spawnNode(WORKER, [], { env }), spawnNode(WORKER, [], { env })])
    try {
      const ports = []
      for (const w of ws) ports.push((await w.next((l) => l.ready === true, 15_000)).port)
      const rs = await Promise.all(
        Array.from({ length: 20 }, (_, k) =>
          Array.from({ length: 6 }, (_, i) =>
            post(`http://127.0.0.1:${ports[i % 2]}/pay`, { key: `x-${k}`, body: { amount: k, ms: 80 } }),
          ),
        ).flat(),
      )
      await sleep(100)
      const ran = new Map()
      for (const w of ws) for (const l of w.lines.filter((l) => l.ran)) ran.set(l.ran, (ran.get(l.ran) || 0) + 1)
      for (let k = 0; k < 20; k++) assert.equal(ran.get(`x-${k}`), 1, `x-${k}: one run across both processes`)
      assert.ok(rs.every((r) => r.status === 201 || r.status === 409))
      for (let k = 0; k < 20; k++) {
        const r = await post(`http://127.0.0.1:${ports[k % 2]}/pay`, { key: `x-${k}`, body: { amount: k, ms: 80 } })
        assert.equal(r.status, 201)
        assert.equal(r.json.amount, k)
        assert.equal(r.headers['idempotent-replayed'], 'true')
      }
    } finally {
      for (const w of ws) await w.stop()
      await server.stop()
    }
  })

  test("Redis unavailable: 'deny' answers 503 within the deadline and runs nothing; 'memory' and 'allow'", async () => {
    const port = await freePort()
    const client = new RedisClient({ url: `redis://127.0.0.1:${port}`, logger: false })
    const runs = { deny: 0, memory: 0, allow: 0 }
    const app = express()
    for (const policy of /** @type {const} */ (['deny', 'memory', 'allow']))
      app.post(`/${policy}`, idempotency({ client, onUnavailable: policy }), (req, res) => {
        runs[policy]++
        res.json({ policy })
      })
    const h = await listen(app)
    try {
      const t0 = performance.now()
      const d = await post(`${h.url}/deny`, { key: 'k' })
      assert.equal(d.status, 503)
      assert.equal(d.headers['retry-after'], '1')
      assert.equal(d.headers['content-type'], 'application/problem+json')
      assert.ok(performance.now() - t0 < 1000, 'within the command deadline')
      assert.equal(runs.deny, 0, 'the handler did not run')
      assert.equal((await post(`${h.url}/memory`, { key: 'k' })).status, 200)
      const m2 = await post(`${h.url}/memory`, { key: 'k' })
      assert.equal(m2.headers['idempotent-replayed'], 'true', 'memory replays in this process')
      assert.equal(runs.memory, 1)
      await post(`${h.url}/allow`, { key: 'k' })
      await post(`${h.url}/allow`, { key: 'k' })
      assert.equal(runs.allow, 2, 'allow runs unprotected')
    } finally {
      await h.close()
      await client.close()
    }
    // A hung Redis (blackhole): 503 within the deadline too.
    const server = await startRedis()
    const proxy = await startProxy(server.port)
    const hung = new RedisClient({ url: `redis://127.0.0.1:${proxy.port}`, logger: false, commandTimeoutMs: 300 })
    const app2 = express()
    let ran = 0
    app2.post('/pay', idempotency({ client: hung }), (req, res) => {
      ran++
      res.json({})
    })
    const h2 = await listen(app2)
    try {
      assert.equal(await hung.ready(5000), true)
      proxy.setMode('blackhole')
      const t0 = performance.now()
      const r = await post(`${h2.url}/pay`, { key: 'hang' })
      assert.equal(r.status, 503)
      assert.ok(performance.now() - t0 < 1000, `within the deadline: ${performance.now() - t0}`)
      assert.equal(ran, 0)
    } finally {
      await h2.close()
      await hung.close()
      await proxy.close()
      await server.stop()
    }
  })
})
