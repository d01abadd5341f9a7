// An app process of its own for the cross-process tests of idempotency keys, driven by JSON
// lines on stdin. Env: REDIS_URL, PREFIX, LOCK_TTL_MS.
// It serves `POST /pay` (express.json + the idempotency middleware; the handler waits
// `body.ms` ms, then answers 201 `{ pid, n, amount }`) and prints `{"ran":KEY}` each time the
// handler runs.
// In:  {"id":1,"op":"claim","key":"k","fingerprint":"f"}   -> {"id":1,"result":"acquired"}
//      {"id":2,"op":"complete","key":"k","result":...}     -> {"id":2,"result":null} or {"error":CODE}
//      {"id":3,"op":"stats"}                                -> {"id":3,"result":{claims,...,lost}}
//      {"op":"exit"}
// Out: {"ready":true,"port":P} once connected and listening.
import readline from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import express from 'express'

import { IdempotencyKeys, RedisClient, idempotency } from '../../index.mjs'

const client = new RedisClient({ url: process.env.REDIS_URL, logger: false })
const lockTtlMs = Number(process.env.LOCK_TTL_MS || 10_000)
const prefix = process.env.PREFIX
const keys = new IdempotencyKeys({ client, prefix, lockTtlMs })
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')

let n = 0
const app = express()
app.post('/pay', express.json(), idempotency({ client, prefix, lockTtlMs }), async (req, res) => {
  out({ ran: req.get('idempotency-key') })
  n++
  await sleep(Number(req.body && req.body.ms) || 0)
  res.status(201).json({ pid: process.pid, n, amount: req.body && req.body.amount })
})

/** @type {Map<string, any>} */
const claims = new Map()
const ops = {
  async claim({ key, fingerprint }) {
    const c = await keys.claim(key, { fingerprint })
    if (c.state === 'acquired') claims.set(key, c)
    return c.state
  },
  async complete({ key, result }) {
    await claims.get(key).complete(result)
    return null
  },
  stats: () => keys.stats(),
}

await client.ready(5000)
const server = app.listen(0, '127.0.0.1', () => out({ ready: true, port: server.address().port }))
const rl = readline.createInterface({ input: process.stdin })
rl.on('line', async (line) => {
  const msg = JSON.parse(line)
  if (msg.op === 'exit') {
    server.close()
    server.closeAllConnections()
    await client.close()
    process.exit(0)
  }
  try {
    out({ id: msg.id, result: (await ops[msg.op](msg)) ?? null })
  } catch (e) {
    out({ id: msg.id, error: e.code || String(e) })
  }
})
