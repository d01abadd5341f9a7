// Vitest: vi.useFakeTimers() (defaults) before redis-guard loads, kept on for the whole file;
// fake time is never advanced.
import timers from 'node:timers'
import { createRequire } from 'node:module'
import { expect, test, vi } from 'vitest'

const require = createRequire(import.meta.url)
const sc = require('./scenario.cjs')

const ctx = sc.context('vitest-loaded-after', { setTimeout: timers.setTimeout, clearTimeout: timers.clearTimeout })
vi.useFakeTimers()
const fakedAtLoad = sc.fakedApis()
sc.load()

let client

test('fake timers were on before redis-guard loaded', async () => {
  expect(fakedAtLoad).toMatchObject({ setTimeout: true, setImmediate: true, Date: true })
  await sc.fakesOn(ctx)
  client = sc.newClient(ctx)
})
test('client is connected', () => sc.ready(ctx, client))
test('RedisStore increment/get/decrement/resetKey', () => sc.store(ctx, client))
test('express-rate-limit in an Express app (node:http requests)', () => sc.express(ctx, client, 'http'))
test('express-rate-limit in an Express app (fetch requests)', () => sc.express(ctx, client, 'fetch'))
test('Cache set/get/has/delete', () => sc.cache(ctx, client))
test('acquireLock / releaseLock', () => sc.helpers(ctx, client))
test('client.lock() lease, signal, waitMs, release', () => sc.lease(ctx, client))
test('a lease expires in real time', () => sc.leaseExpiry(ctx, client))
test('withLock runs fn, extends and releases', () => sc.withLock(ctx, client))
test('close', async () => {
  await sc.close(ctx, client)
  vi.useRealTimers()
})
