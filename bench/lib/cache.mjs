// Section "cache": get hits and getOrSet hits of 1 KB JSON values over 10,000 keys, 256 in
// flight, one call started per event-loop turn ('turns') and 256 started in one turn
// ('waves'); each contender in a fresh child process, rounds alternating. Peers: the
// hand-written ioredis helpers (GET + JSON.parse), bentocache (Redis driver on ioredis; L1 off,
// and with its memory L1), cache-manager 7 + @keyv/redis.

import path from 'node:path'
import { BENCH_DIR, median, mdTable, ms, num, ratio, runWorker, threadCells } from './common.mjs'

const WORKER = path.join(BENCH_DIR, 'lib', 'cache-worker.mjs')
export const CACHE_CONTENDERS = ['rg', 'rg-l1', 'ioredis', 'bento', 'bento-l1', 'cache-manager']
const LABELS = {
  rg: 'redis-guard Cache',
  'rg-l1': 'redis-guard Cache, l1',
  ioredis: 'ioredis GET + JSON.parse (hand-written helpers)',
  bento: 'bentocache 1.6, Redis driver (ioredis), L1 off',
  'bento-l1': 'bentocache 1.6, memory L1 + Redis',
  'cache-manager': 'cache-manager 7 + @keyv/redis',
}
const OPS = ['get', 'getOrSet']
const MODES = ['turns', 'waves']
const CONCURRENCY = 256
const KEYS = 10_000

export async function runCache(ctx) {
  const runs = []
  const n = ctx.cacheN
  for (let round = 1; round <= ctx.rounds; round++) {
    for (const op of OPS)
      for (const mode of MODES)
        for (const contender of CACHE_CONTENDERS) {
          await ctx.redis.cli('FLUSHALL')
          const r = await runWorker(WORKER, {
            contender,
            url: ctx.redis.url,
            redisPid: ctx.redis.pid,
            op,
            mode,
            n,
            concurrency: CONCURRENCY,
            keys: KEYS,
            warmup: Math.min(20_000, n),
          })
          if (r.error) throw new Error(`${contender} ${op} ${mode}: ${r.error}`)
          r.round = round
          runs.push(r)
          ctx.log(
            `cache r${round} ${op}/${mode} ${contender}: ${num(r.opsPerSec)} ops/s p50 ${ms(r.p50)} p99 ${ms(r.p99)} ms cpu ${r.cpuUsPerOp.toFixed(1)} µs/op rss ${num(r.rssMb)} MB` +
              (r.misses ? ` MISSES ${r.misses}` : ''),
          )
        }
  }
  const pick = (c, op, mode) => runs.filter((r) => r.contender === c && r.op === op && r.mode === mode)
  const ratioOf = (a, b, op, mode) => {
    const per = pick(a, op, mode).map((x) => {
      const y = pick(b, op, mode).find((r) => r.round === x.round)
      return y ? x.opsPerSec / y.opsPerSec : NaN
    })
    return { perRound: per, median: median(per) }
  }
  const ratios = {}
  const md = [
    `### cache: 1 KB JSON values, ${num(KEYS)} keys, ${CONCURRENCY} in flight, ${num(n)} hits per run, medians of ${ctx.rounds} rounds`,
    '',
  ]
  for (const op of OPS)
    for (const mode of MODES) {
      const rows = CACHE_CONTENDERS.map((c) => {
        const rs = pick(c, op, mode)
        return [
          LABELS[c],
          num(median(rs.map((r) => r.opsPerSec))),
          ms(median(rs.map((r) => r.p50))),
          ms(median(rs.map((r) => r.p99))),
          num(median(rs.map((r) => r.cpuUsPerOp)), 1),
          threadCells(rs, 'threadsUsPerOp', 2),
          num(median(rs.map((r) => r.redisCpuUsPerOp)), 1),
          num(median(rs.map((r) => r.rssMb))),
        ]
      })
      const pairs = [
        ['rg', 'ioredis'],
        ['rg', 'cache-manager'],
        ['rg', 'bento'],
        ['rg-l1', 'bento-l1'],
      ]
      const lines = pairs.map(([a, b]) => {
        const r = ratioOf(a, b, op, mode)
        ratios[`${op}/${mode} ${a}/${b}`] = r
        return `**${a}/${b}**: ${r.perRound.map(ratio).join(' · ')} → median **${ratio(r.median)}**  `
      })
      md.push(
        `#### ${op} hits, ${mode === 'turns' ? 'one call started per event-loop turn' : `${CONCURRENCY} calls started in one turn`}`,
        '',
        mdTable(
          [
            'contender',
            'ops/s',
            'p50 ms',
            'p99 ms',
            'node CPU µs/op',
            'JS · tokio · other threads µs/op¹',
            'Redis CPU µs/op',
            'RSS MB',
          ],
          rows,
        ),
        '',
        ...lines,
        '',
      )
    }
  md.push(
    "¹ The node CPU per hit by thread (/proc/<pid>/task): the JS thread, redis-guard's tokio thread, and every other thread (V8's and libuv's helpers). A peer is bound by its JS thread (at most one hit per that many µs); redis-guard's three threads and Redis share the machine's cores (README: \"Performance of the cache\").",
    '',
  )
  return {
    params: { n, concurrency: CONCURRENCY, keys: KEYS, valueBytes: 1024, rounds: ctx.rounds },
    runs,
    ratios,
    markdown: md.join('\n'),
  }
}
