// Shared helpers of the benchmark: statistics, child-process runners, /proc CPU readers and
// Markdown formatting. Only Node's standard library is used here.

import { fork, spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const BENCH_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const ROOT = path.resolve(BENCH_DIR, '..')

// ---------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------

/** Percentile (nearest rank) of an ascending-sorted array-like. */
export function pct(sorted, p) {
  if (!sorted.length) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i]
}

/** { p50, p99, max, mean } of latencies in ms (Float64Array or array). */
export function latencySummary(lat) {
  const s = Float64Array.from(lat).sort()
  let sum = 0
  for (let i = 0; i < s.length; i++) sum += s[i]
  return { p50: pct(s, 50), p99: pct(s, 99), max: s[s.length - 1], mean: sum / s.length }
}

/** Median of numbers (NaN/undefined ignored). */
export function median(xs) {
  const s = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (!s.length) return NaN
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

// ---------------------------------------------------------------------------------------------
// CPU of other processes (redis-server) from /proc
// ---------------------------------------------------------------------------------------------

const CLK_TCK = 100 // Linux USER_HZ; /proc/<pid>/stat counts in these ticks

/** utime+stime of `pid` in µs (10 ms resolution), or NaN when unreadable (not Linux). */
export function procCpuMicros(pid) {
  if (!pid) return NaN
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // after "pid (comm) ": state=f[0], ..., utime=f[11], stime=f[12]
    return ((Number(f[11]) + Number(f[12])) * 1e6) / CLK_TCK
  } catch {
    return NaN
  }
}

/**
 * CPU of each thread of process `pid` in µs (10 ms resolution), from /proc/<pid>/task: `js` (the
 * main thread, where JavaScript runs), `tokio` (redis-guard's worker threads, named
 * `redis-guard`) and `other` (V8's and libuv's helpers, other clients' threads). NaNs when
 * unreadable (not Linux).
 * @param {number} pid
 * @returns {{ js: number, tokio: number, other: number }}
 */
export function threadCpuMicros(pid) {
  const out = { js: 0, tokio: 0, other: 0 }
  let tasks
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`)
  } catch {
    return { js: NaN, tokio: NaN, other: NaN }
  }
  for (const t of tasks) {
    let stat
    try {
      stat = fs.readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8')
    } catch {
      continue // the thread ended
    }
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const us = ((Number(f[11]) + Number(f[12])) * 1e6) / CLK_TCK
    out[t === String(pid) ? 'js' : comm === 'redis-guard' ? 'tokio' : 'other'] += us
  }
  return out
}

/**
 * The CPU per unit of each thread kind between two `threadCpuMicros` readings.
 * @param {{ js: number, tokio: number, other: number }} a
 * @param {{ js: number, tokio: number, other: number }} b
 * @param {number} n
 */
export function threadCpuPer(a, b, n) {
  return { js: (b.js - a.js) / n, tokio: (b.tokio - a.tokio) / n, other: (b.other - a.other) / n }
}

/**
 * The medians of runs' CPU by thread kind, `r[key]` each (`{ js, tokio, other }` µs per op or
 * request), as one table cell `JS · tokio · other`; '–' for runs without the figures.
 * @param {any[]} rs
 * @param {string} key
 * @param {number} [digits]
 */
export function threadCells(rs, key, digits = 1) {
  const m = (k) => median(rs.map((r) => r[key]?.[k] ?? NaN))
  if (!Number.isFinite(m('js'))) return '–'
  return `${num(m('js'), digits)} · ${num(m('tokio'), digits)} · ${num(m('other'), digits)}`
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/**
 * Run a worker module in a child Node process: it gets `params` (JSON in argv[2]), sends one
 * `{ type: 'result', ... }` message over IPC and must then exit BY ITSELF (every client closed).
 * Resolves `{ ...result, exitedCleanly }`; a worker that does not exit within `exitGraceMs`
 * after its result is SIGKILLed and reported `exitedCleanly: false`.
 */
export function runWorker(file, params, { timeoutMs = 300_000, exitGraceMs = 10_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = fork(file, [JSON.stringify(params)], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: { ...process.env, REDIS_URL: '' },
    })
    child.stdout.pipe(process.stderr) // stdout is the report's
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (d) => {
      stderr += d
      if (stderr.length > 20_000) stderr = stderr.slice(-20_000)
    })
    let result
    let exitTimer
    const hardTimer = setTimeout(() => {
      child.kill('SIGKILL')
    }, timeoutMs)
    child.on('message', (m) => {
      if (m && m.type === 'result') {
        result = m
        exitTimer = setTimeout(() => child.kill('SIGKILL'), exitGraceMs)
      }
    })
    child.once('error', (e) => {
      clearTimeout(hardTimer)
      clearTimeout(exitTimer)
      reject(e)
    })
    child.once('exit', (code, signal) => {
      clearTimeout(hardTimer)
      clearTimeout(exitTimer)
      if (!result) {
        reject(
          new Error(
            `worker ${path.basename(file)} ${JSON.stringify(params.contender ?? '')} ended without a result (${code ?? signal}):\n${stderr.trim()}`,
          ),
        )
        return
      }
      if (result.error) {
        reject(new Error(`worker ${path.basename(file)} failed: ${result.error}\n${stderr.trim()}`))
        return
      }
      const exitedCleanly = code === 0 && signal === null
      if (!exitedCleanly)
        process.stderr.write(
          `[bench] warning: worker ${path.basename(file)} (${params.contender}) did not exit by itself (${code ?? signal})\n`,
        )
      delete result.type
      resolve({ ...result, exitedCleanly })
    })
  })
}

/**
 * `n` calls of `call(i)` (resolving true, or false for a refused / contended call), `concurrency`
 * in flight: resolves `{ lat, refused }` (latency of each call in ms, issue -> resolution, and
 * the false ones). A replacement is issued from the resolution callback of the finished call
 * (the calls that finish together are issued again in the same event-loop turn), or with
 * `immediate`, every call (also the first `concurrency`) from its own setImmediate, i.e. its own
 * macrotask, as HTTP requests arrive. After a failed call no more are issued.
 * @param {(i: number) => Promise<unknown>} call
 * @param {number} n
 * @param {number} concurrency
 * @param {{ immediate?: boolean }} [options]
 * @returns {Promise<{ lat: Float64Array, refused: number }>}
 */
export function inFlight(call, n, concurrency, { immediate = false } = {}) {
  return new Promise((resolve, reject) => {
    const lat = new Float64Array(n)
    let issued = 0 // calls started
    let scheduled = 0 // calls started or queued in a setImmediate (never more than n)
    let done = 0
    let refused = 0
    let failed = false
    const issue = () => {
      if (failed) return
      const i = issued++
      const t0 = performance.now()
      call(i).then(
        (ok) => {
          lat[i] = performance.now() - t0
          if (!ok) refused++
          if (++done === n) resolve({ lat, refused })
          else if (scheduled < n) next()
        },
        (e) => {
          failed = true
          reject(e)
        },
      )
    }
    const next = () => {
      scheduled++
      if (immediate) setImmediate(issue)
      else issue()
    }
    for (let k = 0; k < Math.min(concurrency, n); k++) next()
  })
}

/**
 * Measure `run()`: its wall time, this process's CPU (process.cpuUsage: every thread) and each
 * thread kind's (`threadCpuMicros`: µs of the JS thread, the tokio thread, the others),
 * redis-server's CPU (/proc, `redisPid`) and the change of the contender's `stats().fallbacks`
 * (undefined when it has none), read in that order around it.
 * @template T
 * @param {() => Promise<T>} run
 * @param {number} redisPid
 * @param {() => { fallbacks?: number }} [stats]
 * @returns {Promise<{ result: T, wallMs: number, cpuUs: number, cpu: NodeJS.CpuUsage, threads: { js: number, tokio: number, other: number }, redisCpuUs: number, fallbacks: number | undefined }>}
 */
export async function measured(run, redisPid, stats = () => ({})) {
  const stats0 = stats()
  const redis0 = procCpuMicros(redisPid)
  const threads0 = threadCpuMicros(process.pid)
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const result = await run()
  const wallMs = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  const threads = threadCpuPer(threads0, threadCpuMicros(process.pid), 1)
  const redis1 = procCpuMicros(redisPid)
  const stats1 = stats()
  const fallbacks = stats1.fallbacks !== undefined ? stats1.fallbacks - stats0.fallbacks : undefined
  return { result, wallMs, cpu, cpuUs: cpu.user + cpu.system, threads, redisCpuUs: redis1 - redis0, fallbacks }
}

/** Worker side of runWorker: run `main(params)`, send its result, then let the process exit. */
export async function workerMain(main) {
  const params = JSON.parse(process.argv[2] || '{}')
  let msg
  try {
    msg = { type: 'result', ...(await main(params)) }
  } catch (e) {
    msg = { type: 'result', error: (e && e.stack) || String(e) }
  }
  process.send(msg, () => process.disconnect())
}

/** Run a command; resolves { code, stdout, stderr }; kills it after `timeoutMs`. */
export function runCmd(cmd, args, { timeoutMs = 120_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d))
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('error', (e) => {
      clearTimeout(t)
      reject(e)
    })
    child.once('close', (code, signal) => {
      clearTimeout(t)
      resolve({ code: code ?? signal, stdout, stderr })
    })
  })
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------

/** A number with thousands separators (integers) or `digits` decimals. */
export function num(x, digits = 0) {
  if (typeof x !== 'number' || !Number.isFinite(x)) return 'n/a'
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** ms with 3 significant-ish digits. */
export function ms(x) {
  if (typeof x !== 'number' || !Number.isFinite(x)) return 'n/a'
  if (x >= 100) return x.toFixed(0)
  if (x >= 10) return x.toFixed(1)
  if (x >= 1) return x.toFixed(2)
  return x.toFixed(3)
}

export function ratio(x) {
  return typeof x === 'number' && Number.isFinite(x) ? `${x.toFixed(2)}×` : 'n/a'
}

/** A Markdown table from a header row and rows of cells. */
export function mdTable(header, rows, align) {
  const al = align || header.map((_, i) => (i === 0 ? 'l' : 'r'))
  const sep = al.map((a) => (a === 'l' ? ':--' : a === 'c' ? ':-:' : '--:'))
  const line = (cells) => `| ${cells.map((c) => String(c)).join(' | ')} |`
  return [line(header), line(sep), ...rows.map(line)].join('\n')
}

/** Parse a comma list env/flag into a Set (empty input -> fallback). */
export function listOpt(value, fallback) {
  if (value === undefined || value === null || String(value).trim() === '') return new Set(fallback)
  return new Set(
    String(value)
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  )
}

/** An integer from env/flags with a default and a floor. */
export function intOpt(value, def, min = 1) {
  const n = Number(value)
  return value !== undefined && value !== '' && Number.isFinite(n) ? Math.max(min, Math.floor(n)) : def
}

/**
 * Count the JS→Rust crossings of a redis-guard batcher's native half (`batcher._batch.native`)
 * and the calls they carry, in `diag` (`{ batches, items }`, incremented).
 * @param {{ submit: Function }} native
 * @param {{ batches: number, items: number }} diag
 */
export function countCrossings(native, diag) {
  const submit = native.submit
  native.submit = (id, ops, ...rest) => {
    diag.batches++
    diag.items += ops.length
    return submit.call(native, id, ops, ...rest)
  }
}
