// Child process: an Express 5 app with express-rate-limit on one store contender.
// argv[2] = JSON { store, url, prefix, keyBy: 'connection' | 'ip', waitReady }.
// IPC: sends { type: 'ready', port } once listening; answers 'stats' with this process's CPU
// and the store client's counters; on 'close' closes the server and the store's client and
// then exits by itself.

import { createRequire } from 'node:module'
import { params as p, serveParent } from './app-child.mjs'
import { countCrossings } from './common.mjs'
import { makeStore } from './stores.mjs'

const require = createRequire(import.meta.url)
const express = require('express')
const { rateLimit } = require('express-rate-limit')

let storeErrors = 0

const s = await makeStore(p.store, { url: p.url, prefix: p.prefix, waitReady: p.waitReady !== false })
// redis-guard diagnostics: JS→Rust crossings (batch submissions) and calls per crossing.
const diag = { batches: 0, items: 0 }
const native = p.store.startsWith('redis-guard') && s.store && s.store._batch && s.store._batch.native
if (native && typeof native.submit === 'function') countCrossings(native, diag)

const app = express()
app.disable('x-powered-by')
app.disable('etag')
app.use(
  rateLimit({
    windowMs: 60_000,
    limit: 1e9, // nothing is ever rejected: this measures the store, not 429s
    store: s.store,
    // One key per client connection (64 keys under autocannon -c 64), or one key for all (by IP).
    keyGenerator: p.keyBy === 'ip' ? () => 'ip:127.0.0.1' : (req) => `c:${req.socket.remotePort}`,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    validate: false,
  }),
)
app.get('/', (req, res) => {
  res.type('text/plain').send('ok')
})
// express-rate-limit passes a store error to next(): count it, answer 500.
app.use((err, req, res, next) => {
  storeErrors++
  res.status(500).type('text/plain').send('store error')
})

const server = app.listen(0, '127.0.0.1', () =>
  serveParent(server.address().port, {
    stats: () => ({ storeStats: s.stats(), storeErrors, diag: { ...diag } }),
    close: async () => {
      server.closeAllConnections()
      await new Promise((r) => server.close(r))
      await s.close()
    },
  }),
)
server.keepAliveTimeout = 65_000
