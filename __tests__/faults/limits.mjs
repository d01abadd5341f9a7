// Fault bodies for the limits beyond the fixed window: the RateLimiter (each algorithm) and the
// framework adapters' core (fastifyStore's incr, ThrottlerStorageRedisGuard's increment) under
// the faults of FAULTS.md that touch their new paths — Redis killed under load, a hang (kill
// -STOP), NOSCRIPT (SCRIPT FLUSH under load), out of memory, and a cluster reshard under load.
// Each body runs in this process with the DEFAULT client configuration, drives ~600 calls over
// ~3 s, each on its own key (so Redis shows, key by key, a call counted twice or an
// acknowledged one lost), provokes the fault and RETURNS FIGURES; the assertions are in
// __tests__/faults-limits.test.mjs, and `npm run faults` prints the figures (bench/faults.mjs).

import { performance } from 'node:perf_hooks'
import { promisify } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'

import { startCluster, startRedis } from '../helpers/redis.mjs'
import { parseClusterNodes, reshard } from '../helpers/topology.mjs'
import { uniquePrefix } from '../helpers/utils.mjs'
import { RateLimiter, RedisClient, ThrottlerStorageRedisGuard, fastifyStore } from '../../index.mjs'

/** The limit of every call: 10 per 10 minutes, so that a key's one call stays visible in Redis. */
const LIMIT = 10
const WINDOW_MS = 600_000
/** GCRA's emission interval at that limit: a key's TAT is its call's time plus this. */
const T_MS = WINDOW_MS / LIMIT

/** The front under test: `call(key)` resolves `{ counted }` (true: Redis counted it; null: unknown). */
function front(kind, algorithm, client, prefix) {
  if (kind === 'limiter') {
    const l = new RateLimiter({ limit: LIMIT, windowMs: WINDOW_MS, algorithm, client, prefix })
    return async (key) => {
      const r = await l.limit(key)
      return { counted: r.source === 'redis' && r.allowed, source: r.source }
    }
  }
  if (kind === 'fastify') {
    const Store = fastifyStore({ client, prefix, algorithm })
    const s = new Store({})
    const incr = promisify((key, cb) => s.incr(key, cb, WINDOW_MS, LIMIT))
    return async (key) => {
      await incr(key)
      return { counted: null }
    }
  }
  const nest = new ThrottlerStorageRedisGuard({ client, prefix, algorithm })
  return async (key) => {
    await nest.increment(key, WINDOW_MS, LIMIT, WINDOW_MS, 'default')
    return { counted: null }
  }
}

/** How many times Redis counted `key` (0: absent), from its stored value. */
async function countedTimes(cli, prefix, algorithm, key, calledAt) {
  const rk = prefix + { 'fixed-window': '', 'sliding-window': 'sw:', gcra: 'gcra:' }[algorithm] + key
  const v = await cli('GET', rk)
  if (!v) return 0
  if (algorithm === 'fixed-window') return Number(v)
  if (algorithm === 'sliding-window') return Number(v.split(':')[1])
  return Math.round((Number(v) / 1000 - calledAt) / T_MS) // the TAT is in µs
}

const pct = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : NaN)

/**
 * Run one fault. `deployment`: 'standalone' or 'cluster'; `drive(ctx)` provokes the fault,
 * `ctx: { at(ms), mark(name), server, cluster, notes }`.
 */
export async function limitsScenario({
  fault,
  variant,
  algorithm = 'fixed-window',
  kind = 'limiter',
  deployment = 'standalone',
  total = 600,
  everyMs = 5,
  drive,
}) {
  const server = deployment === 'standalone' ? await startRedis() : undefined
  const cluster = deployment === 'cluster' ? await startCluster({ primaries: 3 }) : undefined
  const url = server ? server.url : cluster.url
  const cli = server ? (...a) => server.cli(...a) : (...a) => cluster.cli(...a)
  const client = new RedisClient({ url, logger: false })
  const figures = { fault, variant, algorithm, kind, marks: {}, notes: {} }
  try {
    if (!(await client.ready(10_000))) throw new Error(`${fault}: the client did not connect`)
    const prefix = uniquePrefix(`fault-${algorithm}`)
    const call = front(kind, algorithm, client, prefix)
    const t0 = performance.now()
    const ctx = {
      server,
      cluster,
      notes: figures.notes,
      at: async (ms) => {
        const wait = t0 + ms - performance.now()
        if (wait > 0) await sleep(wait)
      },
      mark: (name) => {
        figures.marks[name] = Math.round(performance.now() - t0)
      },
    }
    const records = []
    const load = (async () => {
      const pending = []
      for (let i = 0; i < total; i++) {
        await ctx.at(i * everyMs)
        const rec = { key: `k${i}`, start: performance.now() - t0, at: Date.now() }
        records.push(rec)
        pending.push(
          call(rec.key).then(
            (r) => Object.assign(rec, r, { ms: performance.now() - t0 - rec.start }),
            (e) => Object.assign(rec, { error: e.code || String(e), ms: performance.now() - t0 - rec.start }),
          ),
        )
      }
      await Promise.all(pending)
    })()
    const fallbacks0 = client.stats().fallbacks
    await Promise.all([load, drive(ctx)])
    figures.fallbacks = client.stats().fallbacks - fallbacks0
    const lat = records.map((r) => r.ms).sort((a, b) => a - b)
    const errors = records.filter((r) => r.error)
    figures.total = records.length
    figures.servedPct = (100 * (records.length - errors.length)) / records.length
    figures.errors = errors.length
    figures.errorCodes = [...new Set(errors.map((r) => r.error))]
    figures.p50 = pct(lat, 0.5)
    figures.p99 = pct(lat, 0.99)
    figures.max = lat[lat.length - 1]
    figures.sources = {}
    for (const r of records) if (r.source) figures.sources[r.source] = (figures.sources[r.source] || 0) + 1
    // Back on Redis after the fault.
    const tb = performance.now()
    let back = false
    for (let i = 0; i < 200 && !back; i++) {
      back = client.isAvailable() && (await call(`probe${i}`)).counted !== false
      if (!back) await sleep(50)
    }
    figures.backToRedisMs = back ? Math.round(performance.now() - tb) : null
    // Counts, key by key (the limiter only: the adapters do not say who counted). A key acked
    // before a data loss (the kill: the harness's servers do not persist) is not counted lost.
    if (kind === 'limiter') {
      const lossEnd = figures.marks.restarted ?? -1
      let acked = 0
      let duplicated = 0
      let lost = 0
      let lostToDataLoss = 0
      let appliedUnacked = 0
      for (const r of records) {
        const n = await countedTimes(cli, prefix, algorithm, r.key, r.at)
        if (n > 1) duplicated++
        if (r.counted) {
          acked++
          if (n === 0) {
            if (r.start < lossEnd) lostToDataLoss++
            else lost++
          }
        } else if (n === 1) appliedUnacked++
      }
      figures.counts = { acked, duplicated, lost, lostToDataLoss, appliedUnacked }
    }
    return figures
  } finally {
    await client.close()
    if (server) await server.stop()
    if (cluster) await cluster.stop()
  }
}

/** The faults, per algorithm / front: [id, () => figures]. */
export function limitsFaults(algorithm, kind = 'limiter') {
  const o = { algorithm, kind }
  return [
    [
      'kill-9',
      () =>
        limitsScenario({
          ...o,
          fault: 'Redis killed under load',
          variant: 'kill -9 at 0.8 s, restarted at 2 s',
          drive: async (ctx) => {
            await ctx.at(800)
            ctx.mark('kill')
            await ctx.server.kill()
            await ctx.at(2000)
            await ctx.server.restart()
            ctx.mark('restarted')
          },
        }),
    ],
    [
      'hang-sigstop',
      () =>
        limitsScenario({
          ...o,
          fault: 'hang',
          variant: 'kill -STOP for 1 s',
          drive: async (ctx) => {
            await ctx.at(800)
            await ctx.server.pause()
            ctx.mark('stop')
            await ctx.at(1800)
            await ctx.server.resume()
            ctx.mark('cont')
          },
        }),
    ],
    [
      'noscript',
      () =>
        limitsScenario({
          ...o,
          fault: 'NOSCRIPT',
          variant: 'SCRIPT FLUSH every 100 ms',
          drive: async (ctx) => {
            ctx.notes.flushes = 0
            for (let t = 200; t < 2800; t += 100) {
              await ctx.at(t)
              await ctx.server.cli('SCRIPT', 'FLUSH')
              ctx.notes.flushes++
            }
          },
        }),
    ],
    [
      'oom',
      () =>
        limitsScenario({
          ...o,
          fault: 'out of memory',
          variant: 'maxmemory 1mb, noeviction, filled, 0.8–2.3 s',
          drive: async (ctx) => {
            await ctx.at(800)
            await ctx.server.cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction')
            await ctx.server.cli('DEBUG', 'POPULATE', '20000', 'fill:', '64')
            await ctx.server.cli('CONFIG', 'SET', 'maxmemory', '1mb')
            ctx.mark('oom')
            await ctx.at(2300)
            await ctx.server.cli('CONFIG', 'SET', 'maxmemory', '0')
            ctx.mark('restored')
          },
        }),
    ],
    [
      'cluster-reshard',
      () =>
        limitsScenario({
          ...o,
          deployment: 'cluster',
          total: 1200,
          fault: 'cluster slot migration',
          variant: 'reshard 2000 slots under load',
          drive: async (ctx) => {
            await ctx.at(300)
            const c = ctx.cluster
            const nodes = parseClusterNodes(await c.nodes[0].cli('CLUSTER', 'NODES'))
            const count = (n) => n.ranges.reduce((s, [x, y]) => s + y - x + 1, 0)
            const from = nodes.filter((n) => n.primary).sort((x, y) => count(y) - count(x))[0]
            const to = nodes.find((n) => n.primary && n.id !== from.id)
            ctx.mark('reshard')
            const r = await reshard({ port: from.port, fromId: from.id, toId: to.id, slots: 2000 })
            ctx.mark('resharded')
            ctx.notes.reshardCode = r.code
          },
        }),
    ],
  ]
}
