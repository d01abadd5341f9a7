// Child process of the "idempotency" section: an Express 5 app, `POST /pay` (express.json, then
// the contender's idempotency middleware, then a handler that answers a small JSON).
// argv[2] = JSON { contender: 'none' | 'redis-guard' | 'express-idempotency' | 'node-idempotency', url, prefix }.
// IPC: sends { type: 'ready', port } once listening; answers 'stats' with this process's CPU and
// handler runs; on 'close' closes the server and the contender's client, then exits by itself.

import { createRequire } from 'node:module'
import { params as p, serveParent } from './app-child.mjs'

const require = createRequire(import.meta.url)
const express = require('express')

let runs = 0

const app = express()
app.disable('x-powered-by')
app.disable('etag')
app.use(express.json())
const handler = (req, res) => {
  runs++
  res.status(201).json({ id: `ch_${runs}`, amount: req.body && req.body.amount, status: 'succeeded' })
}
let close = async () => {}

if (p.contender === 'none') {
  app.post('/pay', handler)
} else if (p.contender === 'redis-guard') {
  const { RedisClient, idempotency } = require('../../index.js')
  const client = new RedisClient({ url: p.url, logger: false })
  await client.ready(5000)
  app.post('/pay', idempotency({ client, prefix: p.prefix }), handler)
  close = () => client.close()
} else if (p.contender === 'express-idempotency') {
  // express-idempotency 1.x with its Redis adapter (node-redis 4 inside).
  const ei = require('express-idempotency')
  const RedisAdapter = require('express-idempotency-redis-adapter').default
  const adapter = new RedisAdapter({ connectionConfig: { url: p.url } })
  await adapter.connect()
  app.post('/pay', ei.idempotency({ dataAdapter: adapter }), (req, res) => {
    if (ei.getSharedIdempotencyService().isHit(req)) return
    handler(req, res)
  })
  close = () => adapter.disconnect?.()
} else if (p.contender === 'node-idempotency') {
  // @node-idempotency/core with @node-idempotency/storage-adapter-redis (node-redis 4), wired
  // into Express as its own Express plugin does: onRequest before the handler, onResponse
  // when the handler answers (res.json).
  const { Idempotency, IdempotencyErrorCodes } = require('@node-idempotency/core')
  const { RedisStorageAdapter } = require('@node-idempotency/storage-adapter-redis')
  const storage = new RedisStorageAdapter({ url: p.url })
  await storage.connect()
  const idem = new Idempotency(storage, { cacheKeyPrefix: p.prefix })
  app.post(
    '/pay',
    async (req, res, next) => {
      const r = { method: req.method, headers: req.headers, body: req.body, path: req.path }
      try {
        const cached = await idem.onRequest(r)
        if (cached) {
          res.set('idempotent-replayed', 'true')
          return res.status(cached.additional.status).json(cached.body)
        }
      } catch (e) {
        const status =
          e.code === IdempotencyErrorCodes.REQUEST_IN_PROGRESS
            ? 409
            : e.code === IdempotencyErrorCodes.IDEMPOTENCY_FINGERPRINT_MISSMATCH
              ? 422
              : 400
        return res.status(status).json({ error: e.message })
      }
      const json = res.json.bind(res)
      res.json = (body) => {
        const done = () => json(body)
        idem.onResponse(r, { body, additional: { status: res.statusCode } }).then(done, done)
        return res
      }
      next()
    },
    handler,
  )
  close = () => storage.disconnect()
} else throw new Error(`unknown contender ${p.contender}`)

const server = app.listen(0, '127.0.0.1', () =>
  serveParent(server.address().port, {
    stats: () => ({ storeStats: {}, runs }),
    close: async () => {
      server.closeAllConnections()
      await new Promise((r) => server.close(r))
      await close()
    },
  }),
)
server.keepAliveTimeout = 65_000
