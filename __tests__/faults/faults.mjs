// The fault bodies: one async function per row of /work/shared/FAULTS.md. Each starts its own
// real servers (and proxy), runs the Express app child (app.mjs) with the DEFAULT redis-guard
// configuration (or rate-limit-redis + ioredis, `kind: 'rlr-ioredis'`) under an HTTP workload
// and a lock workload, provokes the fault, stops everything it started and RETURNS FIGURES.
// Assertions live in __tests__/faults.test.mjs; bench/faults.mjs prints the figures.

import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { createRequire } from 'node:module'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort, makeCerts, parseInfo, startProxy, startRedis } from '../helpers/redis.mjs'
import {
  DEADLINE_MS,
  accountIncrements,
  analyseLocks,
  at,
  findSecrets,
  forkChild,
  httpLoad,
  redisValues,
  startApp,
  summarize,
  until,
} from './lib.mjs'

const require = createRequire(import.meta.url)

/** A fresh password that must never show up in a log line or an error. */
const secret = (tag = 'pw') => `${tag}-${randomBytes(9).toString('hex')}`
const urlOf = (port, password, { scheme = 'redis', user = '' } = {}) =>
  `${scheme}://${password !== undefined ? `${user}:${encodeURIComponent(password)}@` : ''}127.0.0.1:${port}`

const connectionsReceived = async (server) =>
  Number(parseInfo(await server.cli('INFO', 'stats')).total_connections_received)

/**
 * Run one scenario. Options:
 *  fault, variant          labels
 *  kind                    'redis-guard' (default) | 'rlr-ioredis'
 *  clientOptions           redis-guard RedisClient options (default configuration: url etc.)
 *  url                     the URL (rlr-ioredis)
 *  secrets                 strings that must appear nowhere
 *  total, durationMs, timeoutMs   the HTTP workload (httpLoad)
 *  waitReady               wait until the client is connected before the load (default true)
 *  drive(ctx)              provokes the fault; ctx: { t0, at(ms), mark(name), lose(fn), dataLoss[], app, notes }
 *                          (`await ctx.lose(fn)` runs a command that loses data and records when)
 *  count                   the server (or () => server) whose rl:* keys are compared with the
 *                          acknowledged increments; omit when nothing can be counted
 *  recover                 expect the client back on Redis after the fault (default true)
 *  locks, cache, idem, bg  run the lock workload / the cache workload / the idempotency workload /
 *                          background increments (redis-guard only; each on unless false)
 */
export async function scenario(o) {
  const kind = o.kind ?? 'redis-guard'
  const guard = kind === 'redis-guard'
  const locks = guard && o.locks !== false
  const bg = guard && o.bg !== false
  const cache = guard && o.cache !== false
  const idem = guard && o.idem !== false
  const started = Date.now()
  const app = await startApp({ kind, clientOptions: o.clientOptions, url: o.url })
  const figures = { fault: o.fault, variant: o.variant, kind, notes: {}, marks: {} }
  let closed
  try {
    if (guard && o.waitReady !== false) {
      const up = await until(() => app.ask('available'), { timeout: 10_000, interval: 50 })
      if (!up) throw new Error(`${o.fault}: the app's client did not connect before the fault`)
    } else if (!guard && o.waitReady !== false) {
      await sleep(300)
    }
    if (locks) await app.ask('locksStart')
    if (cache) await app.ask('cacheStart')
    if (idem) await app.ask('idemStart')
    if (bg) await app.ask('bgStart', { everyMs: 10, perTick: 2 })
    await app.ask('loopDelayReset')
    const t0 = Date.now()
    const ctx = {
      t0,
      app,
      dataLoss: [],
      extraKeys: [],
      notes: figures.notes,
      at: (ms) => at(t0, ms),
      mark: (name) => {
        figures.marks[name] = Date.now() - t0
      },
      // The loss happened somewhere while `fn` ran: its [start, end] span is the data-loss event.
      lose: async (fn) => {
        const start = Date.now()
        await fn()
        ctx.dataLoss.push([start, Date.now()])
      },
    }
    const [records] = await Promise.all([
      httpLoad(app.url, {
        total: o.total ?? 200,
        durationMs: o.durationMs ?? 3000,
        timeoutMs: o.timeoutMs ?? 5000,
        idPrefix: 'r',
      }),
      (o.drive ?? (async () => {}))(ctx),
    ])
    figures.loadEndMs = Date.now() - t0
    figures.http = summarize(records)
    figures.records = records.map(({ i, start, ms, status }) => ({ i, start: start - t0, ms, status }))

    if (guard && o.recover !== false) {
      const tr = Date.now()
      const back = await until(() => app.ask('available'), { timeout: o.recoverTimeoutMs ?? 10_000, interval: 50 })
      figures.recoveredAfterLoadMs = back ? Date.now() - tr : null
      const probe = back ? await app.ask('probe', { key: 'post:0' }) : null
      figures.backToRedis = Boolean(probe && probe.fromRedis)
    }
    if (o.after) await o.after(ctx, figures)

    let bgSent = 0
    if (bg) bgSent = (await app.ask('bgStop')).sent
    if (locks) figures.locks = analyseLocks(await app.ask('locksStop', {}, 15_000), ctx.dataLoss)
    if (cache) figures.cache = await app.ask('cacheStop', {}, 15_000)
    if (idem) figures.idem = analyseCharges(await app.ask('idemStop', {}, 15_000), ctx.dataLoss)
    const stats = await app.ask('stats')
    figures.unhandled = stats.unhandled
    figures.unhandledReasons = stats.unhandledReasons
    figures.surfaced = stats.surfaced
    figures.clientStats = stats.clientStats
    figures.health = stats.health
    figures.fallbackSize = stats.fallbackSize
    figures.loopDelayMaxMs = stats.loopDelayMaxMs
    const calls = await app.ask('calls', { from: t0 })
    figures.storeCallMaxMs = calls.length ? Math.max(...calls.map((c) => c[1])) : NaN

    const countOn = typeof o.count === 'function' ? o.count() : o.count
    if (countOn && countOn.running) {
      const values = await redisValues(countOn)
      const sent = [
        ...records.map((r) => r.key),
        ...Array.from({ length: bgSent }, (_, i) => `bg:${i}`),
        ...ctx.extraKeys,
      ]
      figures.counts = accountIncrements(sent, stats.acked, values, { dataLoss: ctx.dataLoss })
      figures.httpFromRedis = records.filter((r) => stats.acked.some(([k]) => k === r.key)).length
    }
    figures.ackedKeys = new Set(stats.acked.map(([k]) => k))

    // A crash: the app died before we asked it to close. Then it must exit by itself, code 0.
    figures.crashes = app.exited() ? 1 : 0
    closed = await app.close()
    figures.exitedCleanly = closed.clean
    figures.logs = app.logs()
    figures.secretsFound = findSecrets(
      o.secrets ?? [],
      figures.logs,
      stats.surfaced,
      stats.health,
      stats.unhandledReasons,
      records.map((r) => r.body).join('\n'),
      figures.locks?.examples ?? '',
    )
  } finally {
    if (!closed) {
      const e = app.exited()
      figures.crashes = e ? 1 : 0
      app.kill()
    }
    figures.elapsedMs = Date.now() - started
  }
  return figures
}

/**
 * Charges per key of the idempotency workload (app.mjs): a key charged twice is explained when a
 * data-loss event lies between its two charges (the record was lost with the data), and
 * unexplained otherwise (what must never happen while Redis is up).
 */
export function analyseCharges(r, dataLoss) {
  let charged = 0
  let twice = 0
  let afterDataLoss = 0
  const examples = []
  const sources = {}
  for (const [key, list] of r.charges) {
    charged++
    for (const c of list) sources[c.source] = (sources[c.source] || 0) + 1
    if (list.length < 2) continue
    twice++
    const explained = list.slice(1).every((c, i) => dataLoss.some(([s, e]) => e >= list[i].t - 50 && s <= c.t + 50))
    if (explained) afterDataLoss++
    else if (examples.length < 5) examples.push({ key, charges: list })
  }
  const { charges: _charges, ...rest } = r
  return { ...rest, charged, twice, afterDataLoss, unexplained: twice - afterDataLoss, sources, examples }
}

/** Requests (records) whose start lies in [fromMs, toMs) of the load. */
export const during = (f, fromMs, toMs) => f.records.filter((r) => r.start >= fromMs && r.start < toMs)
/** How many of `records` were counted in Redis (acknowledged). */
export const fromRedis = (f, records) => records.filter((r) => f.ackedKeys.has(`h:r${r.i}`)).length

// ---------------------------------------------------------------------------------------------
// Baseline
// ---------------------------------------------------------------------------------------------

/** The same workload without a fault (p99 added = fault p99 - this p99). */
export async function baseline({ kind = 'redis-guard', total = 200, durationMs = 3000, viaProxy = false } = {}) {
  const password = secret()
  const server = await startRedis({ password })
  const proxy = viaProxy ? await startProxy(server.port) : null
  try {
    const url = urlOf(proxy ? proxy.port : server.port, password)
    return await scenario({
      fault: 'baseline',
      variant: viaProxy ? 'no fault, via the proxy' : 'no fault',
      kind,
      clientOptions: { url },
      url,
      secrets: [password],
      total,
      durationMs,
      count: server,
    })
  } finally {
    await proxy?.close()
    await server.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// Redis killed under load
// ---------------------------------------------------------------------------------------------

export async function killUnderLoad({
  kind = 'redis-guard',
  total = 200,
  durationMs = 4500,
  timeoutMs = 5000,
  killAt = 1000,
  downMs = 800,
} = {}) {
  const password = secret()
  const server = await startRedis({ password })
  try {
    const url = urlOf(server.port, password)
    return await scenario({
      fault: 'Redis killed under load',
      variant: `kill -9, restarted ${downMs} ms later`,
      kind,
      clientOptions: { url },
      url,
      secrets: [password],
      total,
      durationMs,
      timeoutMs,
      count: server,
      drive: async (ctx) => {
        await ctx.at(killAt)
        ctx.mark('kill')
        await ctx.lose(() => server.kill())
        await ctx.at(killAt + downMs)
        await server.restart()
        ctx.mark('restarted')
      },
    })
  } finally {
    await server.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// Down at start-up
// ---------------------------------------------------------------------------------------------

/** `delayMs: null`: the server never starts (Redis unreachable for the whole run). */
export async function downAtStartup({
  kind = 'redis-guard',
  delayMs = 5000,
  total = 200,
  durationMs = (delayMs ?? 1000) + 4000,
  timeoutMs = 5000,
} = {}) {
  const password = secret()
  const port = await freePort()
  let server
  try {
    const url = urlOf(port, password)
    const never = delayMs === null
    return await scenario({
      fault: never ? 'Redis unreachable' : 'down at start-up',
      variant: never
        ? 'nothing listens on the port, for the whole run'
        : `server started ${delayMs / 1000} s after the app`,
      kind,
      clientOptions: { url },
      url,
      secrets: [password],
      total,
      durationMs,
      timeoutMs,
      waitReady: false,
      count: () => server,
      recover: !never,
      recoverTimeoutMs: 15_000,
      drive: async (ctx) => {
        if (never) return
        await ctx.at(delayMs)
        server = await startRedis({ port, password })
        ctx.mark('serverStarted')
      },
    })
  } finally {
    await server?.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// Restart with data loss
// ---------------------------------------------------------------------------------------------

export async function dataLoss({ how = 'shutdown-nosave', total = 200, durationMs = 3500 } = {}) {
  const password = secret()
  const server = await startRedis({ password })
  try {
    const url = urlOf(server.port, password)
    return await scenario({
      fault: 'restart with data loss',
      variant: how === 'flushall' ? 'FLUSHALL' : 'SHUTDOWN NOSAVE + start',
      clientOptions: { url },
      secrets: [password],
      total,
      durationMs,
      count: server,
      drive: async (ctx) => {
        // A shared counter before the loss.
        for (let i = 0; i < 3; i++) ctx.notes.sharedBefore = await ctx.app.ask('probe', { key: 'shared' })
        await ctx.at(1000)
        ctx.mark('loss')
        if (how === 'flushall') {
          await ctx.lose(() => server.cli('FLUSHALL'))
        } else {
          await ctx.lose(async () => {
            await server.cli('SHUTDOWN', 'NOSAVE').catch(() => {})
            await server.kill() // already gone: resolves at once
          })
          await server.restart()
          ctx.mark('restarted')
        }
      },
      after: async (ctx) => {
        // The same counter after the loss: it restarted, in Redis (scripts reloaded by themselves).
        ctx.notes.sharedAfter = await ctx.app.ask('probe', { key: 'shared' })
      },
    })
  } finally {
    await server.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// Hang
// ---------------------------------------------------------------------------------------------

const HANGS = {
  sigstop: { label: 'kill -STOP / -CONT (1 s)', ms: 1000 },
  'pause-all': { label: 'CLIENT PAUSE 1000 ALL', ms: 1000 },
  'pause-write': { label: 'CLIENT PAUSE 800 WRITE', ms: 800 },
}

/**
 * `how`: 'sigstop' | 'pause-all' | 'pause-write'. notes.probe: one increment started right after
 * the hang began (its duration is the hard bound); notes.burst: 2000 increments at once in the
 * middle of the hang (the queue stays bounded: they all settle within about one deadline).
 */
export async function hang({
  how = 'sigstop',
  kind = 'redis-guard',
  total = 200,
  durationMs = 3500,
  timeoutMs = 5000,
  hangMs,
  startAt = 800,
} = {}) {
  const password = secret()
  const server = await startRedis({ password })
  const h = HANGS[how]
  const ms = hangMs ?? h.ms
  const guard = kind === 'redis-guard'
  // The hard bound is measured here, in this lightly loaded process, on its own client (default
  // configuration): one increment started right after the hang began.
  const url = urlOf(server.port, password)
  const { RedisClient, RedisStore } = require('../../index.js')
  const probeClient = guard ? new RedisClient({ url, logger: false }) : null
  const probeStore = guard ? new RedisStore({ client: probeClient, prefix: 'probe:' }) : null
  try {
    if (guard) await probeClient.ready(5000)
    return await scenario({
      fault: 'hang',
      variant: how === 'sigstop' && ms !== 1000 ? `kill -STOP / -CONT (${ms / 1000} s)` : h.label,
      kind,
      clientOptions: { url },
      url,
      secrets: [password],
      total,
      durationMs: Math.max(durationMs, startAt + ms + 1500),
      timeoutMs,
      count: server,
      drive: async (ctx) => {
        await ctx.at(startAt)
        ctx.mark('hang')
        if (how === 'sigstop') server.pause()
        else await server.cli('CLIENT', 'PAUSE', String(ms), how === 'pause-all' ? 'ALL' : 'WRITE')
        if (guard) {
          const tp = performance.now()
          const r = await probeStore.increment('hang')
          ctx.notes.directProbe = {
            ms: performance.now() - tp,
            totalHits: r.totalHits,
            available: probeClient.isAvailable(),
          }
          ctx.notes.probe = await ctx.app.ask('probe', { key: 'probe:hang' })
          await ctx.at(startAt + Math.min(400, ms / 2))
          ctx.notes.burst = await ctx.app.ask('burst', { n: 2000, prefix: 'burst:' })
          ctx.extraKeys.push('probe:hang', ...Array.from({ length: 2000 }, (_, i) => `burst:${i}`))
          ctx.notes.healthDuring = await ctx.app.ask('health')
        }
        await ctx.at(startAt + ms)
        if (how === 'sigstop') server.resume()
        ctx.mark('resume')
      },
    })
  } finally {
    server.resume()
    await probeClient?.close()
    await server.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// Slow replies (proxy latency)
// ---------------------------------------------------------------------------------------------

/** `latencyMs` is added to every chunk each way (a round trip costs 2x). */
export async function slowReplies({ latencyMs = 30, total = 200, durationMs, from = 600, forMs = 1500 } = {}) {
  const password = secret()
  const server = await startRedis({ password })
  const proxy = await startProxy(server.port)
  try {
    const url = urlOf(proxy.port, password)
    return await scenario({
      fault: 'slow replies',
      variant: `proxy +${latencyMs} ms each way (RTT ${2 * latencyMs} ms ${2 * latencyMs < DEADLINE_MS ? '<' : '>'} deadline)`,
      clientOptions: { url },
      secrets: [password],
      total,
      durationMs: durationMs ?? from + forMs + 1500,
      count: server,
      drive: async (ctx) => {
        await ctx.at(from)
        ctx.mark('slow')
        proxy.setMode('latency', latencyMs)
        await ctx.at(from + 300)
        ctx.notes.healthDuring = await ctx.app.ask('health')
        await ctx.at(from + forMs)
        proxy.setMode('pass')
        ctx.mark('pass')
      },
    })
  } finally {
    await proxy.close()
    await server.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// Blackhole
// ---------------------------------------------------------------------------------------------

export async function blackhole({ total = 200, from = 800, forMs = 2000, durationMs } = {}) {
  const password = secret()
  const server = await startRedis({ password })
  const proxy = await startProxy(server.port)
  try {
    const url = urlOf(proxy.port, password)
    return await scenario({
      fault: 'blackhole (no RST)',
      variant: `proxy swallows bytes for ${forMs / 1000} s`,
      clientOptions: { url },
      secrets: [password],
      total,
      durationMs: durationMs ?? from + forMs + 2000,
      count: server,
      recoverTimeoutMs: 10_000,
      drive: async (ctx) => {
        await ctx.at(from)
        ctx.mark('blackhole')
        proxy.setMode('blackhole')
        await ctx.at(from + 500)
        ctx.notes.healthDuring = await ctx.app.ask('health')
        await ctx.at(from + forMs)
        proxy.setMode('pass')
        ctx.mark('pass')
        ctx.notes.recoveredMs = null
        const tp = Date.now()
        if (await until(() => ctx.app.ask('available'), { timeout: 8000, interval: 50 }))
          ctx.notes.recoveredMs = Date.now() - tp
      },
    })
  } finally {
    await proxy.close()
    await server.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// Connection reset
// ---------------------------------------------------------------------------------------------

export async function connectionReset({ how = 'proxy', total = 200, durationMs = 3500 } = {}) {
  const password = secret()
  const server = await startRedis({ password })
  const proxy = how === 'proxy' ? await startProxy(server.port) : null
  try {
    const url = urlOf(proxy ? proxy.port : server.port, password)
    return await scenario({
      fault: 'connection reset',
      variant: proxy ? "proxy 'reset' (RST both ways) for 300 ms" : 'CLIENT KILL TYPE normal x5',
      clientOptions: { url },
      secrets: [password],
      total,
      durationMs,
      count: server,
      drive: async (ctx) => {
        await ctx.at(800)
        ctx.mark('reset')
        if (proxy) {
          proxy.setMode('reset')
          await ctx.at(1100)
          proxy.setMode('pass')
        } else {
          for (let i = 0; i < 5; i++) {
            await ctx.at(800 + i * 300)
            ctx.notes.killed = (ctx.notes.killed ?? 0) + Number(await server.cli('CLIENT', 'KILL', 'TYPE', 'normal'))
          }
        }
        ctx.mark('over')
      },
    })
  } finally {
    await proxy?.close()
    await server.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// TLS failure / auth: figures shared by both (connection attempts per minute)
// ---------------------------------------------------------------------------------------------

/**
 * A misconfigured client (wrong CA, plaintext to a TLS port, TLS to a plaintext port, wrong or no
 * password): the app serves from the fallback; we count the TCP connections the proxy accepts
 * and the server's total_connections_received over the run and extrapolate to a minute.
 */
async function misconfigured({ fault, variant, server, clientOptions, secrets, total = 200, durationMs = 4000 }) {
  const proxy = await startProxy(server.port)
  const info0 = await connectionsReceived(server)
  try {
    const t = Date.now()
    let accepted0
    const f = await scenario({
      fault,
      variant,
      clientOptions: clientOptions(proxy.port),
      secrets,
      total,
      durationMs,
      waitReady: false,
      recover: false,
      count: server,
      drive: async (ctx) => {
        accepted0 = proxy.accepted
        ctx.notes.healthDuring = await ctx.app.ask('health')
      },
      after: async (ctx) => {
        ctx.notes.windowMs = Date.now() - t
        ctx.notes.proxyAccepted = proxy.accepted
        ctx.notes.acceptedBeforeLoad = accepted0
        ctx.notes.infoConnections = (await connectionsReceived(server)) - info0 - 1 // minus our INFO
      },
    })
    f.attemptsPerMin = (60_000 * f.notes.proxyAccepted) / f.notes.windowMs
    f.infoConnectionsPerMin = (60_000 * Math.max(0, f.notes.infoConnections)) / f.notes.windowMs
    return f
  } finally {
    await proxy.close()
  }
}

export async function tlsFailure({ how = 'wrong-ca', total = 200, durationMs = 4000 } = {}) {
  const password = secret()
  const certs = await makeCerts()
  const server = await startRedis({ password, tls: how !== 'tls-to-plain' })
  try {
    const variants = {
      'wrong-ca': [
        'rediss:// with a CA that did not sign the server',
        (port) => ({ url: urlOf(port, password, { scheme: 'rediss' }), tls: { ca: certs.wrongCa } }),
      ],
      'plain-to-tls': ['redis:// (plaintext) to the TLS port', (port) => ({ url: urlOf(port, password) })],
      'tls-to-plain': [
        'rediss:// to a plaintext server (no downgrade)',
        (port) => ({ url: urlOf(port, password, { scheme: 'rediss' }), tls: { ca: certs.ca } }),
      ],
    }
    const [variant, clientOptions] = variants[how]
    return await misconfigured({
      fault: 'TLS failure',
      variant,
      server,
      clientOptions,
      secrets: [password],
      total,
      durationMs,
    })
  } finally {
    await server.stop()
  }
}

export async function authFailure({ how = 'wrong-password', total = 200, durationMs = 4000 } = {}) {
  const password = secret()
  const wrong = secret('wrong')
  const server = await startRedis({ password })
  try {
    if (how === 'wrong-password') {
      return await misconfigured({
        fault: 'auth',
        variant: 'requirepass, wrong password (WRONGPASS)',
        server,
        clientOptions: (port) => ({ url: urlOf(port, wrong) }),
        secrets: [password, wrong],
        total,
        durationMs,
      })
    }
    return await misconfigured({
      fault: 'auth',
      variant: 'requirepass, no password (NOAUTH)',
      server,
      clientOptions: (port) => ({ url: urlOf(port) }),
      secrets: [password],
      total,
      durationMs,
    })
  } finally {
    await server.stop()
  }
}

/**
 * ACL user `limiter` (`~rl:* +@read +@write +@scripting`): the store counts in Redis; a lock
 * key (`lock:*`, outside `~rl:*`) is refused with NOPERM, which must reach the caller as an
 * auth error, without a reconnect loop.
 */
export async function aclNoperm({ total = 200, durationMs = 3000 } = {}) {
  const admin = secret('admin')
  const pw = secret('limiter')
  const server = await startRedis({
    password: admin,
    users: [{ name: 'limiter', password: pw, rules: 'on ~rl:* +@read +@write +@scripting' }],
  })
  try {
    const info0 = await connectionsReceived(server)
    const t = Date.now()
    const url = urlOf(server.port, pw, { user: 'limiter' })
    const f = await scenario({
      fault: 'auth',
      variant: 'ACL user ~rl:* +@read +@write +@scripting; lock key outside: NOPERM',
      clientOptions: { url },
      secrets: [admin, pw],
      total,
      durationMs,
      count: server,
      after: async (ctx) => {
        ctx.notes.windowMs = Date.now() - t
        ctx.notes.infoConnections = (await connectionsReceived(server)) - info0 - 1
      },
    })
    f.infoConnectionsPerMin = (60_000 * f.notes.infoConnections) / f.notes.windowMs
    return f
  } finally {
    await server.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// Out of memory
// ---------------------------------------------------------------------------------------------

export async function outOfMemory({ total = 200, durationMs = 3500 } = {}) {
  const password = secret()
  const server = await startRedis({ password })
  try {
    const url = urlOf(server.port, password)
    let info0
    return await scenario({
      fault: 'out of memory',
      variant: 'maxmemory 1mb, noeviction, filled',
      clientOptions: { url },
      secrets: [password],
      total,
      durationMs,
      count: server,
      drive: async (ctx) => {
        info0 = await connectionsReceived(server)
        await ctx.at(800)
        await server.cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction')
        await server.cli('DEBUG', 'POPULATE', '20000', 'fill:', '64')
        await server.cli('CONFIG', 'SET', 'maxmemory', '1mb')
        ctx.mark('oom')
        ctx.notes.oomCheck = await server.cli('SET', 'probe', '1').catch((e) => e.message.split('\n').pop())
        await ctx.at(2300)
        await server.cli('CONFIG', 'SET', 'maxmemory', '0')
        ctx.mark('restored')
      },
      after: async (ctx) => {
        ctx.notes.newConnections = (await connectionsReceived(server)) - info0 - 6 // minus our own redis-cli calls
      },
    })
  } finally {
    await server.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// NOSCRIPT
// ---------------------------------------------------------------------------------------------

export async function noscript({ total = 200, durationMs = 2500 } = {}) {
  const password = secret()
  const server = await startRedis({ password })
  try {
    const url = urlOf(server.port, password)
    return await scenario({
      fault: 'NOSCRIPT',
      variant: 'SCRIPT FLUSH every 100 ms under load',
      clientOptions: { url },
      secrets: [password],
      total,
      durationMs,
      count: server,
      drive: async (ctx) => {
        ctx.notes.flushes = 0
        for (let t = 200; t < durationMs - 200; t += 100) {
          await ctx.at(t)
          await server.cli('SCRIPT', 'FLUSH')
          ctx.notes.flushes++
        }
      },
    })
  } finally {
    await server.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// BUSY
// ---------------------------------------------------------------------------------------------

const BUSY_SCRIPT = `local function us() local t = redis.call('TIME') return tonumber(t[1]) * 1000000 + tonumber(t[2]) end
local s = us() while us() - s < tonumber(ARGV[1]) * 1000 do end return 1`

export async function busy({ total = 200, busyMs = 2000, durationMs } = {}) {
  const password = secret()
  const server = await startRedis({ password, args: ['--busy-reply-threshold', '100'] })
  try {
    const url = urlOf(server.port, password)
    return await scenario({
      fault: 'BUSY',
      variant: `looping EVAL for ${busyMs / 1000} s, busy-reply-threshold 100`,
      clientOptions: { url },
      secrets: [password],
      total,
      durationMs: durationMs ?? busyMs + 2500,
      count: server,
      drive: async (ctx) => {
        await ctx.at(800)
        ctx.mark('busy')
        const script = server.cli('EVAL', BUSY_SCRIPT, '0', String(busyMs), { timeout: busyMs + 10_000 })
        await sleep(300)
        ctx.notes.healthDuring = await ctx.app.ask('health')
        ctx.notes.script = await script.catch((e) => e.message)
        ctx.mark('over')
      },
    })
  } finally {
    await server.stop()
  }
}

/**
 * LOADING: kill -9 and restart on an RDB: while the dataset loads, Redis answers `-LOADING`
 * to everything; the client stays on the fallback until Redis can serve. `key-load-delay`
 * (µs per key, a test-only setting of Redis) stretches 15,000 keys to ~1.5 s of loading.
 */
export async function loading({ keys = 15_000, keyLoadDelayUs = 15, total = 200, durationMs = 4500 } = {}) {
  const password = secret()
  const server = await startRedis({
    password,
    args: ['--key-load-delay', String(keyLoadDelayUs), '--loading-process-events-interval-bytes', '1024'],
  })
  try {
    await server.cli('DEBUG', 'POPULATE', String(keys), 'big:', '32', { timeout: 60_000 })
    await server.cli('SAVE', { timeout: 60_000 })
    const url = urlOf(server.port, password)
    const pingSays = () => server.cli('PING', { timeout: 2000 }).catch((e) => e.message)
    return await scenario({
      fault: 'LOADING',
      variant: `kill -9, restart on an RDB of ${keys.toLocaleString('en')} keys loaded slowly`,
      clientOptions: { url },
      secrets: [password],
      total,
      durationMs,
      count: server,
      recoverTimeoutMs: 30_000,
      drive: async (ctx) => {
        await ctx.at(800)
        ctx.mark('restart')
        // kill -9: the RDB holds the big dataset, not the increments made after SAVE.
        await ctx.lose(() => server.kill())
        const restarted = server.restart()
        ctx.notes.loadingSeen = Boolean(
          await until(async () => /LOADING/.test(await pingSays()), { timeout: 10_000, interval: 20 }),
        )
        ctx.mark('loading')
        await until(async () => (await pingSays()) === 'PONG', { timeout: 30_000, interval: 20 })
        ctx.mark('loaded')
        await restarted
      },
    })
  } finally {
    await server.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// Key flood in fallback
// ---------------------------------------------------------------------------------------------

/** 1M distinct keys through one RedisStore (default fallbackMaxKeys) while Redis is down. */
export async function keyFlood({ keys = 1_000_000, blocks = 10 } = {}) {
  const port = await freePort() // nothing listens there
  const password = secret()
  const child = await forkChild(
    'flood.mjs',
    { clientOptions: { url: urlOf(port, password) }, keys, blocks },
    { readyTimeoutMs: 15_000 },
  )
  try {
    const r = await child.ask('run', {}, 300_000)
    const closed = await child.close()
    return {
      fault: 'key flood in fallback',
      variant: `${keys.toLocaleString('en')} distinct keys while Redis is down`,
      ...r,
      crashes: closed.clean ? 0 : 1,
      secretsFound: findSecrets([password], child.logs()),
    }
  } finally {
    child.kill()
  }
}

// ---------------------------------------------------------------------------------------------
// Paused lock holder
// ---------------------------------------------------------------------------------------------

/**
 * A holder process takes locks, is paused (SIGSTOP) past their TTL, and another client takes
 * them; then a lock key is cut to 1 ms with PEXPIRE while its holder runs. Figures: fences,
 * whether the loss was signalled, what extend/release answered, whether the new holder's key
 * survived (no wrongful release).
 */
export async function pausedHolder({ ttlMs = 600, pauseMs = 1500 } = {}) {
  const password = secret()
  const server = await startRedis({ password })
  const url = urlOf(server.port, password)
  const { RedisClient } = require('../../index.js')
  const other = new RedisClient({ url, logger: false })
  const holder = await forkChild('holder.mjs', { clientOptions: { url } })
  const out = {
    fault: 'paused lock holder',
    variant: `kill -STOP the holder ${pauseMs} ms past a ${ttlMs} ms TTL; PEXPIRE 1 ms`,
    wrongfulReleases: 0,
    doubleGrants: 0,
  }
  try {
    await holder.ask('ready')
    await other.ready(5000)
    // 1. SIGSTOP past the TTL.
    const first = await holder.ask('lock', { key: 'job:1', ttlMs })
    const helperOk = await holder.ask('acquireLock', { key: 'job:2', ttlSeconds: ttlMs / 1000 })
    process.kill(holder.pid, 'SIGSTOP')
    const tStop = Date.now()
    let next
    let helperNext
    try {
      // Not before the TTL: the holder still owns it (0 double grants while it is within TTL).
      out.grantedWhileHeld = Boolean(await other.lock('job:1', { ttlMs: 5000 }))
      next = await other.lock('job:1', { ttlMs: 5000, waitMs: ttlMs + 500 })
      // job:2 was granted a few ms after job:1 (one IPC round trip later), so it may outlive
      // job:1's expiry by that much: try for a short while.
      helperNext = await until(() => other.acquireLock('job:2', 5), { timeout: 500, interval: 10 })
      const left = pauseMs - (Date.now() - tStop)
      if (left > 0) await sleep(left)
    } finally {
      process.kill(holder.pid, 'SIGCONT')
    }
    await sleep(50)
    out.stop = {
      firstFence: first.fence,
      nextFence: next && next.fence,
      nextSource: next && next.source,
      helperFirst: helperOk,
      helperNext,
    }
    out.stop.check = await holder.ask('check', { key: 'job:1', ttlMs: 5000 })
    out.stop.helpers = await holder.ask('checkHelpers', { key: 'job:2' })
    out.stop.nextKeyIntact = (await server.cli('GET', 'lock:job:1')) === next.token
    out.stop.helperKeyIntact = (await server.cli('EXISTS', 'lock:job:2')) === '1'
    out.stop.nextRelease = await next.release()
    await other.releaseLock('job:2')

    // 2. PEXPIRE the lock key to 1 ms while its holder runs.
    const h3 = await holder.ask('lock', { key: 'job:3', ttlMs: 10_000 })
    await server.cli('PEXPIRE', 'lock:job:3', '1')
    await sleep(20)
    const n3 = await other.lock('job:3', { ttlMs: 5000, waitMs: 1000 })
    out.pexpire = { firstFence: h3.fence, nextFence: n3 && n3.fence, nextSource: n3 && n3.source }
    out.pexpire.check = await holder.ask('check', { key: 'job:3', ttlMs: 5000 })
    out.pexpire.nextKeyIntact = (await server.cli('GET', 'lock:job:3')) === n3.token
    out.pexpire.nextRelease = await n3.release()

    if (!out.stop.nextKeyIntact || out.stop.check.release.value === true) out.wrongfulReleases++
    if (!out.pexpire.nextKeyIntact || out.pexpire.check.release.value === true) out.wrongfulReleases++
    if (!out.stop.helperKeyIntact || out.stop.helpers.release.value === true) out.wrongfulReleases++
    if (out.grantedWhileHeld) out.doubleGrants++
    const closed = await holder.close()
    out.holderUnhandled = closed.result && closed.result.unhandled
    out.crashes = closed.clean ? 0 : 1
    out.secretsFound = findSecrets([password], holder.logs(), out)
    return out
  } finally {
    holder.kill()
    await other.close()
    await server.stop()
  }
}

/**
 * Grants stalled mid-flight, then resumed: an instance (the holder child) asks for `n` leases and
 * `n` helper locks while Redis is stopped (SIGSTOP); every call misses its deadline and is
 * answered by the fallback (`local`), and Redis applies the writes when it resumes. Figures:
 * locks left in Redis that nobody holds (after the cleanup has had `settleMs`), how long until
 * another instance could take every key, and what the callers were answered.
 */
export async function stalledGrants({ n = 16, ttlMs = 30_000, stallMs = 1000, settleMs = 3000 } = {}) {
  const password = secret()
  const server = await startRedis({ password })
  const url = urlOf(server.port, password)
  const { RedisClient } = require('../../index.js')
  const other = new RedisClient({ url, logger: false })
  const holder = await forkChild('holder.mjs', { clientOptions: { url } })
  const out = { fault: 'stalled grants', variant: `${2 * n} grants sent during a ${stallMs} ms SIGSTOP, then SIGCONT` }
  const lockKeys = async () => {
    const keys = []
    let cursor = '0'
    do {
      const [next, ...page] = (await server.cli('SCAN', cursor, 'MATCH', 'lock:stall:*', 'COUNT', '1000')).split('\n')
      cursor = next
      keys.push(...page.filter((k) => k && !k.endsWith(':fence')))
    } while (cursor !== '0')
    return keys
  }
  try {
    await holder.ask('ready')
    await other.ready(5000)
    await holder.ask('acquireLock', { key: 'stall:warm', ttlSeconds: 1 }) // the lock script is loaded
    server.pause()
    const t0 = performance.now()
    let answers
    try {
      answers = await holder.ask('grantMany', { prefix: 'stall:', n, ttlMs })
      out.answeredMs = performance.now() - t0
      const left = stallMs - (performance.now() - t0)
      if (left > 0) await sleep(left)
    } finally {
      server.resume()
    }
    const tResume = performance.now()
    out.answers = answers
    // Until another instance can take every key (the cleanup removed what Redis applied).
    const keys = [
      ...Array.from({ length: n }, (_, i) => `stall:lease-${i}`),
      ...Array.from({ length: n }, (_, i) => `stall:helper-${i}`),
    ]
    const free = new Set()
    await until(
      async () => {
        for (const k of keys) if (!free.has(k) && (await server.cli('EXISTS', `lock:${k}`)) === '0') free.add(k)
        return free.size === keys.length
      },
      { timeout: settleMs, interval: 50 },
    )
    out.allFreeAfterMs = free.size === keys.length ? performance.now() - tResume : null
    await sleep(Math.max(0, settleMs - (performance.now() - tResume)))
    out.orphansLeft = (await lockKeys()).length
    const grantedToOther = await Promise.all(keys.map((k) => other.acquireLock(k, 5)))
    out.otherGranted = grantedToOther.filter(Boolean).length
    out.holderStats = await holder.ask('stats')
    const closed = await holder.close()
    out.holderUnhandled = closed.result && closed.result.unhandled
    out.crashes = closed.clean ? 0 : 1
    out.secretsFound = findSecrets([password], holder.logs(), out)
    return out
  } finally {
    server.resume()
    holder.kill()
    await other.close()
    await server.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// Bad config and hostile keys (short versions: __tests__/config.test.mjs and store.test.mjs)
// ---------------------------------------------------------------------------------------------

export function badConfig() {
  const { RedisClient } = require('../../index.js')
  const pw = secret()
  const cases = [
    ['unknown scheme', { url: `http://:${pw}@127.0.0.1:1` }],
    ['port 0', { url: `redis://:${pw}@127.0.0.1:0` }],
    ['port 70000', { url: `redis://:${pw}@127.0.0.1:70000` }],
    ['db -1', { url: `redis://:${pw}@127.0.0.1:1/-1` }],
    ['db "x"', { url: `redis://:${pw}@127.0.0.1:1/x` }],
    ['bad percent-encoding', { url: `redis://:${pw}%zz@127.0.0.1:1` }],
    ['commandTimeoutMs -1', { url: `redis://:${pw}@127.0.0.1:1`, commandTimeoutMs: -1 }],
    ['empty env, bad REDIS_PORT', { env: { REDIS_PORT: 'abc', REDIS_PASSWORD: pw } }],
  ]
  const rows = cases.map(([name, opts]) => {
    let threw = null
    try {
      new RedisClient({ logger: false, ...opts }).close()
    } catch (e) {
      threw = e
    }
    return {
      name,
      threw: Boolean(threw),
      code: threw && threw.code,
      leak: Boolean(threw && findSecrets([pw], threw.message, threw.stack ?? '').length),
    }
  })
  return { fault: 'bad config', variant: `${rows.length} bad inputs (full table: __tests__/config.test.mjs)`, rows }
}

export async function hostileKeys() {
  const password = secret()
  const server = await startRedis({ password })
  const { RedisClient, RedisStore } = require('../../index.js')
  const client = new RedisClient({ url: urlOf(server.port, password), logger: false })
  try {
    await client.ready(5000)
    const store = new RedisStore({ client })
    store.init({ windowMs: 60_000, limit: 1000 })
    const keys = {
      mib: 'x'.repeat(1 << 20),
      nul: 'a\u0000b',
      emoji: '😀',
      lone: 'a\ud800b',
      tag: '{pin}x',
      plain: '10.0.0.1',
    }
    const out = {
      fault: 'hostile keys',
      variant: '1 MiB, NUL, emoji, lone surrogate, {tag} (full: __tests__/store.test.mjs)',
      keys: {},
    }
    for (const [name, k] of Object.entries(keys)) {
      const t = Date.now()
      const a = await store.increment(k)
      const b = await store.increment(k)
      out.keys[name] = { hits: [a.totalHits, b.totalHits], ms: Date.now() - t }
    }
    const names = (await server.cli('KEYS', 'rl:*')).split('\n')
    out.longestRedisKey = Math.max(...names.map((n) => Buffer.byteLength(n)))
    out.plainKeyExact = names.includes('rl:10.0.0.1')
    out.redisKeys = names.length
    return out
  } finally {
    await client.close()
    await server.stop()
  }
}

/** Rows of FAULTS.md covered by other test files (not duplicated here). */
export const COVERED_ELSEWHERE = [
  { fault: 'sentinel failover', where: '__tests__/topology.test.mjs' },
  { fault: 'cluster slot migration', where: '__tests__/topology.test.mjs' },
]
