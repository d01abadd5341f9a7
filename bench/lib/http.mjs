// Section "http": an Express 5 app per store in a child process, loaded by autocannon
// (programmatic API, in this parent process) with 64 connections.

import { createRequire } from 'node:module'
import { median, mdTable, ms, num, procCpuMicros, ratio, threadCells, threadCpuPer } from './common.mjs'
import { startApp } from './app.mjs'
import { STORE_LABELS, SUBJECTS } from './stores.mjs'

const require = createRequire(import.meta.url)
const autocannon = require('autocannon')

export const HTTP_CONTENDERS = ['redis-guard', 'redis-guard-per-key', 'rlr-ioredis', 'memory']
const CONNECTIONS = 64

/** autocannon run; resolves its result (never throws for HTTP errors). */
export function cannon(url, { connections = CONNECTIONS, duration, timeout = 10 } = {}) {
  return autocannon({ url, connections, duration, timeout, pipelining: 1 })
}

/**
 * One measured autocannon run of a started app (bench/lib/app.mjs), after a warm-up: req/s,
 * latency, errors, the CPU per request of the app (and of each of its thread kinds), of Redis and
 * of the load generator (this process, where autocannon runs), fallbacks, calls per crossing (an app
 * whose stats have `diag`), handler runs (an app whose stats have `runs`) and, with `commands`,
 * Redis commands per request.
 * @param {any} ctx the orchestrator's context (httpSeconds, redis)
 * @param {Awaited<ReturnType<typeof startApp>>} app
 * @param {number} round
 * @param {string} contender
 * @param {object} [how]
 * @param {(duration: number, warmup: boolean) => Promise<any>} [how.load] the autocannon run of
 *   `duration` s (the warm-up's, then the measured one); the default value GETs the app's URL
 * @param {() => Promise<number>} [how.commands] the commands clients sent to Redis so far, read
 *   around the measured run (outside the window of Redis's CPU)
 */
export async function measureApp(
  ctx,
  app,
  round,
  contender,
  { load = (duration) => cannon(app.url, { duration }), commands } = {},
) {
  await load(Math.min(2, ctx.httpSeconds), true) // warm-up (JIT, connections, scripts)
  const s0 = await app.stats()
  const c0 = commands && (await commands())
  const r0 = procCpuMicros(ctx.redis.pid)
  const l0 = process.cpuUsage()
  const res = await load(ctx.httpSeconds, false)
  const l1 = process.cpuUsage(l0)
  const r1 = procCpuMicros(ctx.redis.pid)
  const c1 = commands && (await commands())
  const s1 = await app.stats()
  const total = res.requests.total
  const cpu = s1.cpu.user + s1.cpu.system - (s0.cpu.user + s0.cpu.system)
  return {
    round,
    contender,
    reqPerSec: res.requests.average,
    total,
    p50: res.latency.p50,
    p99: res.latency.p99,
    max: res.latency.max,
    non2xx: res.non2xx,
    errors: res.errors,
    timeouts: res.timeouts,
    appCpuUsPerReq: cpu / total,
    ...(s1.threads && { appThreadsUsPerReq: threadCpuPer(s0.threads, s1.threads, total) }),
    redisCpuUsPerReq: (r1 - r0) / total,
    loadCpuUsPerReq: (l1.user + l1.system) / total,
    fallbacks: s1.storeStats.fallbacks !== undefined ? s1.storeStats.fallbacks - s0.storeStats.fallbacks : undefined,
    storeErrors: s1.storeErrors !== undefined ? s1.storeErrors - s0.storeErrors : undefined,
    unhandled: s1.unhandled,
    ...(s1.diag && {
      batches: s1.diag.batches - s0.diag.batches,
      meanBatch:
        s1.diag.batches > s0.diag.batches
          ? (s1.diag.items - s0.diag.items) / (s1.diag.batches - s0.diag.batches)
          : undefined,
    }),
    ...(commands && { redisCmdsPerReq: (c1 - c0) / total }),
    ...(s1.runs !== undefined && { handlerRuns: s1.runs - s0.runs }),
  }
}

/**
 * Per contender, over the rounds of `measureApp` runs: medians of req/s, latency and CPU per
 * request, the worst max, and the sums of bad answers and fallbacks.
 * @param {any[]} runs
 * @param {string[]} contenders
 */
export function summarizeApps(runs, contenders) {
  return contenders.map((c) => {
    const rs = runs.filter((r) => r.contender === c)
    return {
      contender: c,
      reqPerSec: median(rs.map((r) => r.reqPerSec)),
      p50: median(rs.map((r) => r.p50)),
      p99: median(rs.map((r) => r.p99)),
      max: Math.max(...rs.map((r) => r.max)),
      appCpuUsPerReq: median(rs.map((r) => r.appCpuUsPerReq)),
      threads: threadCells(rs, 'appThreadsUsPerReq'),
      redisCpuUsPerReq: median(rs.map((r) => r.redisCpuUsPerReq)),
      loadCpuUsPerReq: median(rs.map((r) => r.loadCpuUsPerReq)),
      bad: rs.reduce((a, r) => a + r.non2xx + r.errors + r.timeouts, 0),
      fallbacks: rs.reduce((a, r) => a + (r.fallbacks || 0), 0),
      meanBatch: median(rs.map((r) => r.meanBatch)),
    }
  })
}

export async function runHttp(ctx) {
  const contenders = HTTP_CONTENDERS.filter((c) => ctx.contenders.includes(c))
  const runs = []
  for (let round = 1; round <= ctx.rounds; round++) {
    for (const contender of contenders) {
      await ctx.redis.cli('FLUSHALL')
      const app = await startApp({ store: contender, url: ctx.redis.url, prefix: `rlh${round}:`, keyBy: 'connection' })
      try {
        const run = await measureApp(ctx, app, round, contender)
        run.exitedCleanly = await app.close()
        runs.push(run)
        ctx.log(
          `http r${round} ${contender}: ${num(run.reqPerSec)} req/s p50 ${run.p50} p99 ${run.p99} ms max ${run.max} non2xx ${run.non2xx} errors ${run.errors}` +
            (run.meanBatch ? ` (mean batch ${run.meanBatch.toFixed(1)})` : '') +
            (run.fallbacks ? ` FALLBACKS ${run.fallbacks}` : ''),
        )
      } catch (e) {
        await app.close()
        throw e
      }
    }
  }
  const summary = summarizeApps(runs, contenders)
  const rgBatch = summary
    .filter((s) => SUBJECTS.includes(s.contender) && Number.isFinite(s.meanBatch))
    .map((s) => `${s.contender === 'redis-guard' ? 'default' : "'per-key'"} ${s.meanBatch.toFixed(1)}`)
  const ratios = {}
  for (const subject of SUBJECTS.filter((x) => contenders.includes(x))) {
    const perRound = runs
      .filter((r) => r.contender === subject)
      .map((g) => {
        const b = runs.find((r) => r.contender === 'rlr-ioredis' && r.round === g.round)
        return b ? g.reqPerSec / b.reqPerSec : NaN
      })
    ratios[subject] = { perRound, median: median(perRound) }
  }
  const rows = summary.map((s) => [
    STORE_LABELS[s.contender] + (s.fallbacks ? ` ⚠ ${s.fallbacks} fallbacks` : ''),
    num(s.reqPerSec),
    ms(s.p50),
    ms(s.p99),
    ms(s.max),
    num(s.appCpuUsPerReq, 1),
    s.contender === 'memory' ? '–' : num(s.redisCpuUsPerReq, 1),
    num(s.bad),
  ])
  const md = [
    `### http: Express 5 + express-rate-limit 8, autocannon ${CONNECTIONS} connections × ${ctx.httpSeconds} s, one key per connection`,
    '',
    mdTable(
      ['store', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'app CPU µs/req¹', 'redis CPU µs/req', 'non-2xx + errors'],
      rows,
    ),
    '',
    ...Object.entries(ratios).map(
      ([x, r]) =>
        `**Ratio** ${STORE_LABELS[x]} req/s ÷ (rate-limit-redis + ioredis) req/s: ${r.perRound.map(ratio).join(' · ')} → median **${ratio(r.median)}**  `,
    ),
    '',
    ...(rgBatch.length
      ? [`redis-guard calls per JS→Rust crossing under HTTP load (mean batch): ${rgBatch.join(' · ')}`, '']
      : []),
    '¹ CPU of the app process (Express + store + client threads) per request. autocannon runs in the orchestrator process on the same machine, so it competes for the same cores.',
  ].join('\n')
  return {
    params: { seconds: ctx.httpSeconds, connections: CONNECTIONS, rounds: ctx.rounds, contenders },
    runs,
    summary,
    ratios,
    markdown: md,
  }
}
