/**
 * The Redis deployments the tests run the same bodies on, started through the harness
 * (./redis.mjs, ./topology.mjs), each with what a test needs to use it and to look behind
 * redis-guard's back. `TOPOLOGIES` are the four every contract runs on
 * (__tests__/contracts.test.mjs); `VARIANTS` are the authentication / TLS variants
 * __tests__/topology.test.mjs adds.
 *
 *   for (const { name, start } of TOPOLOGIES) {
 *     const env = await start();
 *     const client = new RedisClient({ ...env.clientOptions, logger: false });
 *     ...
 *     await env.stop();
 *   }
 *
 * @module __tests__/helpers/topologies
 */

import fs from 'node:fs'

import Redis from 'ioredis'

import { startCluster, startRedis, startSentinel } from './redis.mjs'
import { startTlsCluster } from './topology.mjs'

/** The ACL user (not `default`) the `cluster-acl` variant logs in as, and its password. */
export const ACL_USER = 'guard'
export const ACL_PASSWORD = `acl-${process.pid}-pw`
/** The data nodes' password of the `sentinel-auth` variant (its sentinels have none). */
export const DATA_PASSWORD = `data-${process.pid}-pw`

/**
 * @typedef {object} TopologyEnv  What `start()` resolves.
 * @property {string} name
 * @property {'standalone' | 'cluster' | 'sentinel'} topology  what `healthCheck().topology` says
 * @property {string} url               what a user puts in REDIS_URL
 * @property {{ url: string, tls?: object }} clientOptions
 *   the options of a client of this deployment: `new RedisClient({ ...clientOptions, ...yours })`
 * @property {(...args: (string | number | object)[]) => Promise<string>} cli
 *   `redis-cli` for key commands, on the node that holds the key (cluster: `-c`, follows MOVED;
 *   sentinel: the current primary). Raw output, trimmed; rejects on an error reply.
 * @property {(pattern: string) => Promise<string[]>} scan
 *   every key matching `pattern` on every primary (SCAN through redis-cli, never KEYS)
 * @property {() => Promise<import('./redis.mjs').RedisServer[]>} primaries  the data nodes that take writes
 * @property {((key: string) => Promise<number>) | undefined} keyslot  CLUSTER KEYSLOT (cluster only)
 * @property {() => Promise<import('ioredis').Redis | import('ioredis').Cluster>} reader
 *   a new independent client (ioredis) on the current primary / the cluster; quit it after use
 * @property {any} raw                  what the harness returned (nodes, sentinels, certs, ...)
 * @property {() => Promise<void>} stop stops every process of the deployment
 */

/**
 * @typedef {object} Topology
 * @property {string} name
 * @property {'standalone' | 'cluster' | 'sentinel'} topology  what `healthCheck().topology` says
 * @property {() => Promise<TopologyEnv>} start
 */

/** An ioredis Cluster connected to `seeds`, resolved once it is ready. */
async function clusterReader(seeds, redisOptions) {
  const r = new Redis.Cluster(seeds, { redisOptions: { maxRetriesPerRequest: 3, ...redisOptions } })
  await new Promise((resolve, reject) => {
    r.once('ready', resolve)
    r.once('error', reject)
  })
  return r
}

/** `scan` over `servers()`: redis-cli --scan on each, keys concatenated. */
function scanner(servers) {
  return async (pattern) => {
    const out = []
    for (const s of await servers()) {
      out.push(...(await s.cli('--scan', '--pattern', pattern)).split('\n').filter(Boolean))
    }
    return out
  }
}

/** A standalone server (plaintext, or TLS-only with the harness's CA). */
async function standaloneEnv(name, { tls = false } = {}) {
  const s = await startRedis(tls ? { tls: true } : {})
  const tlsOptions = tls ? { ca: s.certs.ca } : undefined // a file path; PEM text works too
  return {
    name,
    topology: 'standalone',
    url: s.url,
    clientOptions: { url: s.url, ...(tls ? { tls: tlsOptions } : {}) },
    cli: (...a) => s.cli(...a),
    scan: scanner(async () => [s]),
    primaries: async () => [s],
    keyslot: undefined,
    reader: async () =>
      new Redis({
        host: s.host,
        port: s.port,
        maxRetriesPerRequest: 1,
        ...(tls ? { tls: { ca: fs.readFileSync(s.certs.ca) } } : {}),
      }),
    raw: s,
    stop: () => s.stop(),
  }
}

/** A 3-primary cluster (no replicas: every node is a primary). */
async function clusterEnv(name, opts = {}) {
  const c = await startCluster({ primaries: 3, ...opts })
  return {
    name,
    topology: 'cluster',
    url: c.url,
    clientOptions: { url: c.url },
    cli: (...a) => c.cli(...a),
    scan: scanner(async () => c.nodes),
    primaries: async () => c.nodes,
    keyslot: async (key) => Number(await c.nodes[0].cli('CLUSTER', 'KEYSLOT', key)),
    reader: () => clusterReader(c.seeds, {}),
    raw: c,
    stop: () => c.stop(),
  }
}

/** A primary, a replica and 3 sentinels; the client finds the primary through the sentinels. */
async function sentinelEnv(name, { password } = {}) {
  const s = await startSentinel(password ? { password } : {})
  const primary = async () => s.currentPrimary()
  return {
    name,
    topology: 'sentinel',
    url: s.url,
    clientOptions: { url: s.url },
    cli: async (...a) => (await primary()).cli(...a),
    scan: scanner(async () => [await primary()]),
    primaries: async () => [await primary()],
    keyslot: undefined,
    reader: async () =>
      new Redis({ host: '127.0.0.1', port: await s.currentPrimaryPort(), password, maxRetriesPerRequest: 1 }),
    raw: s,
    stop: () => s.stop(),
  }
}

/** @type {Topology[]} The four deployments every contract runs on. */
export const TOPOLOGIES = [
  { name: 'standalone', topology: 'standalone', start: () => standaloneEnv('standalone') },
  { name: 'cluster', topology: 'cluster', start: () => clusterEnv('cluster') },
  { name: 'sentinel', topology: 'sentinel', start: () => sentinelEnv('sentinel') },
  /** A TLS-only standalone server, verified against the test CA (`rediss://` + `tls.ca`). */
  { name: 'tls', topology: 'standalone', start: () => standaloneEnv('tls', { tls: true }) },
]

/** @type {Topology[]} Authentication and TLS variants of the cluster and sentinel deployments. */
export const VARIANTS = [
  {
    /** Cluster whose nodes require auth; the client logs in as an ACL user (not `default`). */
    name: 'cluster-acl',
    topology: 'cluster',
    async start() {
      const env = await clusterEnv('cluster-acl', {
        password: `default-${process.pid}`,
        args: ['--user', ACL_USER, 'on', `>${ACL_PASSWORD}`, '~*', '&*', '+@all'],
      })
      const url = env.url.replace(
        /^redis-cluster:\/\/[^@]*@/,
        `redis-cluster://${ACL_USER}:${encodeURIComponent(ACL_PASSWORD)}@`,
      )
      return {
        ...env,
        url,
        clientOptions: { url },
        reader: () => clusterReader(env.raw.seeds, { username: ACL_USER, password: ACL_PASSWORD }),
      }
    },
  },
  {
    /** Sentinel set whose data nodes require a password (the sentinels none, until a test sets one). */
    name: 'sentinel-auth',
    topology: 'sentinel',
    start: () => sentinelEnv('sentinel-auth', { password: DATA_PASSWORD }),
  },
  {
    /** A 3-primary cluster that speaks TLS only (clients and bus), verified against the test CA. */
    name: 'cluster-tls',
    topology: 'cluster',
    async start() {
      const c = await startTlsCluster()
      const [first] = c.nodes
      return {
        name: 'cluster-tls',
        topology: 'cluster',
        url: c.url,
        clientOptions: { url: c.url, tls: { ca: c.certs.ca } },
        cli: (...a) => first.cli('-c', ...a),
        scan: scanner(async () => c.nodes),
        primaries: async () => c.nodes,
        keyslot: async (key) => Number(await first.cli('CLUSTER', 'KEYSLOT', key)),
        reader: () => clusterReader(c.seeds, { tls: { ca: fs.readFileSync(c.certs.ca) } }),
        raw: c,
        stop: () => c.stop(),
      }
    },
  },
]
