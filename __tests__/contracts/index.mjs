/**
 * Contract bodies: the tests every feature must pass on every deployment, written once and
 * registered once per topology (the way fred and valkey-glide expand one body per topology, and
 * bentocache's `registerCacheDriverTestSuite`). A body is a function `(t, env) => void` that
 * registers its tests with `t.test` / `t.describe`; it uses only the public API, reads Redis
 * through `env.cli` / `env.scan`, and takes a `uniquePrefix()` per test.
 *
 * A new feature's body (limiter, idempotency, ...) is one import and one entry in
 * `CONTRACTS` below; __tests__/contracts.test.mjs then runs it on every topology.
 *
 * @module __tests__/contracts
 */

import { RedisClient } from '../../index.mjs'
import cache from './cache.mjs'
import client from './client.mjs'
import idempotency from './idempotency.mjs'
import limiter from './limiter.mjs'
import lock from './lock.mjs'
import store from './store.mjs'

/** Every contract body, in the order they run. */
export const CONTRACTS = [client, store, limiter, lock, cache, idempotency]

/**
 * @typedef {object} ContractEnv  What a body gets. `name` and `topology` are known when tests
 *   are registered (a body may register topology-specific tests); the rest works once the
 *   deployment has started, i.e. inside a test.
 * @property {string} name                                   the deployment's name ('standalone', 'tls', ...)
 * @property {'standalone' | 'cluster' | 'sentinel'} topology  what `healthCheck().topology` must say
 * @property {string} url                                    the deployment's URL (REDIS_URL)
 * @property {{ url: string, tls?: object }} clientOptions    options of a client of the deployment
 * @property {(opts?: object) => import('../../index.mjs').RedisClient} makeClient
 *   `new RedisClient({ ...clientOptions, logger: false, ...opts })`, closed after the test
 * @property {(...args: (string | number | object)[]) => Promise<string>} cli
 *   redis-cli on the node that holds the key (see helpers/topologies.mjs)
 * @property {(pattern: string) => Promise<string[]>} scan    keys matching `pattern` on every primary
 * @property {() => Promise<import('../helpers/redis.mjs').RedisServer[]>} primaries
 * @property {(key: string) => Promise<number>} keyslot       CLUSTER KEYSLOT (cluster topologies only)
 */

/**
 * Register `contracts` for one deployment, in the caller's current `describe()`.
 * @param {{ test: Function, describe: Function, afterEach: Function }} t  node:test's functions
 * @param {{ name: string, topology: 'standalone' | 'cluster' | 'sentinel' }} topology
 * @param {() => import('../helpers/topologies.mjs').TopologyEnv | undefined} deployment
 *   the started deployment (called inside tests; the caller starts it in `before`)
 * @param {Array<(t: object, env: ContractEnv) => void>} [contracts]
 */
export function registerContracts(t, topology, deployment, contracts = CONTRACTS) {
  const started = () => {
    const d = deployment()
    if (!d) throw new Error(`the ${topology.name} deployment did not start`)
    return d
  }
  const open = new Set()
  /** @type {ContractEnv} */
  const env = {
    name: topology.name,
    topology: topology.topology,
    get url() {
      return started().url
    },
    get clientOptions() {
      return started().clientOptions
    },
    makeClient(opts = {}) {
      const c = new RedisClient({ ...started().clientOptions, logger: false, ...opts })
      open.add(c)
      return c
    },
    cli: (...args) => started().cli(...args),
    scan: (pattern) => started().scan(pattern),
    primaries: () => started().primaries(),
    keyslot: (key) => {
      const d = started()
      if (!d.keyslot) throw new Error(`keyslot() on ${topology.name}: cluster topologies only`)
      return d.keyslot(key)
    },
  }
  t.afterEach(async () => {
    const clients = [...open]
    open.clear()
    await Promise.all(clients.map((c) => c.close().catch(() => {})))
  })
  for (const body of contracts) body({ test: t.test, describe: t.describe }, env)
}
