/**
 * Helpers for `__tests__/topology.test.mjs`: the Redis Cluster key slot of a key (CRC16, as
 * the server computes it), `redis-cli --cluster reshard` as a child process, and a reader of
 * `CLUSTER NODES`. Only Node's standard library; processes started here (through ./utils.mjs)
 * are killed when they overrun their timeout and when the Node process exits.
 *
 * @module __tests__/helpers/topology
 */

import { run } from './utils.mjs'

// ---------------------------------------------------------------------------
// Key slots
// ---------------------------------------------------------------------------

/** CRC16/XMODEM, the checksum Redis Cluster hashes keys with. */
function crc16(buf) {
  let crc = 0
  for (const b of buf) {
    crc ^= b << 8
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc
}

/**
 * The cluster slot of `key` (a string, hashed as UTF-8): the first non-empty `{...}` is hashed
 * when there is one, else the whole key.
 * @param {string} key
 * @returns {number} 0..16383
 */
export function keySlot(key) {
  const buf = Buffer.from(key, 'utf8')
  const open = buf.indexOf(0x7b) // '{'
  if (open >= 0) {
    const close = buf.indexOf(0x7d, open + 1) // '}'
    if (close > open + 1) return crc16(buf.subarray(open + 1, close)) % 16384
  }
  return crc16(buf) % 16384
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/**
 * Run a command; resolves `{ code, stdout, stderr, ms }` (never rejects on a non-zero exit;
 * rejects when it cannot start or overruns `timeout`, after killing it).
 * @param {string} cmd
 * @param {string[]} args
 * @param {{ timeout?: number }} [opts]
 */
export async function runCommand(cmd, args, { timeout = 30_000 } = {}) {
  const r = await run(cmd, args, { timeout })
  if (r.timedOut) {
    throw new Error(
      `${cmd} ${args.join(' ')} timed out after ${timeout} ms\n${r.stdout.slice(-2000)}${r.stderr.slice(-2000)}`,
    )
  }
  return r
}

// ---------------------------------------------------------------------------
// Cluster layout
// ---------------------------------------------------------------------------

/**
 * @typedef {object} ClusterNodeInfo
 * @property {string} id
 * @property {number} port
 * @property {boolean} primary
 * @property {number[][]} ranges  owned slot ranges `[first, last]` (inclusive)
 */

/**
 * Parse `CLUSTER NODES` output (as returned by `server.cli('CLUSTER', 'NODES')`).
 * @param {string} text
 * @returns {ClusterNodeInfo[]}
 */
export function parseClusterNodes(text) {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const f = line.trim().split(' ')
      const port = Number(f[1].split('@')[0].split(':').pop())
      const ranges = f
        .slice(8)
        .filter((s) => !s.startsWith('['))
        .map((s) => s.split('-').map(Number))
        .map(([a, b]) => [a, b ?? a])
      return { id: f[0], port, primary: f[2].split(',').includes('master'), ranges }
    })
}

/**
 * Which node (port) owns every slot, from parsed `CLUSTER NODES`.
 * @param {ClusterNodeInfo[]} nodes
 * @returns {Int32Array} port per slot (0 when unassigned)
 */
export function slotOwners(nodes) {
  const owners = new Int32Array(16384)
  for (const n of nodes) for (const [a, b] of n.ranges) for (let s = a; s <= b; s++) owners[s] = n.port
  return owners
}

/**
 * `redis-cli --cluster reshard` moving `slots` slots from node `fromId` to node `toId`, through
 * the node at `port` (no confirmation prompt). Resolves `{ code, stdout, stderr, ms }`.
 */
export function reshard({ port, fromId, toId, slots, timeout = 60_000 }) {
  return runCommand(
    'redis-cli',
    [
      '--cluster',
      'reshard',
      `127.0.0.1:${port}`,
      '--cluster-from',
      fromId,
      '--cluster-to',
      toId,
      '--cluster-slots',
      String(slots),
      '--cluster-yes',
    ],
    { timeout },
  )
}

// ---------------------------------------------------------------------------
// A TLS-only Redis Cluster (the shared harness starts plaintext clusters only)
// ---------------------------------------------------------------------------

/**
 * Start a 3-primary Redis Cluster that speaks TLS only, clients and bus alike
 * (`--port 0 --tls-port P --tls-cluster yes --tls-replication yes`), with the harness's test
 * PKI. Resolves once every node reports `cluster_state:ok` and knows 3 nodes (≤ 20 s).
 * @returns {Promise<{ nodes: import('./redis.mjs').RedisServer[], url: string,
 *   seeds: {host: string, port: number}[], certs: import('./redis.mjs').Certs,
 *   stop: () => Promise<void> }>}  `url` is `rediss-cluster://127.0.0.1:P1?node=...`
 */
export async function startTlsCluster() {
  const { CLUSTER_NODE_ARGS, makeCerts, parseInfo, startRedis, waitFor } = await import('./redis.mjs')
  const certs = await makeCerts()
  const args = [...CLUSTER_NODE_ARGS, '--tls-cluster', 'yes', '--tls-replication', 'yes']
  const settled = await Promise.allSettled([0, 1, 2].map(() => startRedis({ tls: true, args })))
  const nodes = settled.filter((r) => r.status === 'fulfilled').map((r) => r.value)
  const stop = async () => {
    await Promise.all(nodes.map((n) => n.stop()))
  }
  try {
    const failed = settled.find((r) => r.status === 'rejected')
    if (failed) throw failed.reason
    const r = await runCommand(
      'redis-cli',
      [
        '--tls',
        '--cacert',
        certs.ca,
        '--cert',
        certs.clientCert,
        '--key',
        certs.clientKey,
        '--cluster',
        'create',
        ...nodes.map((n) => `127.0.0.1:${n.port}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ],
      { timeout: 30_000 },
    )
    if (r.code !== 0) throw new Error(`cluster create failed: ${r.stdout}${r.stderr}`)
    await waitFor(
      async () => {
        for (const n of nodes) {
          const info = parseInfo(await n.cli('CLUSTER', 'INFO', { timeout: 2000 }))
          if (info.cluster_state !== 'ok' || Number(info.cluster_known_nodes) !== 3) return false
        }
        return true
      },
      { timeout: 20_000, interval: 200, what: 'TLS cluster_state:ok on all nodes' },
    )
  } catch (err) {
    await stop()
    throw err
  }
  const [first, ...rest] = nodes
  return {
    nodes,
    certs,
    url: `rediss-cluster://127.0.0.1:${first.port}?${rest.map((n) => `node=127.0.0.1:${n.port}`).join('&')}`,
    seeds: nodes.map((n) => ({ host: n.host, port: n.port })),
    stop,
  }
}
