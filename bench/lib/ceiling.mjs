// Section "ceiling": what redis-server itself can do with the rate-limit scripts, measured by
// redis-benchmark (C client, 50 connections, pipeline 16). No Node client comes close; it bounds
// every micro number. Also checks which script the BUILT addon really sends, so that a stale
// build (src/redis/scripts.rs changed, `npm run build` not run) is visible.

import crypto from 'node:crypto'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { ROOT, median, mdTable, num, runCmd } from './common.mjs'

const require = createRequire(import.meta.url)
const BATCH_KEYS = 64

/** The text of `pub static NAME: LazyLock<Script>` in src/redis/scripts.rs (the raw string), or undefined. */
export function srcScript(name) {
  const src = fs.readFileSync(path.join(ROOT, 'src', 'redis', 'scripts.rs'), 'utf8')
  const m = new RegExp(`pub static ${name}\\b[\\s\\S]*?r#"([\\s\\S]*?)"#`).exec(src)
  return m ? m[1] : undefined
}

/** rate-limit-redis v6's increment script, as the package sends it (leading blanks stripped). */
export function rateLimitRedisIncrementScript() {
  const file = path.join(ROOT, 'node_modules', 'rate-limit-redis', 'dist', 'index.mjs')
  const m = /increment:\s*`([\s\S]*?)`/.exec(fs.readFileSync(file, 'utf8'))
  if (!m) throw new Error(`increment script not found in ${file}`)
  return m[1].replaceAll(/^\s+/gm, '').trim()
}

const sha1 = (s) => crypto.createHash('sha1').update(s).digest('hex')

/** One redis-benchmark run; resolves { rps, p50, p99, command } from its --csv output. */
async function bench(port, n, cmdArgs) {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-P', '16', '-n', String(n), '--csv', ...cmdArgs]
  const r = await runCmd('redis-benchmark', args, { timeoutMs: 180_000 })
  if (r.code !== 0) throw new Error(`redis-benchmark exited with ${r.code}: ${r.stderr || r.stdout}`)
  // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  const line =
    r.stdout
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('"'))
      .pop() || ''
  const cells = line.split('","').map((c) => c.replaceAll('"', ''))
  const rps = Number(cells[1])
  if (!Number.isFinite(rps)) throw new Error(`cannot parse redis-benchmark output: ${r.stdout}`)
  return {
    rps,
    p50: Number(cells[4]),
    p99: Number(cells[6]),
    command: `redis-benchmark ${args.filter((a) => a !== '--csv').join(' ')}`,
  }
}

/** Which of `scripts` (by sha) the built addon loads for one increment, per scriptMode. */
async function addonScripts(ctx, scripts) {
  const { RedisClient, RedisStore } = require('../../index.js')
  const client = new RedisClient({ url: ctx.redis.url, logger: false })
  const out = {}
  try {
    await client.ready(5000)
    for (const mode of ['default', 'per-key']) {
      await ctx.redis.cli('SCRIPT', 'FLUSH')
      let store
      try {
        store = new RedisStore(
          mode === 'default' ? { client, prefix: 'rlc:' } : { client, prefix: 'rlc:', scriptMode: 'per-key' },
        )
      } catch {
        continue // this build has no such option
      }
      store.init({ windowMs: 60_000 })
      await store.increment('probe')
      const shas = scripts.map((s) => s.sha)
      const exists = (await ctx.redis.cli('SCRIPT', 'EXISTS', ...shas)).split('\n').map(Number)
      out[mode] = scripts.filter((_, i) => exists[i] === 1).map((s) => s.name)
    }
  } finally {
    await client.close()
    await ctx.redis.cli('SCRIPT', 'FLUSH')
  }
  return out
}

export async function runCeiling(ctx) {
  const n = 200_000
  const increment = srcScript('INCREMENT')
  if (!increment) throw new Error('INCREMENT script not found in src/redis/scripts.rs')
  const batch = srcScript('BATCH')
  const scripts = [
    {
      id: 'INCREMENT',
      name: 'INCREMENT',
      label: 'redis-guard INCREMENT (src/redis/scripts.rs), one key per call',
      text: increment,
      perCall: 1,
      args: (sha) => ['EVALSHA', sha, '1', 'rl:bench', '0', '60000'],
    },
    {
      id: 'rate-limit-redis',
      name: 'rate-limit-redis v6',
      label: 'rate-limit-redis v6 increment, one key per call',
      text: rateLimitRedisIncrementScript(),
      perCall: 1,
      args: (sha) => ['EVALSHA', sha, '1', 'rl:bench6', '60000'],
    },
  ]
  if (batch) {
    const keys = Array.from({ length: BATCH_KEYS }, (_, i) => `rl:b${i}`)
    scripts.push({
      id: 'BATCH',
      name: 'BATCH',
      label: `redis-guard BATCH (src/redis/scripts.rs), ${BATCH_KEYS} keys per call`,
      text: batch,
      perCall: BATCH_KEYS,
      args: (sha) => ['EVALSHA', sha, String(BATCH_KEYS), ...keys, '0', '60000', 'i'.repeat(BATCH_KEYS)],
    })
  }
  for (const s of scripts) s.sha = sha1(s.text)

  // Which script does the built addon send? (SCRIPT EXISTS after one increment on a flushed cache.)
  const used = await addonScripts(
    ctx,
    scripts.filter((s) => s.id !== 'rate-limit-redis'),
  )
  for (const s of scripts) {
    const loaded = await ctx.redis.cli('SCRIPT', 'LOAD', s.text)
    if (loaded !== s.sha) throw new Error(`SCRIPT LOAD returned ${loaded}, expected ${s.sha}`)
  }

  const runs = []
  for (let round = 1; round <= ctx.rounds; round++) {
    for (const s of scripts) {
      await ctx.redis.cli('FLUSHALL')
      const r = await bench(ctx.redis.port, s.perCall > 1 ? Math.ceil(n / s.perCall) * 4 : n, s.args(s.sha))
      runs.push({ round, script: s.id, ...r, opsPerSec: r.rps * s.perCall })
      ctx.log(`ceiling r${round} ${s.id}: ${num(r.rps * s.perCall)} increments/s`)
    }
  }
  const summary = scripts.map((s) => {
    const rs = runs.filter((r) => r.script === s.id)
    return {
      script: s.id,
      sha: s.sha,
      keysPerCall: s.perCall,
      opsPerSec: median(rs.map((r) => r.opsPerSec)),
      callsPerSec: median(rs.map((r) => r.rps)),
      command: rs[0].command,
    }
  })
  const rows = scripts.map((s, i) => [
    s.label,
    `\`${s.sha.slice(0, 12)}…\``,
    num(summary[i].callsPerSec),
    num(summary[i].opsPerSec),
  ])
  const usedLine = Object.entries(used).map(
    ([mode, names]) =>
      `${mode === 'default' ? 'default scriptMode' : "scriptMode 'per-key'"} → ${names.length ? names.join(', ') : '**none of the scripts in src/redis/scripts.rs: the built addon does not match the source (run `npm run build`)**'}`,
  )
  const md = [
    `### ceiling: redis-server alone (redis-benchmark -P 16, 50 connections, C client)`,
    '',
    mdTable(['script', 'sha', 'script calls/s', 'increments/s'], rows),
    '',
    `Headline command: \`${summary[0].command.replace(/-h 127\.0\.0\.1 -p \d+/, '-p PORT')}\` after \`SCRIPT LOAD\` of the INCREMENT text of src/redis/scripts.rs (a hot key). ` +
      `The rate-limit-redis row runs v6's own script the same way; ${batch ? `the BATCH row sends ${BATCH_KEYS} distinct keys per call (\`EVALSHA <sha> ${BATCH_KEYS} rl:b0 … rl:b${BATCH_KEYS - 1} 0 60000 ${'i'.repeat(4)}…\`), increments/s = calls/s × ${BATCH_KEYS}.` : ''}`,
    '',
    `Scripts the built addon loaded for one increment: ${usedLine.join('; ') || 'n/a'}.`,
  ].join('\n')
  return {
    params: { n, pipeline: 16, rounds: ctx.rounds, batchKeys: BATCH_KEYS },
    addonScripts: used,
    runs,
    summary,
    markdown: md,
  }
}
