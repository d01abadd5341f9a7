// Section "down" (opt-in: BENCH_DOWN=1 or BENCH_SECTIONS=...,down): the Express app when Redis
// is unreachable (URL to a closed port) and when Redis is killed mid-run (then restarted).
// Not a speed contest: it shows what a web server's requests cost while Redis is gone.

import http from 'node:http'
import { performance } from 'node:perf_hooks'
import { freePort, startRedis } from '../../__tests__/helpers/redis.mjs'
import { latencySummary, mdTable, ms, num, sleep } from './common.mjs'
import { startApp } from './app.mjs'
import { cannon } from './http.mjs'
import { STORE_LABELS } from './stores.mjs'

const PROBE_REQUESTS = 20
const PROBE_TIMEOUT_MS = 20_000

/** `n` concurrent GETs, each on its own connection, each abandoned after `timeoutMs`. */
function probe(url, n, timeoutMs) {
  const one = () =>
    new Promise((resolve) => {
      const t0 = performance.now()
      let settled = false
      const done = (status) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        resolve({ status, ms: performance.now() - t0 })
      }
      const req = http.get(url, { agent: false }, (res) => {
        res.resume()
        res.on('end', () => done(res.statusCode))
        res.on('error', () => done('error'))
      })
      req.on('error', () => done('error'))
      const timer = setTimeout(() => {
        done('timeout')
        req.destroy()
      }, timeoutMs)
    })
  return Promise.all(Array.from({ length: n }, one))
}

function probeSummary(rs) {
  const answered = rs.filter((r) => typeof r.status === 'number')
  const count = (pred) => rs.filter(pred).length
  return {
    requests: rs.length,
    ok: count((r) => r.status === 200),
    http5xx: count((r) => typeof r.status === 'number' && r.status >= 500),
    timeouts: count((r) => r.status === 'timeout'),
    errors: count((r) => r.status === 'error'),
    ...(answered.length ? latencySummary(answered.map((r) => r.ms)) : { p50: NaN, p99: NaN, max: NaN }),
    maxAll: Math.max(...rs.map((r) => r.ms)),
  }
}

/** autocannon for `seconds`, recording every response with its start time (ms since start). */
async function loadRecorded(url, seconds, during) {
  const t0 = Date.now()
  const responses = []
  let reqErrors = 0
  const inst = cannon(url, { duration: seconds })
  inst.on('response', (client, statusCode, resBytes, responseTime) => {
    responses.push({ start: Date.now() - t0 - responseTime, status: statusCode, ms: responseTime })
  })
  inst.on('reqError', () => reqErrors++)
  const driver = during ? during(t0) : Promise.resolve()
  const res = await inst
  await driver
  return { res, responses, reqErrors }
}

function phaseStats(responses, from, to) {
  const rs = responses.filter((r) => r.start >= from && r.start < to)
  const lat = rs.map((r) => r.ms)
  return {
    answered: rs.length,
    ok: rs.filter((r) => r.status === 200).length,
    non2xx: rs.filter((r) => r.status !== 200).length,
    ...(lat.length ? latencySummary(lat) : { p50: NaN, p99: NaN, max: NaN }),
  }
}

export async function runDown(ctx) {
  const runs = { unreachableLoad: [], unreachableProbe: [], killed: [] }
  const closedPort = await freePort() // nothing listens there: connections are refused at once
  const deadUrl = `redis://127.0.0.1:${closedPort}`

  // 1. Unreachable, under load: redis-guard only (its fallback answers); see the probe for ioredis.
  {
    const app = await startApp({
      store: 'redis-guard',
      url: deadUrl,
      prefix: 'rld:',
      keyBy: 'connection',
      waitReady: false,
    })
    try {
      const s0 = await app.stats()
      const res = await cannon(app.url, { duration: ctx.downSeconds })
      const s1 = await app.stats()
      const run = {
        contender: 'redis-guard',
        reqPerSec: res.requests.average,
        answered: res.requests.total,
        ok: res['2xx'],
        non2xx: res.non2xx,
        errors: res.errors,
        timeouts: res.timeouts,
        p50: res.latency.p50,
        p99: res.latency.p99,
        max: res.latency.max,
        fallbacks: s1.storeStats.fallbacks - s0.storeStats.fallbacks,
      }
      runs.unreachableLoad.push(run)
      ctx.log(
        `down unreachable load redis-guard: ${num(run.reqPerSec)} req/s, ${run.ok} 2xx, p99 ${run.p99} max ${run.max} ms, fallbacks ${run.fallbacks}`,
      )
    } finally {
      await app.close()
    }
  }

  // 2. Unreachable, a bounded probe: 20 concurrent requests, 20 s client timeout each.
  for (const contender of ['redis-guard', 'rlr-ioredis']) {
    const app = await startApp({
      store: contender,
      url: deadUrl,
      prefix: 'rld:',
      keyBy: 'connection',
      waitReady: false,
    })
    try {
      const rs = await probe(app.url, PROBE_REQUESTS, PROBE_TIMEOUT_MS)
      const st = await app.stats().catch(() => ({}))
      const sum = { contender, ...probeSummary(rs), storeErrors: st.storeErrors }
      runs.unreachableProbe.push(sum)
      ctx.log(
        `down unreachable probe ${contender}: ${sum.ok} ok, ${sum.http5xx} 5xx, ${sum.timeouts} timeouts, max ${ms(sum.maxAll)} ms`,
      )
    } finally {
      await app.close()
    }
  }

  // 3. Killed mid-run (SIGKILL at 1/3 of the run), restarted on the same port at 2/3.
  const seconds = Math.max(6, 2 * ctx.downSeconds)
  for (const contender of ['redis-guard', 'rlr-ioredis']) {
    const server = await startRedis()
    const app = await startApp({ store: contender, url: server.url, prefix: 'rlk:', keyBy: 'connection' })
    try {
      const s0 = await app.stats()
      const killAt = (seconds * 1000) / 3
      const restartAt = (2 * seconds * 1000) / 3
      const marks = {}
      const { res, responses, reqErrors } = await loadRecorded(app.url, seconds, async (t0) => {
        await sleep(killAt)
        await server.kill()
        marks.killed = Date.now() - t0
        await sleep(Math.max(0, restartAt - (Date.now() - t0)))
        await server.restart()
        marks.restarted = Date.now() - t0
      })
      const s1 = await app.stats()
      const run = {
        contender,
        seconds,
        marks,
        total: {
          answered: responses.length,
          ok: res['2xx'],
          non2xx: res.non2xx,
          errors: res.errors,
          timeouts: res.timeouts,
          reqErrors,
          p99: res.latency.p99,
          max: res.latency.max,
        },
        before: phaseStats(responses, 0, marks.killed),
        down: phaseStats(responses, marks.killed, marks.restarted),
        after: phaseStats(responses, marks.restarted, Infinity),
        fallbacks:
          s1.storeStats.fallbacks !== undefined ? s1.storeStats.fallbacks - s0.storeStats.fallbacks : undefined,
        stateChanges:
          s1.storeStats.stateChanges !== undefined
            ? s1.storeStats.stateChanges - s0.storeStats.stateChanges
            : undefined,
      }
      runs.killed.push(run)
      ctx.log(
        `down killed ${contender}: before ${run.before.ok} ok, down ${run.down.ok} ok / ${run.down.non2xx} non-2xx (p99 ${run.down.p99} ms), after ${run.after.ok} ok; timeouts ${run.total.timeouts}`,
      )
    } finally {
      await app.close()
      await server.stop()
    }
  }

  const L = (c) => STORE_LABELS[c]
  const md = [
    '### down: Redis unreachable or killed (Express app, express-rate-limit defaults: a store error is a 500)',
    '',
    `**Unreachable** (URL to closed port ${closedPort}), autocannon 64 connections × ${ctx.downSeconds} s:`,
    '',
    mdTable(
      ['store', 'req/s', '2xx', 'non-2xx', 'errors + timeouts', 'p50 ms', 'p99 ms', 'max ms', 'fallbacks'],
      runs.unreachableLoad.map((r) => [
        L(r.contender),
        num(r.reqPerSec),
        num(r.ok),
        num(r.non2xx),
        num(r.errors + r.timeouts),
        ms(r.p50),
        ms(r.p99),
        ms(r.max),
        num(r.fallbacks),
      ]),
    ),
    '',
    `**Unreachable, bounded probe**: ${PROBE_REQUESTS} concurrent requests, ${PROBE_TIMEOUT_MS / 1000} s client timeout each:`,
    '',
    mdTable(
      ['store', '200', '5xx', 'client timeouts', 'p50 ms (answered)', 'max ms (answered)', 'longest wait ms'],
      runs.unreachableProbe.map((r) => [
        L(r.contender),
        r.ok,
        r.http5xx,
        r.timeouts,
        ms(r.p50),
        ms(r.max),
        ms(r.maxAll),
      ]),
    ),
    '',
    `**Killed mid-run**: autocannon 64 connections × ${seconds} s, redis-server SIGKILLed at ${Math.round(seconds / 3)} s, restarted (same port) at ${Math.round((2 * seconds) / 3)} s; requests grouped by when they started:`,
    '',
    mdTable(
      ['store', 'phase', 'answered', '2xx', 'non-2xx', 'p50 ms', 'p99 ms', 'max ms'],
      runs.killed.flatMap((r) =>
        [
          ['before', r.before],
          ['down', r.down],
          ['after restart', r.after],
        ].map(([ph, s]) => [
          L(r.contender),
          ph,
          num(s.answered),
          num(s.ok),
          num(s.non2xx),
          ms(s.p50),
          ms(s.p99),
          ms(s.max),
        ]),
      ),
      ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
    '',
    runs.killed
      .map(
        (r) =>
          `${L(r.contender)}: autocannon timeouts (10 s) ${r.total.timeouts}, errors ${r.total.errors}` +
          (r.fallbacks !== undefined ? `, fallbacks ${num(r.fallbacks)}, state changes ${r.stateChanges}` : ''),
      )
      .join('  \n'),
    '',
    "ioredis defaults: `enableOfflineQueue: true` and `maxRetriesPerRequest: 20` with an exponential reconnect backoff (50 ms doubling, capped at 5 s): while Redis is away every command waits in the offline queue, so a request is held far longer than any client waits (here: past the 20 s probe timeout), and rate-limit-redis then fails it (a 500 with express-rate-limit's default `passOnStoreError: false`).",
  ].join('\n')
  return {
    params: {
      closedPort,
      probeRequests: PROBE_REQUESTS,
      probeTimeoutMs: PROBE_TIMEOUT_MS,
      loadSeconds: ctx.downSeconds,
      killSeconds: seconds,
    },
    runs,
    markdown: md,
  }
}
