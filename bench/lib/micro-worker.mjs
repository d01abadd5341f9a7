// Child process of the micro section: one contender, one key pattern, one calling style.
// Measures N increment() calls: wall time, per-call latency, this process's CPU
// (process.cpuUsage: every thread of the process) and redis-server's CPU (/proc).

import { performance } from 'node:perf_hooks'
import { countCrossings, inFlight, latencySummary, measured, workerMain } from './common.mjs'
import { makeStore } from './stores.mjs'

const DISTINCT_KEYS = 10_000

/**
 * Issue `n` calls of `op(i)` keeping `concurrency` in flight (inFlight, bench/lib/common.mjs).
 * style 'turn': a replacement is issued from the resolution callback of the finished call, so
 *   the calls that finish together are issued again in the same event-loop turn.
 * style 'immediate': every call (also the first `concurrency`) is issued from its own
 *   setImmediate, i.e. its own macrotask, as HTTP requests arrive.
 * style 'seq': concurrency 1, `await` each call.
 * Resolves the latencies in ms (issue -> resolution).
 */
async function load(op, n, concurrency, style) {
  if (style !== 'seq') return (await inFlight(op, n, concurrency, { immediate: style !== 'turn' })).lat
  const lat = new Float64Array(n)
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    await op(i)
    lat[i] = performance.now() - t0
  }
  return lat
}

async function main(p) {
  const { contender, url, redisPid, pattern, style, n, concurrency, warmup, prefix } = p
  const s = await makeStore(contender, { url, prefix })
  try {
    if (s.store && typeof s.store.init === 'function') await s.store.init({ windowMs: 60_000 })
    // redis-guard diagnostics: count JS→Rust crossings (batch submissions) and their sizes.
    const diag = { batches: 0, items: 0 }
    const native = s.store && s.store._batch && s.store._batch.native
    if (contender.startsWith('redis-guard') && native && typeof native.submit === 'function') {
      countCrossings(native, diag)
    }
    const keys = Array.from({ length: DISTINCT_KEYS }, (_, i) => `k${i}`)
    const op = pattern === 'hot' ? () => s.increment('hot') : (i) => s.increment(keys[i % DISTINCT_KEYS])
    if (warmup > 0) await load(op, warmup, concurrency, style)
    if (global.gc) global.gc()
    const diag0 = { ...diag }
    // redis-guard: anything that went to the memory fallback (`fallbacks`) would not be a Redis number.
    const {
      result: lat,
      wallMs,
      cpu,
      redisCpuUs,
      fallbacks,
    } = await measured(
      () => load(op, n, concurrency, style),
      redisPid,
      () => s.stats(),
    )
    return {
      contender,
      pattern,
      style,
      n,
      concurrency,
      wallMs,
      opsPerSec: (n * 1000) / wallMs,
      ...latencySummary(lat),
      cpuUsPerOp: (cpu.user + cpu.system) / n,
      cpuUserUsPerOp: cpu.user / n,
      cpuSystemUsPerOp: cpu.system / n,
      redisCpuUsPerOp: redisCpuUs / n,
      fallbacks,
      ...(diag.batches
        ? {
            batches: diag.batches - diag0.batches,
            meanBatch: (diag.items - diag0.items) / (diag.batches - diag0.batches),
          }
        : {}),
    }
  } finally {
    await s.close()
  }
}

workerMain(main)
