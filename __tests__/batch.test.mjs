// The batch core (lib/batch.js + src/batch/): calls of a turn become one submission; results
// come back by batch id through one callback (src/batch/completion.rs). The first tests replace
// the native side by a recorder: what is tested is the bookkeeping (ids, the table of batches in
// flight, keep-alive), which Redis has no say in. The last ones cross for real, through the
// diagnostic echo feature (src/batch/echo.rs): numbers, and bytes each way. Redis's part is
// covered by every store and lock test.

import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { test } from 'node:test'

const require = createRequire(import.meta.url)
const { Batcher } = require('../lib/batch.js')
const { echoBatcher } = require('../binding.js')
const { RedisClient } = require('../index.js')

function recorder() {
  const n = { submitted: [], keepAlive: [], done: null, fail: null }
  n.native = {
    widthIn: 0,
    widthOut: 3,
    bytesIn: false,
    bytesOut: false,
    setDone: (fn) => {
      n.done = fn
    },
    keepAlive: (on) => n.keepAlive.push(on),
    submit: (id, ops, joined, lens) => {
      if (n.fail) throw n.fail
      let at = 0
      const keys = [...lens].map((l) => joined.slice(at, (at += l)))
      n.submitted.push({ id, keys })
    },
  }
  return n
}

test('many batches in flight, answered in any order: every call gets its own numbers', async () => {
  const n = recorder()
  const b = new Batcher(n.native, 1) // one call per batch: 300 batches in flight
  const calls = Array.from({ length: 300 }, (_, i) => b.push(0, `k${i}`))
  assert.equal(n.submitted.length, 300)
  assert.ok(b.slots.length >= 300, `the table grew to ${b.slots.length}`)
  assert.deepEqual(n.keepAlive, [true], 'ref once when the first batch left')
  const order = [...n.submitted].sort(() => Math.random() - 0.5)
  for (const { id, keys } of order) n.done(id, Float64Array.from([0, Number(keys[0].slice(1)), id]))
  n.done(123456, new Float64Array(3)) // an unknown id is ignored
  const out = await Promise.all(calls)
  for (const [i, r] of out.entries()) {
    assert.equal(r.length, 3)
    assert.equal(r[1], i, `call ${i} got the numbers of key k${i}`)
  }
  assert.deepEqual(n.keepAlive, [true, false], 'unref once the last batch came back')
  assert.equal(b.inflight, 0)
})

test('a batch of one turn is one submission; a refused submission rejects only its own calls', async () => {
  const n = recorder()
  const b = new Batcher(n.native)
  const first = [b.push(0, 'a'), b.push(1, 'b'), b.push(0, 'c')]
  await Promise.resolve() // the microtask flush (nothing in flight)
  assert.equal(n.submitted.length, 1)
  assert.deepEqual(n.submitted[0].keys, ['a', 'b', 'c'])
  n.fail = Object.assign(new Error('lock batch arrays differ in length'), { code: 'InvalidArg' })
  const refused = assert.rejects(b.push(0, 'd'), (e) => e.code === 'ERR_REDIS_GUARD_INVALID_ARG')
  await new Promise((resolve) => setImmediate(resolve)) // in flight: flushed on setImmediate
  await refused
  assert.equal(b.inflight, 1, 'the refused batch was never in flight')
  n.done(n.submitted[0].id, Float64Array.from([0, 1, 10, 0, 2, 20, 0, 3, 30]))
  assert.deepEqual(
    (await Promise.all(first)).map((r) => r[1]),
    [1, 2, 3],
  )
  assert.equal(b.inflight, 0)
})

test('the real crossing: numbers, and bytes both ways (1 KB each), every call its own answer', async () => {
  // A client that never connects: the echo feature answers every call itself.
  const client = new RedisClient({ url: 'redis://127.0.0.1:1', logger: false, connectTimeoutMs: 100 })
  try {
    const nums = new Batcher(echoBatcher(client._native, false))
    assert.deepEqual([nums.widthIn, nums.widthOut, nums.bytesIn, nums.bytesOut], [1, 3, false, false])
    const r = await Promise.all(Array.from({ length: 200 }, (_, i) => nums.push(0, 'k'.repeat(i % 7), i)))
    for (const [i, x] of r.entries()) assert.deepEqual([...x], [0, i, i % 7])
    // The keys of a batch cross joined in one string: each arrives as it would alone, also
    // lone surrogates that joining would pair up (each becomes U+FFFD, 3 bytes in UTF-8).
    const keys = ['a', 'é', '€uro', '😀', 'x\uD83D', '\uDE00y', '', '\uD83D', '', '\uDE00', 'plain']
    const lengths = await Promise.all(keys.map((k, i) => nums.push(0, k, i)))
    assert.deepEqual(
      lengths.map((x) => x[2]),
      keys.map((k) => Buffer.byteLength(k)),
    )

    const bytes = new Batcher(echoBatcher(client._native, true))
    assert.deepEqual([bytes.widthIn, bytes.widthOut, bytes.bytesIn, bytes.bytesOut], [1, 4, true, true])
    const values = Array.from({ length: 150 }, (_, i) =>
      Buffer.from(`${i}:`.padEnd(1024, String.fromCharCode(97 + (i % 26)))),
    )
    values[3] = Buffer.alloc(0) // an empty value crosses as such
    const out = await Promise.all(values.map((v, i) => bytes.push(0, `key${i}`, i, 0, v)))
    for (const [i, x] of out.entries()) {
      assert.equal(x.nums[0], 0)
      assert.equal(x.nums[1], i)
      assert.ok(Buffer.isBuffer(x.bytes))
      assert.ok(x.bytes.equals(values[i]), `call ${i} got its own bytes back`)
    }
    // A call without bytes sends none.
    const none = await bytes.push(0, 'nothing', 7)
    assert.equal(none.bytes.length, 0)
  } finally {
    await client.close()
  }
})
