// A cache in a process of its own, driven by JSON lines on stdin (for the cross-process tests of
// the query cache: stampede, L1 coherence). Env: REDIS_URL, PREFIX, L1 ("1": an L1).
// In:  {"id":1,"op":"getOrSet","key":"k","n":250,"factoryMs":200,"value":1}
//      {"id":2,"op":"get"|"set"|"delete"|"invalidateTags"|"stats"|"l1", ...}
// Out: {"ready":true} once connected, then {"id":1,"result":...} or {"id":1,"error":"CODE"}.
import readline from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'

import { Cache, RedisClient } from '../../index.mjs'

const client = new RedisClient({ url: process.env.REDIS_URL, logger: false })
const cache = new Cache({
  client,
  prefix: process.env.PREFIX,
  l1: process.env.L1 === '1' ? { ttlMs: 60_000 } : undefined,
})
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')

const ops = {
  async getOrSet({ key, n = 1, factoryMs = 0, value = 1, timeoutMs }) {
    const factory = async () => {
      await sleep(factoryMs)
      return { value, pid: process.pid }
    }
    const rs = await Promise.allSettled(Array.from({ length: n }, () => cache.getOrSet(key, factory, { timeoutMs })))
    return {
      values: [...new Set(rs.map((r) => (r.status === 'fulfilled' ? JSON.stringify(r.value) : r.reason.code)))],
      factoryCalls: cache.stats().factoryCalls,
    }
  },
  get: ({ key }) => cache.get(key),
  set: ({ key, value, options }) => cache.set(key, value, options),
  delete: ({ key }) => cache.delete(key),
  invalidateTags: ({ tags }) => cache.invalidateTags(tags),
  stats: () => cache.stats(),
  l1: () => ({ ready: cache.l1Ready(), size: cache.l1Size(), interruptions: cache._l1 ? cache._l1.interruptions : 0 }),
}

await client.ready(5000)
if (process.env.L1 === '1') for (let i = 0; i < 100 && !cache.l1Ready(); i++) await sleep(50)
out({ ready: true, l1: cache.l1Ready() })
const rl = readline.createInterface({ input: process.stdin })
rl.on('line', async (line) => {
  const msg = JSON.parse(line)
  if (msg.op === 'exit') {
    cache.close()
    await client.close()
    process.exit(0)
  }
  try {
    out({ id: msg.id, result: (await ops[msg.op](msg)) ?? null })
  } catch (e) {
    out({ id: msg.id, error: e.code || String(e) })
  }
})
