'use strict'
// The process-wide default client, built from the environment on first use (REDIS_URL,
// REDIS_HOST, ...): what the seed helpers (acquireLock, isRedisAvailable, ...) and a RedisStore
// without `client` or `url` use.

const { RedisClient } = require('./client.js')

/** @type {RedisClient | null} */
let defaultClient = null

/** The default client, built on first use. */
function getDefaultClient() {
  if (!defaultClient) defaultClient = new RedisClient()
  return defaultClient
}

/** Close the default client (if it was ever built); a later call builds a new one. */
async function closeDefaultClient() {
  const c = defaultClient
  defaultClient = null
  if (c) await c.close()
}

module.exports = { getDefaultClient, closeDefaultClient }
