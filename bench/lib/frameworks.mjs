// What the framework sections ("fastify", "nest") share: an app per contender in a child
// process (a server script of bench/lib/app.mjs's protocol), loaded by autocannon from this
// process with 64 connections, one key per connection; rounds alternate the contenders; the
// report has medians over rounds and the subject's ratio to each peer within each round.

import { median, mdTable, ms, num, ratio } from './common.mjs'
import { startApp } from './app.mjs'
import { measureApp, summarizeApps } from './http.mjs'

const CONNECTIONS = 64

/**
 * @typedef {object} FrameworkSpec
 * @property {string} name section name (log lines, key prefixes)
 * @property {string} title the report's heading, after "### name: "
 * @property {string} script the server child (bench/lib/*-server.mjs)
 * @property {string[]} contenders ids, the subject first
 * @property {Record<string, string>} labels
 * @property {string} subject the contender whose ratios are reported
 * @property {Array<{ peer: string, target?: number }>} ratios peers (and targets) of the subject
 * @property {string[]} [notes] lines under the table
 */

/**
 * Run one framework section.
 * @param {any} ctx the orchestrator's context (rounds, httpSeconds, redis, log)
 * @param {FrameworkSpec} spec
 */
export async function runFramework(ctx, spec) {
  const runs = []
  for (let round = 1; round <= ctx.rounds; round++) {
    for (const contender of spec.contenders) {
      await ctx.redis.cli('FLUSHALL')
      const app = await startApp(
        { contender, url: ctx.redis.url, prefix: `${spec.name}${round}:` },
        { script: spec.script, readyTimeoutMs: 30_000 },
      )
      try {
        const run = await measureApp(ctx, app, round, contender)
        run.exitedCleanly = await app.close()
        runs.push(run)
        ctx.log(
          `${spec.name} r${round} ${contender}: ${num(run.reqPerSec)} req/s p50 ${run.p50} p99 ${run.p99} ms max ${run.max} non2xx ${run.non2xx} errors ${run.errors}` +
            ` app CPU ${run.appCpuUsPerReq.toFixed(1)} µs/req redis CPU ${run.redisCpuUsPerReq.toFixed(1)} µs/req` +
            (run.meanBatch ? ` (mean batch ${run.meanBatch.toFixed(1)})` : '') +
            (run.fallbacks ? ` FALLBACKS ${run.fallbacks}` : ''),
        )
      } catch (e) {
        await app.close()
        throw e
      }
    }
  }
  const summary = summarizeApps(runs, spec.contenders)
  const ratios = {}
  for (const { peer, target } of spec.ratios) {
    const perRound = runs
      .filter((r) => r.contender === spec.subject)
      .map((g) => {
        const b = runs.find((r) => r.contender === peer && r.round === g.round)
        return b ? g.reqPerSec / b.reqPerSec : NaN
      })
    ratios[peer] = { perRound, median: median(perRound), target }
  }
  const rows = summary.map((s) => [
    spec.labels[s.contender] + (s.fallbacks ? ` ⚠ ${s.fallbacks} fallbacks` : ''),
    num(s.reqPerSec),
    ms(s.p50),
    ms(s.p99),
    ms(s.max),
    num(s.appCpuUsPerReq, 1),
    s.threads,
    Number.isFinite(s.redisCpuUsPerReq) && s.redisCpuUsPerReq > 0.05 ? num(s.redisCpuUsPerReq, 1) : '–',
    num(s.loadCpuUsPerReq, 1),
    num(s.bad),
    Number.isFinite(s.meanBatch) ? s.meanBatch.toFixed(1) : '–',
  ])
  const md = [
    `### ${spec.name}: ${spec.title}, autocannon ${CONNECTIONS} connections × ${ctx.httpSeconds} s, one key per connection`,
    '',
    mdTable(
      [
        'contender',
        'req/s',
        'p50 ms',
        'p99 ms',
        'max ms',
        'app CPU µs/req¹',
        'JS · tokio · other threads µs/req',
        'redis CPU µs/req',
        'autocannon CPU µs/req',
        'non-2xx + errors',
        'calls per crossing',
      ],
      rows,
    ),
    '',
    ...Object.entries(ratios).map(
      ([peer, r]) =>
        `**Ratio** ${spec.labels[spec.subject]} ÷ ${spec.labels[peer]} req/s: ${r.perRound.map(ratio).join(' · ')} → median **${ratio(r.median)}**` +
        (r.target ? ` (target ≥ ${r.target}×: ${r.median >= r.target ? 'met' : 'not met'})` : '') +
        '  ',
    ),
    '',
    "¹ CPU of the app process (framework + store + client threads) per request, then by thread (/proc/<pid>/task: the JS thread, redis-guard's tokio thread, the others). autocannon runs in the orchestrator process on the same machine, so it competes for the same cores: its CPU per request is beside them. When the run is CPU-bound, req/s follows the sum of the CPU columns.",
    ...(spec.notes || []),
  ].join('\n')
  return {
    params: { seconds: ctx.httpSeconds, connections: CONNECTIONS, rounds: ctx.rounds, contenders: spec.contenders },
    runs,
    summary,
    ratios,
    markdown: md,
  }
}
