'use strict'
// The query cache, over the batch core (lib/batch.js, src/cache.rs). Values are serialized here
// (JSON by default) and cross to Rust as UTF-8 bytes. An entry set without tags or grace is the
// plain serialized text at `${prefix}${key}` with a TTL — what `SETEX cache:KEY ttl
// JSON.stringify(v)` writes — so hand-written helpers and this cache read each other's
// entries. An entry with tags or grace is `"\0rg1\n" + header JSON + "\n" + text` (README,
// "Wire format"). getOrSet runs one factory per key at a time in a process (a map of promises)
// and across processes (a fill lock in Redis); the optional L1 (lib/l1.js) keeps deserialized
// values and hears of every process's changes through a subscriber.

const { inspect } = require('node:util')
const {
  NativeCache,
  CACHE_GET,
  CACHE_SET,
  CACHE_DELETE,
  CACHE_TAG_VERSION,
  CACHE_INVALIDATE,
  CACHE_LOCK,
  CACHE_UNLOCK,
  CACHE_REDIS,
  CACHE_STALE,
  CACHE_UNCHECKED,
  CACHE_ENVELOPE,
  CACHE_READ,
  CACHE_RESERVED,
  CACHE_MAX_KEY_BYTES,
  MAX_TTL_MS,
} = require('./native.js')
/** @typedef {import('./client.js').RedisClient} RedisClient */
const { getDefaultClient } = require('./default-client.js')
const { RedisGuardError, codes, toError, fromNumber } = require('./errors.js')
const { Batcher } = require('./batch.js')
const { optionsObject, checkCommon, config } = require('./options.js')
const { after, cancel, now: clock } = require('./timers.js')
const { L1, DEFAULT_L1_MAX_KEYS, DEFAULT_L1_TTL_MS } = require('./l1.js')

/** The default TTL of an entry, in ms: one hour. */
const DEFAULT_TTL_MS = 3_600_000
/** The default largest serialized value, in bytes: 1 MiB. */
const DEFAULT_MAX_VALUE_BYTES = 1024 * 1024
/** The default time getOrSet waits for a factory (its own, or another process's), in ms. */
const DEFAULT_TIMEOUT_MS = 5_000
/** Most tags per entry, and the longest tag in characters. */
const MAX_TAGS = 64
const MAX_TAG_LENGTH = 1024
/** The header of an entry with tags or grace. */
const ENVELOPE = '\0rg1\n'
const EMPTY = Buffer.alloc(0)
const MISS = Object.freeze({ found: false, stale: false, value: undefined, tags: undefined })

/** @param {string} message */
function invalid(message, cause) {
  return new RedisGuardError(codes.INVALID_ARG, message, cause ? { cause } : undefined)
}

/** A cache key: a non-empty string of at most CACHE_MAX_KEY_BYTES bytes, not a reserved one. */
function checkKey(key) {
  if (typeof key !== 'string') throw invalid(`a cache key must be a string, got ${typeof key}`)
  if (key.length === 0) throw invalid('a cache key must not be empty')
  if (key.length > CACHE_MAX_KEY_BYTES / 3 && Buffer.byteLength(key) > CACHE_MAX_KEY_BYTES)
    throw invalid(`a cache key must be at most ${CACHE_MAX_KEY_BYTES} bytes`)
  if (key.startsWith(CACHE_RESERVED)) throw invalid(`cache keys starting with ${CACHE_RESERVED} are redis-guard's own`)
}

/** A TTL in whole ms (a fractional one rounded up): above 0, at most one year. */
function checkTtl(v, name) {
  if (typeof v !== 'number' || !(v > 0 && Math.ceil(v) <= MAX_TTL_MS))
    throw invalid(`\`${name}\` must be a number of ms above 0 and at most one year (${MAX_TTL_MS})`)
  return Math.ceil(v)
}

/** A grace period in whole ms: 0 (none) to one year. */
function checkGrace(v, name) {
  if (typeof v !== 'number' || !(v >= 0 && Math.ceil(v) <= MAX_TTL_MS))
    throw invalid(`\`${name}\` must be a number of ms from 0 to one year (${MAX_TTL_MS})`)
  return Math.ceil(v)
}

/** Tags: an array of at most MAX_TAGS non-empty strings (duplicates dropped). */
function checkTags(tags) {
  if (tags === undefined) return undefined
  if (!Array.isArray(tags)) throw invalid('`tags` must be an array of strings')
  if (tags.length > MAX_TAGS) throw invalid(`at most ${MAX_TAGS} tags per entry`)
  for (const t of tags)
    if (typeof t !== 'string' || t.length === 0 || t.length > MAX_TAG_LENGTH)
      throw invalid(`a tag must be a non-empty string of at most ${MAX_TAG_LENGTH} characters`)
  return tags.length ? [...new Set(tags)] : undefined
}

/** An array argument of a batch method. */
function checkArray(v, what) {
  if (!Array.isArray(v)) throw invalid(`${what} must be an array`)
  return v
}

/**
 * @typedef {object} CacheStats counted in this process, since the cache was made
 * @property {number} hits         reads that found a fresh value (in Redis, the memory tier or the L1)
 * @property {number} misses       reads that found none
 * @property {number} staleHits    getOrSet answers served stale (within grace) because the factory failed, was slow, or another process was refreshing
 * @property {number} l1Hits       reads the L1 answered (counted in `hits` too)
 * @property {number} sets         values stored (in Redis or the memory tier)
 * @property {number} deletes      delete calls (per key)
 * @property {number} factoryCalls getOrSet factories run in this process
 * @property {number} errors       calls rejected by Redis or the policy, failed factories, and entries that did not parse
 * @property {number} timeouts     getOrSet calls that found no value within `timeoutMs`
 * @property {number} fallbacks    answers given without Redis (memory tier or bypass)
 */

/**
 * @typedef {object} Lookup
 * @property {boolean} found   a value (fresh or stale)
 * @property {boolean} stale   within its grace period only
 * @property {unknown} value
 * @property {string[] | undefined} tags
 */

let tokenSeq = 0

/** The options of a Cache (ERR_REDIS_GUARD_CONFIG names them for an unknown one). */
const CACHE_OPTIONS = [
  'client',
  'prefix',
  'ttlMs',
  'graceMs',
  'timeoutMs',
  'l1',
  'onUnavailable',
  'serializer',
  'maxValueBytes',
  'fallbackMaxKeys',
]

class Cache {
  /**
   * @param {import('../index').CacheOptions} [options]
   */
  constructor(options) {
    const {
      client,
      prefix = 'cache:',
      ttlMs = DEFAULT_TTL_MS,
      graceMs = 0,
      timeoutMs = DEFAULT_TIMEOUT_MS,
      l1,
      onUnavailable = 'memory',
      serializer = JSON,
      maxValueBytes = DEFAULT_MAX_VALUE_BYTES,
      fallbackMaxKeys,
      ...unknown
    } = optionsObject('Cache', options)
    checkCommon('Cache', CACHE_OPTIONS, unknown, { client, prefix, serializer, fallbackMaxKeys })
    if (typeof ttlMs !== 'number' || !(ttlMs > 0 && Math.ceil(ttlMs) <= MAX_TTL_MS))
      throw config(`option \`ttlMs\` must be above 0 and at most one year (${MAX_TTL_MS})`)
    if (typeof graceMs !== 'number' || !(graceMs >= 0 && Math.ceil(graceMs) <= MAX_TTL_MS))
      throw config(`option \`graceMs\` must be from 0 to one year (${MAX_TTL_MS})`)
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0 && timeoutMs <= 3_600_000))
      throw config('option `timeoutMs` must be above 0 and at most one hour (3600000)')
    if (!['memory', 'bypass', 'deny'].includes(onUnavailable))
      throw config("option `onUnavailable` must be 'memory', 'bypass' or 'deny'")
    if (!(Number.isInteger(maxValueBytes) && maxValueBytes > 0))
      throw config('option `maxValueBytes` must be a positive integer')
    let l1Options
    if (l1 === true) l1Options = {}
    else if (l1 !== undefined && l1 !== false) {
      if (l1 === null || typeof l1 !== 'object') throw config('option `l1` must be true or { maxKeys, ttlMs }')
      const { maxKeys = DEFAULT_L1_MAX_KEYS, ttlMs: l1Ttl = DEFAULT_L1_TTL_MS, ...rest } = l1
      if (Object.keys(rest).length)
        throw config(`unknown l1 option \`${Object.keys(rest)[0]}\` (known: maxKeys, ttlMs)`)
      if (!(Number.isInteger(maxKeys) && maxKeys > 0)) throw config('option `l1.maxKeys` must be a positive integer')
      if (typeof l1Ttl !== 'number' || !(l1Ttl > 0 && l1Ttl <= MAX_TTL_MS))
        throw config('option `l1.ttlMs` must be above 0 and at most one year')
      l1Options = { maxKeys, ttlMs: l1Ttl }
    }
    /** @type {RedisClient} */
    this.client = /** @type {RedisClient} */ (client) || getDefaultClient()
    /** The key prefix: entries are `${prefix}${key}`. The default value is `'cache:'`. */
    this.prefix = prefix
    /** The TTL of an entry set without one, in ms. The default value is `3600000` (one hour). */
    this.ttlMs = Math.ceil(ttlMs)
    /** How long an expired entry may still be served by getOrSet, in ms. The default value is `0`. */
    this.graceMs = Math.ceil(graceMs)
    /** How long getOrSet waits for a factory, in ms. The default value is `5000`. */
    this.timeoutMs = timeoutMs
    this.onUnavailable = onUnavailable
    this.maxValueBytes = maxValueBytes
    this._serializer = serializer
    try {
      this._native = new NativeCache(this.client._native, prefix, onUnavailable, fallbackMaxKeys)
    } catch (e) {
      throw toError(e)
    }
    this._origin = this._native.origin
    /** @type {Record<string, number>} the client's cache counters (lib/metrics.js) */
    this._meter = this.client._meter.cache
    this._batch = new Batcher(this._native.batcher())
    // The reads of lib/batch.js, and what their promises resolve through.
    this._lookupAt = this._lookupAt.bind(this)
    this._decodeAt = this._decodeAt.bind(this)
    this._valueAt = this._valueAt.bind(this)
    this._value = this._value.bind(this)
    /** @type {Map<string, Promise<unknown>>} the fill of each key under way in this process */
    this._filling = new Map()
    /** @type {Set<string>} the tokens of the fill locks this cache's running factories hold */
    this._live = new Set()
    this._stats = {
      hits: 0,
      misses: 0,
      staleHits: 0,
      l1Hits: 0,
      sets: 0,
      deletes: 0,
      factoryCalls: 0,
      errors: 0,
      timeouts: 0,
      fallbacks: 0,
    }
    /** @type {L1 | undefined} */
    this._l1 = undefined
    if (l1Options) {
      const tier = new L1(l1Options.maxKeys, l1Options.ttlMs)
      this._l1 = tier
      const origin = this._origin
      const n = prefix.length
      this._native.subscribe((event, text) => {
        if (event === 2) tier.heard(text, origin, n)
        else tier.channel(event === 0)
      })
    }
  }

  /** Count one `what` in this cache's stats and in its client's metrics. */
  _count(what) {
    this._stats[what]++
    this._meter[what]++
  }

  /** The serialized text of `value` (a typed error for what cannot be stored). */
  _serialize(key, value) {
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
    return text
  }

  /** The bytes of an entry: the plain text, or the envelope with grace and tag versions. */
  _entry(text, graceMs, versions) {
    if (graceMs > 0 || versions) {
      /** @type {{ g?: number, t?: Record<string, number> }} */
      const h = {}
      if (graceMs > 0) h.g = graceMs
      if (versions) h.t = versions
      text = ENVELOPE + JSON.stringify(h) + '\n' + text
    }
    // A string of n UTF-16 units is at most 3n bytes: the exact length only when it may be over.
    if (text.length * 3 > this.maxValueBytes && Buffer.byteLength(text) > this.maxValueBytes)
      throw invalid(`the serialized value is over maxValueBytes (${this.maxValueBytes} bytes)`)
    return Buffer.from(text, 'utf8')
  }

  /** The TTL, grace and tags of one write's options. */
  _writeOptions(options) {
    if (options === undefined || options === null) return { ttl: this.ttlMs, grace: this.graceMs, tags: undefined }
    if (typeof options !== 'object') throw invalid('set options must be an object')
    return {
      ttl: options.ttlMs === undefined ? this.ttlMs : checkTtl(options.ttlMs, 'ttlMs'),
      grace: options.graceMs === undefined ? this.graceMs : checkGrace(options.graceMs, 'graceMs'),
      tags: checkTags(options.tags),
    }
  }

  /** The answer of one call: its status checked and counted. */
  _check(r, what, key) {
    const status = r.nums[0]
    if (status !== CACHE_REDIS) this._checkStatus(status, what, key)
    return r
  }

  /** A status other than CACHE_REDIS: an error thrown (and counted), or a fallback counted. */
  _checkStatus(status, what, key) {
    if (status < 0) {
      this._stats.errors++
      throw fromNumber(status, `cache ${what} ${JSON.stringify(key.slice(0, 64))}`)
    }
    this._stats.fallbacks++
  }

  /** The current versions of `tags` (one batch). */
  async _versions(tags) {
    const rs = await Promise.all(tags.map((t) => this._batch.push(CACHE_TAG_VERSION, t, 0, 0, EMPTY)))
    /** @type {Record<string, number>} */
    const v = {}
    rs.forEach((r, i) => (v[tags[i]] = this._check(r, 'tag', tags[i]).nums[1]))
    return v
  }

  /**
   * What Redis (or the memory tier) holds at `key`: a fresh or stale value, or a miss. Not
   * counted as a hit or a miss (the callers count).
   * @returns {Promise<Lookup>}
   */
  _lookup(key) {
    return this._batch.push(CACHE_GET, key, 0, 0, EMPTY, 0, this._lookupAt)
  }

  /**
   * The lookup of one read's answer (a `Read` of lib/batch.js: `out[at]` on): at once for a
   * plain value or a miss (the hot path), or a promise when the entry needs another round trip.
   * @param {Float64Array} out
   * @param {number} at
   * @param {Buffer} blob
   * @param {string} key
   * @returns {Lookup | Promise<Lookup>}
   */
  _lookupAt(out, at, blob, key) {
    // An entry with tags or grace, read by a batch's plain MGET: read it again through the
    // script, which checks its tags and grace atomically with the read.
    if (out[at + 2] & CACHE_ENVELOPE) {
      if (out[at] !== CACHE_REDIS) this._checkStatus(out[at], 'get', key)
      return this._batch.push(CACHE_READ, key, 0, 0, EMPTY, 0, this._decodeAt)
    }
    return this._decodeAt(out, at, blob, key)
  }

  /**
   * A read's answer as a lookup (a promise only when, in a cluster, the entry's tags must be
   * compared with their versions now).
   * @param {Float64Array} out
   * @param {number} at
   * @param {Buffer} blob
   * @param {string} key
   * @returns {Lookup | Promise<Lookup>}
   */
  _decodeAt(out, at, blob, key) {
    const status = out[at]
    if (status !== CACHE_REDIS) this._checkStatus(status, 'get', key)
    if (out[at + 1] !== 1) return MISS
    const flags = out[at + 2]
    const stale = (flags & CACHE_STALE) !== 0
    const off = out[at + 3]
    const end = off + out[at + 4]
    if (blob[off] !== 0) return this._parsed(blob.toString('utf8', off, end), stale, undefined)
    let text = blob.toString('utf8', off, end)
    if (!text.startsWith(ENVELOPE)) return this._parsed(text, stale, undefined)
    const nl = text.indexOf('\n', ENVELOPE.length)
    let h
    try {
      h = JSON.parse(text.slice(ENVELOPE.length, nl))
    } catch {
      h = undefined
    }
    if (nl < 0 || h === null || typeof h !== 'object') {
      this._stats.errors++
      return MISS
    }
    text = text.slice(nl + 1)
    if (!h.t || typeof h.t !== 'object') return this._parsed(text, stale, undefined)
    const tags = Object.keys(h.t)
    // In a cluster the script could not reach the tag versions: compare them here. The entry
    // was read first, so an invalidation that ended before this call began is always seen.
    if (flags & CACHE_UNCHECKED)
      return this._versions(tags).then((now) =>
        tags.some((t) => now[t] !== h.t[t]) ? MISS : this._parsed(text, stale, tags),
      )
    return this._parsed(text, stale, tags)
  }

  /** A found entry's lookup from its text (a miss, counted as an error, when it does not parse). */
  _parsed(text, stale, tags) {
    try {
      return { found: true, stale, value: this._serializer.parse(text), tags }
    } catch {
      // Not written by a serializer like ours: a miss, counted as an error.
      this._stats.errors++
      return MISS
    }
  }

  /**
   * A get's value from its lookup, counted as a hit or a miss (a `Read`, and the L1-less get's
   * whole answer: one promise per hit).
   * @param {Lookup} r
   */
  _value(r) {
    if (!r.found || r.stale) {
      this._count('misses')
      return undefined
    }
    this._count('hits')
    return r.value
  }

  /** `_value` of the lookup at `out[at]` (see `_lookupAt`). */
  _valueAt(out, at, blob, key) {
    const r = this._lookupAt(out, at, blob, key)
    return r instanceof Promise ? r.then(this._value) : this._value(r)
  }

  /** A read: the L1, then Redis; fresh values only. */
  _get(key) {
    const l1 = this._l1
    if (!l1) return this._batch.push(CACHE_GET, key, 0, 0, EMPTY, 0, this._valueAt)
    const hit = l1.get(key)
    if (hit) {
      this._count('hits')
      this._count('l1Hits')
      return Promise.resolve(hit.value)
    }
    const epoch = l1.epoch
    return this._lookup(key).then((r) => {
      const v = this._value(r)
      if (v !== undefined) l1.set(key, v, this.ttlMs, r.tags, epoch)
      return v
    })
  }

  /** Write prepared bytes; true when stored. */
  async _put(key, bytes, ttl, grace) {
    const r = this._check(await this._batch.push(CACHE_SET, key, ttl + grace, 0, bytes), 'set', key)
    const stored = r.nums[1] === 1
    if (stored) this._stats.sets++
    return stored
  }

  /** Store `value` with its options (tag versions read first unless given). */
  async _set(key, value, { ttl, grace, tags }, versions) {
    const text = this._serialize(key, value)
    if (tags && !versions) {
      this._entry(text, grace, {}) // refuse an oversized value before any round trip
      versions = await this._versions(tags)
    }
    const stored = await this._put(key, this._entry(text, grace, tags ? versions : undefined), ttl, grace)
    const l1 = this._l1
    if (l1) {
      l1.delete(key)
      if (stored) l1.set(key, value, ttl, tags, l1.epoch)
    }
    return stored
  }

  async _delete(key) {
    this._stats.deletes++
    if (this._l1) this._l1.delete(key)
    const r = this._check(await this._batch.push(CACHE_DELETE, key, 0, 0, EMPTY), 'delete', key)
    return r.nums[1]
  }

  /**
   * The value of `key`, or undefined (a miss; an entry past its TTL but within grace is a
   * miss here too).
   * @param {string} key
   */
  get(key) {
    try {
      checkKey(key)
    } catch (e) {
      return Promise.reject(e)
    }
    return this._get(key)
  }

  /**
   * Store `value` at `key` for `ttlMs` (default: the cache's), servable stale by getOrSet for
   * `graceMs` more, invalidated with any of `tags`. Resolves true when stored (in Redis, or the
   * memory tier), false when dropped (`onUnavailable: 'bypass'`).
   * @param {string} key
   * @param {unknown} value
   * @param {{ ttlMs?: number, graceMs?: number, tags?: string[] }} [options]
   */
  async set(key, value, options) {
    checkKey(key)
    return this._set(key, value, this._writeOptions(options))
  }

  /**
   * The value of `key`; on a miss, the value of `factory()`, stored and returned. The factory
   * runs once per key at a time in this process, and once across processes while Redis is up
   * (the others wait for its value, at most `timeoutMs`, and take over if its process dies).
   * A factory that throws rejects its callers with that error and caches nothing. With
   * `graceMs`, an expired entry is served when the factory fails or takes longer than
   * `timeoutMs` (or while another process refreshes it), and is refreshed in the background.
   * No value within `timeoutMs`: ERR_REDIS_GUARD_TIMEOUT.
   * @template T
   * @param {string} key
   * @param {() => T | Promise<T>} factory
   * @param {{ ttlMs?: number, graceMs?: number, tags?: string[], timeoutMs?: number }} [options]
   * @returns {Promise<T>}
   */
  async getOrSet(key, factory, options) {
    checkKey(key)
    if (typeof factory !== 'function') throw invalid('getOrSet(key, factory) needs a function')
    const write = this._writeOptions(options)
    let timeoutMs = this.timeoutMs
    if (options && options.timeoutMs !== undefined) {
      timeoutMs = options.timeoutMs
      if (typeof timeoutMs !== 'number' || !(timeoutMs > 0 && timeoutMs <= 3_600_000))
        throw invalid('`timeoutMs` must be above 0 and at most one hour (3600000)')
    }
    const l1 = this._l1
    const hit = l1 && l1.get(key)
    if (hit) {
      this._count('hits')
      this._count('l1Hits')
      return /** @type {T} */ (hit.value)
    }
    const joined = this._filling.get(key)
    if (joined) return /** @type {Promise<T>} */ (joined)
    // A hit costs what a get costs: the one-fill-per-key map only on a miss (calls that miss
    // together each read once, then share one fill).
    const epoch = l1 ? l1.epoch : 0
    const found = await this._lookup(key)
    if (found.found && !found.stale) {
      this._count('hits')
      if (l1) l1.set(key, found.value, write.ttl, found.tags, epoch)
      return /** @type {T} */ (found.value)
    }
    this._count('misses')
    let filling = this._filling.get(key)
    if (!filling) {
      filling = this._fill(key, factory, write, timeoutMs, found)
      this._filling.set(key, filling)
      const done = () => this._filling.get(key) === filling && this._filling.delete(key)
      filling.then(done, done)
    }
    return /** @type {Promise<T>} */ (filling)
  }

  /**
   * One fill of `key` in this process (see getOrSet), after a read that `found` no fresh value.
   * The tag versions are read when the fill lock is taken, before the factory runs: an
   * invalidation while it runs discards its value.
   * @param {Lookup} found
   */
  async _fill(key, factory, write, timeoutMs, found) {
    const deadline = clock() + timeoutMs
    // The fill lock and the tag versions in one batch.
    const token = `${this._origin}:${++tokenSeq}`
    const tokenBytes = Buffer.from(token)
    // A read again with the lock: a fill that ended after the first read missed stored a value.
    const [lock, versions, again] = await Promise.all([
      this._batch.push(CACHE_LOCK, key, timeoutMs, 0, tokenBytes),
      write.tags ? this._versions(write.tags) : undefined,
      this._lookup(key),
    ])
    this._check(lock, 'lock', key)
    if (again.found && !again.stale) {
      if (lock.nums[1] === 1) this._unlock(key, tokenBytes)
      return again.value
    }
    if (again.found) found = again
    if (lock.nums[1] === 1) return this._run(key, factory, write, versions, found, timeoutMs, tokenBytes)
    // Another process fills the key.
    if (found.stale) {
      this._count('staleHits')
      return found.value
    }
    let wait = 10
    let held = lock
    while (clock() + wait < deadline) {
      // Our own lock that no fill of ours holds (its give-back went to the fallback during an
      // outage): take it back now rather than wait for its TTL.
      const orphan = this._orphan(held)
      if (orphan) await this._batch.push(CACHE_UNLOCK, key, 0, 0, orphan).catch(() => {})
      else await sleep(wait)
      wait = Math.min(wait * 2, 100)
      const [now, again] = await Promise.all([
        this._lookup(key),
        this._batch.push(CACHE_LOCK, key, timeoutMs, 0, tokenBytes),
      ])
      this._check(again, 'lock', key)
      held = again
      if (now.found && !now.stale) {
        if (again.nums[1] === 1) this._unlock(key, tokenBytes)
        return now.value
      }
      // The holder is gone (its lock expired or was given back without a value): take over.
      if (again.nums[1] === 1) {
        const v = write.tags ? await this._versions(write.tags) : undefined
        return this._run(key, factory, write, v, now, Math.max(1, deadline - clock()), tokenBytes)
      }
    }
    this._count('timeouts')
    throw new RedisGuardError(
      codes.TIMEOUT,
      `getOrSet ${JSON.stringify(key.slice(0, 64))}: no value within ${timeoutMs} ms`,
    )
  }

  /** The token of a fill lock another holds, when it is this cache's and no fill of ours holds it. */
  _orphan(lock) {
    if (lock.nums[1] !== 0 || !lock.bytes || lock.bytes.length === 0) return undefined
    const holder = lock.bytes.toString('latin1')
    return holder.startsWith(`${this._origin}:`) && !this._live.has(holder) ? lock.bytes : undefined
  }

  /** Run the factory holding the fill lock; store its value; give the lock back. */
  _run(key, factory, write, versions, found, timeoutMs, tokenBytes) {
    this._count('factoryCalls')
    const token = tokenBytes.toString('latin1')
    this._live.add(token)
    const work = (async () => {
      try {
        const value = await factory()
        await this._set(key, value, write, versions)
        return value
      } finally {
        this._live.delete(token)
        this._unlock(key, tokenBytes)
      }
    })()
    return new Promise((resolve, reject) => {
      let settled = false
      const timer = after(() => {
        if (settled) return
        settled = true
        if (found.stale) {
          this._count('staleHits')
          resolve(found.value)
        } else {
          this._count('timeouts')
          reject(
            new RedisGuardError(
              codes.TIMEOUT,
              `getOrSet ${JSON.stringify(key.slice(0, 64))}: the factory gave no value within ${timeoutMs} ms`,
            ),
          )
        }
      }, timeoutMs)
      work.then(
        (v) => {
          cancel(timer)
          if (!settled) resolve(v)
          settled = true
        },
        (e) => {
          cancel(timer)
          this._stats.errors++
          if (settled) return
          settled = true
          if (found.stale) {
            this._count('staleHits')
            resolve(found.value)
          } else reject(e)
        },
      )
    })
  }

  /** Give the fill lock back (best effort: it expires anyway). */
  _unlock(key, tokenBytes) {
    this._batch.push(CACHE_UNLOCK, key, 0, 0, tokenBytes).catch(() => {})
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
   * Store every `[key, value, { ttlMs, graceMs, tags }?]` entry: one batch. Every entry is
   * checked before anything is sent (one bad entry: nothing is written). Resolves how many were
   * stored.
   * @param {Array<[string, unknown] | [string, unknown, { ttlMs?: number, graceMs?: number, tags?: string[] } | undefined]>} entries
   */
  async setMany(entries) {
    checkArray(entries, 'setMany(entries)')
    const calls = entries.map((e) => {
      if (!Array.isArray(e) || e.length < 2 || e.length > 3)
        throw invalid('setMany entries must be [key, value] or [key, value, { ttlMs, graceMs, tags }]')
      const [key, value, options] = e
      checkKey(key)
      const w = this._writeOptions(options)
      this._entry(this._serialize(key, value), w.grace, w.tags ? {} : undefined)
      return { key, value, w }
    })
    const stored = await Promise.all(calls.map((c) => this._set(c.key, c.value, c.w)))
    return stored.filter(Boolean).length
  }

  /**
   * Whether `key` holds a fresh value.
   * @param {string} key
   */
  async has(key) {
    checkKey(key)
    if (this._l1 && this._l1.get(key)) return true
    const r = await this._lookup(key)
    return r.found && !r.stale
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
   * Invalidate every entry set with any of `tags`, in every process: one `INCR` per tag (no
   * scan of entries); an entry written before is never served after this resolves. Resolves
   * the number of tags. Rejects with ERR_REDIS_GUARD_UNAVAILABLE / ERR_REDIS_GUARD_TIMEOUT
   * while Redis is unavailable, whatever the policy (the memory tier is emptied then).
   * @param {string[]} tags
   */
  async invalidateTags(tags) {
    checkArray(tags, 'invalidateTags(tags)')
    const list = checkTags(tags) || []
    if (this._l1) this._l1.deleteTags(list)
    const rs = await Promise.all(list.map((t) => this._batch.push(CACHE_INVALIDATE, t, 0, 0, EMPTY)))
    rs.forEach((r, i) => this._check(r, 'invalidateTags', list[i]))
    return list.length
  }

  /**
   * Delete every entry of this cache's prefix (SCAN + UNLINK on every primary, never KEYS),
   * empty the memory tier and every process's L1. Resolves the number of Redis keys deleted.
   * Rejects with ERR_REDIS_GUARD_UNAVAILABLE while Redis is unavailable, and
   * ERR_REDIS_GUARD_INVALID_ARG for an empty prefix.
   */
  async clear() {
    if (this._l1) this._l1.clear()
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
   * on every primary, never KEYS. Empties the memory tier and every process's L1. Resolves the
   * number of keys deleted. Rejects with ERR_REDIS_GUARD_UNAVAILABLE while Redis is
   * unavailable, and ERR_REDIS_GUARD_INVALID_ARG for an empty prefix or a pattern that is not
   * a non-empty string.
   * @param {string} pattern
   */
  async deletePattern(pattern) {
    if (typeof pattern !== 'string' || pattern.length === 0)
      throw invalid('deletePattern(pattern) needs a non-empty string pattern')
    if (this._l1) this._l1.clear()
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

  /** Entries the L1 holds now (0 without `l1`). */
  l1Size() {
    return this._l1 ? this._l1.map.size : 0
  }

  /** Whether the L1 serves now: it hears of every process's changes (false without `l1`). */
  l1Ready() {
    return this._l1 ? this._l1.on : false
  }

  /** Stop the L1's subscriber and empty it (the client stays open). */
  close() {
    if (this._l1) {
      this._native.unsubscribe()
      this._l1.channel(false)
    }
  }

  [inspect.custom]() {
    return `Cache { prefix: ${JSON.stringify(this.prefix)}, onUnavailable: '${this.onUnavailable}', l1: ${!!this._l1}, client: ${inspect(this.client)} }`
  }
}

/** @param {number} ms */
function sleep(ms) {
  return new Promise((resolve) => after(() => resolve(undefined), ms))
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
