'use strict'
// The cache's in-process tier (`l1` option of Cache): deserialized values, bounded in keys and
// in time, least recently used evicted first. It serves only while the cache hears of changes
// from every process (src/connection/subscriber.rs): it is emptied and stays off whenever that
// channel is interrupted, so an outage never leaves it serving what was deleted elsewhere.

const { now } = require('./timers.js')

/** The default most entries of an L1. */
const DEFAULT_L1_MAX_KEYS = 10_000
/** The default time an L1 entry is served, in ms. */
const DEFAULT_L1_TTL_MS = 60_000

class L1 {
  /**
   * @param {number} maxKeys
   * @param {number} ttlMs
   */
  constructor(maxKeys, ttlMs) {
    this.maxKeys = maxKeys
    this.ttlMs = ttlMs
    /** @type {Map<string, { value: unknown, expires: number, tags: string[] | undefined }>} */
    this.map = new Map()
    /** Off until the channel is up, and whenever it is interrupted. */
    this.on = false
    /** Times the channel was interrupted (the L1 was emptied and turned off). */
    this.interruptions = 0
    /** Goes up with every change heard: a read that began before a change of its key does not fill. */
    this.epoch = 0
    /** @type {Map<string, number>} the epoch of each key's last change (bounded, see `delete`) */
    this.changed = new Map()
    /** Reads that began before this epoch do not fill (a clear, a tag invalidation, an interruption). */
    this.floor = 0
  }

  /**
   * `{ value }` of a live entry (made the most recently used), or undefined.
   * @param {string} key
   */
  get(key) {
    if (!this.on) return undefined
    const e = this.map.get(key)
    if (e === undefined) return undefined
    if (e.expires <= now()) {
      this.map.delete(key)
      return undefined
    }
    this.map.delete(key)
    this.map.set(key, e)
    return e
  }

  /**
   * Keep `value` for at most `ttlMs` (and at most the L1's own TTL), unless a change was heard
   * since `epoch` (the reader's view may be older than that change).
   * @param {string} key
   * @param {unknown} value
   * @param {number} ttlMs
   * @param {string[] | undefined} tags
   * @param {number} epoch
   */
  set(key, value, ttlMs, tags, epoch) {
    if (!this.on || epoch < this.floor || (this.changed.get(key) ?? -1) >= epoch) return
    this.map.delete(key)
    if (this.map.size >= this.maxKeys) this.map.delete(/** @type {string} */ (this.map.keys().next().value))
    this.map.set(key, { value, expires: now() + Math.min(ttlMs, this.ttlMs), tags })
  }

  /** `key` changed (here or in another process): forget it, and fill it from no older read. */
  delete(key) {
    this.map.delete(key)
    this.changed.set(key, this.epoch++)
    if (this.changed.size > this.maxKeys) this.everything()
  }

  /** Everything may have changed: reads under way do not fill. */
  everything() {
    this.changed.clear()
    this.floor = ++this.epoch
  }

  /** @param {string[]} tags */
  deleteTags(tags) {
    this.everything()
    const gone = new Set(tags)
    for (const [k, e] of this.map) if (e.tags && e.tags.some((t) => gone.has(t))) this.map.delete(k)
  }

  clear() {
    this.everything()
    this.map.clear()
  }

  /**
   * A change message of any cache on this prefix (`{"o","k","t","c"}`, scripts.rs CACHE_BATCH).
   * @param {string} text
   * @param {string} origin this cache's own id: its own changes are applied already
   * @param {number} prefixLength
   */
  heard(text, origin, prefixLength) {
    let m
    try {
      m = JSON.parse(text)
    } catch {
      this.clear()
      return
    }
    if (m === null || typeof m !== 'object' || m.o === origin) return
    if (m.c) return this.clear()
    if (Array.isArray(m.k)) for (const k of m.k) if (typeof k === 'string') this.delete(k.slice(prefixLength))
    if (Array.isArray(m.t)) this.deleteTags(m.t)
  }

  /** The channel is up (`true`: serve from now on) or was interrupted (`false`: empty, off). */
  channel(up) {
    if (this.on && !up) this.interruptions++
    this.clear()
    this.on = up
  }
}

module.exports = { L1, DEFAULT_L1_MAX_KEYS, DEFAULT_L1_TTL_MS }
