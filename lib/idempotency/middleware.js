'use strict'
// The Express (or plain `node:http`) middleware for the `Idempotency-Key` header, on
// IdempotencyKeys (lib/idempotency/keys.js), after the IETF draft (-07) and the conventions of
// large payment APIs. The first request with a key claims it and runs the handler; its response
// (status, body bytes, allow-listed headers) is captured from `res.write` / `res.end` — which
// `res.json`, `res.send` and `res.status(..).end()` all end in — and stored before the last
// chunk is sent, so a client that saw the response can rely on its replay. A retry gets the
// stored response with `Idempotent-Replayed: true`; one that arrives while the first runs gets
// 409, another request with the same key 422, and a Redis outage 503 (`onUnavailable: 'deny'`).

const crypto = require('node:crypto')
const { isUtf8 } = require('node:buffer')
const { IDEM_WARN_TOO_LARGE, IDEM_WARN_LOST } = require('../native.js')
const { IdempotencyKeys } = require('./keys.js')
const { RedisGuardError, codes } = require('../errors.js')

/** The default header. */
const DEFAULT_HEADER = 'Idempotency-Key'
/** The default methods: the ones that are not idempotent by themselves. */
const DEFAULT_METHODS = ['POST', 'PATCH']
/** The default largest stored body, in bytes: 1 MiB. */
const DEFAULT_MAX_BODY_BYTES = 1024 * 1024
/** The default headers stored with a response and replayed. */
const DEFAULT_REPLAY_HEADERS = [
  'content-type',
  'content-language',
  'content-location',
  'location',
  'cache-control',
  'etag',
  'last-modified',
  'vary',
]
/** The longest key (the draft leaves it to the server; the big payment APIs take 255). */
const MAX_KEY_LENGTH = 255

const PROBLEM = 'application/problem+json'
/** @param {any} v */
const isThenable = (v) => v !== null && typeof v === 'object' && typeof v.then === 'function'
/** `Retry-After` of a 409 (in progress) and a 503 (store unavailable), in seconds. */
const RETRY_AFTER_S = 1
const noop = () => {}

/**
 * The key of a header value: a structured-field string (`"abc"`, RFC 9651: printable ASCII,
 * `\"` and `\\` escapes) or a bare token (visible ASCII without quotes, commas, semicolons or
 * backslashes), 1 to 255 characters; null when malformed.
 * @param {unknown} raw
 * @returns {string | null}
 */
function parseKey(raw) {
  if (typeof raw !== 'string') return null
  const v = raw.trim()
  if (v.length === 0) return null
  if (v.charCodeAt(0) !== 34) {
    return v.length <= MAX_KEY_LENGTH && /^[!#-+\--:<-[\]-~]+$/.test(v) ? v : null
  }
  if (v.length < 2 || v.charCodeAt(v.length - 1) !== 34) return null
  let out = ''
  for (let i = 1; i < v.length - 1; i++) {
    let c = v.charCodeAt(i)
    if (c === 92) {
      c = v.charCodeAt(++i)
      if (c !== 34 && c !== 92) return null
    } else if (c === 34 || c < 0x20 || c > 0x7e) return null
    out += String.fromCharCode(c)
  }
  return out.length >= 1 && out.length <= MAX_KEY_LENGTH ? out : null
}

/** One-shot hashing (Node >= 20.12): about twice as fast as a Hash object for small inputs. */
const oneShot = typeof (/** @type {any} */ (crypto).hash) === 'function' ? /** @type {any} */ (crypto).hash : null

/** The default fingerprint: SHA-256 of the method, the URL and the body (bytes, text or JSON). */
function defaultFingerprint(req) {
  const head = `${req.method}\n${req.originalUrl || req.url}\n`
  const body = req.body
  if (Buffer.isBuffer(body)) return crypto.createHash('sha256').update(head).update(body).digest('base64url')
  const text = typeof body === 'string' ? body : body === undefined || body === null ? '' : JSON.stringify(body)
  if (oneShot) return oneShot('sha256', head + text, 'base64url')
  return crypto
    .createHash('sha256')
    .update(head + text)
    .digest('base64url')
}

/**
 * Answer with an RFC 9457 problem.
 * @param {import('node:http').ServerResponse} res
 */
function problem(res, status, title, detail, retryAfter) {
  const body = JSON.stringify({ type: 'about:blank', title, status, detail })
  res.statusCode = status
  res.setHeader('content-type', PROBLEM)
  res.setHeader('content-length', Buffer.byteLength(body))
  if (retryAfter !== undefined) res.setHeader('retry-after', String(retryAfter))
  res.end(body)
}

/**
 * A stored response: a JSON header line `{"s":status,"h":[[name,value]...],"b":1 if base64}`,
 * `\n`, then the body (UTF-8 text as it is, other bytes in base64).
 */
function encodeResponse(status, headers, body) {
  const utf8 = body.length === 0 || isUtf8(body)
  const head = { s: status, h: headers }
  if (!utf8) head.b = 1
  return JSON.stringify(head) + '\n' + body.toString(utf8 ? 'utf8' : 'base64')
}

/** @param {Buffer} bytes */
function decodeResponse(bytes) {
  const nl = bytes.indexOf(10)
  if (nl < 0) return null
  let head
  try {
    head = JSON.parse(bytes.toString('utf8', 0, nl))
  } catch {
    return null
  }
  const rest = bytes.subarray(nl + 1)
  return { status: head.s, headers: head.h || [], body: head.b ? Buffer.from(rest.toString('latin1'), 'base64') : rest }
}

/** @param {import('node:http').ServerResponse} res */
function replay(res, stored) {
  res.statusCode = stored.status
  for (const [name, value] of stored.headers) res.setHeader(name, value)
  res.setHeader('idempotent-replayed', 'true')
  const bodiless = stored.status < 200 || stored.status === 204 || stored.status === 304
  if (!bodiless) res.setHeader('content-length', stored.body.length)
  res.end(bodiless ? undefined : stored.body)
}

/** @param {any} chunk @param {any} encoding */
function toBuffer(chunk, encoding) {
  if (Buffer.isBuffer(chunk)) return chunk
  if (typeof chunk === 'string')
    return Buffer.from(chunk, /** @type {BufferEncoding} */ (typeof encoding === 'string' ? encoding : 'utf8'))
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
  return null
}

const STATE = Symbol('redis-guard idempotency capture')

/**
 * What `capture` keeps on a response: its claim, the options, the original `write` / `end`,
 * the body so far. Shared functions below read it from `res[STATE]` (no closures per request);
 * once the response ended they pass every call straight to the originals.
 */
class Capture {
  constructor(res, claim, o) {
    this.claim = claim
    this.o = o
    this.write = res.write
    this.end = res.end
    /** @type {Buffer[]} */
    this.chunks = []
    this.size = 0
    this.over = false
    this.ended = false
  }

  keep(chunk, encoding) {
    if (this.over || chunk === undefined || chunk === null || typeof chunk === 'function') return
    const b = toBuffer(chunk, encoding)
    if (!b) return
    this.size += b.length
    if (this.size > this.o.maxBodyBytes) {
      this.over = true
      this.chunks.length = 0
    } else this.chunks.push(b)
  }
}

function captureWrite(chunk, encoding, _cb) {
  const c = this[STATE]
  if (!c.ended) c.keep(chunk, encoding)
  return c.write.apply(this, arguments)
}

/** The last chunk: store the response (or release the claim), then send it. */
function captureEnd(chunk, encoding, _cb) {
  const res = this
  const c = res[STATE]
  if (c.ended) return c.end.apply(res, arguments)
  c.ended = true
  c.keep(chunk, encoding)
  const { claim, o } = c
  const args = arguments
  const send = () => {
    c.end.apply(res, args)
  }
  if (res.destroyed || claim._aborted) {
    claim.release().then(send, send)
    return res
  }
  const status = res.statusCode
  let store = false
  try {
    store = !c.over && !!o.storeResponse(status)
  } catch {
    store = false
  }
  if (c.over) o.keys._native.warnOnce(IDEM_WARN_TOO_LARGE, o.maxBodyBytes)
  if (!store) {
    claim.release().then(send, send)
    return res
  }
  const headers = []
  for (const name of o.replayHeaders) {
    const v = res.getHeader(name)
    if (v !== undefined) headers.push([name, Array.isArray(v) ? v : String(v)])
  }
  const body = c.chunks.length === 1 ? c.chunks[0] : Buffer.concat(c.chunks, c.size)
  claim.complete(encodeResponse(status, headers, body)).then(send, (e) => {
    if (e && e.code === codes.LOCK_LOST) o.keys._native.warnOnce(IDEM_WARN_LOST, 0)
    send()
  })
  return res
}

/** The client went away before the response ended: the key is given back. */
function captureClose() {
  const c = this[STATE]
  if (c.ended) return
  c.claim._aborted = true
  c.claim.release().catch(noop)
}

/**
 * Capture `res`'s body and, at its end, store the response (or release the claim) before the
 * last chunk goes out.
 * @param {any} res
 */
function capture(res, claim, o) {
  res[STATE] = new Capture(res, claim, o)
  res.write = captureWrite
  res.end = captureEnd
  res.once('close', captureClose)
}

/**
 * The middleware. See `IdempotencyOptions` in index.d.ts for every option and its default.
 * @param {import('../../index').IdempotencyOptions} [options]
 */
function idempotency(options = {}) {
  if (options === null || typeof options !== 'object')
    throw new RedisGuardError(codes.CONFIG, 'idempotency options must be an object')
  const {
    client,
    prefix,
    ttlMs,
    lockTtlMs,
    onUnavailable,
    fallbackMaxKeys,
    header = DEFAULT_HEADER,
    required = false,
    methods = DEFAULT_METHODS,
    scope,
    fingerprint = defaultFingerprint,
    storeResponse = (status) => status < 500,
    maxBodyBytes = DEFAULT_MAX_BODY_BYTES,
    replayHeaders = DEFAULT_REPLAY_HEADERS,
    ...unknown
  } = options
  const config = (m) => new RedisGuardError(codes.CONFIG, m)
  const extra = Object.keys(unknown)
  if (extra.length)
    throw config(
      `unknown idempotency option \`${extra[0]}\` (known: client, prefix, ttlMs, lockTtlMs, onUnavailable, fallbackMaxKeys, header, required, methods, scope, fingerprint, storeResponse, maxBodyBytes, replayHeaders)`,
    )
  if (typeof header !== 'string' || !/^[!#-'*+\-.0-9A-Z^-z|~]+$/.test(header))
    throw config('option `header` must be a header name')
  if (typeof required !== 'boolean') throw config('option `required` must be a boolean')
  if (!Array.isArray(methods) || methods.some((m) => typeof m !== 'string'))
    throw config('option `methods` must be an array of method names')
  if (scope !== undefined && typeof scope !== 'function') throw config('option `scope` must be a function')
  if (typeof fingerprint !== 'function') throw config('option `fingerprint` must be a function')
  if (typeof storeResponse !== 'function') throw config('option `storeResponse` must be a function')
  if (!(Number.isInteger(maxBodyBytes) && maxBodyBytes >= 0))
    throw config('option `maxBodyBytes` must be an integer >= 0')
  if (!Array.isArray(replayHeaders) || replayHeaders.some((h) => typeof h !== 'string'))
    throw config('option `replayHeaders` must be an array of header names')
  const keys = new IdempotencyKeys({ client, prefix, ttlMs, lockTtlMs, onUnavailable, fallbackMaxKeys, _raw: true })
  const headerName = header.toLowerCase()
  const methodSet = new Set(methods.map((m) => m.toUpperCase()))
  const o = {
    keys,
    storeResponse,
    maxBodyBytes,
    replayHeaders: replayHeaders.map((h) => h.toLowerCase()),
  }

  /**
   * @param {any} req
   * @param {any} res
   * @param {(err?: any) => void} next
   */
  function idempotencyMiddleware(req, res, next) {
    if (!methodSet.has(req.method)) return next()
    const raw = req.headers[headerName]
    if (raw === undefined) {
      if (required) return problem(res, 400, `${header} is missing`, `This operation requires the ${header} header.`)
      return next()
    }
    const key = parseKey(raw)
    if (key === null)
      return problem(
        res,
        400,
        `${header} is malformed`,
        `The ${header} header must be one string (a structured-field string or a token) of 1 to ${MAX_KEY_LENGTH} characters.`,
      )
    let scoped, fp
    try {
      scoped = scope ? scope(req) : undefined
      fp = fingerprint(req)
    } catch (e) {
      return next(e)
    }
    // An async scope or fingerprint (a user looked up) is awaited; a plain value is not.
    if (isThenable(scoped) || isThenable(fp))
      return Promise.all([scoped, fp]).then(([s, f]) => run(req, res, next, key, s, f), next)
    run(req, res, next, key, scoped, fp)
  }

  function run(req, res, next, key, scoped, fp) {
    const redisKey = scope
      ? `${encodeURIComponent(scoped === undefined || scoped === null ? '' : String(scoped))}:${key}`
      : key
    keys.claim(redisKey, { fingerprint: typeof fp === 'string' ? fp : String(fp) }).then(
      (claim) => {
        switch (claim.state) {
          case 'acquired':
            if (res.destroyed) {
              claim.release().catch(noop)
              return
            }
            if (claim.source !== 'allow') capture(res, claim, o)
            return next()
          case 'completed': {
            const stored = decodeResponse(claim.result)
            if (!stored) return next(new RedisGuardError(codes.REDIS, 'a stored idempotent response did not parse'))
            return replay(res, stored)
          }
          case 'in-progress':
            return problem(
              res,
              409,
              'A request with this key is being processed',
              `A request with the same ${header} is still running; retry later.`,
              RETRY_AFTER_S,
            )
          default:
            return problem(
              res,
              422,
              `${header} was used for another request`,
              `This ${header} was already used with a different request (method, path or body).`,
            )
        }
      },
      (e) => {
        if (e && (e.code === codes.UNAVAILABLE || e.code === codes.TIMEOUT || e.code === codes.CLOSED))
          return problem(
            res,
            503,
            'Idempotency store unavailable',
            'The request was not run because its idempotency key could not be checked; retry later.',
            RETRY_AFTER_S,
          )
        next(e)
      },
    )
  }
  idempotencyMiddleware.keys = keys
  return idempotencyMiddleware
}

module.exports = {
  idempotency,
  parseKey,
  DEFAULT_METHODS,
  DEFAULT_REPLAY_HEADERS,
  DEFAULT_MAX_BODY_BYTES,
  DEFAULT_HEADER,
}
