'use strict'
// Errors with a stable `.code`. Rust encodes the code as a `[CODE] ` prefix of the message
// (napi cannot set `.code` on the rejection of an async call); `toError` rebuilds a real Error.

const { errorCodes } = require('./native.js')

/**
 * The stable codes, defined once in Rust (src/error.rs): `codes.CONFIG` is
 * `'ERR_REDIS_GUARD_CONFIG'`, and so on.
 * @type {Record<string, string>}
 */
const codes = {}
/**
 * The code of each negative status number of a batched result: status `-n` is `byNumber[n]`.
 * @type {Array<string | null>}
 */
const byNumber = [null]
for (const code of errorCodes()) {
  codes[code.slice('ERR_REDIS_GUARD_'.length)] = code
  byNumber.push(code)
}
Object.freeze(codes)

class RedisGuardError extends Error {
  /** @param {string} code @param {string} message */
  constructor(code, message, options) {
    super(message, options)
    this.name = 'RedisGuardError'
    this.code = code
  }
}

/** Turn whatever the native side threw into a RedisGuardError with a code. */
function toError(e) {
  if (e instanceof RedisGuardError) return e
  const msg = e && typeof e.message === 'string' ? e.message : String(e)
  const m = /^\[(ERR_REDIS_GUARD_[A-Z_]+)\] ([\s\S]*)$/.exec(msg)
  if (m) return new RedisGuardError(m[1], m[2])
  // napi's own argument conversion errors ("Failed to convert ...") are bad input.
  const code =
    e &&
    (e.code === 'InvalidArg' ||
      e.code === 'NumberExpected' ||
      e.code === 'StringExpected' ||
      e.code === 'ObjectExpected' ||
      e.code === 'ArrayExpected' ||
      e instanceof TypeError)
      ? codes.INVALID_ARG
      : codes.REDIS
  return new RedisGuardError(code, msg)
}

const numberMessages = {
  [codes.TIMEOUT]: "Redis did not answer in time and onUnavailable is 'deny'",
  [codes.UNAVAILABLE]: "Redis is unavailable and onUnavailable is 'deny'",
  [codes.REDIS]: 'Redis answered with an error',
  [codes.AUTH]: 'Redis refused the credentials or the permission',
  [codes.INVALID_ARG]: 'invalid argument (a lock key over 8192 bytes, or a TTL outside 1 ms to one year)',
  [codes.CLOSED]: 'the client is closed',
}

/** The error of a negative status number of a batched result (`what`: the call, for context). */
function fromNumber(n, what) {
  const code = byNumber[-n] || codes.REDIS
  return new RedisGuardError(code, `${numberMessages[code] || 'failed'} (${what})`)
}

module.exports = { RedisGuardError, codes, toError, fromNumber }
