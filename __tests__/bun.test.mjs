// Bun (the `bun` package from the npm registry, a devDependency) runs the package: the smoke
// test (__tests__/bun/smoke.mjs: client, store, lock, cache, health, metrics) and the command
// line, against a REAL redis-server; the process exits by itself. The same smoke under Node.
// Run: node --test __tests__/bun.test.mjs

import assert from 'node:assert/strict'
import path from 'node:path'
import { test } from 'node:test'

import { startRedis } from './helpers/redis.mjs'
import { ROOT, resultLine, run } from './helpers/utils.mjs'

const BUN = path.join(ROOT, 'node_modules', '.bin', 'bun')
const SMOKE = path.join(ROOT, '__tests__', 'bun', 'smoke.mjs')

test('the smoke test and `redis-guard health` under Bun (and the smoke under Node)', async () => {
  const server = await startRedis()
  try {
    const env = { ...process.env, REDIS_URL: server.url }
    for (const [runtime, cmd] of [
      ['bun', BUN],
      ['node', process.execPath],
    ]) {
      const r = await run(cmd, [SMOKE], { env, timeout: 60_000 })
      assert.equal(r.code, 0, `${runtime} exits by itself with 0:\n${r.stdout}\n${r.stderr}`)
      const out = resultLine(r.stdout)
      assert.equal(out.error, undefined, `${runtime}: ${out.error}`)
      assert.match(out.runtime, new RegExp(`^${runtime} `))
      assert.equal(out.ready, true)
      assert.deepEqual(out.store, [
        [1, 'redis'],
        [2, 'redis'],
        [1, 'redis'],
      ])
      assert.deepEqual(out.lock, { fence: 'number', second: null, released: true })
      assert.deepEqual(out.cache, { values: 1, runs: 1, get: { runs: 1 } })
      assert.equal(out.health, 'healthy')
      assert.equal(out.metrics, true)
    }
    const r = await run(BUN, [path.join(ROOT, 'bin', 'redis-guard.js'), '--json', 'health'], { env, timeout: 60_000 })
    assert.equal(r.code, 0, r.stderr)
    assert.equal(JSON.parse(r.stdout).status, 'healthy')
  } finally {
    await server.stop()
  }
})
