// The fault suite for the limits beyond the fixed window (bodies: __tests__/faults/limits.mjs):
// the RateLimiter of each algorithm under kill -9, a hang (kill -STOP), NOSCRIPT, out of memory
// and a cluster reshard; the fastifyStore and ThrottlerStorageRedisGuard cores under kill -9 and
// a hang. Asserted for every run: every call answered (100%, no error surfaced: the default
// `onUnavailable: 'memory'`), none slower than the command deadline + 500 ms, back on Redis
// after the fault, and key by key (limiter): 0 counted twice, 0 acknowledged calls lost (except
// to the kill's data loss: the harness's servers do not persist). Figures are printed as
// diagnostics; `npm run faults` prints them as a table.
// Run: node --test __tests__/faults-limits.test.mjs

import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { DEADLINE_MS } from './faults/lib.mjs'
import { limitsFaults } from './faults/limits.mjs'

const MAX_CALL_MS = DEADLINE_MS + 500

function check(t, f) {
  t.diagnostic(
    `${f.kind} ${f.algorithm} — ${f.fault} (${f.variant}): served ${f.servedPct}% of ${f.total}, p50 ${f.p50.toFixed(1)} p99 ${f.p99.toFixed(1)} max ${f.max.toFixed(1)} ms, ` +
      `sources ${JSON.stringify(f.sources)}, fallbacks ${f.fallbacks}, counts ${JSON.stringify(f.counts)}, back on Redis after ${f.backToRedisMs} ms`,
  )
  assert.equal(f.servedPct, 100, `every call answered (errors: ${f.errorCodes})`)
  assert.ok(f.max <= MAX_CALL_MS, `slowest call ${f.max.toFixed(0)} ms`)
  assert.notEqual(f.backToRedisMs, null, 'back on Redis after the fault')
  if (f.counts) {
    assert.equal(f.counts.duplicated, 0, 'no call counted twice')
    assert.equal(f.counts.lost, 0, 'no acknowledged call lost')
  }
  if (f.fault === 'NOSCRIPT' || f.fault === 'cluster slot migration') {
    assert.deepEqual(Object.keys(f.sources), ['redis'], 'every call decided by Redis')
  }
}

for (const algorithm of ['fixed-window', 'sliding-window', 'gcra']) {
  describe(`faults: RateLimiter '${algorithm}'`, () => {
    for (const [id, run] of limitsFaults(algorithm)) {
      test(id, async (t) => check(t, await run()))
    }
  })
}

for (const kind of ['fastify', 'nest']) {
  describe(`faults: the ${kind} adapter (sliding-window)`, () => {
    for (const [id, run] of limitsFaults('sliding-window', kind).filter(([id]) => /kill|hang/.test(id))) {
      test(id, async (t) => check(t, await run()))
    }
  })
}
