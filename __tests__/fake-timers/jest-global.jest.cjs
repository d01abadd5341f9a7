'use strict'
// Jest: fakeTimers: { enableGlobally: true } in the config, so the fakes are on before this file
// (and redis-guard, required below) loads; fake time is never advanced.

const sc = require('./scenario.cjs')

const fakedAtLoad = sc.fakedApis()
const real = jest.requireActual('timers')
const ctx = sc.context('jest-global', { setTimeout: real.setTimeout, clearTimeout: real.clearTimeout })
sc.load()

let client

test('fake timers were on before redis-guard loaded', async () => {
  expect(fakedAtLoad).toMatchObject({
    setTimeout: true,
    setImmediate: true,
    queueMicrotask: true,
    nextTick: true,
    Date: true,
  })
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
test('close', () => sc.close(ctx, client))
