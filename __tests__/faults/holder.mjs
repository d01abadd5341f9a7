// Child process of the fault suite: a lock holder that the parent pauses with SIGSTOP.
// argv[2] = JSON { clientOptions }. IPC: { id, cmd, args } -> { id, result } | { id, error }.

import { createRequire } from 'node:module'
import { serve, unhandled } from './child.mjs'

const require = createRequire(import.meta.url)
const { RedisClient } = require('../../index.js')

const p = JSON.parse(process.argv[2])
const client = new RedisClient(p.clientOptions)
const leases = new Map()

const settle = async (f) => {
  try {
    return { value: await f() }
  } catch (e) {
    return { code: e.code || 'ERR', message: String(e.message) }
  }
}

const handlers = {
  async ready() {
    return client.ready(5000)
  },
  /** client.lock(): the lease's token stays here; the parent gets fence and source. */
  async lock({ key, ttlMs }) {
    const lease = await client.lock(key, { ttlMs })
    if (!lease) return null
    const info = { fence: lease.fence, source: lease.source, lostAt: null }
    lease.signal.addEventListener('abort', () => {
      info.lostAt = Date.now()
      info.lostCode = lease.signal.reason && lease.signal.reason.code
    })
    leases.set(key, { lease, info })
    return { fence: lease.fence, source: lease.source }
  },
  /** The lease after the pause: was the loss signalled; do extend and release refuse? */
  async check({ key, ttlMs }) {
    const { lease, info } = leases.get(key)
    const signalled = lease.signal.aborted
    const extend = await settle(() => lease.extend(ttlMs))
    const signalledAfterExtend = lease.signal.aborted
    const release = await settle(() => lease.release())
    return { signalled, signalledAfterExtend, lostCode: info.lostCode, held: lease.held, extend, release }
  },
  /** The seed helpers: acquireLock / extendLock / releaseLock. */
  async acquireLock({ key, ttlSeconds }) {
    return client.acquireLock(key, ttlSeconds)
  },
  async checkHelpers({ key }) {
    const extend = await settle(() => client.extendLock(key, 5))
    const release = await settle(() => client.releaseLock(key))
    return { extend, release }
  },
  /** Many grants at once (one batch): leases and helpers; what each caller was answered. */
  async grantMany({ prefix, n, ttlMs }) {
    const [leasesOut, helpersOut] = await Promise.all([
      Promise.all(Array.from({ length: n }, (_, i) => settle(() => client.lock(`${prefix}lease-${i}`, { ttlMs })))),
      Promise.all(
        Array.from({ length: n }, (_, i) => settle(() => client.acquireLock(`${prefix}helper-${i}`, ttlMs / 1000))),
      ),
    ])
    leasesOut.forEach((r, i) => r.value && leases.set(`${prefix}lease-${i}`, { lease: r.value, info: {} }))
    return {
      leases: leasesOut.map((r) => (r.value ? r.value.source : r.code || null)),
      helpers: helpersOut.map((r) => r.value ?? r.code),
    }
  },
  async stats() {
    return { available: client.isAvailable(), ...client.stats() }
  },
  async close() {
    await client.close()
    return { unhandled: unhandled.count }
  },
}

serve(handlers)
