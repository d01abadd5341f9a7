// Section "idempotency": Express 5 with an idempotency middleware per contender in a child
// process (bench/lib/idem-server.mjs), loaded by autocannon (64 connections) with two
// workloads: every request a new key ("new"), and retries of 100 keys ("replay", all completed
// in a warm-up first). Figures per run: req/s, p50 / p99, Node CPU of the app per request, Redis
// commands per request (INFO commandstats: what crosses to Redis), handler runs.

import { createRequire } from 'node:module'
import path from 'node:path'
import { parseInfo } from '../../__tests__/helpers/redis.mjs'
import { BENCH_DIR, median, mdTable, ms, num, ratio, threadCells } from './common.mjs'
import { startApp } from './app.mjs'
import { measureApp } from './http.mjs'

const require = createRequire(import.meta.url)
const autocannon = require('autocannon')

const SERVER = path.join(BENCH_DIR, 'lib', 'idem-server.mjs')
export const IDEM_CONTENDERS = ['none', 'redis-guard', 'express-idempotency', 'node-idempotency']
const LABELS = {
  none: 'no middleware',
  'redis-guard': 'redis-guard idempotency()',
  'express-idempotency': 'express-idempotency 1 + express-idempotency-redis-adapter (node-redis 4)',
  'node-idempotency': '@node-idempotency/core + storage-adapter-redis (node-redis 4)',
}
const PEERS = ['express-idempotency', 'node-idempotency']
const CONNECTIONS = 64
const REPLAY_KEYS = 100
const BODY = JSON.stringify({ amount: 4200, currency: 'eur', source: 'tok_visa' })

/** autocannon with an `Idempotency-Key` from `keyOf(n)` on request n. */
function load(url, { duration, keyOf }) {
  let n = 0
  return autocannon({
    url: `${url}pay`,
    connections: CONNECTIONS,
    duration,
    timeout: 10,
    pipelining: 1,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: BODY,
    requests: [
      {
        setupRequest: (req) => {
          req.headers = { ...req.headers, 'idempotency-key': keyOf(n++) }
          return req
        },
      },
    ],
  })
}

/**
 * Commands clients sent (INFO commandstats, without INFO itself): for a contender that uses
 * scripts (redis-guard), the script calls only — the commands a script runs inside Redis are
 * counted there too, but they cost no round trip.
 */
async function calls(redis, contender) {
  const s = parseInfo(await redis.cli('INFO', 'commandstats'))
  let n = 0
  for (const [k, v] of Object.entries(s)) {
    if (!k.startsWith('cmdstat_') || k === 'cmdstat_info') continue
    if (contender === 'redis-guard' && k !== 'cmdstat_evalsha' && k !== 'cmdstat_eval') continue
    n += Number(/calls=(\d+)/.exec(String(v))?.[1] || 0)
  }
  return n
}

export async function runIdempotency(ctx) {
  const contenders = IDEM_CONTENDERS
  const seconds = ctx.httpSeconds
  const runs = []
  for (let round = 1; round <= ctx.rounds; round++) {
    for (const workload of ['new', 'replay']) {
      for (const contender of contenders) {
        await ctx.redis.cli('FLUSHALL')
        const prefix = `idb${round}:`
        const app = await startApp({ contender, url: ctx.redis.url, prefix }, { script: SERVER })
        try {
          const tag = `${contender}-${round}-${workload}-${process.pid}`
          const keyOf = workload === 'new' ? (n) => `${tag}-${n}` : (n) => `${tag}-r${n % REPLAY_KEYS}`
          const run = {
            round,
            workload,
            ...(await measureApp(ctx, app, round, contender, {
              // The warm-up (JIT, connections, scripts) of "replay" also completes the 100 keys.
              load: (duration, warmup) =>
                load(app.url, { duration, keyOf: warmup && workload === 'new' ? (n) => `w-${tag}-${n}` : keyOf }),
              commands: () => calls(ctx.redis, contender),
            })),
          }
          run.exitedCleanly = await app.close()
          runs.push(run)
          ctx.log(
            `idempotency r${round} ${workload} ${contender}: ${num(run.reqPerSec)} req/s p50 ${run.p50} p99 ${run.p99} ms, ` +
              `${run.redisCmdsPerReq.toFixed(2)} Redis calls/req, ${run.handlerRuns} handler runs, non2xx ${run.non2xx} errors ${run.errors + run.timeouts}`,
          )
        } catch (e) {
          await app.close()
          throw e
        }
      }
    }
  }
  const summary = []
  for (const workload of ['new', 'replay'])
    for (const c of contenders) {
      const rs = runs.filter((r) => r.contender === c && r.workload === workload)
      summary.push({
        workload,
        contender: c,
        reqPerSec: median(rs.map((r) => r.reqPerSec)),
        p50: median(rs.map((r) => r.p50)),
        p99: median(rs.map((r) => r.p99)),
        appCpuUsPerReq: median(rs.map((r) => r.appCpuUsPerReq)),
        threads: threadCells(rs, 'appThreadsUsPerReq'),
        redisCpuUsPerReq: median(rs.map((r) => r.redisCpuUsPerReq)),
        loadCpuUsPerReq: median(rs.map((r) => r.loadCpuUsPerReq)),
        redisCmdsPerReq: median(rs.map((r) => r.redisCmdsPerReq)),
        handlerRuns: median(rs.map((r) => r.handlerRuns)),
        bad: rs.reduce((a, r) => a + r.non2xx + r.errors + r.timeouts, 0),
      })
    }
  // Ratios per round: redis-guard ÷ the best peer of that round, and ÷ no middleware.
  const ratios = {}
  for (const workload of ['new', 'replay']) {
    const vsPeer = []
    const vsNone = []
    for (let round = 1; round <= ctx.rounds; round++) {
      const of = (c) => runs.find((r) => r.contender === c && r.workload === workload && r.round === round)
      const g = of('redis-guard')
      const best = Math.max(...PEERS.map((c) => of(c)?.reqPerSec ?? 0))
      if (g && best) vsPeer.push(g.reqPerSec / best)
      if (g && of('none')) vsNone.push(g.reqPerSec / of('none').reqPerSec)
    }
    ratios[workload] = {
      vsBestPeer: { perRound: vsPeer, median: median(vsPeer) },
      vsNone: { perRound: vsNone, median: median(vsNone) },
    }
  }
  const md = [
    `### idempotency: Express 5, a small JSON handler, autocannon ${CONNECTIONS} connections × ${seconds} s, POST with an \`Idempotency-Key\``,
    '',
    'Workloads: **new** — every request a new key (claim, run, store); **replay** — retries of 100 keys completed in the warm-up (every measured request is a replay). Medians of the rounds.',
    '',
    mdTable(
      [
        'workload',
        'middleware',
        'req/s',
        'p50 ms',
        'p99 ms',
        'Node CPU µs/req¹',
        'JS · tokio · other threads µs/req',
        'Redis calls/req²',
        'redis CPU µs/req',
        'autocannon CPU µs/req',
        'handler runs',
        'non-2xx + errors',
      ],
      summary.map((s) => [
        s.workload,
        LABELS[s.contender],
        num(s.reqPerSec),
        ms(s.p50),
        ms(s.p99),
        num(s.appCpuUsPerReq, 1),
        s.threads,
        s.contender === 'none' ? '–' : num(s.redisCmdsPerReq, 2),
        s.contender === 'none' ? '–' : num(s.redisCpuUsPerReq, 1),
        num(s.loadCpuUsPerReq, 1),
        num(s.handlerRuns),
        num(s.bad),
      ]),
    ),
    '',
    ...['new', 'replay'].flatMap((w) => [
      `**Ratio (${w})** redis-guard ÷ best peer: ${ratios[w].vsBestPeer.perRound.map(ratio).join(' · ')} → median **${ratio(ratios[w].vsBestPeer.median)}**; ` +
        `redis-guard ÷ no middleware: ${ratios[w].vsNone.perRound.map(ratio).join(' · ')} → median **${ratio(ratios[w].vsNone.median)}**  `,
    ]),
    '',
    '¹ CPU of the app process (Express + middleware + client threads) per request; autocannon runs in the orchestrator process on the same machine.',
    '² Commands the app sent to Redis per request (INFO commandstats; for redis-guard its script calls, whose inner commands cost no round trip). A redis-guard request waits for 2 round trips on a new key (claim, store) and 1 on a replay (asserted one request at a time in __tests__/idempotency.test.mjs); under load the claims and stores of concurrent requests share one script call per batch, hence fewer calls than requests. The peers send one command per step (express-idempotency: GET, then SET twice; @node-idempotency: SET NX, then SET).',
  ].join('\n')
  return {
    params: { seconds, connections: CONNECTIONS, rounds: ctx.rounds, contenders, replayKeys: REPLAY_KEYS },
    runs,
    summary,
    ratios,
    markdown: md,
  }
}
