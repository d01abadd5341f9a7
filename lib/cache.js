'use strict'
// The query cache (first part): get / set / delete / has and their batch forms, over the batch
// core (lib/batch.js, src/cache.rs). Values are serialized here (JSON by default) and cross to
// Rust as UTF-8 bytes; an entry in Redis is the plain serialized text at `${prefix}${key}` with a
// TTL — what `SETEX cache:KEY ttl JSON.stringify(v)` writes — so hand-written helpers and this
// cache read each other's entries.

const { inspect } = require('node:util')
const {
  NativeCache,
  CACHE_GET,
  CACHE_SET,
  CACHE_DELETE,
  CACHE_HAS,
  CACHE_REDIS,
  CACHE_MAX_KEY_BYTES,
} = require('./native.js')
const { RedisClient } = require('./client.js')
const { getDefaultClient } = require('./default-client.js')
const { RedisGuardError, codes, toError, fromNumber } = require('./errors.js')
const { Batcher } = require('./batch.js')

/** The default TTL of an entry, in ms: one hour. */
const DEFAULT_TTL_MS = 3_600_000
/** The default largest serialized value, in bytes: 1 MiB. */
const DEFAULT_MAX_VALUE_BYTES = 1024 * 1024
/** The longest TTL, in ms: one year (src/cache.rs checks it too). */
const MAX_TTL_MS = 365 * 24 * 3600 * 1000
const EMPTY = Buffer.alloc(0)

/** @param {string} message */
function invalid(message, cause) {
  return new RedisGuardError(codes.INVALID_ARG, message, cause ? { cause } : undefined)
}

/** A cache key: a non-empty string of at most CACHE_MAX_KEY_BYTES bytes. */
function checkKey(key) {
  if (typeof key !== 'string') throw invalid(`a cache key must be a string, got ${typeof key}`)
  if (key.length === 0) throw invalid('a cache key must not be empty')
  if (key.length > CACHE_MAX_KEY_BYTES / 3 && Buffer.byteLength(key) > CACHE_MAX_KEY_BYTES)
    throw invalid(`a cache key must be at most ${CACHE_MAX_KEY_BYTES} bytes`)
}

/** A TTL in whole ms (a fractional one rounded up): above 0, at most one year. */
function checkTtl(v, name) {
  if (typeof v !== 'number' || !(v > 0 && Math.ceil(v) <= MAX_TTL_MS))
    throw invalid(`\`${name}\` must be a number of ms above 0 and at most one year (${MAX_TTL_MS})`)
  return Math.ceil(v)
}

/** An array argument of a batch method. */
function checkArray(v, what) {
  if (!Array.isArray(v)) throw invalid(`${what} must be an array`)
  return v
}

/**
 * @typedef {object} CacheStats counted in this process, since the cache was made
 * @property {number} hits       gets (and getMany keys) that found a value
 * @property {number} misses     gets that found none
 * @property {number} sets       values stored (in Redis or the memory tier)
 * @property {number} deletes    delete calls (per key)
 * @property {number} errors     calls rejected by Redis or the policy, and entries that did not parse
 * @property {number} fallbacks  answers given without Redis (memory tier or bypass)
 */

class Cache {
  /**
   * @param {import('../index').CacheOptions} [options]
   */
  constructor(options = {}) {
    if (options === null || typeof options !== 'object')
      throw new RedisGuardError(codes.CONFIG, 'Cache options must be an object')
    const {
      client,
      prefix = 'cache:',
      ttlMs = DEFAULT_TTL_MS,
      onUnavailable = 'memory',
      serializer = JSON,
      maxValueBytes = DEFAULT_MAX_VALUE_BYTES,
      fallbackMaxKeys,
      ...unknown
    } = options
    const extra = Object.keys(unknown)
    if (extra.length)
      throw new RedisGuardError(
        codes.CONFIG,
        `unknown Cache option \`${extra[0]}\` (known: client, prefix, ttlMs, onUnavailable, serializer, maxValueBytes, fallbackMaxKeys)`,
      )
    if (client !== undefined && !(client instanceof RedisClient))
      throw new RedisGuardError(codes.CONFIG, 'option `client` must be a RedisClient from redis-guard')
    if (typeof prefix !== 'string') throw new RedisGuardError(codes.CONFIG, 'option `prefix` must be a string')
    if (typeof ttlMs !== 'number' || !(ttlMs > 0 && Math.ceil(ttlMs) <= MAX_TTL_MS))
      throw new RedisGuardError(codes.CONFIG, `option \`ttlMs\` must be above 0 and at most one year (${MAX_TTL_MS})`)
    if (!['memory', 'bypass', 'deny'].includes(onUnavailable))
      throw new RedisGuardError(codes.CONFIG, "option `onUnavailable` must be 'memory', 'bypass' or 'deny'")
    if (
      serializer === null ||
      typeof serializer !== 'object' ||
      typeof serializer.stringify !== 'function' ||
      typeof serializer.parse !== 'function'
    )
      throw new RedisGuardError(codes.CONFIG, 'option `serializer` must be an object with `stringify` and `parse`')
    if (!(Number.isInteger(maxValueBytes) && maxValueBytes > 0))
      throw new RedisGuardError(codes.CONFIG, 'option `maxValueBytes` must be a positive integer')
    if (fallbackMaxKeys !== undefined && !(Number.isInteger(fallbackMaxKeys) && fallbackMaxKeys > 0))
      throw new RedisGuardError(codes.CONFIG, 'option `fallbackMaxKeys` must be a positive integer')
    /** @type {RedisClient} */
    this.client = /** @type {RedisClient} */ (client) || getDefaultClient()
    /** The key prefix: entries are `${prefix}${key}`. The default value is `'cache:'`. */
    this.prefix = prefix
    /** The TTL of an entry set without one, in ms. The default value is `3600000` (one hour). */
    this.ttlMs = Math.ceil(ttlMs)
    this.onUnavailable = onUnavailable
    this.maxValueBytes = maxValueBytes
    this._serializer = serializer
    try {
      this._native = new NativeCache(this.client._native, prefix, onUnavailable, fallbackMaxKeys)
    } catch (e) {
      throw toError(e)
    }
    this._batch = new Batcher(this._native.batcher())
    this._stats = { hits: 0, misses: 0, sets: 0, deletes: 0, errors: 0, fallbacks: 0 }
  }

  /** The serialized bytes of `value` (a typed error for what cannot be stored). */
  _encode(key, value) {
    if (value === undefined) throw invalid(`cannot cache undefined (key ${JSON.stringify(key.slice(0, 64))})`)
    if (typeof value === 'function') throw invalid('cannot cache a function')
    let text
    try {
      text = this._serializer.stringify(value)
    } catch (e) {
      // A circular structure, a BigInt, a throwing toJSON: bad input.
      throw invalid(`cannot serialize the value: ${e && e.message}`, e)
    }
    if (typeof text !== 'string')
      throw invalid('the serializer did not return a string (undefined, a function, a symbol?)')
    // A string of n UTF-16 units is at most 3n bytes: the exact length only when it may be over.
    if (text.length * 3 > this.maxValueBytes && Buffer.byteLength(text) > this.maxValueBytes)
      throw invalid(`the serialized value is over maxValueBytes (${this.maxValueBytes} bytes)`)
    return Buffer.from(text, 'utf8')
  }

  /** The options of one set: its TTL in ms. */
  _ttlOf(options) {
    if (options === undefined || options === null) return this.ttlMs
    if (typeof options !== 'object') throw invalid('set options must be an object')
    return options.ttlMs === undefined ? this.ttlMs : checkTtl(options.ttlMs, 'ttlMs')
  }

  /** The answer of one call: its status checked and counted. */
  _check(r, what, key) {
    const status = r.nums[0]
    if (status < 0) {
      this._stats.errors++
      throw fromNumber(status, `cache ${what} ${JSON.stringify(key.slice(0, 64))}`)
    }
    if (status !== CACHE_REDIS) this._stats.fallbacks++
    return r
  }

  /** The value of a get's answer, or undefined. */
  async _get(key) {
    const r = this._check(await this._batch.push(CACHE_GET, key, 0, 0, EMPTY), 'get', key)
    if (r.nums[1] !== 1) {
      this._stats.misses++
      return undefined
    }
    let value
    try {
      value = this._serializer.parse(r.bytes.toString('utf8'))
    } catch {
      // Not written by a serializer like ours: a miss, counted as an error.
      this._stats.errors++
      this._stats.misses++
      return undefined
    }
    this._stats.hits++
    return value
  }

  async _set(key, bytes, ttl) {
    const r = this._check(await this._batch.push(CACHE_SET, key, ttl, 0, bytes), 'set', key)
    const stored = r.nums[1] === 1
    if (stored) this._stats.sets++
    return stored
  }

  async _delete(key) {
    this._stats.deletes++
    const r = this._check(await this._batch.push(CACHE_DELETE, key, 0, 0, EMPTY), 'delete', key)
    return r.nums[1]
  }

  /**
   * The value of `key`, or undefined (a miss).
   * @param {string} key
   */
  async get(key) {
    checkKey(key)
    return this._get(key)
  }

  /**
   * Store `value` at `key` for `ttlMs` (default: the cache's). Resolves true when stored (in
   * Redis, or the memory tier), false when dropped (`onUnavailable: 'bypass'`).
   * @param {string} key
   * @param {unknown} value
   * @param {{ ttlMs?: number }} [options]
   */
  async set(key, value, options) {
    checkKey(key)
    const ttl = this._ttlOf(options)
    return this._set(key, this._encode(key, value), ttl)
  }

  /**
   * The values of `keys`, in order (undefined for a miss): one batch.
   * @param {string[]} keys
   */
  async getMany(keys) {
    checkArray(keys, 'getMany(keys)')
    for (const k of keys) checkKey(k)
    return Promise.all(keys.map((k) => this._get(k)))
  }

  /**
   * Store every `[key, value, { ttlMs }?]` entry: one batch. Every entry is checked before
   * anything is sent (one bad entry: nothing is written). Resolves how many were stored.
   * @param {Array<[string, unknown] | [string, unknown, { ttlMs?: number } | undefined]>} entries
   */
  async setMany(entries) {
    checkArray(entries, 'setMany(entries)')
    const calls = entries.map((e) => {
      if (!Array.isArray(e) || e.length < 2 || e.length > 3)
        throw invalid('setMany entries must be [key, value] or [key, value, { ttlMs }]')
      const [key, value, options] = e
      checkKey(key)
      return [key, this._encode(key, value), this._ttlOf(options)]
    })
    const stored = await Promise.all(calls.map(([k, b, t]) => this._set(k, b, t)))
    return stored.filter(Boolean).length
  }

  /**
   * Whether `key` holds a value.
   * @param {string} key
   */
  async has(key) {
    checkKey(key)
    const r = this._check(await this._batch.push(CACHE_HAS, key, 0, 0, EMPTY), 'has', key)
    return r.nums[1] === 1
  }

  /**
   * Delete `key`: true when it held a value.
   * @param {string} key
   */
  async delete(key) {
    checkKey(key)
    return (await this._delete(key)) > 0
  }

  /**
   * Delete `keys`: one batch. Resolves how many held a value.
   * @param {string[]} keys
   */
  async deleteMany(keys) {
    checkArray(keys, 'deleteMany(keys)')
    for (const k of keys) checkKey(k)
    const n = await Promise.all(keys.map((k) => this._delete(k)))
    return n.reduce((a, b) => a + b, 0)
  }

  /**
   * Delete every entry of this cache's prefix (SCAN + UNLINK on every primary, never KEYS) and
   * empty the memory tier. Resolves the number of Redis keys deleted. Rejects with
   * ERR_REDIS_GUARD_UNAVAILABLE while Redis is unavailable, and ERR_REDIS_GUARD_INVALID_ARG
   * for an empty prefix.
   */
  async clear() {
    try {
      return await this._native.clear()
    } catch (e) {
      this._stats.errors++
      throw toError(e)
    }
  }

  /**
   * Delete every entry whose key (after the prefix) matches the glob `pattern` (`*`, `?`,
   * `[...]`, `\` escapes; glob characters in the prefix are matched literally): SCAN + UNLINK
   * on every primary, never KEYS. Empties the memory tier. Resolves the number of keys deleted.
   * Rejects with ERR_REDIS_GUARD_UNAVAILABLE while Redis is unavailable, and
   * ERR_REDIS_GUARD_INVALID_ARG for an empty prefix or a pattern that is not a non-empty string.
   * @param {string} pattern
   */
  async deletePattern(pattern) {
    if (typeof pattern !== 'string' || pattern.length === 0)
      throw invalid('deletePattern(pattern) needs a non-empty string pattern')
    try {
      return await this._native.deletePattern(pattern)
    } catch (e) {
      this._stats.errors++
      throw toError(e)
    }
  }

  /** @returns {CacheStats} counters of this cache in this process */
  stats() {
    return { ...this._stats }
  }

  /** Entries the memory tier holds now. */
  fallbackSize() {
    return this._native.fallbackSize()
  }

  [inspect.custom]() {
    return `Cache { prefix: ${JSON.stringify(this.prefix)}, onUnavailable: '${this.onUnavailable}', client: ${inspect(this.client)} }`
  }
}

// ---- seed helpers: cacheGet / cacheSet / cacheDelete on the default client ------------------

/** @type {WeakMap<RedisClient, Cache>} the `cache:` Cache of each client the helpers used */
const helperCaches = new WeakMap()

/** The helpers' Cache (prefix `cache:`) on `client` (default: the default client). */
function helperCache(client = getDefaultClient()) {
  let c = helperCaches.get(client)
  if (!c) {
    c = new Cache({ client: /** @type {any} */ (client), prefix: 'cache:' })
    helperCaches.set(client, c)
  }
  return c
}

/**
 * Seed-compatible: the value at `cache:${key}`, or undefined.
 * @param {string} key
 */
function cacheGet(key) {
  return helperCache().get(key)
}

/**
 * Seed-compatible: `SETEX cache:${key} ttlSeconds JSON.stringify(value)` (fractional seconds
 * rounded up to the next whole ms). The default value of `ttlSeconds` is `3600`.
 * @param {string} key
 * @param {unknown} value
 * @param {number} [ttlSeconds]
 */
async function cacheSet(key, value, ttlSeconds = 3600) {
  if (typeof ttlSeconds !== 'number' || !(ttlSeconds > 0))
    throw invalid('`ttlSeconds` must be a number above 0 (at most one year)')
  return helperCache().set(key, value, { ttlMs: ttlSeconds * 1000 })
}

/**
 * Seed-compatible: delete `cache:${key}`; true when it held a value.
 * @param {string} key
 */
function cacheDelete(key) {
  return helperCache().delete(key)
}

/**
 * Seed-compatible: delete every `cache:${pattern}` key (SCAN + UNLINK, never KEYS); resolves the
 * number deleted.
 * @param {string} pattern
 */
function cacheDeletePattern(pattern) {
  return helperCache().deletePattern(pattern)
}

module.exports = { Cache, cacheGet, cacheSet, cacheDelete, cacheDeletePattern, DEFAULT_TTL_MS, DEFAULT_MAX_VALUE_BYTES }
