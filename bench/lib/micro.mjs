// Section "micro" (and "c1"): store.increment() called in-process, each run in a fresh child
// process (bench/lib/micro-worker.mjs) so that one contender's clients, threads, JIT and GC state
// never share a process with another's, and process.cpuUsage() is that contender's alone.

import path from 'node:path'
import { BENCH_DIR, median, mdTable, ms, num, ratio, runWorker } from './common.mjs'
import { STORE_CONTENDERS, STORE_LABELS, SUBJECTS } from './stores.mjs'

const WORKER = path.join(BENCH_DIR, 'lib', 'micro-worker.mjs')
export const BASELINE = 'rlr-ioredis'
export const SUBJECT = 'redis-guard'
const SUBJECT_LABEL = {
  'redis-guard': 'default scriptMode',
  'redis-guard-per-key': "same script: scriptMode 'per-key'",
}

const STYLE_LABEL = { turn: 'one turn', immediate: 'one call per turn', seq: 'sequential (c=1)' }
const PATTERN_LABEL = { hot: '1 hot key', distinct: '10,000 keys' }

/**
 * Run `scenarios` × `contenders` for `rounds` rounds: in each round every scenario, and in each
 * scenario every contender in turn (A, B, C, ... then again in the next round).
 */
async function runScenarios(ctx, scenarios, contenders, section) {
  const runs = []
  let seq = 0
  for (let round = 1; round <= ctx.rounds; round++) {
    for (const sc of scenarios) {
      for (const contender of contenders) {
        await ctx.redis.cli('FLUSHALL')
        const prefix = `rlb${++seq}:`
        const params = {
          contender,
          url: ctx.redis.url,
          redisPid: ctx.redis.pid,
          pattern: sc.pattern,
          style: sc.style,
          n: sc.n,
          concurrency: sc.concurrency,
          warmup: sc.warmup,
          prefix,
        }
        const r = await runWorker(WORKER, params, { timeoutMs: 600_000 })
        r.round = round
        r.section = section
        if (sc.pattern === 'hot' && contender !== 'memory') {
          // Every call must have been counted in Redis, once (no fallback, no double count).
          const key = contender === 'rlf-ioredis' ? `${prefix.replace(/:$/, '')}:hot` : `${prefix}hot`
          r.redisCount = Number(await ctx.redis.cli('GET', key))
          r.verified = r.redisCount === sc.warmup + sc.n
        }
        runs.push(r)
        ctx.log(
          `${section} r${round} ${sc.pattern}/${sc.style} ${contender}: ${num(r.opsPerSec)} ops/s p50 ${ms(r.p50)} p99 ${ms(r.p99)} ms cpu ${r.cpuUsPerOp.toFixed(1)} µs/op` +
            (r.meanBatch ? ` (${num(r.batches)} batches, mean ${r.meanBatch.toFixed(1)})` : '') +
            (r.fallbacks ? ` FALLBACKS ${r.fallbacks}` : '') +
            (r.verified === false ? ` COUNT MISMATCH (${r.redisCount} in Redis, ${sc.warmup + sc.n} expected)` : ''),
        )
      }
    }
  }
  return runs
}

function summarize(runs, scenarios, contenders) {
  const out = []
  for (const sc of scenarios) {
    const of = (c) => runs.filter((r) => r.pattern === sc.pattern && r.style === sc.style && r.contender === c)
    const rows = contenders.map((c) => {
      const rs = of(c)
      return {
        contender: c,
        opsPerSec: median(rs.map((r) => r.opsPerSec)),
        p50: median(rs.map((r) => r.p50)),
        p99: median(rs.map((r) => r.p99)),
        cpuUsPerOp: median(rs.map((r) => r.cpuUsPerOp)),
        redisCpuUsPerOp: median(rs.map((r) => r.redisCpuUsPerOp)),
        fallbacks: rs.reduce((a, r) => a + (r.fallbacks || 0), 0),
        verified: rs.every((r) => r.verified !== false),
        meanBatch: median(rs.map((r) => r.meanBatch)),
        rounds: rs.map((r) => r.opsPerSec),
      }
    })
    const base = of(BASELINE)
    const ratios = {}
    for (const subject of SUBJECTS.filter((x) => contenders.includes(x))) {
      const perRound = of(subject).map((s) => {
        const b = base.find((x) => x.round === s.round)
        return b ? s.opsPerSec / b.opsPerSec : NaN
      })
      ratios[subject] = { perRound, median: median(perRound) }
    }
    out.push({ ...sc, rows, ratios })
  }
  return out
}

function markdown(title, summary, note) {
  const parts = [`### ${title}`, '']
  const rows = []
  for (const sc of summary) {
    for (const r of sc.rows) {
      rows.push([
        PATTERN_LABEL[sc.pattern],
        STYLE_LABEL[sc.style],
        STORE_LABELS[r.contender] +
          (r.fallbacks ? ` ⚠ ${r.fallbacks} fallbacks` : '') +
          (r.verified ? '' : ' ⚠ count mismatch'),
        num(r.opsPerSec),
        ms(r.p50),
        ms(r.p99),
        num(r.cpuUsPerOp, 1),
        r.contender === 'memory' ? '–' : num(r.redisCpuUsPerOp, 1),
      ])
    }
  }
  parts.push(
    mdTable(
      ['keys', 'calling style', 'contender', 'ops/s', 'p50 ms', 'p99 ms', 'node CPU µs/op¹', 'redis CPU µs/op²'],
      rows,
      ['l', 'l', 'l', 'r', 'r', 'r', 'r', 'r'],
    ),
  )
  parts.push('')
  const subjects = Object.keys(summary[0].ratios)
  if (subjects.length && summary[0].rows.some((r) => r.contender === BASELINE)) {
    parts.push(
      `**Headline ratio** redis-guard ops/s ÷ (rate-limit-redis + ioredis) ops/s within each round, then the median (> 1: redis-guard faster). The same-script column runs rate-limit-redis's increment logic, one script call per key, as rate-limit-redis does:`,
    )
    parts.push('')
    const header = ['keys', 'calling style']
    for (const x of subjects) header.push(`${SUBJECT_LABEL[x]}: per round`, 'median')
    const rr = summary.map((sc) => [
      PATTERN_LABEL[sc.pattern],
      STYLE_LABEL[sc.style],
      ...subjects.flatMap((x) => [sc.ratios[x].perRound.map(ratio).join(' · '), `**${ratio(sc.ratios[x].median)}**`]),
    ])
    parts.push(mdTable(header, rr, ['l', 'l', ...subjects.flatMap(() => ['l', 'r'])]))
  }
  const batches = []
  for (const x of subjects) {
    const per = summary
      .map((sc) => [sc, sc.rows.find((r) => r.contender === x)])
      .filter(([, r]) => r && Number.isFinite(r.meanBatch))
      .map(([sc, r]) => `${PATTERN_LABEL[sc.pattern]} / ${STYLE_LABEL[sc.style]} ${r.meanBatch.toFixed(1)}`)
    if (per.length) batches.push(`${SUBJECT_LABEL[x].replace('same script: ', '')}: ${per.join(' · ')}`)
  }
  if (batches.length)
    parts.push(
      '',
      `redis-guard calls per JS→Rust crossing (mean batch, median over rounds; MAX_BATCH 64) — ${batches.join('; ')}`,
    )
  if (note) parts.push('', note)
  return parts.join('\n')
}

const FOOTNOTES =
  '¹ process.cpuUsage() delta ÷ ops: the whole Node process, i.e. for redis-guard the JS thread **plus** its tokio threads; for the others the JS thread plus libuv. ' +
  '² utime+stime of redis-server from /proc (10 ms resolution) ÷ ops. Medians over rounds; each run in a fresh child process after a warm-up.'

/** Section micro: N calls with `concurrency` in flight; 2 key patterns × 2 calling styles. */
export async function runMicro(ctx) {
  const contenders = ctx.contenders.filter((c) => STORE_CONTENDERS.includes(c))
  const warmup = Math.min(20_000, Math.max(1000, Math.floor(ctx.n / 10)))
  const scenarios = []
  for (const pattern of ['hot', 'distinct']) {
    for (const style of ['turn', 'immediate'])
      scenarios.push({ pattern, style, n: ctx.n, concurrency: ctx.concurrency, warmup })
  }
  const runs = await runScenarios(ctx, scenarios, contenders, 'micro')
  const summary = summarize(runs, scenarios, contenders)
  const md = markdown(
    `micro: ${num(ctx.n)} × increment(), ${ctx.concurrency} in flight, windowMs 60000`,
    summary,
    FOOTNOTES,
  )
  return {
    params: { n: ctx.n, concurrency: ctx.concurrency, warmup, rounds: ctx.rounds, contenders },
    runs,
    summary,
    markdown: md,
  }
}

/** Section c1: concurrency 1, sequential awaits. */
export async function runC1(ctx) {
  const contenders = ctx.contenders.filter((c) => STORE_CONTENDERS.includes(c))
  const scenarios = [
    { pattern: 'hot', style: 'seq', n: ctx.c1n, concurrency: 1, warmup: Math.min(2000, Math.max(200, ctx.c1n / 5)) },
  ]
  const runs = await runScenarios(ctx, scenarios, contenders, 'c1')
  const summary = summarize(runs, scenarios, contenders)
  const md = markdown(
    `concurrency 1: ${num(ctx.c1n)} sequential awaited increment() calls, 1 hot key`,
    summary,
    'At concurrency 1 ops/s = 1 / mean latency; the ratio is therefore the inverse ratio of mean latencies. ' +
      FOOTNOTES,
  )
  return { params: { n: ctx.c1n, rounds: ctx.rounds, contenders }, runs, summary, markdown: md }
}
