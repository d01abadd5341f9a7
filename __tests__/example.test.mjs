// The README's main command, `npm run example` (examples/express-app.js), as a new user runs it:
// with no Redis (through the fallback) and with REDIS_URL on a real redis-server. Each route
// answers: rate limits (5 then 429), one job at a time, a lock with a lease, the cache running
// the "database" once for three concurrent requests, a tag invalidation, health.
// Run: node --test __tests__/example.test.mjs

import assert from 'node:assert/strict'
import path from 'node:path'
import { test } from 'node:test'

import { freePort, startRedis } from './helpers/redis.mjs'
import { ROOT, run } from './helpers/utils.mjs'

const EXAMPLE = path.join(ROOT, 'examples', 'express-app.js')

/** The demo's lines: `METHOD PATH -> STATUS ...`. */
async function demo(url) {
  const r = await run(process.execPath, [EXAMPLE], { env: { ...process.env, REDIS_URL: url }, timeout: 30_000 })
  assert.equal(r.code, 0, `the example exits by itself with 0:\n${r.stdout}\n${r.stderr}`)
  return r.stdout.split('\n').filter((l) => l.includes(' -> '))
}

function check(lines, { invalidated, health }) {
  const status = (prefix) =>
    lines.filter((l) => l.startsWith(prefix)).map((l) => Number(l.split(' -> ')[1].slice(0, 3)))
  assert.deepEqual(status('GET /api/hello'), [200, 200, 200, 200, 200, 429, 429])
  assert.deepEqual(status('POST /api/jobs/42').sort(), [200, 409])
  assert.deepEqual(status('POST /api/invoices/7'), [200])
  const users = lines.filter((l) => l.startsWith('GET /api/users/1')).map((l) => JSON.parse(l.split(' -> 200 ')[1]))
  assert.deepEqual(
    users.map((u) => u.dbQueries),
    [1, 1, 1, 2],
    'three concurrent requests: one query; after the invalidation: one more',
  )
  assert.ok(
    lines.some((l) => l.startsWith('POST /api/teams/7/invalidate') && l.includes(invalidated)),
    lines.join('\n'),
  )
  assert.deepEqual(status('GET /health'), [health])
}

test('npm run example with no Redis: every route answers through the fallback', async () => {
  const port = await freePort()
  check(await demo(`redis://127.0.0.1:${port}`), { invalidated: 'ERR_REDIS_GUARD_UNAVAILABLE', health: 503 })
})

test('npm run example with REDIS_URL: the same, on Redis', async () => {
  const server = await startRedis()
  try {
    check(await demo(server.url), { invalidated: '"invalidated":1', health: 200 })
    assert.equal(await server.cli('GET', 'cache:example:__rg:tag:team:7'), '1', 'the tag was invalidated in Redis')
  } finally {
    await server.stop()
  }
})
