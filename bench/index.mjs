#!/usr/bin/env node
// redis-guard benchmark orchestrator: `npm run bench` (node bench/index.mjs).
// Starts its own redis-server (test harness, never port 6379), runs the selected sections in
// alternating rounds, prints a Markdown report on stdout (progress goes to stderr) and writes
// the raw runs and summaries to bench/results/latest.json. See bench/README.md.

import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'

import { startRedis } from '../__tests__/helpers/redis.mjs'
import { BENCH_DIR, ROOT, intOpt, listOpt } from './lib/common.mjs'
import { STORE_CONTENDERS } from './lib/stores.mjs'

const ALL_SECTIONS = [
  'micro',
  'c1',
  'http',
  'fastify',
  'nest',
  'locks',
  'cache',
  'limiter',
  'idempotency',
  'ops',
  'down',
  'ceiling',
]
const DEFAULT_SECTIONS = [
  'micro',
  'c1',
  'http',
  'fastify',
  'nest',
  'locks',
  'cache',
  'limiter',
  'idempotency',
  'ceiling',
]

const HELP = `Usage: node bench/index.mjs [options]   (or: npm run bench -- [options])

Options (each also as an environment variable):
  --sections=LIST      BENCH_SECTIONS      ${ALL_SECTIONS.join(',')} (default: ${DEFAULT_SECTIONS.join(',')}; down only with BENCH_DOWN=1)
  --n=N                BENCH_N             increment() calls per micro run (default 200000)
  --c1-n=N             BENCH_C1_N          sequential calls per concurrency-1 run (default 5000)
  --concurrency=N      BENCH_CONCURRENCY   calls in flight in micro (default 256)
  --rounds=N           BENCH_ROUNDS        alternating rounds, at least 3 recommended (default 3)
  --http-seconds=S     BENCH_HTTP_SECONDS  autocannon duration per HTTP run, http, fastify, nest, idempotency (default 10)
  --lock-cycles=N      BENCH_LOCK_CYCLES   acquire+release cycles per lock run (default 100000)
  --cache-n=N          BENCH_CACHE_N       cache hits per cache run (default 100000)
  --limiter-n=N        BENCH_LIMITER_N     limit() calls per limiter run (default 100000)
  --ops-keys=N         BENCH_OPS_KEYS      keys for the ops section (default 1000000; not in the default sections)
  --down               BENCH_DOWN=1        add the Redis-down section
  --down-seconds=S     BENCH_DOWN_SECONDS  autocannon duration of the down runs (default 6)
  --contenders=LIST    BENCH_CONTENDERS    store contenders (default: ${STORE_CONTENDERS.join(',')})
  --out=FILE           BENCH_OUT           JSON output (default bench/results/latest.json)
  -h, --help
`

function options() {
  const { values } = parseArgs({
    options: {
      sections: { type: 'string' },
      n: { type: 'string' },
      'c1-n': { type: 'string' },
      concurrency: { type: 'string' },
      rounds: { type: 'string' },
      'http-seconds': { type: 'string' },
      'lock-cycles': { type: 'string' },
      'cache-n': { type: 'string' },
      'limiter-n': { type: 'string' },
      'ops-keys': { type: 'string' },
      down: { type: 'boolean' },
      'down-seconds': { type: 'string' },
      contenders: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(HELP)
    process.exit(0)
  }
  const env = process.env
  const down = values.down || env.BENCH_DOWN === '1'
  const sections = listOpt(
    values.sections ?? env.BENCH_SECTIONS,
    down ? [...DEFAULT_SECTIONS, 'down'] : DEFAULT_SECTIONS,
  )
  for (const s of sections)
    if (!ALL_SECTIONS.includes(s)) throw new Error(`unknown section ${s} (known: ${ALL_SECTIONS.join(', ')})`)
  if (down) sections.add('down')
  const contenders = [
    ...listOpt(
      values.contenders ?? env.BENCH_CONTENDERS,
      STORE_CONTENDERS.filter((c) => c !== 'redis-guard-per-key' || hasScriptMode()),
    ),
  ]
  for (const c of contenders)
    if (!STORE_CONTENDERS.includes(c)) throw new Error(`unknown contender ${c} (known: ${STORE_CONTENDERS.join(', ')})`)
  return {
    sections: ALL_SECTIONS.filter((s) => sections.has(s)),
    n: intOpt(values.n ?? env.BENCH_N, 200_000),
    c1n: intOpt(values['c1-n'] ?? env.BENCH_C1_N, 5_000),
    concurrency: intOpt(values.concurrency ?? env.BENCH_CONCURRENCY, 256),
    rounds: intOpt(values.rounds ?? env.BENCH_ROUNDS, 3),
    httpSeconds: intOpt(values['http-seconds'] ?? env.BENCH_HTTP_SECONDS, 10),
    lockCycles: intOpt(values['lock-cycles'] ?? env.BENCH_LOCK_CYCLES, 100_000),
    cacheN: intOpt(values['cache-n'] ?? env.BENCH_CACHE_N, 100_000),
    limiterN: intOpt(values['limiter-n'] ?? env.BENCH_LIMITER_N, 100_000),
    opsKeys: intOpt(values['ops-keys'] ?? env.BENCH_OPS_KEYS, 1_000_000),
    downSeconds: intOpt(values['down-seconds'] ?? env.BENCH_DOWN_SECONDS, 6, 3),
    contenders,
    out: values.out ?? env.BENCH_OUT ?? path.join(BENCH_DIR, 'results', 'latest.json'),
  }
}

/** Whether this build of RedisStore has the `scriptMode` option (for the per-key contender). */
function hasScriptMode() {
  try {
    return fs.readFileSync(path.join(ROOT, 'lib', 'store.js'), 'utf8').includes('scriptMode')
  } catch {
    return false
  }
}

function sh(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim()
  } catch {
    return undefined
  }
}

function environment() {
  const cpus = os.cpus()
  return {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpu: cpus[0] && cpus[0].model,
    cores: cpus.length,
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    loadavgStart: os.loadavg().map((x) => +x.toFixed(2)),
    redisServer: sh('redis-server', ['--version']),
    gitCommit: sh('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']),
    gitDirty: (sh('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src', 'lib', 'index.js']) || '') !== '',
    addon: (() => {
      try {
        const st = fs.statSync(path.join(ROOT, 'redis-guard.linux-x64-gnu.node'))
        return { mtime: st.mtime.toISOString(), bytes: st.size }
      } catch {
        return undefined
      }
    })(),
    versions: Object.fromEntries(
      [
        'rate-limit-redis',
        'ioredis',
        'redis',
        'rate-limiter-flexible',
        '@sesamecare-oss/redlock',
        'redis-semaphore',
        'bentocache',
        'cache-manager',
        '@keyv/redis',
        'express',
        'express-rate-limit',
        'fastify',
        '@fastify/rate-limit',
        '@nestjs/core',
        '@nestjs/throttler',
        '@nest-lab/throttler-storage-redis',
        'autocannon',
        'express-idempotency',
        'express-idempotency-redis-adapter',
        '@node-idempotency/core',
        '@node-idempotency/storage-adapter-redis',
      ].map((p) => {
        try {
          return [p, JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', p, 'package.json'), 'utf8')).version]
        } catch {
          return [p, undefined]
        }
      }),
    ),
  }
}

async function main() {
  const opts = options()
  const log = (line) => process.stderr.write(`[bench] ${line}\n`)
  const env = environment()
  log(
    `sections ${opts.sections.join(',')}; N ${opts.n}; rounds ${opts.rounds}; load average ${env.loadavgStart.join(' ')}`,
  )

  const redis = await startRedis()
  log(`redis-server on ${redis.url} (pid ${redis.pid})`)
  const ctx = { ...opts, redis, log }
  const results = { environment: env, options: { ...opts, out: undefined }, sections: {} }
  const md = []
  try {
    for (const section of opts.sections) {
      const t0 = Date.now()
      log(`--- ${section}`)
      try {
        let r
        if (section === 'micro') r = await (await import('./lib/micro.mjs')).runMicro(ctx)
        else if (section === 'c1') r = await (await import('./lib/micro.mjs')).runC1(ctx)
        else if (section === 'http') r = await (await import('./lib/http.mjs')).runHttp(ctx)
        else if (section === 'fastify') r = await (await import('./lib/fastify.mjs')).runFastify(ctx)
        else if (section === 'nest') r = await (await import('./lib/nest.mjs')).runNest(ctx)
        else if (section === 'locks') r = await (await import('./lib/locks.mjs')).runLocks(ctx)
        else if (section === 'cache') r = await (await import('./lib/cache.mjs')).runCache(ctx)
        else if (section === 'limiter') r = await (await import('./lib/limiter.mjs')).runLimiter(ctx)
        else if (section === 'ops') r = await (await import('./lib/ops.mjs')).runOps(ctx)
        else if (section === 'idempotency') r = await (await import('./lib/idempotency.mjs')).runIdempotency(ctx)
        else if (section === 'down') r = await (await import('./lib/down.mjs')).runDown(ctx)
        else if (section === 'ceiling') r = await (await import('./lib/ceiling.mjs')).runCeiling(ctx)
        r.seconds = (Date.now() - t0) / 1000
        results.sections[section] = r
        md.push(r.markdown)
      } catch (e) {
        log(`section ${section} FAILED: ${(e && e.stack) || e}`)
        results.sections[section] = { error: String((e && e.stack) || e) }
        md.push(`### ${section}\n\nFAILED: ${String((e && e.message) || e).split('\n')[0]}`)
      }
      // The down section kills and restarts the server; make sure it is up for the next one.
      if (!redis.running) await redis.restart()
    }
  } finally {
    await redis.stop()
  }
  env.loadavgEnd = os.loadavg().map((x) => +x.toFixed(2))
  env.addonEnd = environment().addon
  env.addonChangedDuringRun = JSON.stringify(env.addonEnd) !== JSON.stringify(env.addon)

  const header = [
    '## redis-guard benchmark',
    '',
    `${env.date} · node ${env.node} · ${env.cpu} × ${env.cores} · ${env.redisServer ? env.redisServer.split(' ').slice(0, 3).join(' ') : 'redis-server ?'} on loopback · commit ${env.gitCommit}${env.gitDirty ? ' (dirty)' : ''}`,
    `load average at start ${env.loadavgStart.join(' ')}, at end ${env.loadavgEnd.join(' ')} (a busy machine makes every number noisy; compare ratios within a round)`,
    ...(env.addonChangedDuringRun
      ? [
          '',
          `**⚠ the addon (redis-guard.*.node) was rebuilt during this run (${env.addon?.mtime} → ${env.addonEnd?.mtime}): runs before and after used different builds. Run again.**`,
        ]
      : []),
    '',
  ]
  process.stdout.write(`${header.join('\n')}\n${md.join('\n\n')}\n`)
  fs.mkdirSync(path.dirname(opts.out), { recursive: true })
  fs.writeFileSync(opts.out, `${JSON.stringify(results, null, 2)}\n`)
  log(`JSON written to ${path.relative(process.cwd(), opts.out) || opts.out}`)
  if (Object.values(results.sections).some((s) => s.error)) process.exitCode = 1
}

main().catch((e) => {
  process.stderr.write(`[bench] ${(e && e.stack) || e}\n`)
  process.exitCode = 1
})
