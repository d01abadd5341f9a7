'use strict'
// RedisClient: the connection (src/connection/), with what must be JavaScript: the logger,
// option encoding, typed errors and the Express health handler. Its lock methods are the lock
// feature's (lib/lock.js), made on first use.

const { inspect } = require('node:util')
const { NativeClient } = require('./native.js')
const { RedisGuardError, codes, toError } = require('./errors.js')
const metrics = require('./metrics.js')

const ENV_KEYS = [
  'REDIS_URL',
  'REDIS_HOST',
  'REDIS_PORT',
  'REDIS_USERNAME',
  'REDIS_USER',
  'REDIS_PASSWORD',
  'REDIS_DB',
  'REDIS_TLS',
  'REDISHOST',
  'REDISPORT',
  'REDISUSER',
  'REDISPASSWORD',
]

/**
 * The default logger: one line per state change, written to stderr directly. Not through
 * `console`, which test runners wrap (Jest reports a line that arrives after a test as an error).
 */
function defaultLogger(level, message, fields) {
  if (level === 'debug' || level === 'trace') return
  const where = fields && fields.url ? ` (${fields.url})` : ''
  const why = fields && fields.error ? `: ${fields.error}` : ''
  process.stderr.write(`[redis-guard] ${message}${where}${why}\n`)
}

/** Accepts `false` (silent), a function `(level, message, fields)`, or a pino/winston-like object. */
function normalizeLogger(logger) {
  if (logger === false || logger === null) return null
  if (logger === undefined) return defaultLogger
  if (typeof logger === 'function') return logger
  if (typeof logger === 'object' && typeof logger.warn === 'function') {
    return (level, message, fields) => {
      const fn = typeof logger[level] === 'function' ? logger[level] : logger.warn
      fn.call(logger, { ...fields }, message)
    }
  }
  throw new RedisGuardError(
    codes.CONFIG,
    'option `logger` must be false, a function or an object with info/warn/error methods',
  )
}

/** Options to JSON for Rust: Buffers become PEM text, functions and bigints become markers so
 * that Rust reports them as wrong types (by name, never by value). */
function optionsJson(options) {
  if (options === undefined || options === null) return undefined
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new RedisGuardError(
      codes.CONFIG,
      `options must be an object, got ${Array.isArray(options) ? 'an array' : typeof options}`,
    )
  }
  return JSON.stringify(options, (k, v) => {
    if (Buffer.isBuffer(v)) return v.toString('utf8')
    if (v && v.type === 'Buffer' && Array.isArray(v.data)) return Buffer.from(v.data).toString('utf8')
    if (typeof v === 'function') return '[Function]'
    if (typeof v === 'bigint') return Number(v)
    if (typeof v === 'symbol') return '[Symbol]'
    if (typeof v === 'number' && !Number.isFinite(v)) return '[NaN]'
    return v
  })
}

function envJson(env) {
  const out = {}
  for (const k of ENV_KEYS) if (typeof env[k] === 'string') out[k] = env[k]
  return JSON.stringify(out)
}

/** Answer an HTTP request with `client`'s health: 200 when healthy or degraded, 503 when unhealthy. */
function sendHealth(client, options, res, next) {
  client.healthCheck(options).then(
    (r) => {
      res.statusCode = r.status === 'unhealthy' ? 503 : 200
      res.setHeader('content-type', 'application/json; charset=utf-8')
      res.setHeader('cache-control', 'no-store')
      res.end(JSON.stringify(r))
    },
    (e) => (typeof next === 'function' ? next(e) : res.end()),
  )
}

class RedisClient {
  /**
   * @param {import('../index').RedisClientOptions} [options]
   */
  constructor(options) {
    if (typeof options === 'string') options = { url: options }
    if (options !== undefined && options !== null && (typeof options !== 'object' || Array.isArray(options))) {
      throw new RedisGuardError(
        codes.CONFIG,
        `options must be an object or a URL string, got ${Array.isArray(options) ? 'an array' : typeof options}`,
      )
    }
    const { logger, env, ...rest } = options || {}
    const log = normalizeLogger(logger)
    const sink = log
      ? (line) => {
          try {
            const { level, message, fields } = JSON.parse(line)
            log(level, message, fields)
          } catch {}
        }
      : undefined
    const json = options === undefined || options === null ? undefined : optionsJson(rest)
    try {
      this._native = new NativeClient(json, envJson(env || process.env), sink)
    } catch (e) {
      throw toError(e)
    }
    /** @type {import('./lock.js').Locks | null} this client's locks, made on first use */
    this._lockFeature = null
    /** What the features' JS halves count for `metrics()` (lib/metrics.js). */
    this._meter = new metrics.Meter()
  }

  /**
   * This client's metrics as Prometheus text (format 0.0.4): `redis_guard_*` counters per
   * feature, the round-trip histogram, availability (README, "Operations").
   * @returns {string}
   */
  metrics() {
    return metrics.text(this)
  }

  /**
   * Add this client's metrics to a prom-client registry (prom-client is an optional peer):
   * `client.registerMetrics(require('prom-client').register)`.
   * @param {{ registerMetric(m: any): void }} register
   */
  registerMetrics(register) {
    metrics.register(this, register)
  }

  /** An Express handler serving `metrics()` (content type `text/plain; version=0.0.4`). */
  metricsHandler() {
    return metrics.handler(() => this)
  }

  /** The URL, password masked. */
  get url() {
    return this._native.url
  }

  /** The command deadline in ms. */
  get commandTimeoutMs() {
    return this._native.commandTimeoutMs
  }

  /** The last known connection state, without I/O. */
  isAvailable() {
    return this._native.isAvailable()
  }

  /** Resolves true once connected (false after `timeoutMs`, default the connect timeout). */
  ready(timeoutMs) {
    return this._native.ready(timeoutMs)
  }

  /** `{ status, connected, latencyMs, url, mode, topology, error? }`; never rejects. */
  async healthCheck(options) {
    const r = await this._native.healthCheck(!!(options && options.deep))
    if (r.latencyMs === undefined) r.latencyMs = null
    return r
  }

  /** An Express handler: 200 with the health JSON when healthy or degraded, 503 when unhealthy. */
  healthHandler(options) {
    return (req, res, next) => sendHealth(this, options, res, next)
  }

  /** Counters (timeouts, errors, stateChanges, reconnects, fallbacks). */
  stats() {
    return this._native.stats()
  }

  /** Close the connection. */
  close() {
    return this._native.close()
  }

  // ---- locks (lib/lock.js) ------------------------------------------------------------------

  /** @returns {import('./lock.js').Locks} */
  get _locks() {
    if (!this._lockFeature) {
      const { Locks } = require('./lock.js')
      this._lockFeature = new Locks(this)
    }
    return this._lockFeature
  }

  /**
   * Take `key` and return a Lease, or null when it stays held elsewhere for `waitMs`.
   * @param {string} key
   * @param {import('../index').LockOptions} [options]
   */
  lock(key, options) {
    return this._locks.lock(key, options)
  }

  /**
   * Run `fn(signal)` while holding `key` (see lib/lock.js).
   * @param {string} key
   * @param {any} options
   * @param {any} [fn]
   */
  withLock(key, options, fn) {
    return this._locks.withLock(key, options, fn)
  }

  /**
   * Seed-compatible: take `lock:${key}` for `ttlSeconds` (default 30). true when acquired.
   * @param {string} key
   * @param {number} [ttlSeconds]
   * @param {{ onUnavailable?: 'local' | 'allow' | 'deny' }} [options]
   */
  acquireLock(key, ttlSeconds, options) {
    return this._locks.acquireLock(key, ttlSeconds, options)
  }

  /**
   * Seed-compatible: release `key` if this process holds it. true when released.
   * @param {string} key
   */
  releaseLock(key) {
    return this._locks.releaseLock(key)
  }

  /**
   * Seed-compatible: extend `key` to `ttlSeconds` from now if this process holds it.
   * @param {string} key
   * @param {number} [ttlSeconds]
   */
  extendLock(key, ttlSeconds) {
    return this._locks.extendLock(key, ttlSeconds)
  }

  [inspect.custom]() {
    return `RedisClient { url: '${this.url}', available: ${this.isAvailable()} }`
  }

  toJSON() {
    return { url: this.url, available: this.isAvailable() }
  }
}

module.exports = { RedisClient }
