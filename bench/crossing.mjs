#!/usr/bin/env node
// The batch core's crossing alone (`npm run bench:crossing`): calls through the diagnostic echo
// feature (src/batch/echo.rs), which answers every call in Rust without Redis, so what is
// measured is lib/batch.js + the JS→Rust submission + the tokio hop + the one callback back.
// Numbers only (one number in, three out) beside bytes (a 1 KB value each way). 256 calls in
// flight, one call per turn and all in one turn; 3 alternating rounds, medians; Node CPU per
// call (process.cpuUsage: the JS thread and tokio's together) beside it.
//
// Environment: CROSSING_N (calls per run, default 200000), CROSSING_ROUNDS (default 3).

import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const { RedisClient } = require('../index.js')
const { Batcher } = require('../lib/batch.js')
const { echoBatcher } = require('../binding.js')

const N = Number(process.env.CROSSING_N || 200_000)
const ROUNDS = Number(process.env.CROSSING_ROUNDS || 3)
const IN_FLIGHT = 256
const VALUE = Buffer.alloc(1024, 'x')

// A client that never connects: the echo feature needs none.
const client = new RedisClient({ url: 'redis://127.0.0.1:1', logger: false, connectTimeoutMs: 100 })
const nums = new Batcher(echoBatcher(client._native, false))
const bytes = new Batcher(echoBatcher(client._native, true))

const call = {
  numbers: (i) => nums.push(0, 'key', i),
  bytes: (i) => bytes.push(0, 'key', i, 0, VALUE).then((r) => r.bytes.length),
}

/** `n` calls with `IN_FLIGHT` in flight; `perTurn`: one call per event-loop turn (else all at once). */
async function run(kind, perTurn) {
  const f = call[kind]
  const cpu0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  let next = 0
  async function worker() {
    while (next < N) {
      const i = next++
      await f(i)
      if (perTurn) await new Promise(setImmediate)
    }
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
  const s = Number(process.hrtime.bigint() - t0) / 1e9
  const cpu = process.cpuUsage(cpu0)
  return { opsPerSec: N / s, cpuUsPerOp: (cpu.user + cpu.system) / N }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
const rows = []
for (const perTurn of [false, true]) {
  const runs = { numbers: [], bytes: [] }
  await run('numbers', perTurn) // warm-up
  await run('bytes', perTurn)
  for (let r = 0; r < ROUNDS; r++) {
    for (const kind of ['numbers', 'bytes']) runs[kind].push(await run(kind, perTurn))
  }
  for (const kind of ['numbers', 'bytes']) {
    rows.push({
      mode: perTurn ? 'one call per turn' : 'all in one turn',
      kind: kind === 'numbers' ? 'numbers only' : '1 KB each way',
      opsPerSec: median(runs[kind].map((x) => x.opsPerSec)),
      cpuUsPerOp: median(runs[kind].map((x) => x.cpuUsPerOp)),
    })
  }
}
await client.close()

const fmt = (x, d = 0) => x.toLocaleString('en', { maximumFractionDigits: d, minimumFractionDigits: d })
process.stdout.write(`## The batch core's crossing (echo feature, no Redis)\n\n`)
process.stdout.write(
  `${N.toLocaleString('en')} calls per run, ${IN_FLIGHT} in flight, median of ${ROUNDS} rounds; Node ${process.version}.\n\n`,
)
process.stdout.write('| mode | payload | calls/s | Node CPU µs/call |\n|---|---|--:|--:|\n')
for (const r of rows)
  process.stdout.write(`| ${r.mode} | ${r.kind} | ${fmt(r.opsPerSec)} | ${fmt(r.cpuUsPerOp, 2)} |\n`)
