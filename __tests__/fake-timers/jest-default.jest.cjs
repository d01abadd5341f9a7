'use strict'
// Jest: jest.useFakeTimers() with its defaults (every timer API, queueMicrotask, setImmediate,
// process.nextTick, Date, performance) in beforeEach; fake time is never advanced. redis-guard
// is loaded before the fakes, as an app's own require at the top of a test file would.

const sc = require('./scenario.cjs')

// Real timers for the deadlines and sleeps: Jest's fakes leave the core module alone.
const real = jest.requireActual('timers')
const ctx = sc.context('jest-default', { setTimeout: real.setTimeout, clearTimeout: real.clearTimeout })
sc.load()

let client

beforeAll(() => {
  client = sc.newClient(ctx)
})
beforeEach(() => {
  jest.useFakeTimers()
})
afterEach(() => {
  jest.useRealTimers()
})

test('fake timers are on', async () => {
  await sc.fakesOn(ctx)
  expect(sc.fakedApis()).toMatchObject({ setTimeout: true, setImmediate: true, queueMicrotask: true, nextTick: true })
  await sc.httpControl(ctx)
})
sc.registerLibTests(test, ctx, () => client)
test('close', () => sc.close(ctx, client))
