// The rate-limit store contenders, built the way their READMEs say, with default client options.
// Used by the micro worker (in-process calls) and by the HTTP app (inside express-rate-limit).

import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)

/** Contender ids, in the order they run in every round. */
export const STORE_CONTENDERS = [
  'redis-guard',
  'redis-guard-per-key',
  'rlr-ioredis',
  'rlr-node-redis',
  'rlf-ioredis',
  'memory',
]

/** The redis-guard variants: each is compared with rate-limit-redis + ioredis, round by round. */
export const SUBJECTS = ['redis-guard', 'redis-guard-per-key']

export const STORE_LABELS = {
  'redis-guard': 'redis-guard RedisStore (default scriptMode)',
  'redis-guard-per-key': "redis-guard RedisStore, scriptMode 'per-key'",
  'rlr-ioredis': 'rate-limit-redis v6 + ioredis',
  'rlr-node-redis': 'rate-limit-redis v6 + node-redis',
  'rlf-ioredis': 'rate-limiter-flexible RateLimiterRedis + ioredis',
  memory: 'express-rate-limit MemoryStore (in-process ceiling)',
}

/** Close an ioredis client: QUIT when connected, else (or when QUIT hangs) disconnect. */
async function closeIoredis(redis) {
  if (redis.status === 'ready') {
    await Promise.race([redis.quit().catch(() => {}), new Promise((r) => setTimeout(r, 1000).unref())])
  }
  redis.disconnect()
}

/**
 * Build a store.
 * @param {string} name one of STORE_CONTENDERS
 * @param {{ url: string, prefix: string, waitReady?: boolean }} o
 * @returns {Promise<{ store: object, increment: (key: string) => Promise<unknown>, stats: () => object, close: () => Promise<void> }>}
 *   `store` is an express-rate-limit Store (not for rlf-ioredis, which is not one); `increment`
 *   counts one hit the contender's own way (call `init` on `store` first where it has one).
 */
export async function makeStore(name, { url, prefix, waitReady = true }) {
  switch (name) {
    case 'redis-guard':
    case 'redis-guard-per-key': {
      const { RedisClient, RedisStore } = require('../../index.js')
      const client = new RedisClient({ url, logger: false })
      if (waitReady) await client.ready(5000)
      // per-key: one rate-limit-redis-style script call per key (the same-script comparison);
      // the default sends one script call per batch.
      const store = new RedisStore(
        name === 'redis-guard-per-key' ? { client, prefix, scriptMode: 'per-key' } : { client, prefix },
      )
      return {
        store,
        client,
        increment: (k) => store.increment(k),
        stats: () => client.stats(),
        close: async () => {
          await store.shutdown()
          await client.close()
        },
      }
    }
    case 'rlr-ioredis': {
      const { Redis } = require('ioredis')
      const { RedisStore } = require('rate-limit-redis')
      const redis = new Redis(url)
      redis.on('error', () => {}) // ioredis logs unhandled 'error' events otherwise
      if (waitReady) await redis.ping()
      const store = new RedisStore({ sendCommand: (command, ...args) => redis.call(command, ...args), prefix })
      return { store, increment: (k) => store.increment(k), stats: () => ({}), close: () => closeIoredis(redis) }
    }
    case 'rlr-node-redis': {
      const { createClient } = require('redis')
      const { RedisStore } = require('rate-limit-redis')
      const client = createClient({ url })
      client.on('error', () => {})
      await client.connect()
      const store = new RedisStore({ sendCommand: (...args) => client.sendCommand(args), prefix })
      return { store, increment: (k) => store.increment(k), stats: () => ({}), close: () => client.close() }
    }
    case 'rlf-ioredis': {
      const { Redis } = require('ioredis')
      const { RateLimiterRedis } = require('rate-limiter-flexible')
      const redis = new Redis(url)
      redis.on('error', () => {})
      if (waitReady) await redis.ping()
      // consume() REJECTS when a key is over `points`: 1e9 points in 60 s are never reached here.
      const limiter = new RateLimiterRedis({
        storeClient: redis,
        points: 1e9,
        duration: 60,
        keyPrefix: prefix.replace(/:$/, ''),
      })
      return {
        store: null,
        increment: (k) => limiter.consume(k, 1),
        stats: () => ({}),
        close: () => closeIoredis(redis),
      }
    }
    case 'memory': {
      const { MemoryStore } = require('express-rate-limit')
      const store = new MemoryStore()
      return { store, increment: (k) => store.increment(k), stats: () => ({}), close: async () => store.shutdown() }
    }
    default:
      throw new Error(`unknown store contender ${name}`)
  }
}
