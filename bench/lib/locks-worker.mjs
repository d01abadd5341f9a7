// Child process of the locks section: acquire+release cycles on 1,000 keys with 64 in flight.
// A cycle whose acquire finds the key held (two in-flight cycles on one key) counts as a cycle
// and as `contended`; none of the contenders waits or retries here.

import { createRequire } from 'node:module'
import { inFlight, latencySummary, measured, workerMain } from './common.mjs'

const require = createRequire(import.meta.url)
const KEYS = 1000
const TTL_MS = 10_000

async function makeLocker(name, url) {
  if (name === 'rg-helpers' || name === 'rg-lease') {
    const { RedisClient } = require('../../index.js')
    const client = new RedisClient({ url, logger: false })
    await client.ready(5000)
    const cycle =
      name === 'rg-helpers'
        ? async (key) => {
            if (!(await client.acquireLock(key, TTL_MS / 1000))) return false
            await client.releaseLock(key)
            return true
          }
        : async (key) => {
            const lease = await client.lock(key, { ttlMs: TTL_MS })
            if (!lease) return false
            await lease.release()
            return true
          }
    return { cycle, stats: () => client.stats(), close: () => client.close() }
  }
  const { Redis } = require('ioredis')
  const redis = new Redis(url)
  redis.on('error', () => {})
  await redis.ping()
  const close = async () => {
    await redis.quit().catch(() => {})
  }
  if (name === 'redlock') {
    const { Redlock, ExecutionError } = require('@sesamecare-oss/redlock')
    const redlock = new Redlock([redis], { retryCount: 0 })
    redlock.on('error', () => {})
    const cycle = async (key) => {
      let lock
      try {
        lock = await redlock.acquire([`redlock:${key}`], TTL_MS)
      } catch (e) {
        if (e instanceof ExecutionError) return false
        throw e
      }
      await lock.release()
      return true
    }
    return { cycle, stats: () => ({}), close }
  }
  if (name === 'semaphore') {
    const { Mutex } = require('redis-semaphore')
    const cycle = async (key) => {
      const m = new Mutex(redis, key, { lockTimeout: TTL_MS, acquireAttemptsLimit: 1 })
      if (!(await m.tryAcquire())) return false
      await m.release()
      return true
    }
    return { cycle, stats: () => ({}), close }
  }
  throw new Error(`unknown lock contender ${name}`)
}

async function main({ contender, url, redisPid, cycles, concurrency, warmup }) {
  const l = await makeLocker(contender, url)
  try {
    const keys = Array.from({ length: KEYS }, (_, i) => `bench:${i}`)
    const load = (n) => inFlight((i) => l.cycle(keys[i % KEYS]), n, concurrency)
    await load(warmup)
    const m = await measured(() => load(cycles), redisPid, l.stats)
    const { lat, refused: contended } = m.result
    return {
      contender,
      cycles,
      concurrency,
      wallMs: m.wallMs,
      cyclesPerSec: (cycles * 1000) / m.wallMs,
      ...latencySummary(lat),
      contended,
      cpuUsPerCycle: m.cpuUs / cycles,
      redisCpuUsPerCycle: m.redisCpuUs / cycles,
      fallbacks: m.fallbacks,
    }
  } finally {
    await l.close()
  }
}

workerMain(main)
