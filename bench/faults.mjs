#!/usr/bin/env node
// `npm run faults`: every row of FAULTS.md (/work/shared/FAULTS.md), run with the same fault
// bodies as __tests__/faults.test.mjs (__tests__/faults/faults.mjs), printed as a Markdown table
// on stdout (progress on stderr), beside rate-limit-redis v6 + ioredis (defaults) under the same
// Express app for the faults where a peer can be compared. Raw figures go to
// bench/results/faults-latest.json.
//
// Environment:
//   FAULTS_LONG=1      add the slow variants: down at start-up with the server 90 s later (both
//                      stores), and the 2 s blackhole / 10 s outages for the comparison
//   FAULTS_PEERS=0     skip rate-limit-redis + ioredis
//   FAULTS_ONLY=a,b    run only the faults whose id contains one of these words
//   FAULTS_OUT=FILE    JSON output (default bench/results/faults-latest.json)

import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import * as F from '../__tests__/faults/faults.mjs'
import { limitsFaults } from '../__tests__/faults/limits.mjs'
import { DEADLINE_MS } from '../__tests__/faults/lib.mjs'

const BENCH = path.dirname(fileURLToPath(import.meta.url))
const env = process.env
const LONG = env.FAULTS_LONG === '1'
const PEERS = env.FAULTS_PEERS !== '0'
const ONLY = (env.FAULTS_ONLY || '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean)
const OUT = env.FAULTS_OUT || path.join(BENCH, 'results', 'faults-latest.json')
/** Per-request client timeout: long enough to see a peer's own timeout, bounded so runs end. */
const PEER_TIMEOUT_MS = 20_000
const CLIENTS_PER_APP = 2

const log = (...a) => process.stderr.write(`[faults] ${a.join(' ')}\n`)
const want = (id) => !ONLY.length || ONLY.some((w) => id.includes(w))
const fmt = (x, d = 0) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(d) : '–')

// ---------------------------------------------------------------------------------------------
// What runs
// ---------------------------------------------------------------------------------------------

/** redis-guard, default configuration: every FAULTS.md row. [id, run, baseline id] */
const GUARD = [
  ['kill-9', () => F.killUnderLoad(), 'direct'],
  ['down-at-startup-5s', () => F.downAtStartup({ delayMs: 5000 }), 'direct'],
  ...(LONG ? [['down-at-startup-90s', () => F.downAtStartup({ delayMs: 90_000, durationMs: 95_000 }), 'direct']] : []),
  ['data-loss-shutdown-nosave', () => F.dataLoss({ how: 'shutdown-nosave' }), 'direct'],
  ['data-loss-flushall', () => F.dataLoss({ how: 'flushall' }), 'direct'],
  ['hang-sigstop', () => F.hang({ how: 'sigstop' }), 'direct'],
  ['hang-pause-all', () => F.hang({ how: 'pause-all' }), 'direct'],
  ['hang-pause-write', () => F.hang({ how: 'pause-write' }), 'direct'],
  ['slow-30ms', () => F.slowReplies({ latencyMs: 30 }), 'proxy'],
  ['slow-300ms', () => F.slowReplies({ latencyMs: 300 }), 'proxy'],
  ['blackhole-2s', () => F.blackhole(), 'proxy'],
  ['blackhole-0.5s', () => F.blackhole({ forMs: 500 }), 'proxy'],
  ['reset-proxy', () => F.connectionReset({ how: 'proxy' }), 'proxy'],
  ['reset-client-kill', () => F.connectionReset({ how: 'client-kill' }), 'direct'],
  ['tls-wrong-ca', () => F.tlsFailure({ how: 'wrong-ca' }), 'proxy'],
  ['tls-plain-to-tls', () => F.tlsFailure({ how: 'plain-to-tls' }), 'proxy'],
  ['tls-to-plain', () => F.tlsFailure({ how: 'tls-to-plain' }), 'proxy'],
  ['auth-wrong-password', () => F.authFailure({ how: 'wrong-password' }), 'proxy'],
  ['auth-no-password', () => F.authFailure({ how: 'nopw' }), 'proxy'],
  ['auth-acl-noperm', () => F.aclNoperm(), 'direct'],
  ['oom', () => F.outOfMemory(), 'direct'],
  ['noscript', () => F.noscript(), 'direct'],
  ['busy', () => F.busy(), 'direct'],
  ['loading', () => F.loading(), 'direct'],
]

/** redis-guard vs rate-limit-redis + ioredis, same parameters. */
const OUTAGE_MS = LONG ? 10_000 : 5000
const COMPARE = [
  [
    'unreachable',
    'Redis unreachable (whole run)',
    (kind) => F.downAtStartup({ kind, delayMs: null, durationMs: 5000, timeoutMs: PEER_TIMEOUT_MS }),
  ],
  [
    'down-at-startup-5s',
    'down at start-up, server 5 s later',
    (kind) => F.downAtStartup({ kind, delayMs: 5000, timeoutMs: PEER_TIMEOUT_MS }),
  ],
  ...(LONG
    ? [
        [
          'down-at-startup-90s',
          'down at start-up, server 90 s later',
          (kind) => F.downAtStartup({ kind, delayMs: 90_000, durationMs: 95_000, timeoutMs: PEER_TIMEOUT_MS }),
        ],
      ]
    : []),
  [
    'kill-9',
    `kill -9 under load, restart ${OUTAGE_MS / 1000} s later`,
    (kind) => F.killUnderLoad({ kind, downMs: OUTAGE_MS, durationMs: OUTAGE_MS + 6000, timeoutMs: PEER_TIMEOUT_MS }),
  ],
  [
    'hang-sigstop',
    `hang: kill -STOP for ${OUTAGE_MS / 1000} s`,
    (kind) =>
      F.hang({ kind, how: 'sigstop', hangMs: OUTAGE_MS, durationMs: OUTAGE_MS + 6000, timeoutMs: PEER_TIMEOUT_MS }),
  ],
]

// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------

function lockCell(f) {
  if (!f.locks) return '–'
  const l = f.locks
  return (
    `${l.doubleGrants} / ${l.wrongfulReleases}` +
    (l.errors ? ` (${l.errors} errors: ${Object.keys(l.errorCodes).join(', ')})` : '')
  )
}

function cacheCell(f) {
  if (!f.cache) return '–'
  const c = f.cache
  return (
    `${c.calls} calls, p99 ${fmt(c.p99Ms, 1)} / max ${fmt(c.maxMs)} ms, ${c.overlaps} overlaps` +
    (c.errors ? ` (${c.errors} errors: ${Object.keys(c.errorCodes).join(', ')})` : '')
  )
}

function idemCell(f) {
  if (!f.idem) return '–'
  const i = f.idem
  const errs = Object.entries(i.errorCodes).reduce((n, [, v]) => n + v, 0)
  return (
    `${i.charged} keys, ${i.twice - i.afterDataLoss} charged twice` +
    (i.afterDataLoss ? ` (+${i.afterDataLoss} after data loss)` : '') +
    `, claim p99 ${fmt(i.p99Ms, 1)} / max ${fmt(i.maxMs)} ms` +
    (errs ? `, ${errs} denied (503)` : '')
  )
}

function guardRow(id, f, base) {
  const h = f.http
  const c = f.counts
  const added = h.p99 - (base ? base.http.p99 : 0)
  const reconnects = f.attemptsPerMin !== undefined ? fmt(f.attemptsPerMin / CLIENTS_PER_APP, 0) : '–'
  const notes = []
  if (f.notes?.directProbe) notes.push(`call during hang ${fmt(f.notes.directProbe.ms)} ms`)
  if (f.notes?.burst) notes.push(`2000-call burst max ${fmt(f.notes.burst.maxMs)} ms`)
  if (f.notes?.recoveredMs !== undefined && f.notes.recoveredMs !== null)
    notes.push(`back ${fmt(f.notes.recoveredMs)} ms after`)
  if (f.backToRedis === false) notes.push('NOT back on Redis')
  if (c && c.appliedUnacked) notes.push(`${c.appliedUnacked} applied without ack`)
  if (c && c.lostToDataLoss) notes.push(`${c.lostToDataLoss} acked lost to data loss`)
  if (f.locks?.overlapsAfterDataLoss) notes.push(`${f.locks.overlapsAfterDataLoss} lock overlaps across data loss`)
  if (f.loopDelayMaxMs > 100) notes.push(`app event loop stalled up to ${fmt(f.loopDelayMaxMs)} ms (busy machine)`)
  if (f.health?.error && f.fault.match(/TLS|auth/)) notes.push(`error: "${f.health.error.slice(0, 90)}"`)
  return [
    f.fault,
    f.variant,
    fmt(h.servedPct, 1),
    fmt(h.p99),
    fmt(added),
    String(h.total - h.ok + (f.locks?.errors ?? 0)),
    c ? `${c.lost} / ${c.duplicated}` : '–',
    String(f.crashes ?? 0),
    String(f.unhandled ?? 0),
    lockCell(f),
    cacheCell(f),
    idemCell(f),
    reconnects,
    f.secretsFound?.length ? 'LEAK' : '0',
    notes.join('; '),
  ]
}

function table(head, rows) {
  const esc = (s) => String(s).replace(/\|/g, '\\|')
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n')
}

function strip(f) {
  if (!f || typeof f !== 'object') return f
  const { records: _records, logs, ackedKeys: _ackedKeys, ...rest } = f
  return { ...rest, logTail: logs ? logs.split('\n').slice(-8) : undefined }
}

// ---------------------------------------------------------------------------------------------
// Run
// ---------------------------------------------------------------------------------------------

async function main() {
  const started = Date.now()
  const redisVersion = execFileSync('redis-server', ['--version']).toString().trim()
  const machine = {
    cpu: os.cpus()[0]?.model,
    cores: os.cpus().length,
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    redis: redisVersion,
    memGb: Math.round(os.totalmem() / 2 ** 30),
  }
  const out = {
    date: new Date().toISOString(),
    machine,
    deadlineMs: DEADLINE_MS,
    long: LONG,
    baselines: {},
    guard: {},
    compare: {},
    other: {},
  }

  log('baselines')
  out.baselines.direct = await F.baseline()
  out.baselines.proxy = await F.baseline({ viaProxy: true })
  if (PEERS) out.baselines.peer = await F.baseline({ kind: 'rlr-ioredis' })

  for (const [id, run] of GUARD) {
    if (!want(id)) continue
    log(`redis-guard: ${id}`)
    try {
      out.guard[id] = await run()
    } catch (e) {
      out.guard[id] = { fault: id, variant: 'FAILED TO RUN', error: String(e && e.stack) }
      log(`  failed: ${e && e.message}`)
    }
  }
  if (want('flood')) {
    log('key flood')
    out.other.keyFlood = await F.keyFlood()
  }
  if (want('holder')) {
    log('paused lock holder')
    out.other.pausedHolder = await F.pausedHolder()
  }
  if (want('stalled')) {
    log('stalled grants')
    out.other.stalledGrants = await F.stalledGrants()
  }
  if (want('config')) out.other.badConfig = F.badConfig()
  if (want('hostile')) out.other.hostileKeys = await F.hostileKeys()

  if (PEERS) {
    for (const [id, label, run] of COMPARE) {
      if (!want(id) && !want('compare')) continue
      out.compare[id] = { label }
      for (const kind of ['redis-guard', 'rlr-ioredis']) {
        log(`compare ${id}: ${kind}`)
        try {
          out.compare[id][kind] = await run(kind)
        } catch (e) {
          out.compare[id][kind] = { error: String(e && e.stack) }
          log(`  failed: ${e && e.message}`)
        }
      }
    }
  }
  // The limits beyond the fixed window: RateLimiter per algorithm, the adapters' cores.
  out.limits = {}
  if (want('limits')) {
    const runs = [
      ...['fixed-window', 'sliding-window', 'gcra'].flatMap((a) =>
        limitsFaults(a).map(([id, run]) => [`limiter ${a}`, id, run]),
      ),
      ...['fastify', 'nest'].flatMap((k) =>
        limitsFaults('sliding-window', k)
          .filter(([id]) => /kill|hang/.test(id))
          .map(([id, run]) => [`${k} sliding-window`, id, run]),
      ),
    ]
    for (const [front, id, run] of runs) {
      log(`limits: ${front} ${id}`)
      try {
        out.limits[`${front} ${id}`] = await run()
      } catch (e) {
        out.limits[`${front} ${id}`] = { fault: id, variant: front, error: String(e && e.stack) }
      }
    }
  }
  out.elapsedMs = Date.now() - started

  // ---- report -------------------------------------------------------------------------------
  const lines = []
  lines.push('# redis-guard fault suite (`npm run faults`)', '')
  lines.push(
    `${out.date} — ${machine.cpu}, ${machine.cores} cores, ${machine.memGb} GB, ${machine.os}, Node ${machine.node}, ${redisVersion.split(' ').slice(0, 3).join(' ')}`,
  )
  lines.push(
    '',
    `Each row: the Express app (express-rate-limit + RedisStore, default configuration) in a child process, 200 HTTP requests (fetch, 5 s client timeout), two lock clients contending for one key, a cache workload (getOrSet / get / set / delete on 50 keys, two loops), an idempotency workload (two loops retrying the same payment keys, default 'deny'), background increments; command deadline ${DEADLINE_MS} ms. ` +
      `Baseline p99: ${fmt(out.baselines.direct.http.p99)} ms direct, ${fmt(out.baselines.proxy.http.p99)} ms through the proxy (p99 added = fault p99 − baseline p99 of the same path).`,
    '',
  )
  const head = [
    'fault',
    'variant',
    'served %',
    'p99 ms',
    'p99 added ms',
    'errors to caller',
    'lost / duplicated increments',
    'crashes',
    'unhandled rejections',
    'lock double grants / wrongful releases',
    'cache: calls, p99 / max, factory overlaps',
    'idempotency: keys, charged twice, claim p99 / max',
    'reconnect attempts/min per client',
    'secrets',
    'notes',
  ]
  const rows = []
  for (const [id, , baseId] of GUARD) {
    const f = out.guard[id]
    if (!f) continue
    if (f.error) {
      rows.push([
        f.fault,
        f.variant,
        '–',
        '–',
        '–',
        '–',
        '–',
        '–',
        '–',
        '–',
        '–',
        '–',
        '–',
        '–',
        f.error.split('\n')[0],
      ])
      continue
    }
    rows.push(guardRow(id, f, out.baselines[baseId]))
  }
  lines.push(table(head, rows), '')

  const o = out.other
  if (o.keyFlood) {
    const k = o.keyFlood
    lines.push(
      `**key flood in fallback** (${k.keys.toLocaleString('en')} distinct keys, Redis down, one RedisStore, default fallbackMaxKeys ${k.fallbackMaxKeys.toLocaleString('en')}): ` +
        `fallback holds ${k.fallbackSize.toLocaleString('en')} keys; RSS ${fmt(k.rssBeforeMb)} → ${fmt(k.rssAfterMb)} MB (per 100k: ${k.blocks.map((b) => fmt(b.rssMb)).join(', ')}); ` +
        `call p99 per 100k keys: ${k.blocks.map((b) => fmt(b.p99, 1)).join(', ')} ms; crashes ${k.crashes}, unhandled ${k.unhandled}.`,
      '',
    )
  }
  if (o.pausedHolder) {
    const p = o.pausedHolder
    lines.push(
      `**paused lock holder**: SIGSTOP ${p.variant.match(/\d+ ms past a \d+ ms TTL/)?.[0]}: next grant fence ${p.stop.firstFence} → ${p.stop.nextFence}; loss signalled ${p.stop.check.signalled}; ` +
        `extend → ${p.stop.check.extend.code ?? p.stop.check.extend.value}, release → ${p.stop.check.release.value}, extendLock/releaseLock → ${p.stop.helpers.extend.value}/${p.stop.helpers.release.value}; ` +
        `PEXPIRE 1 ms: fence ${p.pexpire.firstFence} → ${p.pexpire.nextFence}, extend → ${p.pexpire.check.extend.code}, signalled after ${p.pexpire.check.signalledAfterExtend}, release → ${p.pexpire.check.release.value}; ` +
        `double grants ${p.doubleGrants}, wrongful releases ${p.wrongfulReleases}, crashes ${p.crashes}.`,
      '',
    )
  }
  if (o.stalledGrants) {
    const g = o.stalledGrants
    lines.push(
      `**stalled grants** (${g.variant}): answered in ${fmt(g.answeredMs)} ms (leases ${[...new Set(g.answers.leases)].join('/')}, helpers ${[...new Set(g.answers.helpers)].join('/')}); ` +
        `all free again ${fmt(g.allFreeAfterMs)} ms after SIGCONT (${g.holderStats.orphansRemoved} applied by Redis on resume and removed by the client); ` +
        `locks left that nobody holds: ${g.orphansLeft}; another instance granted ${g.otherGranted}/${2 * g.answers.leases.length}; crashes ${g.crashes}.`,
      '',
    )
  }
  if (o.badConfig) {
    const b = o.badConfig
    lines.push(
      `**bad config** (${b.rows.length} inputs; full table in __tests__/config.test.mjs): ${b.rows.filter((r) => r.threw && r.code === 'ERR_REDIS_GUARD_CONFIG').length}/${b.rows.length} synchronous ERR_REDIS_GUARD_CONFIG, ${b.rows.filter((r) => r.leak).length} with the password in the message.`,
      '',
    )
  }
  if (o.hostileKeys) {
    const h = o.hostileKeys
    lines.push(
      `**hostile keys** (full: __tests__/store.test.mjs): ${Object.entries(h.keys)
        .map(([k, v]) => `${k} ${v.hits.join('→')} (${v.ms} ms)`)
        .join(
          ', ',
        )}; longest Redis key ${h.longestRedisKey} bytes; ordinary keys byte-identical to rate-limit-redis: ${h.plainKeyExact}.`,
      '',
    )
  }
  for (const row of F.COVERED_ELSEWHERE) lines.push(`**${row.fault}**: see ${row.where}.`)
  lines.push('')

  if (PEERS && Object.keys(out.compare).length) {
    lines.push(`## Beside rate-limit-redis v6 + ioredis (defaults), same app, same fault`, '')
    lines.push(
      `Per-request client timeout ${PEER_TIMEOUT_MS / 1000} s (so a run ends); a request cut by it counts as not answered.`,
      '',
    )
    const head2 = [
      'fault',
      'store',
      'answered %',
      'served %',
      'p50 ms',
      'p99 ms',
      'max ms',
      'errors to caller',
      'client timeouts (20 s)',
      'lost / duplicated',
      'crashes',
      'back on Redis',
    ]
    const rows2 = []
    for (const [id, label] of COMPARE) {
      const c = out.compare[id]
      if (!c) continue
      for (const kind of ['redis-guard', 'rlr-ioredis']) {
        const f = c[kind]
        const name = kind === 'redis-guard' ? 'redis-guard' : 'rate-limit-redis + ioredis'
        if (!f || f.error) {
          rows2.push([label, name, '–', '–', '–', '–', '–', '–', '–', '–', '–', f ? f.error.split('\n')[0] : '–'])
          continue
        }
        const h = f.http
        const end = f.marks?.serverStarted ?? f.marks?.restarted ?? f.marks?.resume
        const late = end !== undefined ? F.during(f, end + 3000, Infinity) : []
        const back = late.length ? `${F.fromRedis(f, late)}/${late.length} counted in Redis ≥3 s after` : '–'
        rows2.push([
          label,
          name,
          fmt(h.answeredPct, 1),
          fmt(h.servedPct, 1),
          fmt(h.p50),
          fmt(h.p99),
          fmt(h.max),
          String(h.total - h.ok),
          String(h.timeouts),
          f.counts ? `${f.counts.lost} / ${f.counts.duplicated}` : '–',
          String(f.crashes ?? 0),
          back,
        ])
      }
    }
    lines.push(table(head2, rows2), '')
  }
  if (Object.keys(out.limits).length) {
    lines.push('## Limits: RateLimiter per algorithm, the fastifyStore and Nest storage cores', '')
    lines.push(
      `In process, default configuration, ~600 calls over 3 s (1,200 for the reshard), each on its own key; command deadline ${DEADLINE_MS} ms. Lost / duplicated: acknowledged by Redis and absent / counted twice, key by key (lost to the kill's data loss apart).`,
      '',
    )
    const rows3 = Object.entries(out.limits).map(([k, f]) =>
      f.error
        ? [k, f.fault, '–', '–', '–', '–', '–', '–', f.error.split('\n')[0]]
        : [
            k.replace(/ [^ ]+$/, ''),
            `${f.fault}: ${f.variant}`,
            fmt(f.servedPct, 1),
            fmt(f.p99, 1),
            fmt(f.max, 1),
            String(f.errors),
            Object.entries(f.sources)
              .map(([s, n]) => `${s} ${n}`)
              .join(', ') || '–',
            f.counts
              ? `${f.counts.lost} / ${f.counts.duplicated}` +
                (f.counts.lostToDataLoss ? ` (${f.counts.lostToDataLoss} lost to data loss)` : '') +
                (f.counts.appliedUnacked ? ` (${f.counts.appliedUnacked} applied without ack)` : '')
              : '–',
            f.backToRedisMs === null ? 'NOT back' : `${f.backToRedisMs} ms`,
          ],
    )
    lines.push(
      table(
        [
          'front',
          'fault',
          'served %',
          'p99 ms',
          'max ms',
          'errors to caller',
          'decided by',
          'lost / duplicated',
          'back on Redis',
        ],
        rows3,
      ),
      '',
    )
  }
  lines.push(`Total ${fmt(out.elapsedMs / 1000)} s. JSON: ${path.relative(process.cwd(), OUT)}`)
  const report = lines.join('\n')
  process.stdout.write(`${report}\n`)

  const json = {
    ...out,
    baselines: Object.fromEntries(Object.entries(out.baselines).map(([k, v]) => [k, strip(v)])),
    guard: Object.fromEntries(Object.entries(out.guard).map(([k, v]) => [k, strip(v)])),
    compare: Object.fromEntries(
      Object.entries(out.compare).map(([k, v]) => [
        k,
        { label: v.label, 'redis-guard': strip(v['redis-guard']), 'rlr-ioredis': strip(v['rlr-ioredis']) },
      ]),
    ),
    report,
  }
  fs.mkdirSync(path.dirname(OUT), { recursive: true })
  fs.writeFileSync(OUT, JSON.stringify(json, null, 1))
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`${e && e.stack}\n`)
    process.exit(1)
  },
)
