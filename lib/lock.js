'use strict'
// Locks as a feature of their own: leases (fencing, expiry signal, extension), withLock, and the
// seed helpers' token table (acquireLock / releaseLock / extendLock), over the batch core
// (lib/batch.js, src/lock.rs). RedisClient's lock methods delegate here.

const { inspect } = require('node:util')
const {
  NativeLocks,
  lockTokenPrefix,
  LOCK_ACQUIRE,
  LOCK_RELEASE,
  LOCK_EXTEND,
  LOCK_NO_FENCE,
  MAX_TTL_MS,
} = require('./native.js')
const { RedisGuardError, codes, fromNumber } = require('./errors.js')
const { Batcher } = require('./batch.js')
const timers = require('./timers.js')

const ACQUIRE = LOCK_ACQUIRE
const RELEASE = LOCK_RELEASE
const EXTEND = LOCK_EXTEND
const NO_FENCE = LOCK_NO_FENCE // an acquire without a fencing token (acquireLock never shows one)
/** Bits 2-3 of an acquire's op byte: the `onUnavailable` policy; of a release or extend: who granted the lease. */
const POLICIES = { local: 0, allow: 1, deny: 2 }
/** @type {Record<string, number>} */
const SOURCES = { redis: 0, local: 1, allow: 2 }
const SOURCE_NAMES = ['redis', 'local', 'allow']
/**
 * At most 24 lock calls per batch: a caller's acquire and release are two dependent batches, so
 * with 64 cycles in flight three batches circulate and JS, tokio and Redis work side by side
 * (measured: 2 batches of 32 ~80k cycles/s, 3 of 22-26 ~90-100k, 5 of 13 ~80-94k).
 */
const LOCK_BATCH = 24

// Lock tokens: a random per-process prefix (made in Rust) and a counter, 32 hex digits: unique,
// and cheap. Only the counter crosses to Rust; the string is made for leases, which show it.
const TOKEN_PREFIX = lockTokenPrefix()
let tokenSeq = 0
function newSeq() {
  tokenSeq = tokenSeq >= Number.MAX_SAFE_INTEGER ? 1 : tokenSeq + 1
  return tokenSeq
}
/** @param {number} seq */
function tokenOf(seq) {
  return TOKEN_PREFIX + seq.toString(16).padStart(16, '0')
}

function abortError(signal) {
  const reason = signal && signal.reason
  return new RedisGuardError(
    codes.ABORTED,
    'the operation was aborted',
    reason instanceof Error ? { cause: reason } : undefined,
  )
}

/** A sleep in real time (lib/timers.js) that an AbortSignal cuts short (rejecting with ABORTED). */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) return reject(abortError(signal))
    const onAbort = () => {
      timers.cancel(t)
      reject(abortError(signal))
    }
    const t = timers.after(() => {
      if (signal) signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    if (signal) signal.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * A number of ms option: `def` when absent, a typed error when not a finite number >= `min`.
 * @param {unknown} v
 * @param {string} name
 * @param {{ min?: number, def?: number }} [o]
 * @returns {number | undefined}
 */
function checkMs(v, name, { min = 0, def = undefined } = {}) {
  if (v === undefined || v === null) return def
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) {
    throw new RedisGuardError(codes.INVALID_ARG, `option \`${name}\` must be a number >= ${min}`)
  }
  return v
}

/** A lock TTL in whole ms (a fractional one is rounded up): more than 0, at most one year. */
function checkTtl(v, name, def) {
  if (v === undefined || v === null) return def
  if (typeof v !== 'number' || !(v > 0 && Math.ceil(v) <= MAX_TTL_MS)) {
    throw new RedisGuardError(
      codes.INVALID_ARG,
      `option \`${name}\` must be above 0 and at most one year (${MAX_TTL_MS} ms)`,
    )
  }
  return Math.ceil(v)
}

/** Lock options: undefined / null mean the defaults; anything else but an object is bad input. */
function lockOptions(options) {
  if (options === undefined || options === null) return {}
  if (typeof options !== 'object') throw new RedisGuardError(codes.INVALID_ARG, 'lock options must be an object')
  return options
}

/**
 * A held lock. `signal` aborts when the lease is lost (expired without extension, or an
 * extension found another holder).

 */
class Lease {
  constructor(locks, key, grant, ttlMs) {
    this.key = key
    this._seq = grant.seq
    this.fence = grant.fence
    /** `redis`, `local` (process-local fallback) or `allow` (not really locked: Redis was down). */
    this.source = grant.source
    /** When the lease ends unless extended, in ms since the epoch (the real clock, even under fake timers). */
    this.expiresAt = timers.now() + ttlMs
    this._locks = locks
    this._ac = null // created on first use of `signal`: a plain lock()/release() cycle needs none
    this._lost = null
    this._released = false
  }

  /** The random token that proves ownership (the value of the lock key in Redis). */
  get token() {
    return tokenOf(this._seq)
  }

  /** Aborted (with a LOCK_LOST error) when the lease is lost. */
  get signal() {
    if (!this._ac) {
      this._ac = new AbortController()
      if (this._lost) this._ac.abort(this._lost)
      else this._arm()
    }
    return this._ac.signal
  }

  _arm() {
    timers.cancel(this._timer)
    // An extension that resolved after release() must not re-arm; without a signal there is
    // nobody to tell.
    if (this._released || !this._ac) return
    const left = this.expiresAt - timers.now()
    this._timer = timers.after(() => this._lose('the lease expired before it was extended'), left, true)
  }

  _lose(why) {
    timers.cancel(this._timer)
    if (this._lost) return
    this._locks._meter.lock.lost++
    this._lost = new RedisGuardError(codes.LOCK_LOST, `lock "${this.key}" was lost: ${why}`)
    if (this._ac) this._ac.abort(this._lost)
  }

  /** Whether the lease is still believed held. */
  get held() {
    if (!this._lost && timers.now() >= this.expiresAt) this._lose('the lease expired before it was extended')
    return !this._released && !this._lost
  }

  /** Extend to `ttlMs` from now. Resolves true, or rejects with LOCK_LOST / LOCK_NOT_HELD. */
  async extend(ttlMs) {
    const ttl = checkTtl(ttlMs, 'ttlMs')
    if (ttl === undefined) throw new RedisGuardError(codes.INVALID_ARG, 'extend(ttlMs) needs a TTL in ms')
    if (this._released) throw new RedisGuardError(codes.LOCK_NOT_HELD, `lock "${this.key}" was already released`)
    if (!this.held) throw this._lost
    const start = timers.now()
    const ok = await this._locks._op(EXTEND, this.key, this._seq, ttl, this.source)
    if (!ok) {
      this._lose('another holder has it, or Redis could not confirm the extension')
      throw this._lost
    }
    this.expiresAt = start + ttl
    this._arm()
    return true
  }

  /** Release. Resolves true when this lease still held the lock, false otherwise. Never rejects for a lost lock. */
  release() {
    if (this._released) return Promise.resolve(false)
    this._released = true
    timers.cancel(this._timer)
    return this._locks._op(RELEASE, this.key, this._seq, 0, this.source)
  }

  [inspect.custom]() {
    return `Lease { key: ${JSON.stringify(this.key)}, fence: ${this.fence}, source: '${this.source}', held: ${this.held} }`
  }
}

/** The locks of one RedisClient. */
class Locks {
  /** @param {import('./client.js').RedisClient} client */
  constructor(client) {
    /** @type {import('./metrics.js').Meter} */
    this._meter = client._meter
    this._native = new NativeLocks(client._native)
    this._batch = new Batcher(this._native.batcher(), LOCK_BATCH)
    /** @type {Map<string, {seq: number, source: string}>} locks taken with acquireLock() (seq: the token's number) */
    this._held = new Map()
  }

  /**
   * One grant attempt (batched with the other lock calls of this turn); `fence`: take a fencing
   * token. Bad input throws synchronously (every caller is an async function). A plain promise
   * chain, not an async function: each `await` level costs the lock cycle's latency.
   */
  _acquire(key, ttlMs, onUnavailable, fence = true) {
    if (typeof key !== 'string' || key === '')
      throw new RedisGuardError(codes.INVALID_ARG, 'the lock key must be a non-empty string')
    const policy = onUnavailable === undefined || onUnavailable === null ? 0 : POLICIES[onUnavailable]
    if (policy === undefined || typeof onUnavailable === 'object') {
      throw new RedisGuardError(codes.INVALID_ARG, "option `onUnavailable` must be 'local', 'allow' or 'deny'")
    }
    const seq = newSeq()
    return this._batch.push(ACQUIRE | (policy << 2) | (fence ? 0 : NO_FENCE), key, seq, ttlMs).then((r) => {
      if (r[0] < 0) throw fromNumber(r[0], `lock ${JSON.stringify(key.slice(0, 64))}`)
      const source = SOURCE_NAMES[r[0]]
      if (r[1] === 1) this._meter.lockGrants[source]++
      else this._meter.lock.contended++
      return { acquired: r[1] === 1, seq, fence: r[2], source }
    })
  }

  /** A release or an extension of a lease granted by `source`: resolves true when it still held the lock. */
  _op(kind, key, seq, ttlMs, source) {
    return this._batch.push(kind | (SOURCES[source] << 2), key, seq, ttlMs).then((r) => {
      if (r[0] < 0) throw fromNumber(r[0], `lock ${JSON.stringify(key.slice(0, 64))}`)
      return r[1] === 1
    })
  }

  /**
   * Take `key` and return a Lease, or null when it stays held elsewhere for `waitMs`.
   * @param {string} key
   * @param {{ ttlMs?: number, waitMs?: number, retryDelayMs?: number, signal?: AbortSignal, onUnavailable?: 'local'|'allow'|'deny' }} [options]
   */
  async lock(key, options) {
    if (typeof key !== 'string') throw new RedisGuardError(codes.INVALID_ARG, 'the lock key must be a string')
    options = lockOptions(options)
    const ttlMs = checkTtl(options.ttlMs, 'ttlMs', 30_000)
    const waitMs = checkMs(options.waitMs, 'waitMs', { def: 0 })
    const retryDelayMs = checkMs(options.retryDelayMs, 'retryDelayMs', { min: 1, def: 50 })
    const { signal, onUnavailable } = options
    const deadline = timers.now() + waitMs
    for (let attempt = 0; ; attempt++) {
      if (signal && signal.aborted) throw abortError(signal)
      const grant = await this._acquire(key, ttlMs, onUnavailable)
      if (grant.acquired) {
        const lease = new Lease(this, key, grant, ttlMs)
        if (signal && signal.aborted) {
          await lease.release().catch(() => {})
          throw abortError(signal)
        }
        return lease
      }
      const left = deadline - timers.now()
      if (left <= 0) return null
      // Jittered backoff: between 0.5x and 1.5x of the delay, growing to 4x, never past the deadline.
      const base = retryDelayMs * Math.min(4, 1 + attempt / 4)
      await sleep(Math.min(left, base * (0.5 + Math.random())), signal)
    }
  }

  /**
   * Run `fn(signal)` while holding `key`: waits up to `waitMs`, extends every ttlMs/3, always
   * releases. Rejects with LOCK_TIMEOUT when not acquired, LOCK_LOST when the lease is lost.
   */
  async withLock(key, options, fn) {
    if (typeof options === 'function') [options, fn] = [{}, options]
    if (typeof fn !== 'function') throw new RedisGuardError(codes.INVALID_ARG, 'withLock needs a function')
    options = lockOptions(options)
    const lease = await this.lock(key, options)
    if (!lease)
      throw new RedisGuardError(
        codes.LOCK_TIMEOUT,
        `lock "${key}" is held elsewhere (waited ${options.waitMs || 0} ms)`,
      )
    const ttlMs = checkTtl(options.ttlMs, 'ttlMs', 30_000)
    // Extend every ttlMs/3 (a chained timer: it may be longer than Node's 24.8-day timer cap).
    let timer
    const every = Math.max(1, Math.floor(ttlMs / 3))
    const tick = () => {
      lease.extend(ttlMs).catch(() => {}) // a failure aborts lease.signal, which rejects below
      timer = timers.after(tick, every)
    }
    timer = timers.after(tick, every)
    const lost = new Promise((_, reject) => {
      if (lease.signal.aborted) reject(lease.signal.reason)
      lease.signal.addEventListener('abort', () => reject(lease.signal.reason), { once: true })
    })
    lost.catch(() => {})
    const work = Promise.resolve().then(() => fn(lease.signal))
    work.catch(() => {})
    try {
      return await Promise.race([work, lost])
    } finally {
      timers.cancel(timer)
      await lease.release().catch(() => {})
    }
  }

  /** Seed-compatible: take `lock:${key}` for `ttlSeconds` (default 30). true when acquired. */
  async acquireLock(key, ttlSeconds = 30, options) {
    options = lockOptions(options)
    const ttl = checkTtl(checkMs(ttlSeconds, 'ttlSeconds', { min: 0.001, def: 30 }) * 1000, 'ttlSeconds')
    const grant = await this._acquire(key, ttl, options.onUnavailable, false)
    if (grant.acquired) this._held.set(key, { seq: grant.seq, source: grant.source })
    return grant.acquired
  }

  /** Seed-compatible: release `key` if this process holds it. true when released. */
  releaseLock(key) {
    const h = this._held.get(key)
    if (!h) return Promise.resolve(false)
    this._held.delete(key)
    return this._op(RELEASE, key, h.seq, 0, h.source)
  }

  /** Seed-compatible: extend `key` to `ttlSeconds` from now if this process holds it. */
  async extendLock(key, ttlSeconds = 30) {
    const h = this._held.get(key)
    if (!h) return false
    const ttl = checkTtl(checkMs(ttlSeconds, 'ttlSeconds', { min: 0.001, def: 30 }) * 1000, 'ttlSeconds')
    const ok = await this._op(EXTEND, key, h.seq, ttl, h.source)
    if (!ok) this._held.delete(key)
    return ok
  }

  [inspect.custom]() {
    return `Locks { held by acquireLock: ${this._held.size} }`
  }
}

module.exports = { Locks, Lease }
