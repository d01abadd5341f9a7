#!/usr/bin/env node
// Before/after: the store, lock and limiter benchmarks of several builds in one run, rounds alternating,
// against one redis-server (the test harness's, never port 6379). Each build is a checkout
// with its addon built (e.g. `git worktree add ../before <commit>`, `ln -s $PWD/node_modules
// ../before/`, `npm run build` there); each contender runs in a fresh process of its own tree
// (bench/lib/micro-worker.mjs, bench/lib/locks-worker.mjs of that tree), with rate-limit-redis
// and redlock from this tree as the reference.
//
// Usage: node bench/ab.mjs DIR [DIR...]   (this tree is `.`)
// Environment: AB_ROUNDS (default 3), AB_N (increments per run, default 200000), AB_CYCLES
// (lock cycles per run, default 60000).

import path from 'node:path'
import { startRedis } from '../__tests__/helpers/redis.mjs'
import { startApp } from './lib/app.mjs'
import { ROOT, median, num, runWorker } from './lib/common.mjs'
import { measureApp } from './lib/http.mjs'

const trees = process.argv.slice(2).map((d) => path.resolve(d))
if (!trees.length) {
  console.error('usage: node bench/ab.mjs DIR [DIR...]')
  process.exit(2)
}
const ROUNDS = Number(process.env.AB_ROUNDS || 3)
const N = Number(process.env.AB_N || 200_000)
const CYCLES = Number(process.env.AB_CYCLES || 60_000)
const SECTIONS = (process.env.AB_SECTIONS || 'store,locks').split(',')
const LIMITERS = (process.env.AB_LIMITERS || 'rg-fixed,rg-sliding,rg-gcra').split(',')
const HTTP_SECONDS = Number(process.env.AB_HTTP_SECONDS || 10)

const redis = await startRedis()
/** name -> results of every round */
const res = new Map()
const keep = (name, r) => res.set(name, [...(res.get(name) || []), r])
/**
 * One run of `tree`'s bench/lib/`worker` on a flushed Redis, kept as `what` and the tree;
 * `pick` reads `{ ops, cpu, redis?, unit }` off the worker's result.
 */
async function workerRun(round, tree, worker, params, what, pick) {
  await redis.cli('FLUSHALL')
  const r = await runWorker(path.join(tree, 'bench/lib', worker), { url: redis.url, redisPid: redis.pid, ...params })
  const name = `${what} ${path.relative(ROOT, tree) || '.'}`
  const { unit, ...kept } = pick(r)
  keep(name, kept)
  console.error(`r${round} ${name}: ${num(kept.ops)} ${unit}/s, ${kept.cpu.toFixed(2)} µs CPU per ${unit}`)
}
try {
  for (let round = 1; round <= ROUNDS; round++) {
    for (const pattern of SECTIONS.includes('store') ? ['distinct', 'hot'] : []) {
      for (const [tree, contender] of [...trees.map((t) => [t, 'redis-guard']), [ROOT, 'rlr-ioredis']]) {
        const params = {
          contender,
          pattern,
          style: 'immediate',
          n: N,
          concurrency: 256,
          warmup: 20_000,
          prefix: `ab${round}:`,
        }
        await workerRun(round, tree, 'micro-worker.mjs', params, `store ${pattern} ${contender}`, (r) => ({
          ops: r.opsPerSec,
          cpu: r.cpuUsPerOp,
          unit: 'op',
        }))
      }
    }
    const lockers = SECTIONS.includes('locks') ? [...trees.map((t) => [t, 'rg-lease']), [ROOT, 'redlock']] : []
    for (const [tree, contender] of lockers) {
      const params = { contender, cycles: CYCLES, concurrency: 64, warmup: 5000 }
      await workerRun(round, tree, 'locks-worker.mjs', params, `locks ${contender}`, (r) => ({
        ops: r.cyclesPerSec,
        cpu: r.cpuUsPerCycle,
        unit: 'cycle',
      }))
    }
    const limiters = SECTIONS.includes('limiter')
      ? [...LIMITERS.flatMap((c) => trees.map((t) => [t, c])), [ROOT, 'rlf']]
      : []
    for (const [tree, contender] of limiters) {
      const params = { contender, calls: N, concurrency: 256, keys: 10_000, warmup: 10_000 }
      await workerRun(round, tree, 'limiter-worker.mjs', params, `limiter 10,000 keys ${contender}`, (r) => ({
        ops: r.callsPerSec,
        cpu: r.cpuUsPerCall,
        redis: r.redisCpuUsPerCall,
        unit: 'call',
      }))
    }
    const apps = SECTIONS.includes('http') ? [...trees.map((t) => [t, 'redis-guard']), [ROOT, 'rlr-ioredis']] : []
    for (const [tree, store] of apps) {
      await redis.cli('FLUSHALL')
      const app = await startApp(
        { store, url: redis.url, prefix: `ab${round}:`, keyBy: 'connection' },
        { script: path.join(tree, 'bench/lib/http-server.mjs') },
      )
      let r
      try {
        r = await measureApp({ redis, httpSeconds: HTTP_SECONDS }, app, round, store)
      } finally {
        await app.close()
      }
      const name = `http (Express) ${store} ${path.relative(ROOT, tree) || '.'}`
      keep(name, { ops: r.reqPerSec, cpu: r.appCpuUsPerReq, redis: r.redisCpuUsPerReq })
      console.error(`r${round} ${name}: ${num(r.reqPerSec)} req/s, ${r.appCpuUsPerReq.toFixed(1)} µs app CPU/req`)
    }
  }
  console.log(
    `| run (medians of ${ROUNDS} rounds) | ops, cycles or requests /s | Node CPU µs per op | Redis CPU µs per op |`,
  )
  console.log('|---|--:|--:|--:|')
  for (const [name, rs] of res) {
    const redisCpu = rs[0].redis === undefined ? '' : median(rs.map((r) => r.redis)).toFixed(2)
    console.log(
      `| ${name} | ${num(median(rs.map((r) => r.ops)))} | ${median(rs.map((r) => r.cpu)).toFixed(2)} | ${redisCpu} |`,
    )
  }
} finally {
  await redis.stop()
}
