// Child process of the "fastify" section: a Fastify 5 app with @fastify/rate-limit 11 on one
// store contender, `GET /` answering a small text.
// argv[2] = JSON { contender: 'redis-guard' | 'plugin-ioredis' | 'plugin-memory', url, prefix }.
// IPC (bench/lib/app.mjs's protocol): sends { type: 'ready', port } once listening; answers
// 'stats' with this process's CPU and the store's counters; on 'close' closes the app and the
// contender's client, then exits by itself.

import { createRequire } from 'node:module'
import { params as p, serveParent } from './app-child.mjs'
import { countCrossings } from './common.mjs'

const require = createRequire(import.meta.url)
const Fastify = require('fastify')
const rateLimit = require('@fastify/rate-limit')

let storeErrors = 0
// redis-guard diagnostics: JS→Rust crossings (batch submissions) and calls per crossing.
const diag = { batches: 0, items: 0 }

// A limit no run reaches: every request is a store decision, none is a 429.
const limits = { max: 1e9, timeWindow: 60_000 }
let plugin
let stats = () => ({})
let close = async () => {}
if (p.contender === 'redis-guard') {
  // As the README wires it: `store: fastifyStore({ ... })`, on the app's RedisClient.
  const { RedisClient, fastifyStore } = require('../../index.js')
  const client = new RedisClient({ url: p.url, logger: false })
  await client.ready(5000)
  const Store = fastifyStore({ client, prefix: p.prefix })
  class DiagStore extends Store {
    constructor(params) {
      super(params)
      countCrossings(this._batch.native, diag)
    }
  }
  plugin = { ...limits, store: DiagStore }
  stats = () => client.stats()
  close = () => client.close()
} else if (p.contender === 'plugin-ioredis') {
  // The plugin's own Redis store, as its README wires it: `redis: new Redis(...)`.
  const { Redis } = require('ioredis')
  const redis = new Redis(p.url, { connectTimeout: 500, maxRetriesPerRequest: 1 })
  redis.on('error', () => {})
  await new Promise((resolve) => redis.once('ready', resolve))
  plugin = { ...limits, redis, nameSpace: p.prefix }
  close = () => redis.quit().catch(() => {})
} else if (p.contender === 'plugin-memory') {
  plugin = { ...limits } // the plugin's default LocalStore (an LRU in this process)
} else {
  throw new Error(`unknown fastify contender ${p.contender}`)
}

const app = Fastify({ logger: false })
await app.register(rateLimit, {
  ...plugin,
  // One key per client connection (64 keys under autocannon -c 64), as the http section does.
  keyGenerator: (req) => `c:${req.socket.remotePort}`,
})
app.get('/', async () => 'ok')
app.setErrorHandler((err, req, reply) => {
  storeErrors++
  reply.code(500).type('text/plain').send('store error')
})
await app.listen({ port: 0, host: '127.0.0.1' })
app.server.keepAliveTimeout = 65_000
serveParent(app.server.address().port, {
  stats: () => ({ storeStats: stats(), storeErrors, diag: { ...diag } }),
  close: async () => {
    app.server.closeAllConnections()
    await app.close()
    await close()
  },
})
