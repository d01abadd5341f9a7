'use strict'
// An Express app that rate-limits, locks and caches with redis-guard.
//
//   npm run example              # demo: starts, sends itself requests, prints what happened, exits
//   npm run example -- --serve   # keeps serving on PORT (default 3000)
//
// Without Redis it works through the in-memory fallback; with REDIS_URL set it uses Redis.

const express = require('express')
const { rateLimit } = require('express-rate-limit')
const { RedisStore, Cache, getDefaultClient, healthHandler, acquireLock, releaseLock } = require('..')

const app = express()
const client = getDefaultClient() // from REDIS_URL / REDIS_HOST / ... or redis://127.0.0.1:6379

// 1. Rate limiting: 5 requests per 10 s per client, counted in Redis (or in memory while it is down).
const limiter = rateLimit({
  windowMs: 10_000,
  limit: 5,
  standardHeaders: 'draft-8',
  legacyHeaders: false,
  store: new RedisStore({ client, prefix: 'rl:example:' }),
})
app.get('/api/hello', limiter, (req, res) => res.json({ hello: 'world' }))

// 2. A job that only one instance may run at a time: the seed helpers, and a lease with a fencing token.
app.post('/api/jobs/:id', async (req, res) => {
  const key = `jobs:${req.params.id}`
  if (!(await acquireLock(key, 10))) return res.status(409).json({ error: 'job already running' })
  try {
    await new Promise((r) => setTimeout(r, 200)) // the work
    res.json({ ran: key })
  } finally {
    await releaseLock(key)
  }
})
app.post('/api/invoices/:id', async (req, res) => {
  const result = await client.withLock(`invoice:${req.params.id}`, { ttlMs: 5_000, waitMs: 1_000 }, async (signal) => {
    // pass the fence to the resource so that it can reject a stale holder's write
    await new Promise((r) => setTimeout(r, 50))
    return { invoice: req.params.id, aborted: signal.aborted }
  })
  res.json(result)
})

// 3. A query cache: the "database" runs once per user per minute, however many requests come at
//    once, in this process or across instances; a tag invalidates every entry of a team.
const cache = new Cache({ client, prefix: 'cache:example:', ttlMs: 60_000, graceMs: 300_000 })
let dbQueries = 0
const loadUser = async (id) => {
  dbQueries++
  await new Promise((r) => setTimeout(r, 50)) // the query
  return { id, name: `user ${id}`, team: 7 }
}
app.get('/api/users/:id', async (req, res) => {
  const user = await cache.getOrSet(`user:${req.params.id}`, () => loadUser(req.params.id), { tags: ['team:7'] })
  res.json({ user, dbQueries })
})
app.post('/api/teams/:id/invalidate', async (req, res) => {
  res.json({ invalidated: await cache.invalidateTags([`team:${req.params.id}`]).catch((e) => e.code) })
})

// 4. Health for the load balancer: 200 when Redis is healthy or degraded, 503 when unhealthy.
app.get('/health', healthHandler())

async function demo(base) {
  const show = async (method, path) => {
    const r = await fetch(base + path, { method })
    const body = await r.text()
    console.log(
      `${method} ${path} -> ${r.status} ${r.headers.get('ratelimit') ? `(RateLimit: ${r.headers.get('ratelimit')}) ` : ''}${body}`,
    )
  }
  await client.ready(1000)
  console.log(`redis: ${client.url} available=${client.isAvailable()}`)
  for (let i = 0; i < 7; i++) await show('GET', '/api/hello')
  await Promise.all([show('POST', '/api/jobs/42'), show('POST', '/api/jobs/42')])
  await show('POST', '/api/invoices/7')
  await Promise.all([show('GET', '/api/users/1'), show('GET', '/api/users/1'), show('GET', '/api/users/1')])
  await show('POST', '/api/teams/7/invalidate')
  await show('GET', '/api/users/1')
  await show('GET', '/health')
}

const serve = process.argv.includes('--serve')
const server = app.listen(serve ? Number(process.env.PORT || 3000) : 0, '127.0.0.1', async () => {
  const base = `http://127.0.0.1:${server.address().port}`
  if (serve) return console.log(`listening on ${base}`)
  try {
    await demo(base)
  } finally {
    server.close()
    await client.close()
  }
})
