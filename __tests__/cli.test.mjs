// The command line (bin/redis-guard.js) as an operator runs it, against REAL redis-server
// processes: every command, --json, exit codes (0 all well, 1 not, 2 usage), a dead port, a
// cluster (every primary), 50,000 keys to clear, the confirmation, passwords never printed.
// Run: node --test __tests__/cli.test.mjs

import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'

import guard from '../index.js'
import { freePort, startCluster, startRedis } from './helpers/redis.mjs'
import { ROOT, makeTempDir, removeTempDir, run } from './helpers/utils.mjs'

const { RedisClient } = guard
const BIN = path.join(ROOT, 'bin', 'redis-guard.js')

/** Run the command line; `input` goes to stdin. */
function cli(args, { input, env } = {}) {
  return run(process.execPath, [BIN, ...args], { input, env: { ...process.env, ...env }, timeout: 60_000 })
}

test('health: exit 0 when healthy without warnings, 1 with --deep warnings, --json; a dead port: 1 within the connect timeout', async () => {
  const password = `cli-${process.pid}-secret`
  const server = await startRedis({ password })
  try {
    const url = `redis://:${password}@127.0.0.1:${server.port}`
    let r = await cli(['--url', url, 'health'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.match(r.stdout, /^healthy/)
    r = await cli(['--url', url, '--json', 'health', '--deep'])
    assert.equal(r.code, 1, 'persistence off: a warning')
    const h = JSON.parse(r.stdout)
    assert.deepEqual(
      h.warnings.map((w) => w.code),
      ['PERSISTENCE_OFF'],
    )
    await server.cli('CONFIG', 'SET', 'appendonly', 'yes')
    assert.equal((await cli(['--url', url, 'health', '--deep'])).code, 0)
    r = await cli(['health'], { env: { REDIS_URL: url } })
    assert.equal(r.code, 0, 'the library’s environment')
    for (const out of [r.stdout, r.stderr]) assert.doesNotMatch(out, new RegExp(password), 'no password printed')

    const dead = await freePort()
    const t0 = Date.now()
    r = await cli(['--url', `redis://:${password}@127.0.0.1:${dead}`, 'health'])
    assert.equal(r.code, 1)
    assert.match(r.stdout, /unhealthy/)
    assert.doesNotMatch(r.stdout + r.stderr, new RegExp(password))
    r = await cli(['--url', `redis://127.0.0.1:${dead}`, 'stats'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /cannot connect/)
    assert.ok(Date.now() - t0 < 15_000, 'within the connect timeout (twice)')
  } finally {
    await server.stop()
  }
})

test('usage errors: exit 2 with usage; --help exits 0', async () => {
  let r = await cli(['--bogus'])
  assert.equal(r.code, 2)
  assert.match(r.stderr, /unknown option/)
  assert.match(r.stderr, /Usage: redis-guard/)
  r = await cli(['clear'])
  assert.equal(r.code, 2, 'clear without --prefix')
  r = await cli(['clear', '--prefix', ''])
  assert.equal(r.code, 2, 'an empty prefix is refused')
  assert.match(r.stderr, /non-empty --prefix/)
  r = await cli(['nosuchcommand'])
  assert.equal(r.code, 2)
  for (const c of ['health', 'stats', 'clear', 'warm', 'locks', 'monitor']) {
    r = await cli([c, '--help'])
    assert.equal(r.code, 0, `${c} --help`)
    assert.match(r.stdout, new RegExp(`Usage: redis-guard ${c}`))
  }
})

test('stats, clear (50,000 keys, confirmation, --dry-run, --pattern), warm, locks, monitor on one server', async () => {
  const server = await startRedis()
  const dir = await makeTempDir('cli')
  const client = new RedisClient({ url: server.url, logger: false })
  try {
    await client.ready(5000)
    await server.cli('EVAL', "for i = 1, 50000 do redis.call('SET', 'cache:k' .. i, 'v', 'EX', 600) end", '0')
    await server.cli('EVAL', "for i = 1, 30 do redis.call('SET', 'rl:k' .. i, '1', 'PX', 60000) end", '0')
    await server.cli('SET', 'unrelated', '1')
    const url = server.url
    let r = await cli(['--url', url, '--json', 'stats'])
    assert.equal(r.code, 0, r.stderr)
    const s = JSON.parse(r.stdout)
    assert.equal(s.scanned, 50_031)
    const by = Object.fromEntries(s.prefixes.map((p) => [p.prefix, p]))
    assert.equal(by['cache:'].keys, 50_000)
    assert.equal(by['rl:'].keys, 30)
    assert.equal(by[''].keys, 1)
    assert.equal(by[''].withoutTtl, 1)
    assert.ok(by['cache:'].memoryBytes > 0 && by['cache:'].ttlMaxMs <= 600_000)
    assert.equal(by['idem:'].keys, 0)
    r = await cli(['--url', url, '--json', 'stats', '--prefix', 'rl:'])
    assert.deepEqual(
      JSON.parse(r.stdout).prefixes.map((p) => [p.prefix, p.keys]),
      [['rl:', 30]],
    )

    r = await cli(['--url', url, 'clear', '--prefix', 'cache:', '--pattern', 'k1*', '--dry-run'])
    assert.equal(r.code, 0)
    assert.match(r.stdout, /11111 keys match cache:k1\*/)
    r = await cli(['--url', url, 'clear', '--prefix', 'cache:'], { input: 'n\n' })
    assert.equal(r.code, 1, 'declined')
    assert.match(r.stderr, /delete 50000 keys matching cache:\*\?/)
    assert.equal(await server.cli('DBSIZE'), '50031', 'nothing deleted')
    await server.cli('CONFIG', 'RESETSTAT')
    r = await cli(['--url', url, '--json', 'clear', '--prefix', 'cache:'], { input: 'y\n' })
    assert.equal(r.code, 0, r.stderr)
    assert.equal(JSON.parse(r.stdout).deleted, 50_000)
    assert.equal(await server.cli('DBSIZE'), '31')
    const stats = await server.cli('INFO', 'commandstats')
    assert.doesNotMatch(stats, /cmdstat_keys|cmdstat_flushall|cmdstat_flushdb/, 'never KEYS or FLUSHALL')
    assert.doesNotMatch(r.stderr, /deleting|keys$/m, 'no progress bar when stderr is not a terminal')

    const file = path.join(dir, 'warm.ndjson')
    fs.writeFileSync(
      file,
      [
        JSON.stringify({ key: 'user:1', value: { id: 1 }, ttlMs: 60_000 }),
        JSON.stringify({ key: 'user:2', value: [1, 2], tags: ['team:7'] }),
        'not json',
        '',
        JSON.stringify({ key: 'user:3', value: 'x' }),
      ].join('\n'),
    )
    r = await cli(['--url', url, '--json', 'warm', file])
    assert.equal(r.code, 1, 'a bad line: exit 1, the others stored')
    const w = JSON.parse(r.stdout)
    assert.equal(w.stored, 3)
    assert.equal(w.bad[0].line, 3)
    assert.equal(await server.cli('GET', 'cache:user:1'), '{"id":1}')

    const lease = await client.lock('job:7', { ttlMs: 30_000 })
    r = await cli(['--url', url, '--json', 'locks'])
    const held = JSON.parse(r.stdout)
    assert.equal(held.length, 1)
    assert.equal(held[0].key, 'lock:job:7')
    assert.equal(held[0].fence, lease.fence)
    assert.ok(held[0].ttlMs > 25_000)
    await lease.release()
    r = await cli(['--url', url, 'locks'])
    assert.match(r.stdout, /no lock held/)

    r = await cli(['--url', url, '--json', 'monitor', '--count', '2', '--interval', '50'])
    assert.equal(r.code, 0)
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    assert.equal(lines.length, 2)
    assert.equal(lines[0].status, 'healthy')
    assert.ok(lines[0].keys > 0)
  } finally {
    await client.close()
    await server.stop()
    await removeTempDir(dir)
  }
})

test('a cluster: stats and clear cover every primary', async () => {
  const cluster = await startCluster()
  try {
    const url = `redis-cluster://127.0.0.1:${cluster.nodes[0].port}`
    const client = new RedisClient({ url, logger: false })
    await client.ready(5000)
    const { Cache } = guard
    const cache = new Cache({ client })
    await cache.setMany(Array.from({ length: 300 }, (_, i) => [`k${i}`, i]))
    await client.close()
    let r = await cli(['--url', url, '--json', 'stats', '--prefix', 'cache:'])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(JSON.parse(r.stdout).prefixes[0].keys, 300)
    r = await cli(['--url', url, '--json', 'clear', '--prefix', 'cache:', '--yes'])
    assert.equal(JSON.parse(r.stdout).deleted, 300)
    for (const n of cluster.nodes)
      assert.equal(await n.cli('--scan', '--pattern', 'cache:*'), '', `node ${n.port} cleared`)
  } finally {
    await cluster.stop()
  }
})
