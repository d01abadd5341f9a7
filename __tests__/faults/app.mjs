// Child process of the fault suite: a real Express 5 app with express-rate-limit on one store,
// plus (redis-guard only) a lock workload, a cache workload, an idempotency workload and a
// background increment loop.
//
// argv[2] = JSON {
//   kind: 'redis-guard' | 'rlr-ioredis',
//   clientOptions: object   redis-guard RedisClient options (DEFAULT config: only url/tls/...)
//   url: string             rlr-ioredis: the ioredis URL
//   lockKey: string         key of the lock workload
// }
// stdout/stderr carry the library's own logging (the parent scans them for secrets).
// IPC: { id, cmd, ...args } -> { id, result } | { id, error }. Sends { type: 'ready', port }.
//
// Every increment is on its own key (`h:<request id>` for HTTP, `bg:<n>` for the background
// loop), so the parent can tell, key by key, an increment counted twice (value 2) from one
// applied without an acknowledgement (value 1, not acknowledged) or lost (acknowledged, absent).

import { createRequire } from 'node:module'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { serve, unhandled } from './child.mjs'

const require = createRequire(import.meta.url)
const express = require('express')
const { rateLimit } = require('express-rate-limit')

const p = JSON.parse(process.argv[2])
const now = () => performance.timeOrigin + performance.now()
// Event-loop delay of this process: tells a stall of the (busy) machine from a slow store.
const loopDelay = monitorEventLoopDelay({ resolution: 10 })
loopDelay.enable()

// ---- things the parent asserts on ------------------------------------------------------------
/** Keys whose increment was acknowledged by Redis -> when (epoch ms). */
const acked = new Map()
/** Error messages that reached the caller (HTTP 500 bodies, lock rejections). */
const surfaced = []
let httpErrors = 0
/** Durations (ms) and start times of store.increment calls. */
const calls = []

let store
let client
let extraClient
let closeStore

if (p.kind === 'redis-guard') {
  const { RedisClient, RedisStore } = require('../../index.js')
  client = new RedisClient(p.clientOptions)
  store = new RedisStore({ client })
  // Instrumentation: an increment's public `source` says whether Redis counted it.
  const increment = store.increment.bind(store)
  store.increment = async (key) => {
    const out = await increment(key)
    if (out.source === 'redis') acked.set(key, now())
    return out
  }
  closeStore = async () => {
    await store.shutdown()
    await client.close()
    if (extraClient) await extraClient.close()
  }
} else if (p.kind === 'rlr-ioredis') {
  // The peer, exactly as its README says, with ioredis defaults.
  const { Redis } = require('ioredis')
  const { RedisStore } = require('rate-limit-redis')
  const redis = new Redis(p.url)
  redis.on('error', () => {}) // an app without a listener gets ioredis' console noise only
  store = new RedisStore({ sendCommand: (command, ...args) => redis.call(command, ...args) })
  const inc = store.increment.bind(store)
  store.increment = async (key) => {
    const r = await inc(key)
    acked.set(key, now())
    return r
  }
  closeStore = async () => {
    redis.disconnect()
  }
} else {
  throw new Error(`unknown kind ${p.kind}`)
}

// Time every increment (whatever the store).
{
  const inc = store.increment.bind(store)
  store.increment = async (key) => {
    const t = now()
    try {
      return await inc(key)
    } finally {
      if (calls.length < 200_000) calls.push([t, now() - t])
    }
  }
}

// ---- the Express app ---------------------------------------------------------------------------
const app = express()
app.disable('x-powered-by')
app.disable('etag')
app.use(
  rateLimit({
    windowMs: 60_000,
    limit: 1_000_000_000, // never 429: the suite measures the store, not the limit
    store,
    keyGenerator: (req) => `h:${req.get('x-id') || 'none'}`,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    validate: false,
  }),
)
app.get('/', (req, res) => {
  res.type('text/plain').send('ok')
})
// express-rate-limit hands a store error to next(): the caller sees a 500.
app.use((err, req, res, next) => {
  httpErrors++
  if (surfaced.length < 50) surfaced.push(String(err && err.message))
  res
    .status(500)
    .type('text/plain')
    .send(`store error: ${err && err.code}`)
})

const server = app.listen(0, '127.0.0.1', () => {
  process.send({ type: 'ready', port: server.address().port })
})
server.keepAliveTimeout = 65_000

// ---- lock workload (redis-guard only) --------------------------------------------------------
// Two workers, each on its own RedisClient (two "instances"): worker 0 shares the store's client.
const LOCK_TTL_MS = 2000
const HOLD_MS = 15
let locksRunning = false
let lockLoops = []
const lockEvents = []
const lockErrors = []

async function lockWorker(w, c) {
  while (locksRunning) {
    const tReq = now()
    let lease
    try {
      lease = await c.lock(p.lockKey, { ttlMs: LOCK_TTL_MS, waitMs: 200 })
    } catch (e) {
      lockErrors.push({ w, t: tReq, code: e.code, message: String(e.message) })
      if (surfaced.length < 50) surfaced.push(String(e.message))
      await sleep(25)
      continue
    }
    if (!lease) continue
    const tGrant = now()
    let lost = false
    lease.signal.addEventListener('abort', () => {
      lost = true
    })
    await sleep(HOLD_MS)
    const tRelReq = now()
    let released
    try {
      released = await lease.release()
    } catch (e) {
      released = `error:${e.code}`
      if (surfaced.length < 50) surfaced.push(String(e.message))
    }
    lockEvents.push({
      w,
      source: lease.source,
      fence: lease.fence,
      tReq,
      tGrant,
      tRelReq,
      tRelDone: now(),
      released,
      lost,
      ttl: LOCK_TTL_MS,
    })
    await sleep(Math.random() * 10)
  }
}

// ---- cache workload (redis-guard only) ----------------------------------------------------------
// Two loops of getOrSet / get / set / delete on 50 keys of a Cache (default options) on the
// store's client. Every call is timed; a factory that runs while another runs for the same key
// in this process is an overlap (getOrSet promises one at a time).
let cacheRunning = false
let cacheLoops = []
let cache
const cacheCalls = []
const cacheErrors = []
const filling = new Map()
let cacheOverlaps = 0
async function cacheWorker(w) {
  for (let i = w; cacheRunning; i += 2) {
    const key = `item:${i % 50}`
    const t = now()
    try {
      if (i % 7 === 0) await cache.set(key, { i, w })
      else if (i % 11 === 0) await cache.delete(key)
      else if (i % 5 === 0) await cache.get(key)
      else
        await cache.getOrSet(key, async () => {
          filling.set(key, (filling.get(key) || 0) + 1)
          if (filling.get(key) > 1) cacheOverlaps++
          await sleep(5)
          filling.set(key, filling.get(key) - 1)
          return { i, w }
        })
    } catch (e) {
      cacheErrors.push({ w, t, code: e.code, message: String(e.message) })
      if (surfaced.length < 50) surfaced.push(String(e.message))
    }
    if (cacheCalls.length < 200_000) cacheCalls.push(now() - t)
    await sleep(2)
  }
}

// ---- idempotency workload (redis-guard only) ----------------------------------------------------
// Two loops walk the same keys `pay:0`, `pay:1`, ... (two clients retrying one payment each):
// claim (IdempotencyKeys, default options: `'deny'`, 10 s lease), and when acquired run the
// "charge" (5 ms) and complete; in progress or Redis unavailable: retry after 10 / 20 ms, for
// at most 1.5 s; completed: a replay. Every charge is recorded with its time and the claim's
// source, so the parent counts charges per key and tells a second charge that a data loss
// explains from one that nothing does.
let idemRunning = false
let idemLoops = []
let idem
/** key -> [{ t, source }] of each charge */
const idemCharges = new Map()
const idemCalls = []
const idemCodes = {}
const idemCompleteCodes = {}
const idemCounts = { keys: 0, replays: 0, conflicts: 0, mismatches: 0, gaveUp: 0 }
async function idemKey(key) {
  const until = now() + 1500
  while (idemRunning && now() < until) {
    const t = now()
    let c
    try {
      c = await idem.claim(key, { fingerprint: 'charge' })
    } catch (e) {
      idemCodes[e.code] = (idemCodes[e.code] || 0) + 1
      if (idemCalls.length < 200_000) idemCalls.push(now() - t)
      await sleep(20)
      continue
    }
    if (idemCalls.length < 200_000) idemCalls.push(now() - t)
    if (c.state === 'acquired') {
      const list = idemCharges.get(key) || []
      list.push({ t: now(), source: c.source })
      idemCharges.set(key, list)
      await sleep(5)
      try {
        await c.complete({ charged: key })
      } catch (e) {
        idemCompleteCodes[e.code] = (idemCompleteCodes[e.code] || 0) + 1
      }
      return
    }
    if (c.state === 'completed') return void idemCounts.replays++
    if (c.state === 'mismatch') return void idemCounts.mismatches++
    idemCounts.conflicts++
    await sleep(10)
  }
  if (idemRunning) idemCounts.gaveUp++
}
async function idemWorker(w) {
  for (let k = 0; idemRunning; k++) {
    if (w === 0) idemCounts.keys++
    await idemKey(`pay:${k}`)
    await sleep(2 + w)
  }
}

// ---- background increments (redis-guard only) ---------------------------------------------
let bgRunning = false
let bgLoop
let bgSeq = 0
let bgSent = 0
async function bgWorker(everyMs, perTick) {
  while (bgRunning) {
    for (let i = 0; i < perTick; i++) {
      bgSent++
      store.increment(`bg:${bgSeq++}`).catch((e) => {
        if (surfaced.length < 50) surfaced.push(String(e.message))
      })
    }
    await sleep(everyMs)
  }
}

// ---- IPC -----------------------------------------------------------------------------------------
const handlers = {
  async stats() {
    const health = client ? await client.healthCheck() : undefined
    return {
      unhandled: unhandled.count,
      unhandledReasons: unhandled.reasons,
      httpErrors,
      surfaced,
      acked: [...acked.entries()],
      clientStats: client ? client.stats() : undefined,
      available: client ? client.isAvailable() : undefined,
      health,
      fallbackSize: typeof store.fallbackSize === 'function' ? store.fallbackSize() : undefined,
      rssMb: process.memoryUsage().rss / 1048576,
      loopDelayMaxMs: loopDelay.max / 1e6,
      loopDelayP99Ms: loopDelay.percentile(99) / 1e6,
    }
  },
  async health() {
    const t = now()
    const h = await client.healthCheck()
    return { ...h, tookMs: now() - t, available: client.isAvailable() }
  },
  async available() {
    return client.isAvailable()
  },
  /** One increment now, timed: { ms, fromRedis, totalHits }. */
  async probe({ key }) {
    const t = now()
    const before = acked.get(key)
    const r = await store.increment(key)
    return { ms: now() - t, fromRedis: acked.get(key) !== before, totalHits: r.totalHits, at: t }
  },
  /** `n` increments at once on distinct keys: { maxMs, p50Ms, fromRedis }. */
  async burst({ n, prefix }) {
    const t = now()
    const ds = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const t1 = now()
        await store.increment(`${prefix}${i}`)
        return now() - t1
      }),
    )
    ds.sort((a, b) => a - b)
    let fromRedis = 0
    for (let i = 0; i < n; i++) if (acked.has(`${prefix}${i}`)) fromRedis++
    return { n, maxMs: ds[ds.length - 1], p50Ms: ds[n >> 1], totalMs: now() - t, fromRedis }
  },
  async locksStart() {
    if (!client || locksRunning) return false
    const { RedisClient } = require('../../index.js')
    extraClient ??= new RedisClient(p.clientOptions)
    locksRunning = true
    lockLoops = [lockWorker(0, client), lockWorker(1, extraClient)]
    return true
  },
  async locksStop() {
    locksRunning = false
    await Promise.all(lockLoops)
    return { events: lockEvents, errors: lockErrors }
  },
  async cacheStart() {
    if (!client || cacheRunning) return false
    const { Cache } = require('../../index.js')
    cache ??= new Cache({ client, prefix: 'c:' })
    cacheRunning = true
    cacheLoops = [cacheWorker(0), cacheWorker(1)]
    return true
  },
  async cacheStop() {
    cacheRunning = false
    await Promise.all(cacheLoops)
    const codes = {}
    for (const e of cacheErrors) codes[e.code] = (codes[e.code] || 0) + 1
    const ms = [...cacheCalls].sort((a, b) => a - b)
    return {
      calls: ms.length,
      errors: cacheErrors.length,
      errorCodes: codes,
      p99Ms: ms[Math.floor(ms.length * 0.99)] ?? 0,
      maxMs: ms[ms.length - 1] ?? 0,
      overlaps: cacheOverlaps,
      stats: cache.stats(),
    }
  },
  async idemStart() {
    if (!client || idemRunning) return false
    const { IdempotencyKeys } = require('../../index.js')
    idem ??= new IdempotencyKeys({ client, prefix: 'i:' })
    idemRunning = true
    idemLoops = [idemWorker(0), idemWorker(1)]
    return true
  },
  async idemStop() {
    idemRunning = false
    await Promise.all(idemLoops)
    const ms = [...idemCalls].sort((a, b) => a - b)
    return {
      ...idemCounts,
      claims: ms.length,
      p99Ms: ms[Math.floor(ms.length * 0.99)] ?? 0,
      maxMs: ms[ms.length - 1] ?? 0,
      errorCodes: idemCodes,
      completeErrorCodes: idemCompleteCodes,
      charges: [...idemCharges.entries()],
    }
  },
  async loopDelayReset() {
    loopDelay.reset()
    return true
  },
  async bgStart({ everyMs = 5, perTick = 2 } = {}) {
    if (!client || bgRunning) return false
    bgRunning = true
    bgLoop = bgWorker(everyMs, perTick)
    return true
  },
  async bgStop() {
    bgRunning = false
    await bgLoop
    await sleep(400) // let the last calls settle (at most one deadline)
    return { sent: bgSent }
  },
  /** Store call durations since `from` (wall-clock ms): [start, ms] pairs. */
  async calls({ from = 0 } = {}) {
    return calls.filter(([t]) => t >= from)
  },
  async close() {
    locksRunning = false
    bgRunning = false
    cacheRunning = false
    idemRunning = false
    await Promise.all(lockLoops)
    await Promise.all(cacheLoops)
    await Promise.all(idemLoops)
    await bgLoop
    server.closeAllConnections()
    await new Promise((r) => server.close(r))
    await closeStore()
    return { unhandled: unhandled.count }
  },
}

serve(handlers, { ready: false }) // ready (with the port) once listening
