// Section "locks": acquire+release cycles, each contender in a fresh child process.

import path from 'node:path'
import { BENCH_DIR, median, mdTable, ms, num, ratio, runWorker } from './common.mjs'

const WORKER = path.join(BENCH_DIR, 'lib', 'locks-worker.mjs')
export const LOCK_CONTENDERS = ['rg-helpers', 'rg-lease', 'redlock', 'semaphore']
const LABELS = {
  'rg-helpers': 'redis-guard acquireLock/releaseLock',
  'rg-lease': 'redis-guard lock() + lease.release()',
  redlock: '@sesamecare-oss/redlock (1 instance, retryCount 0) + ioredis',
  semaphore: 'redis-semaphore Mutex (acquireAttemptsLimit 1) + ioredis',
}
const CONCURRENCY = 64

export async function runLocks(ctx) {
  const runs = []
  const warmup = Math.min(5000, Math.max(500, Math.floor(ctx.lockCycles / 10)))
  for (let round = 1; round <= ctx.rounds; round++) {
    for (const contender of LOCK_CONTENDERS) {
      await ctx.redis.cli('FLUSHALL')
      const r = await runWorker(WORKER, {
        contender,
        url: ctx.redis.url,
        redisPid: ctx.redis.pid,
        cycles: ctx.lockCycles,
        concurrency: CONCURRENCY,
        warmup,
      })
      r.round = round
      runs.push(r)
      ctx.log(
        `locks r${round} ${contender}: ${num(r.cyclesPerSec)} cycles/s p50 ${ms(r.p50)} p99 ${ms(r.p99)} ms cpu ${r.cpuUsPerCycle.toFixed(1)} µs/cycle contended ${r.contended}` +
          (r.fallbacks ? ` FALLBACKS ${r.fallbacks}` : ''),
      )
    }
  }
  const summary = LOCK_CONTENDERS.map((c) => {
    const rs = runs.filter((r) => r.contender === c)
    return {
      contender: c,
      cyclesPerSec: median(rs.map((r) => r.cyclesPerSec)),
      p50: median(rs.map((r) => r.p50)),
      p99: median(rs.map((r) => r.p99)),
      cpuUsPerCycle: median(rs.map((r) => r.cpuUsPerCycle)),
      redisCpuUsPerCycle: median(rs.map((r) => r.redisCpuUsPerCycle)),
      contended: rs.reduce((a, r) => a + r.contended, 0),
      fallbacks: rs.reduce((a, r) => a + (r.fallbacks || 0), 0),
    }
  })
  const ratioOf = (a, b) => {
    const per = runs
      .filter((r) => r.contender === a)
      .map((x) => {
        const y = runs.find((r) => r.contender === b && r.round === x.round)
        return y ? x.cyclesPerSec / y.cyclesPerSec : NaN
      })
    return { perRound: per, median: median(per) }
  }
  const ratios = {
    'rg-helpers/redlock': ratioOf('rg-helpers', 'redlock'),
    'rg-lease/redlock': ratioOf('rg-lease', 'redlock'),
    'rg-helpers/semaphore': ratioOf('rg-helpers', 'semaphore'),
  }
  const rows = summary.map((s) => [
    LABELS[s.contender] + (s.fallbacks ? ` ⚠ ${s.fallbacks} fallbacks` : ''),
    num(s.cyclesPerSec),
    ms(s.p50),
    ms(s.p99),
    num(s.cpuUsPerCycle, 1),
    num(s.redisCpuUsPerCycle, 1),
    num(s.contended),
  ])
  const md = [
    `### locks: ${num(ctx.lockCycles)} acquire+release cycles on 1,000 keys, ${CONCURRENCY} in flight, TTL 10 s`,
    '',
    mdTable(
      ['contender', 'cycles/s', 'p50 ms', 'p99 ms', 'node CPU µs/cycle', 'redis CPU µs/cycle', 'contended¹'],
      rows,
    ),
    '',
    ...Object.entries(ratios).map(
      ([k, v]) => `**${k}** cycles/s: ${v.perRound.map(ratio).join(' · ')} → median **${ratio(v.median)}**  `,
    ),
    '',
    '¹ cycles (all rounds) whose acquire found the key held by another in-flight cycle (no wait, no retry): counted as cycles, not as errors.',
  ].join('\n')
  return {
    params: { cycles: ctx.lockCycles, concurrency: CONCURRENCY, keys: 1000, warmup, rounds: ctx.rounds },
    runs,
    summary,
    ratios,
    markdown: md,
  }
}
