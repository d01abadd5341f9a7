// Section "limiter": RateLimiter.limit() per algorithm against rate-limiter-flexible's
// RateLimiterRedis consume() on ioredis, 256 in flight (--concurrency), on one hot key and on
// 10,000 keys; each contender in a fresh child process, rounds alternating, medians reported.

import path from 'node:path'
import { BENCH_DIR, median, mdTable, ms, num, ratio, runWorker } from './common.mjs'

const WORKER = path.join(BENCH_DIR, 'lib', 'limiter-worker.mjs')
export const LIMITER_CONTENDERS = ['rg-fixed', 'rg-sliding', 'rg-gcra', 'rlf']
const LABELS = {
  'rg-fixed': "redis-guard RateLimiter 'fixed-window'",
  'rg-sliding': "redis-guard RateLimiter 'sliding-window'",
  'rg-gcra': "redis-guard RateLimiter 'gcra'",
  rlf: 'rate-limiter-flexible RateLimiterRedis consume() + ioredis',
}
const SCENARIOS = [
  ['hot key', 1],
  ['10,000 keys', 10_000],
]

export async function runLimiter(ctx) {
  const runs = []
  const calls = ctx.limiterN
  const warmup = Math.min(10_000, Math.max(1000, Math.floor(calls / 10)))
  for (let round = 1; round <= ctx.rounds; round++) {
    for (const [scenario, keys] of SCENARIOS) {
      for (const contender of LIMITER_CONTENDERS) {
        await ctx.redis.cli('FLUSHALL')
        const r = await runWorker(WORKER, {
          contender,
          url: ctx.redis.url,
          redisPid: ctx.redis.pid,
          calls,
          concurrency: ctx.concurrency,
          keys,
          warmup,
        })
        Object.assign(r, { round, scenario })
        runs.push(r)
        ctx.log(
          `limiter r${round} ${scenario} ${contender}: ${num(r.callsPerSec)} calls/s p50 ${ms(r.p50)} p99 ${ms(r.p99)} ms cpu ${r.cpuUsPerCall.toFixed(1)} µs/call` +
            (r.fallbacks ? ` FALLBACKS ${r.fallbacks}` : '') +
            (r.refused ? ` REFUSED ${r.refused}` : ''),
        )
      }
    }
  }
  const ratioOf = (scenario, a, b) => {
    const per = runs
      .filter((r) => r.scenario === scenario && r.contender === a)
      .map((x) => {
        const y = runs.find((r) => r.scenario === scenario && r.contender === b && r.round === x.round)
        return y ? x.callsPerSec / y.callsPerSec : NaN
      })
    return { perRound: per, median: median(per) }
  }
  const summary = []
  const ratios = {}
  const md = [
    `### limiter: ${num(calls)} RateLimiter.limit() / consume() calls per run, ${ctx.concurrency} in flight, every call allowed`,
    '',
  ]
  for (const [scenario] of SCENARIOS) {
    const rows = []
    for (const c of LIMITER_CONTENDERS) {
      const rs = runs.filter((r) => r.scenario === scenario && r.contender === c)
      const s = {
        scenario,
        contender: c,
        callsPerSec: median(rs.map((r) => r.callsPerSec)),
        p50: median(rs.map((r) => r.p50)),
        p99: median(rs.map((r) => r.p99)),
        cpuUsPerCall: median(rs.map((r) => r.cpuUsPerCall)),
        redisCpuUsPerCall: median(rs.map((r) => r.redisCpuUsPerCall)),
        fallbacks: rs.reduce((a, r) => a + (r.fallbacks || 0), 0),
      }
      summary.push(s)
      rows.push([
        LABELS[c] + (s.fallbacks ? ` ⚠ ${s.fallbacks} fallbacks` : ''),
        num(s.callsPerSec),
        ms(s.p50),
        ms(s.p99),
        num(s.cpuUsPerCall, 1),
        num(s.redisCpuUsPerCall, 1),
      ])
    }
    md.push(`**${scenario}**`, '')
    md.push(mdTable(['contender', 'calls/s', 'p50 ms', 'p99 ms', 'node CPU µs/call', 'redis CPU µs/call'], rows), '')
    for (const [a, b] of [
      ['rg-fixed', 'rlf'],
      ['rg-sliding', 'rlf'],
      ['rg-gcra', 'rlf'],
      ['rg-sliding', 'rg-fixed'],
      ['rg-gcra', 'rg-fixed'],
    ]) {
      const v = ratioOf(scenario, a, b)
      ratios[`${scenario}: ${a}/${b}`] = v
      md.push(
        `${scenario} **${a}/${b}** calls/s: ${v.perRound.map(ratio).join(' · ')} → median **${ratio(v.median)}**  `,
      )
    }
    md.push('')
  }
  return {
    params: { calls, concurrency: ctx.concurrency, warmup, rounds: ctx.rounds },
    runs,
    summary,
    ratios,
    markdown: md.join('\n'),
  }
}
