'use strict'
// The library's own scheduling and clock, out of reach of fake timers. Jest, Vitest and
// @sinonjs/fake-timers replace the global timer functions, `queueMicrotask`, `Date` and
// `performance` (sinon's `install()` also the properties of `node:timers`) while a test runs; a
// batch flushed through them, or a lease timed by them, would never settle until the test
// advanced fake time. So: the timer functions of `node:timers` are taken once, when this module
// loads (the originals, even when sinon got there first); the microtask is a promise job (which
// no fake-timer library can replace); and the clock is read from Rust. A lease or a rate-limit window lives in Redis's real time, so these run in
// real time whatever a test does with its own.

const timers = require('node:timers')
const { clockMs } = require('./native.js')

/**
 * `node:timers`'s own `name`. @sinonjs/fake-timers, installed before this module first loads,
 * has already put its fakes there; each fake carries its clock, which keeps the originals.
 * @param {'setTimeout' | 'clearTimeout' | 'setImmediate'} name
 */
function real(name) {
  const f = /** @type {any} */ (timers[name])
  const saved = f && f.clock && Array.isArray(f.clock.timersModuleMethods) ? f.clock.timersModuleMethods : []
  const orig = saved.find((/** @type {{ methodName: string }} */ m) => m.methodName === name)
  return orig && typeof orig.original === 'function' ? orig.original : f
}

const setTimeout = real('setTimeout')
const clearTimeout = real('clearTimeout')
const setImmediate = real('setImmediate')

/** Node clamps a timer over 2^31 - 1 ms (about 24.8 days) to 1 ms: longer waits are chained. */
const MAX_TIMER_MS = 2 ** 31 - 1

const resolved = Promise.resolve()

/** Run `fn` in a microtask (a promise job). */
function microtask(fn) {
  resolved.then(fn)
}

/**
 * A timer for any `ms` up to a year and more (chained below Node's 2^31 - 1 ms cap), in real
 * time, that never fires before `ms` have passed on the real clock (Node's timers count from
 * the loop's cached time, so one can fire a little early: a lease must not be reported lost
 * before Redis lets it go). `unref`: does not keep the event loop alive. Returns a handle for
 * `cancel`.
 * @param {() => void} fn
 * @param {number} ms
 * @param {boolean} [unref]
 * @returns {{ t: any }}
 */
function after(fn, ms, unref = false) {
  const h = { t: undefined }
  const due = clockMs() + Math.max(0, ms)
  const arm = () => {
    const left = due - clockMs()
    if (left > MAX_TIMER_MS) h.t = setTimeout(arm, MAX_TIMER_MS)
    else if (left > 0) h.t = setTimeout(arm, Math.ceil(left))
    else return fn()
    if (unref) h.t.unref()
  }
  if (ms > 0) arm()
  else h.t = setTimeout(fn, 0)
  if (unref && h.t) h.t.unref()
  return h
}

/** Cancel a timer made by `after` (undefined is ignored). */
function cancel(h) {
  if (h) clearTimeout(h.t)
}

module.exports = { setImmediate, microtask, after, cancel, now: clockMs, MAX_TIMER_MS }
