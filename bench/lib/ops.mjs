// Section "ops": the command line's scans on BENCH_OPS_KEYS keys (default 1,000,000, made with
// DEBUG POPULATE): `redis-guard stats --prefix cache:` and `redis-guard clear --prefix cache:
// --yes`, beside `redis-cli --scan --pattern 'cache:*' | xargs -n 1000 redis-cli unlink` on the
// same server, keys/s per round and medians. Each command is a fresh process, timed whole.

import { execFileSync } from 'node:child_process'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { ROOT, median, mdTable, num, ratio } from './common.mjs'

const BIN = path.join(ROOT, 'bin', 'redis-guard.js')

function timed(cmd, args, opts = {}) {
  const t0 = performance.now()
  const out = execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26, timeout: 600_000, ...opts })
  return { ms: performance.now() - t0, out }
}

export async function runOps(ctx) {
  const n = ctx.opsKeys
  const url = ctx.redis.url
  const port = String(ctx.redis.port)
  const runs = []
  const fill = async () => {
    await ctx.redis.cli('FLUSHALL')
    await ctx.redis.cli('DEBUG', 'POPULATE', String(n), 'cache:k', '64', { timeout: 120_000 })
  }
  for (let round = 1; round <= ctx.rounds; round++) {
    await fill()
    const stats = timed(process.execPath, [BIN, '--url', url, '--json', 'stats', '--prefix', 'cache:'])
    const counted = JSON.parse(stats.out).prefixes[0].keys
    const clear = timed(process.execPath, [BIN, '--url', url, '--json', 'clear', '--prefix', 'cache:', '--yes'])
    const deleted = JSON.parse(clear.out).deleted
    await fill()
    const cli = timed('sh', [
      '-c',
      `redis-cli -p ${port} --scan --pattern 'cache:*' | xargs -n 1000 redis-cli -p ${port} unlink > /dev/null`,
    ])
    const left = Number(await ctx.redis.cli('DBSIZE'))
    const r = {
      round,
      keys: n,
      counted,
      deleted,
      left,
      statsKeysPerSec: (n * 1000) / stats.ms,
      clearKeysPerSec: (deleted * 1000) / clear.ms,
      cliKeysPerSec: ((n - left) * 1000) / cli.ms,
    }
    runs.push(r)
    ctx.log(
      `ops r${round}: stats ${num(r.statsKeysPerSec)} keys/s, clear ${num(r.clearKeysPerSec)} keys/s, redis-cli | xargs unlink ${num(r.cliKeysPerSec)} keys/s`,
    )
  }
  await ctx.redis.cli('FLUSHALL')
  const med = (k) => median(runs.map((r) => r[k]))
  const clearRatio = runs.map((r) => r.clearKeysPerSec / r.cliKeysPerSec)
  const md = [
    `### ops: the command line on ${num(n)} keys (DEBUG POPULATE, 64-byte values), medians of ${ctx.rounds} rounds`,
    '',
    mdTable(
      ['command', 'keys/s'],
      [
        [
          '`redis-guard stats --prefix cache:` (SCAN + PTTL per key + MEMORY USAGE for 1 in 20)',
          num(med('statsKeysPerSec')),
        ],
        ['`redis-guard clear --prefix cache: --yes` (SCAN + UNLINK)', num(med('clearKeysPerSec'))],
        ["`redis-cli --scan --pattern 'cache:*' | xargs -n 1000 redis-cli unlink`", num(med('cliKeysPerSec'))],
      ],
    ),
    '',
    `**clear / redis-cli**: ${clearRatio.map(ratio).join(' · ')} → median **${ratio(median(clearRatio))}**`,
  ].join('\n')
  return { params: { keys: n, rounds: ctx.rounds }, runs, markdown: md }
}
