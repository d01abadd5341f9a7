// Shared machinery of the fault suite (__tests__/faults.test.mjs and bench/faults.mjs):
// the app child, the HTTP workload, Redis-side counting, lock-history analysis, secret scan.

import { fork } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'

const HERE = path.dirname(fileURLToPath(import.meta.url))

/** The command deadline of the default configuration (README: `commandTimeoutMs` 250). */
export const DEADLINE_MS = 250

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/** Every child forked here, killed when this process exits (a failed test must not leak one). */
const live = new Set()
process.on('exit', () => {
  for (const c of live) {
    try {
      process.kill(c.pid, 'SIGCONT')
      c.kill('SIGKILL')
    } catch {}
  }
})

/**
 * Fork `script` with `params`; resolves a handle once it sends { type: 'ready' }.
 * The handle: ask(cmd, args, timeoutMs), logs() (stdout+stderr text), exit (promise of
 * { code, signal }), exited(), close() (asks it to close, waits for it to exit by itself),
 * kill(signal).
 */
export function forkChild(script, params, { readyTimeoutMs = 15_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = fork(path.join(HERE, script), [JSON.stringify(params)], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      // The children must not pick up a developer's REDIS_URL etc.
      env: { PATH: process.env.PATH, HOME: process.env.HOME, NODE_OPTIONS: '' },
    })
    live.add(child)
    let out = ''
    const keep = (d) => {
      out += d
      if (out.length > 2_000_000) out = out.slice(-1_000_000)
    }
    child.stdout.setEncoding('utf8').on('data', keep)
    child.stderr.setEncoding('utf8').on('data', keep)
    let exitInfo = null
    const exit = new Promise((r) =>
      child.once('exit', (code, signal) => {
        exitInfo = { code, signal }
        live.delete(child)
        for (const w of pending.values()) w.reject(new Error(`child exited (${code ?? signal}) during ${w.cmd}`))
        pending.clear()
        r(exitInfo)
      }),
    )
    const pending = new Map()
    let seq = 0
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${script} not ready after ${readyTimeoutMs} ms: ${out.slice(-2000)}`))
    }, readyTimeoutMs)
    exit.then((e) => {
      clearTimeout(timer)
      reject(new Error(`${script} exited early (${e.code ?? e.signal}): ${out.slice(-2000)}`))
    })
    child.on('message', (m) => {
      if (m && m.type === 'ready') {
        clearTimeout(timer)
        resolve(handle(m))
        return
      }
      const w = m && pending.get(m.id)
      if (!w) return
      pending.delete(m.id)
      clearTimeout(w.timer)
      if (m.error) w.reject(new Error(`${script} ${w.cmd}: ${m.error}`))
      else w.resolve(m.result)
    })
    const ask = (cmd, args, timeoutMs = 10_000) =>
      new Promise((res, rej) => {
        if (exitInfo) return rej(new Error(`${script} exited (${exitInfo.code ?? exitInfo.signal})`))
        const id = ++seq
        const t = setTimeout(() => {
          pending.delete(id)
          rej(new Error(`${script} did not answer ${cmd} within ${timeoutMs} ms`))
        }, timeoutMs)
        pending.set(id, { cmd, resolve: res, reject: rej, timer: t })
        child.send({ id, cmd, args })
      })
    const handle = (m) => ({
      ...m,
      child,
      pid: child.pid,
      ask,
      logs: () => out,
      exit,
      exited: () => exitInfo,
      kill: (sig = 'SIGKILL') => {
        try {
          child.kill(sig)
        } catch {}
      },
      /** Ask it to close; resolves { clean, code, signal, result }: clean when it exited 0 by itself. */
      async close(timeoutMs = 10_000) {
        if (exitInfo) return { clean: false, ...exitInfo }
        const result = await ask('close', {}, timeoutMs).catch((e) => ({ error: e.message }))
        const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
        const e = await exit
        clearTimeout(t)
        return { clean: e.code === 0 && !e.signal, ...e, result }
      },
    })
  })
}

/** Start the Express app child (see app.mjs); resolves the handle with `url`. */
export async function startApp(params) {
  const h = await forkChild('app.mjs', { lockKey: 'fault-lock', ...params })
  h.url = `http://127.0.0.1:${h.port}/`
  return h
}

// ---------------------------------------------------------------------------------------------
// HTTP workload
// ---------------------------------------------------------------------------------------------

/**
 * `total` GET requests, request i sent at t0 + i * durationMs / total (open loop: a slow answer
 * does not delay the next request), each with header x-id = `${idPrefix}${i}` and abandoned
 * after `timeoutMs`. Resolves one record per request:
 * { i, key, start (epoch ms), ms, status (number | 'timeout' | 'error'), body }.
 */
export async function httpLoad(url, { total = 200, durationMs = 3000, timeoutMs = 5000, idPrefix = 'r' } = {}) {
  const t0 = Date.now()
  const one = async (i) => {
    const due = t0 + (i * durationMs) / total
    const wait = due - Date.now()
    if (wait > 0) await sleep(wait)
    const start = Date.now()
    const key = `h:${idPrefix}${i}`
    try {
      const res = await fetch(url, { headers: { 'x-id': `${idPrefix}${i}` }, signal: AbortSignal.timeout(timeoutMs) })
      const body = await res.text()
      return { i, key, start, ms: Date.now() - start, status: res.status, body }
    } catch (e) {
      const timeout = e && (e.name === 'TimeoutError' || e.name === 'AbortError')
      return {
        i,
        key,
        start,
        ms: Date.now() - start,
        status: timeout ? 'timeout' : 'error',
        body: String(e && e.message),
      }
    }
  }
  return Promise.all(Array.from({ length: total }, (_, i) => one(i)))
}

/** Nearest-rank percentile of numbers. */
export function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b)
  if (!s.length) return NaN
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]
}

/** Summary of httpLoad records. */
export function summarize(rs) {
  const answered = rs.filter((r) => typeof r.status === 'number')
  const ok = rs.filter((r) => r.status === 200)
  const lat = answered.map((r) => r.ms)
  return {
    total: rs.length,
    answered: answered.length,
    ok: ok.length,
    servedPct: (100 * ok.length) / rs.length,
    answeredPct: (100 * answered.length) / rs.length,
    errors: rs.length - ok.length, // non-200 answers + timeouts + transport errors
    timeouts: rs.filter((r) => r.status === 'timeout').length,
    p50: pct(lat, 50),
    p99: pct(lat, 99),
    max: lat.length ? Math.max(...lat) : NaN,
  }
}

// ---------------------------------------------------------------------------------------------
// Redis-side counting
// ---------------------------------------------------------------------------------------------

const DUMP =
  "local out = {} for _, k in ipairs(redis.call('KEYS', ARGV[1])) do out[#out + 1] = k; out[#out + 1] = redis.call('GET', k) end return out"

/** { key: value } of every key matching `pattern` (KEYS: test servers only). */
export async function redisValues(server, pattern = 'rl:*') {
  const out = await server.cli('EVAL', DUMP, '0', pattern, { timeout: 20_000 })
  const lines = out ? out.split('\n') : []
  const m = new Map()
  for (let i = 0; i + 1 < lines.length; i += 2) m.set(lines[i], Number(lines[i + 1]))
  return m
}

/**
 * Key-by-key accounting of increments. `sentKeys`: every key the workload incremented once
 * (without prefix); `acked`: [key, epoch ms] of those acknowledged by Redis; `values`: Redis
 * keys -> value; `dataLoss`: [start, end] epoch-ms spans of data-loss events (kill -9, SHUTDOWN
 * NOSAVE, FLUSHALL: the loss happened somewhere inside).
 * - duplicated: keys whose counter is above 1 (an increment counted twice: must be 0);
 * - lost: acknowledged increments missing from Redis that no data-loss event explains;
 * - lostToDataLoss: acknowledged before a data-loss event and gone with it (expected);
 * - appliedUnacked: counted in Redis although the caller was answered from the fallback
 *   (the reply was lost to a timeout or a dropped connection): not a double count.
 * - counter / acknowledged: the aggregate figures (counter <= acknowledged + appliedUnacked).
 */
export function accountIncrements(sentKeys, acked, values, { prefix = 'rl:', dataLoss = [] } = {}) {
  const ackedAt = new Map(acked)
  const lastLoss = dataLoss.length ? Math.max(...dataLoss.map(([, end]) => end)) : -Infinity
  let duplicated = 0
  let lost = 0
  let lostToDataLoss = 0
  let appliedUnacked = 0
  let counter = 0
  let acknowledged = 0
  const dupKeys = []
  const lostKeys = []
  for (const k of new Set(sentKeys)) {
    const v = values.get(prefix + k) || 0
    const t = ackedAt.get(k)
    counter += v
    if (t !== undefined) acknowledged++
    if (v > 1) {
      duplicated++
      if (dupKeys.length < 10) dupKeys.push(`${k}=${v}`)
    }
    if (t !== undefined && v === 0) {
      // Acknowledged within a second before the last data loss: a reply may arrive after the
      // server died (kill -9) or after FLUSHALL ran; count it as lost to the data loss.
      if (t <= lastLoss + 50) lostToDataLoss++
      else {
        lost++
        if (lostKeys.length < 10) lostKeys.push(k)
      }
    }
    if (t === undefined && v >= 1) appliedUnacked++
  }
  return {
    sent: new Set(sentKeys).size,
    acknowledged,
    counter,
    duplicated,
    lost,
    lostToDataLoss,
    appliedUnacked,
    dupKeys,
    lostKeys,
  }
}

// ---------------------------------------------------------------------------------------------
// Lock history
// ---------------------------------------------------------------------------------------------

/**
 * Analyse the lock workload's grants (app.mjs lockWorker). Only grants from Redis count:
 * local grants (Redis unusable, `onUnavailable: 'local'`) are per instance by design.
 * - doubleGrants: two Redis grants whose holding intervals [grant received, release sent]
 *   overlap while the first is within its TTL, and no data-loss event (kill -9, SHUTDOWN
 *   NOSAVE, FLUSHALL) happened between the first grant's request and the second's grant.
 * - overlapsAfterDataLoss: the same, across a data-loss event (reported, not a lock bug).
 * - wrongfulReleases: a release that returned true although another Redis grant happened
 *   between this grant and this release (its SET ran after ours, before our DEL): the release
 *   must have deleted someone else's lock. Holds across data loss too.
 */
export function analyseLocks({ events = [], errors = [] } = {}, dataLoss = []) {
  const redis = events.filter((e) => e.source === 'redis')
  let doubleGrants = 0
  let overlapsAfterDataLoss = 0
  let wrongfulReleases = 0
  const examples = []
  for (const a of redis) {
    for (const b of redis) {
      if (a === b) continue
      if (b.tGrant >= a.tGrant && b.tGrant < a.tRelReq && b.tGrant < a.tReq + a.ttl) {
        // A data-loss span explains the overlap when the loss may have fallen between a's
        // request and b's grant.
        if (dataLoss.some(([start, end]) => end >= a.tReq && start <= b.tGrant)) overlapsAfterDataLoss++
        else {
          doubleGrants++
          if (examples.length < 3) examples.push({ a, b })
        }
      }
    }
    if (a.released === true && redis.some((b) => b !== a && b.tReq >= a.tGrant && b.tGrant <= a.tRelReq))
      wrongfulReleases++
  }
  const codes = {}
  for (const e of errors) codes[e.code] = (codes[e.code] || 0) + 1
  return {
    grants: events.length,
    redisGrants: redis.length,
    localGrants: events.filter((e) => e.source === 'local').length,
    doubleGrants,
    overlapsAfterDataLoss,
    wrongfulReleases,
    lostLeases: events.filter((e) => e.lost).length,
    releaseFalse: events.filter((e) => e.released === false).length,
    errors: errors.length,
    errorCodes: codes,
    examples,
  }
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

/** Which of `secrets` (and their URL-encoded forms) occur in `texts`. */
export function findSecrets(secrets, ...texts) {
  const hay = texts.map((t) => (typeof t === 'string' ? t : JSON.stringify(t))).join('\n')
  const found = []
  for (const s of secrets.filter(Boolean)) {
    for (const form of new Set([s, encodeURIComponent(s)])) if (hay.includes(form)) found.push(form)
  }
  return found
}

/** Sleep until `t0 + ms` (epoch). */
export async function at(t0, ms) {
  const wait = t0 + ms - Date.now()
  if (wait > 0) await sleep(wait)
}

/** Poll `fn` every `interval` ms until truthy or `timeout`: resolves the value or false. */
export async function until(fn, { timeout = 10_000, interval = 100 } = {}) {
  const end = Date.now() + timeout
  for (;;) {
    const v = await fn().catch(() => false)
    if (v) return v
    if (Date.now() > end) return false
    await sleep(interval)
  }
}
