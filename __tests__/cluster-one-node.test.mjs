// A one-node Redis Cluster started without `cluster-announce-ip` (issue 12, item 7): the node has
// never met another node, does not know its own address and reports an empty host in
// `CLUSTER SLOTS` ("" = "the address you used to reach me"). A cluster client on it must use the
// host it dialled for that node, become ready, and serve the store and locks from Redis.
// Run: node --test __tests__/cluster-one-node.test.mjs

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import Redis from 'ioredis'

import { CLUSTER_NODE_ARGS, parseInfo, startRedis, waitFor } from './helpers/redis.mjs'
import { RedisClient, RedisStore } from '../index.mjs'

/** One cluster-enabled redis-server owning every slot, as a user starts it by hand. */
async function startOneNodeCluster({ tls = false } = {}) {
  const node = await startRedis({
    tls,
    args: [...CLUSTER_NODE_ARGS, ...(tls ? ['--tls-cluster', 'yes'] : [])],
  })
  try {
    assert.equal(await node.cli('CLUSTER', 'ADDSLOTSRANGE', '0', '16383'), 'OK')
    await waitFor(
      async () => {
        const info = parseInfo(await node.cli('CLUSTER', 'INFO', { timeout: 2000 }))
        return info.cluster_state === 'ok' && Number(info.cluster_slots_assigned) === 16384
      },
      { timeout: 10_000, interval: 100, what: 'cluster_state:ok on the one node' },
    )
  } catch (err) {
    await node.stop()
    throw err
  }
  return node
}

let node
let raw // a plain (non-cluster) ioredis connection to the node, to read behind redis-guard's back
const clients = []

before(async () => {
  node = await startOneNodeCluster()
  raw = new Redis({ host: node.host, port: node.port, maxRetriesPerRequest: 1 })
})

after(async () => {
  for (const c of clients) await c.close().catch(() => {})
  if (raw) raw.disconnect()
  if (node) await node.stop()
})

/** A client of this test (closed in `after`). */
function newClient(options) {
  const c = new RedisClient({ logger: false, connectTimeoutMs: 1000, ...options })
  clients.push(c)
  return c
}

async function checkClient(client, name) {
  assert.equal(await client.ready(5000), true, `${name}: the client becomes ready`)
  assert.equal(client.isAvailable(), true, `${name}: available`)

  const h = await client.healthCheck({ deep: true })
  assert.equal(h.status, 'healthy', `${name}: healthy (${h.error ?? ''})`)
  assert.equal(h.connected, true)
  assert.equal(h.mode, 'redis')
  assert.equal(h.topology, 'cluster')

  // The store counts in Redis: 'deny' makes a fallback answer an error instead of a silent count.
  const prefix = `rg1node-${process.pid}-${name}:`
  const store = new RedisStore({ client, prefix, onUnavailable: 'deny' })
  store.init({ windowMs: 60_000 })
  // Keys in several slots (one script call per slot, all on the one node).
  for (const key of ['a', 'b', 'c', 'user:{42}']) {
    assert.equal((await store.increment(key)).totalHits, 1, `${name}: first hit of ${key}`)
    assert.equal((await store.increment(key)).totalHits, 2, `${name}: second hit of ${key}`)
  }
  assert.equal(await raw.get(`${prefix}a`), '2', `${name}: the counter is in Redis`)

  // A lease and the helpers' lock, both in Redis.
  const lockKey = `rg1node-${process.pid}-${name}-job`
  const lease = await client.lock(lockKey, { ttlMs: 5000, onUnavailable: 'deny' })
  assert.ok(lease, `${name}: lock granted`)
  assert.equal(lease.source, 'redis', `${name}: lock granted by Redis`)
  assert.ok(lease.fence >= 1, `${name}: a fencing token`)
  assert.equal(await raw.get(`lock:${lockKey}`), lease.token, `${name}: the lock key holds the token`)
  assert.equal(
    await client.lock(lockKey, { ttlMs: 5000, onUnavailable: 'deny' }),
    null,
    `${name}: a held lock is not granted twice`,
  )
  assert.equal(await lease.release(), true, `${name}: released`)
  assert.equal(await raw.exists(`lock:${lockKey}`), 0, `${name}: the lock key is gone`)
  const seen = await client.withLock(lockKey, { ttlMs: 5000, onUnavailable: 'deny' }, async () => 'ran')
  assert.equal(seen, 'ran')

  assert.equal(client.stats().fallbacks, 0, `${name}: nothing went to the fallback`)
}

describe('one-node cluster without cluster-announce-ip', () => {
  test('the node reports an empty host in CLUSTER SLOTS (the case under test)', async () => {
    const slots = await raw.call('CLUSTER', 'SLOTS')
    assert.equal(slots.length, 1)
    const [start, end, [host, port]] = slots[0]
    assert.deepEqual([start, end, host, port], [0, 16383, '', node.port])
  })

  test('redis-cluster:// URL: ready, healthy, store and locks in Redis', async () => {
    await checkClient(newClient({ url: `redis-cluster://${node.host}:${node.port}` }), 'url')
  })

  test('clusterNodes option: ready, healthy, store and locks in Redis', async () => {
    await checkClient(newClient({ clusterNodes: [`${node.host}:${node.port}`] }), 'nodes')
  })

  test('seed given by host name (localhost): the empty host becomes that name', async () => {
    await checkClient(newClient({ url: `redis-cluster://localhost:${node.port}` }), 'localhost')
  })

  test('after its connections are killed, the client comes back', async () => {
    const client = newClient({
      url: `redis-cluster://${node.host}:${node.port}`,
      reconnect: { minDelayMs: 20, maxDelayMs: 200, jitterMs: 10 },
    })
    assert.equal(await client.ready(5000), true)
    const before = client.stats().reconnects
    // Drop every connection of the node (the cluster stays as it is): fred reconnects, and
    // reads CLUSTER SLOTS again, with the empty host again.
    await node.cli('CLIENT', 'KILL', 'TYPE', 'normal')
    await waitFor(
      async () =>
        client.stats().reconnects > before && (await client.healthCheck()).status === 'healthy' && client.isAvailable(),
      { timeout: 10_000, interval: 100, what: 'the client back on Redis after CLIENT KILL' },
    )
    const store = new RedisStore({ client, prefix: `rg1node-${process.pid}-kill:`, onUnavailable: 'deny' })
    assert.equal((await store.increment('k')).totalHits, 1)
  })

  // fred verifies a TLS certificate against the host it dials, and "" is no name: over TLS the
  // node must announce an address. The client says so, and recovers once the node does.
  test('TLS: the error says what to set on the node; the client recovers once it is set', async () => {
    const tlsNode = await startOneNodeCluster({ tls: true })
    try {
      const client = newClient({
        url: `rediss-cluster://${tlsNode.host}:${tlsNode.port}`,
        tls: { ca: tlsNode.certs.ca },
        reconnect: { minDelayMs: 20, maxDelayMs: 200, jitterMs: 10 },
      })
      assert.equal(await client.ready(2000), false)
      const h = await client.healthCheck()
      assert.equal(h.status, 'unhealthy')
      assert.match(h.error ?? '', /empty host in CLUSTER SLOTS.*cluster-announce-ip/)

      assert.equal(await tlsNode.cli('CONFIG', 'SET', 'cluster-announce-ip', tlsNode.host), 'OK')
      await waitFor(async () => (await client.healthCheck()).status === 'healthy' && client.isAvailable(), {
        timeout: 15_000,
        interval: 100,
        what: 'the TLS client on Redis once the node announces its IP',
      })
      const store = new RedisStore({ client, prefix: `rg1node-${process.pid}-tls:`, onUnavailable: 'deny' })
      store.init({ windowMs: 60_000 })
      assert.equal((await store.increment('k')).totalHits, 1)
    } finally {
      await tlsNode.stop()
    }
  })
})
