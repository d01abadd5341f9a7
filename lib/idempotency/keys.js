'use strict'
// Idempotency keys over the batch core (lib/batch.js, src/idempotency.rs): `claim` is one
// atomic script call that takes a lease on the key (a token, `lockTtlMs`) or answers what the
// key holds (in progress, completed with its result, or used with another fingerprint);
// `complete` and `release` are token-checked, so a holder whose lease was taken over can never
// overwrite the result of the one that took over. Held claims are extended by one sweep per
// IdempotencyKeys (not a timer per claim) every lockTtlMs/3 until completed or released.

const { inspect } = require('node:util')
const {
  NativeIdempotency,
  lockTokenPrefix,
  IDEM_CLAIM,
  IDEM_COMPLETE,
  IDEM_RELEASE,
  IDEM_EXTEND,
  IDEM_SOURCE_SHIFT,
  IDEM_ACQUIRED,
  IDEM_IN_PROGRESS,
  IDEM_COMPLETED,
  IDEM_MISMATCH,
  IDEM_MAX_KEY_BYTES,
  IDEM_MAX_FINGERPRINT_BYTES,
  MAX_TTL_MS,
} = require('../native.js')
/** @typedef {import('../client.js').RedisClient} RedisClient */
const { getDefaultClient } = require('../default-client.js')
const { RedisGuardError, codes, toError, fromNumber } = require('../errors.js')
const { Batcher } = require('../batch.js')
const { optionsObject, checkCommon, config } = require('../options.js')
const timers = require('../timers.js')

/** The default retention of a completed key, in ms: 24 hours. */
const DEFAULT_TTL_MS = 24 * 3600 * 1000
/** The default lease of an in-progress key, in ms: 10 seconds (extended while held). */
const DEFAULT_LOCK_TTL_MS = 10_000

const STATES = []
STATES[IDEM_ACQUIRED] = 'acquired'
STATES[IDEM_IN_PROGRESS] = 'in-progress'
STATES[IDEM_COMPLETED] = 'completed'
STATES[IDEM_MISMATCH] = 'mismatch'
const SOURCES = ['redis', 'memory', 'allow']

// Tokens: a random per-process prefix (made in Rust, shared with locks) and a counter.
const TOKEN_PREFIX = lockTokenPrefix()
let tokenSeq = 0
function newToken() {
  tokenSeq = tokenSeq >= Number.MAX_SAFE_INTEGER ? 1 : tokenSeq + 1
  return TOKEN_PREFIX + tokenSeq.toString(16).padStart(16, '0')
}

/** @param {string} message */
function invalid(message) {
  return new RedisGuardError(codes.INVALID_ARG, message)
}

/** A string without lone surrogates (they would not survive the trip to UTF-8). */
const wellFormed =
  typeof (/** @type {any} */ ('').isWellFormed) === 'function'
    ? (/** @type {string} */ s) => /** @type {any} */ (s).isWellFormed()
    : (/** @type {string} */ s) => !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s)

/** An idempotency key: a non-empty well-formed string of at most IDEM_MAX_KEY_BYTES bytes. */
function checkKey(key) {
  if (typeof key !== 'string') throw invalid(`an idempotency key must be a string, got ${typeof key}`)
  if (key.length === 0) throw invalid('an idempotency key must not be empty')
  if (key.length > IDEM_MAX_KEY_BYTES / 3 && Buffer.byteLength(key) > IDEM_MAX_KEY_BYTES)
    throw invalid(`an idempotency key must be at most ${IDEM_MAX_KEY_BYTES} bytes`)
  if (!wellFormed(key)) throw invalid('an idempotency key must not contain lone surrogates')
}

/**
 * The outcome of `IdempotencyKeys.claim`. `state`: `'acquired'` (run the work, then
 * `complete(result)` or `release()`), `'in-progress'` (another holder runs it: retry after
 * `retryAfterMs`), `'completed'` (`result` holds what it stored), `'mismatch'` (the key was used
 * with another fingerprint).
 */
class Claim {
  constructor(keys, key, token, state, source, retryAfterMs, result) {
    this.key = key
    /** @type {'acquired' | 'in-progress' | 'completed' | 'mismatch'} */
    this.state = state
    /** `redis`, `memory` (process-local records: Redis was unavailable) or `allow` (unprotected). */
    this.source = source
    /** In progress: the ms the holder's lease has left (at most `lockTtlMs`); 0 otherwise. */
    this.retryAfterMs = retryAfterMs
    /** Completed: the stored result. */
    this.result = result
    this._keys = keys
    this._token = token
    this._done = state !== 'acquired'
    this._lost = null
    this._ac = null
    /** The middleware's client went away before the response ended. */
    this._aborted = false
    this._extendedAt = timers.now()
    this.expiresAt = this._extendedAt + keys.lockTtlMs
  }

  /** Whether this claim still holds its key (acquired, not completed or released, lease not lost). */
  get held() {
    if (!this._done && !this._lost && timers.now() >= this.expiresAt) this._lose('the lease expired')
    return !this._done && !this._lost
  }

  /** Aborted (with a LOCK_LOST error) when the lease is lost. */
  get signal() {
    if (!this._ac) {
      this._ac = new AbortController()
      if (this._lost) this._ac.abort(this._lost)
    }
    return this._ac.signal
  }

  _lose(why) {
    if (this._lost) return
    this._keys._stats.lost++
    this._keys._meter.lost++
    this._lost = new RedisGuardError(codes.LOCK_LOST, `idempotency key lease lost: ${why}`)
    this._keys._held.delete(this)
    if (this._ac) this._ac.abort(this._lost)
  }

  _finish() {
    this._done = true
    this._keys._held.delete(this)
  }

  /**
   * Store `result` for the key's retention (`ttlMs`) and end the claim. Rejects with
   * `ERR_REDIS_GUARD_LOCK_LOST` when the lease was lost (it expired and another holder took
   * the key, whose result stays), `ERR_REDIS_GUARD_LOCK_NOT_HELD` when the claim was not
   * acquired or already ended, and `ERR_REDIS_GUARD_UNAVAILABLE` / `_TIMEOUT` when Redis did not
   * confirm (the completion is then sent again once Redis answers, while the lease lasts).
   * @param {unknown} [result]
   * @returns {Promise<void>}
   */
  complete(result) {
    if (this._done || this.state !== 'acquired')
      return Promise.reject(new RedisGuardError(codes.LOCK_NOT_HELD, 'this claim was not acquired, or already ended'))
    let payload
    try {
      payload = this._keys._encode(result)
    } catch (e) {
      return Promise.reject(e)
    }
    if (!this.held) return Promise.reject(this._lost)
    this._finish()
    return this._keys._op(IDEM_COMPLETE, this, this._keys.ttlMs, payload).then((held) => {
      if (!held) {
        this._lose('another holder took the key, or its record was removed')
        throw this._lost
      }
    })
  }

  /**
   * Give the key back (the work did not happen, or must be allowed to run again). Resolves
   * true when this claim still held it; never rejects for a lost lease.
   * @returns {Promise<boolean>}
   */
  release() {
    if (this._done || this.state !== 'acquired') return Promise.resolve(false)
    this._finish()
    return this._keys._op(IDEM_RELEASE, this, 0, '').catch(() => false)
  }

  /** Extend the lease to `lockTtlMs` from now (the sweep does it while held). Resolves whether it was. */
  extend() {
    if (!this.held) return Promise.resolve(false)
    const start = timers.now()
    return this._keys._op(IDEM_EXTEND, this, this._keys.lockTtlMs, '').then(
      (held) => {
        if (!held) this._lose('another holder took the key')
        else if (!this._lost) {
          this._extendedAt = start
          this.expiresAt = start + this._keys.lockTtlMs
        }
        return held
      },
      () => this.held && false,
    )
  }

  [inspect.custom]() {
    return `Claim { key: ${JSON.stringify(this.key.slice(0, 64))}, state: '${this.state}', source: '${this.source}' }`
  }
}

class IdempotencyKeys {
  /**
   * @param {import('../../index').IdempotencyKeysOptions & { _raw?: boolean }} [options] (`_raw`: results are strings stored as they are, bytes back: the middleware's)
   */
  constructor(options) {
    const {
      client,
      prefix = 'idem:',
      ttlMs = DEFAULT_TTL_MS,
      lockTtlMs = DEFAULT_LOCK_TTL_MS,
      onUnavailable = 'deny',
      serializer = JSON,
      fallbackMaxKeys,
      _raw = false,
      ...unknown
    } = optionsObject('IdempotencyKeys', options)
    checkCommon(
      'IdempotencyKeys',
      ['client', 'prefix', 'ttlMs', 'lockTtlMs', 'onUnavailable', 'serializer', 'fallbackMaxKeys'],
      unknown,
      { client, prefix, serializer, fallbackMaxKeys },
    )
    for (const [name, v] of [
      ['ttlMs', ttlMs],
      ['lockTtlMs', lockTtlMs],
    ])
      if (typeof v !== 'number' || !(v >= 1 && Math.ceil(v) <= MAX_TTL_MS))
        throw config(`option \`${name}\` must be a number of ms from 1 to one year (${MAX_TTL_MS})`)
    if (!['deny', 'memory', 'allow'].includes(onUnavailable))
      throw config("option `onUnavailable` must be 'deny', 'memory' or 'allow'")
    /** @type {RedisClient} */
    this.client = /** @type {RedisClient} */ (client) || getDefaultClient()
    /** Records are `${prefix}${key}`. The default value is `'idem:'`. */
    this.prefix = prefix
    /** How long a completed key keeps its result, in ms. The default value is `86400000` (24 h). */
    this.ttlMs = Math.ceil(ttlMs)
    /** The lease of an in-progress key, in ms, extended while held. The default value is `10000`. */
    this.lockTtlMs = Math.ceil(lockTtlMs)
    /** `'deny'`, `'memory'` or `'allow'`. The default value is `'deny'`. */
    this.onUnavailable = onUnavailable
    this._serializer = serializer
    this._raw = !!_raw
    try {
      this._native = new NativeIdempotency(this.client._native, prefix, onUnavailable, fallbackMaxKeys)
    } catch (e) {
      throw toError(e)
    }
    this._batch = new Batcher(this._native.batcher())
    /** @type {Set<Claim>} claims held: extended by the sweep */
    this._held = new Set()
    this._sweep = null
    this._every = Math.max(1, Math.floor(this.lockTtlMs / 3))
    /** @type {Record<string, number>} the client's idempotency counters (lib/metrics.js) */
    this._meter = this.client._meter.idempotency
    this._stats = {
      claims: 0,
      acquired: 0,
      inProgress: 0,
      completed: 0,
      mismatches: 0,
      fallbacks: 0,
      errors: 0,
      lost: 0,
    }
  }

  /**
   * Counters of this process, since the IdempotencyKeys was made: `claims` answered, by state
   * (`acquired`, `inProgress`, `completed` — replays —, `mismatches`), `fallbacks` (claims
   * answered by the memory records or `allow`), `errors` (claims rejected: Redis unavailable
   * under `'deny'`, bad input), `lost` (claims whose lease was lost: it expired without an extension, or another holder took the key).
   * @returns {{ claims: number, acquired: number, inProgress: number, completed: number, mismatches: number, fallbacks: number, errors: number, lost: number }}
   */
  stats() {
    return { ...this._stats }
  }

  /** The result as stored text. */
  _encode(result) {
    if (this._raw) {
      if (typeof result !== 'string') throw invalid('a raw result must be a string')
      return result
    }
    if (result === undefined) return ''
    let text
    try {
      text = this._serializer.stringify(result)
    } catch (e) {
      throw new RedisGuardError(codes.INVALID_ARG, 'the result could not be serialized', { cause: e })
    }
    if (typeof text !== 'string') throw invalid('the result could not be serialized (a function, a symbol?)')
    return text
  }

  /** Stored bytes as the result. */
  _decode(bytes) {
    if (this._raw) return bytes
    if (bytes.length === 0) return undefined
    return this._serializer.parse(bytes.toString('utf8'))
  }

  /**
   * Claim `key`: one atomic script call. Resolves a Claim whose `state` says what to do.
   * Rejects with `ERR_REDIS_GUARD_INVALID_ARG` for a bad key or fingerprint, and — with
   * `onUnavailable: 'deny'` while Redis is unavailable — `ERR_REDIS_GUARD_UNAVAILABLE` or
   * `ERR_REDIS_GUARD_TIMEOUT` within the command deadline.
   * @param {string} key
   * @param {{ fingerprint?: string }} [options]
   * @returns {Promise<Claim>}
   */
  claim(key, options) {
    try {
      checkKey(key)
    } catch (e) {
      return Promise.reject(e)
    }
    const fingerprint = options && options.fingerprint !== undefined ? options.fingerprint : ''
    if (typeof fingerprint !== 'string' || fingerprint.length > IDEM_MAX_FINGERPRINT_BYTES || !wellFormed(fingerprint))
      return Promise.reject(invalid(`the fingerprint must be a string of at most ${IDEM_MAX_FINGERPRINT_BYTES} bytes`))
    const token = newToken()
    const bytes = Buffer.from(token + fingerprint)
    if (bytes.length - token.length > IDEM_MAX_FINGERPRINT_BYTES)
      return Promise.reject(invalid(`the fingerprint must be at most ${IDEM_MAX_FINGERPRINT_BYTES} bytes`))
    const st = this._stats
    return this._batch.push(IDEM_CLAIM, key, this.lockTtlMs, token.length, bytes).then(({ nums, bytes: out }) => {
      if (nums[0] < 0) {
        st.errors++
        throw fromNumber(nums[0], `idempotency key ${JSON.stringify(key.slice(0, 64))}`)
      }
      const state = STATES[nums[1]]
      st.claims++
      if (nums[0] !== 0) st.fallbacks++
      const m = this._meter
      if (nums[1] === IDEM_ACQUIRED) {
        st.acquired++
        m.acquired++
      } else if (nums[1] === IDEM_IN_PROGRESS) {
        st.inProgress++
        m.inProgress++
      } else if (nums[1] === IDEM_COMPLETED) {
        st.completed++
        m.replayed++
      } else {
        st.mismatches++
        m.mismatch++
      }
      const result = state === 'completed' ? this._decode(out) : undefined
      const claim = new Claim(this, key, token, state, SOURCES[nums[0]], state === 'in-progress' ? nums[2] : 0, result)
      if (state === 'acquired' && claim.source !== 'allow') this._hold(claim)
      return claim
    })
  }

  /** A complete, release or extend of `claim`: resolves whether its token held the key. */
  _op(kind, claim, ttlMs, payload) {
    const op = kind | (SOURCES.indexOf(claim.source) * IDEM_SOURCE_SHIFT)
    const token = claim._token
    return this._batch.push(op, claim.key, ttlMs, token.length, Buffer.from(token + payload)).then(({ nums }) => {
      if (nums[0] < 0) throw fromNumber(nums[0], `idempotency key ${JSON.stringify(claim.key.slice(0, 64))}`)
      return nums[1] === 1
    })
  }

  _hold(claim) {
    this._held.add(claim)
    if (!this._sweep) this._sweep = timers.after(() => this._tick(), this._every, true)
  }

  /** Extend every held claim not extended for half a period; re-arm while any is held. */
  _tick() {
    this._sweep = null
    const now = timers.now()
    for (const c of this._held) {
      if (!c.held) continue
      if (now - c._extendedAt >= this._every / 2) c.extend()
    }
    if (this._held.size) this._sweep = timers.after(() => this._tick(), this._every, true)
  }

  /** Records held by the memory tier now (`onUnavailable: 'memory'`). */
  fallbackSize() {
    return this._native.fallbackSize()
  }

  [inspect.custom]() {
    return `IdempotencyKeys { prefix: ${JSON.stringify(this.prefix)}, onUnavailable: '${this.onUnavailable}', held: ${this._held.size} }`
  }
}

module.exports = { IdempotencyKeys, Claim, DEFAULT_TTL_MS, DEFAULT_LOCK_TTL_MS, checkKey }
