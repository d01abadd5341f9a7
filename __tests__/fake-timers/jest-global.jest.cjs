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
sc.registerLibTests(test, ctx, () => client)
test('close', () => sc.close(ctx, client))
