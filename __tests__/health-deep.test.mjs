// Deep health's warnings against REAL redis-server processes, one setting at a time: persistence
// off, an eviction policy that can evict keys with a TTL, memory near maxmemory, an ACL user
// denied CONFIG (skipped with a note, never an error), and a cluster (every primary checked).
// Run: node --test __tests__/health-deep.test.mjs

import assert from 'node:assert/strict'
import { test } from 'node:test'

import guard from '../index.js'
import { parseInfo, startCluster, startRedis } from './helpers/redis.mjs'

const { RedisClient } = guard
const codes = (h) => (h.warnings ?? []).map((w) => w.code).sort()

test('one server, one setting at a time: each warning appears and goes with its setting', async () => {
  const server = await startRedis()
  const client = new RedisClient({ url: server.url, logger: false })
  try {
    await client.ready(5000)
    const plain = await client.healthCheck()
    assert.equal(plain.warnings, undefined, 'only with deep')
    let h = await client.healthCheck({ deep: true })
    assert.equal(h.status, 'healthy', 'warnings do not change the status')
    assert.deepEqual(codes(h), ['PERSISTENCE_OFF'], 'the harness runs save "" and appendonly no')
    assert.match(h.warnings[0].message, /appendonly yes/, 'the message says how to fix it')

    await server.cli('CONFIG', 'SET', 'appendonly', 'yes')
    assert.deepEqual(codes(await client.healthCheck({ deep: true })), [])

    await server.cli('CONFIG', 'SET', 'maxmemory-policy', 'allkeys-lru')
    h = await client.healthCheck({ deep: true })
    assert.deepEqual(codes(h), ['EVICTION_POLICY'])
    assert.match(h.warnings[0].message, /noeviction/)
    await server.cli('CONFIG', 'SET', 'maxmemory-policy', 'volatile-lru')
    assert.deepEqual(codes(await client.healthCheck({ deep: true })), ['EVICTION_POLICY'])
    await server.cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction')

    const used = Number(parseInfo(await server.cli('INFO', 'memory')).used_memory)
    await server.cli('CONFIG', 'SET', 'maxmemory', String(Math.ceil(used * 1.05)))
    assert.deepEqual(codes(await client.healthCheck({ deep: true })), ['MEMORY_NEAR_LIMIT'])
    await server.cli('CONFIG', 'SET', 'maxmemory', '0')

    // The Express handler includes them with { deep: true }.
    let sent
    const res = { statusCode: 0, setHeader() {}, end: (b) => (sent = JSON.parse(b)) }
    client.healthHandler({ deep: true })({}, res, () => {})
    for (let i = 0; i < 100 && !sent; i++) await new Promise((r) => setTimeout(r, 20))
    assert.equal(res.statusCode, 200)
    assert.deepEqual(sent.warnings, [])
  } finally {
    await client.close()
    await server.stop()
  }
})

test('an ACL user denied CONFIG: that check is skipped with a note; the rest still run', async () => {
  const server = await startRedis({ users: [{ name: 'app', password: 'pw', rules: 'on ~* &* +@all -config' }] })
  const client = new RedisClient({ url: `redis://app:pw@127.0.0.1:${server.port}`, logger: false })
  try {
    await client.ready(5000)
    await server.cli('CONFIG', 'SET', 'maxmemory-policy', 'allkeys-lfu')
    const h = await client.healthCheck({ deep: true })
    assert.equal(h.status, 'healthy')
    assert.deepEqual(codes(h), ['CHECK_SKIPPED', 'EVICTION_POLICY'])
    const note = h.warnings.find((w) => w.code === 'CHECK_SKIPPED')
    assert.match(note.message, /CONFIG GET save was refused/)
    assert.doesNotMatch(JSON.stringify(h), /pw/, 'no password in any message')
  } finally {
    await client.close()
    await server.stop()
  }
})

test('a cluster: every primary is checked and named; cluster_state ok is no warning', async () => {
  const cluster = await startCluster()
  const client = new RedisClient({ url: `redis-cluster://127.0.0.1:${cluster.nodes[0].port}`, logger: false })
  try {
    await client.ready(5000)
    const h = await client.healthCheck({ deep: true })
    assert.deepEqual(codes(h), ['PERSISTENCE_OFF', 'PERSISTENCE_OFF', 'PERSISTENCE_OFF'], JSON.stringify(h.warnings))
    const ports = new Set(h.warnings.map((w) => /node [^:]+:(\d+)/.exec(w.message)?.[1]))
    assert.equal(ports.size, 3, 'one per primary, each named')
  } finally {
    await client.close()
    await cluster.stop()
  }
})
