// Vitest: vi.useFakeTimers() with its defaults in beforeEach; fake time is never advanced.
// redis-guard is loaded (through Node's require, not Vite's transform) before the fakes.
import timers from 'node:timers'
import { createRequire } from 'node:module'
import { afterEach, beforeAll, beforeEach, expect, test, vi } from 'vitest'

const require = createRequire(import.meta.url)
const sc = require('./scenario.cjs')

const ctx = sc.context('vitest-default', { setTimeout: timers.setTimeout, clearTimeout: timers.clearTimeout })
sc.load()

let client

beforeAll(() => {
  client = sc.newClient(ctx)
})
beforeEach(() => {
  vi.useFakeTimers()
})
afterEach(() => {
  vi.useRealTimers()
})

test('fake timers are on', async () => {
  await sc.fakesOn(ctx)
  expect(sc.fakedApis()).toMatchObject({ setTimeout: true, setImmediate: true, Date: true })
  await sc.httpControl(ctx)
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
test('close', () => sc.close(ctx, client))
